"""Which in:/label: terms name a mailbox an account has (core.query.named_mailbox), and the
ones that do not, with the operator as written, for `mailyard search` to name (issue 19)."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given
from hypothesis import strategies as st

from mailyard.core import query as q


@dataclass
class Box:
    name: str
    role: str | None


BOXES = [Box("INBOX", "inbox"), Box("Sent", "sent"), Box("Junk", "junk"),
         Box("All Mail", "all"), Box("Work/Clients 2026", None)]


def unknown(text: str) -> list[str]:
    return [m.written for m in q.unknown_mailboxes(q.parse(text), BOXES)]


def test_roles_labels_and_keyword_labels_are_known() -> None:
    assert unknown("in:inbox in:SPAM in:junk label:sent in:all in:starred in:unread") == []
    assert unknown("label:all-mail label:work-clients-2026 label:Work/Clients_2026") == []
    assert unknown('label:"all mail" in:anywhere is:unread') == []


def test_unknown_ones_are_named_as_written_wherever_they_stand() -> None:
    assert unknown("in:nolabel") == ["in:nolabel"]
    assert unknown('pizza OR -(from:bob Label:"No Such")') == ['label:"No Such"']
    assert unknown("in:drafts in:archive") == ["in:drafts", "in:archive"]  # no such role here


def test_a_mailbox_by_id_is_not_checked() -> None:
    assert q.unknown_mailboxes(q.Mailbox("m-gone", by_id=True), BOXES) == []


def test_written_does_not_change_what_a_node_is() -> None:
    assert q.parse("in:Work") == q.Mailbox("Work")
    assert q.parse("label:inbox") == q.Mailbox("inbox")


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1,
               max_size=30))
def test_a_label_finds_its_own_box_by_its_name(name: str) -> None:
    box = Box(name, None)
    assert q.named_mailbox(name, [box]) is box
    assert q.named_mailbox(name.replace(" ", "-"), [box]) is box
