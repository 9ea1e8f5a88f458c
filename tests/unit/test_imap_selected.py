from __future__ import annotations

from mailyard.protocols.imap.flags import to_flags, to_keywords
from mailyard.protocols.imap.selected import Selected
from mailyard.store.ports import Mailbox, MailboxDelta, MailboxEntry, MailboxSnapshot


def snapshot(uids: list[int]) -> MailboxSnapshot:
    box = Mailbox(id="m1", account_id="a1", name="INBOX", role="inbox", uidvalidity=7,
                  uidnext=max(uids, default=0) + 1, highest_modseq=10)
    return MailboxSnapshot(box, [MailboxEntry(u, f"e{u}", [], 5) for u in uids])


def test_flags_map_to_jmap_keywords_and_back() -> None:
    assert to_keywords(["\\Seen", "\\FLAGGED", "\\Recent", "Work", "$Label1"]) == [
        "$seen", "$flagged", "work", "$label1"]
    assert to_flags(["$seen", "$answered", "work"]) == ["\\Seen", "\\Answered", "work"]


def test_expunges_are_reported_from_the_top_and_then_exists() -> None:
    sel = Selected.from_snapshot(snapshot([3, 5, 8, 9]), read_only=False)
    assert sel.seq_of_uid(8) == 3 and sel.seq_of_uid(4) is None
    out = sel.apply(MailboxDelta(highest_modseq=12, vanished=[3, 8],
                                 changed=[MailboxEntry(10, "e10", ["$seen"], 12),
                                          MailboxEntry(9, "e9", ["$flagged"], 12)]))
    assert out == [b"* 3 EXPUNGE\r\n", b"* 1 EXPUNGE\r\n",
                   b"* 2 FETCH (UID 9 FLAGS (\\Flagged))\r\n", b"* 3 EXISTS\r\n"]
    assert list(sel.uids) == [5, 9, 10] and sel.modseq == 12
    assert list(sel.uid_range(6, 100)) == [1, 2]


def test_unchanged_flags_and_unknown_vanished_uids_say_nothing() -> None:
    sel = Selected.from_snapshot(snapshot([1, 2]), read_only=True)
    assert sel.apply(MailboxDelta(11, [MailboxEntry(1, "e1", [], 11)], [77])) == []
