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


def test_sessions_share_one_version_and_each_is_told_from_where_it_stands() -> None:
    """Two sessions on one shared UID map: the one that was not told of the first change
    gets both steps, in its own sequence numbers, when it catches up."""
    base = Selected.from_snapshot(snapshot([1, 2, 3]), read_only=False).version
    early, late = Selected(base_box(), False, base), Selected(base_box(), False, base)
    v1 = base.advance(MailboxDelta(11, [MailboxEntry(4, "e4", [], 11)], [1]))
    assert early.catch_up() == [b"* 1 EXPUNGE\r\n", b"* 3 EXISTS\r\n"]
    assert early.version is v1 and list(early.uids) == [2, 3, 4]
    v2 = v1.advance(MailboxDelta(12, [MailboxEntry(3, "e3", ["$seen"], 12)], [2]))
    assert v2.uids is not v1.uids and v1.email_ids == ["e2", "e3", "e4"]  # v1 left as it was
    assert early.catch_up() == [b"* 1 EXPUNGE\r\n", b"* 1 FETCH (UID 3 FLAGS (\\Seen))\r\n"]
    assert late.catch_up(with_modseq=True) == [
        b"* 1 EXPUNGE\r\n", b"* 3 EXISTS\r\n",
        b"* 1 EXPUNGE\r\n", b"* 1 FETCH (UID 3 FLAGS (\\Seen) MODSEQ (12))\r\n"]
    assert early.version is late.version is v2 and late.modseq == 12


def test_a_sessions_own_flag_change_is_not_reported_back_to_it() -> None:
    version = Selected.from_snapshot(snapshot([1, 2]), read_only=False).version
    mine, other = Selected(base_box(), False, version), Selected(base_box(), False, version)
    mine.set_keywords(1, ("$flagged",), 13)  # STORE 2 +FLAGS (\Flagged), answered already
    assert mine.keywords_at(1) == ("$flagged",) and other.keywords_at(1) == ()
    version.advance(MailboxDelta(13, [MailboxEntry(2, "e2", ["$flagged"], 13)], []))
    assert mine.catch_up() == []
    assert other.catch_up() == [b"* 2 FETCH (UID 2 FLAGS (\\Flagged))\r\n"]
    assert mine.own == {} and mine.keywords_at(1) == ("$flagged",)


def test_vanished_with_qresync_is_one_line_per_step() -> None:
    sel = Selected.from_snapshot(snapshot([1, 2, 3, 4]), read_only=False)
    sel.version.advance(MailboxDelta(11, [], [2, 3]))
    assert sel.catch_up(qresync=True) == [b"* VANISHED 2:3\r\n"]


def base_box() -> Mailbox:
    return snapshot([]).mailbox
