"""NOTIFY's grammar and the rules RFC 5465 §3.1, §5, §6.1 put on an event list."""

from __future__ import annotations

import pytest

from mailyard.protocols.imap.cmd_notify import MAX_NAMED, Request, parse_notify
from mailyard.protocols.imap.grammar import ParseError, Tokenizer
from mailyard.protocols.imap.session import Bad, No


def parse(text: str) -> Request | None:
    return parse_notify(Tokenizer(text.encode()))


def test_none_and_set_with_status() -> None:
    assert parse("NONE") is None
    request = parse('SET STATUS (selected (MessageNew (UID FLAGS) MessageExpunge)) '
                    '(subtree (Lists "a b") (MessageNew MessageExpunge FlagChange)) '
                    '(mailboxes INBOX (MailboxName)) (personal NONE)')
    assert request is not None and request.status
    assert request.selected is not None and request.selected.filter == "SELECTED"
    assert [i.name for i in request.selected.fetch] == ["UID", "FLAGS"]
    subtree, mailboxes, personal = request.others
    assert subtree.names == ("Lists", "a b") and "FLAGCHANGE" in subtree.events
    assert mailboxes.names == ("INBOX",) and mailboxes.events == {"MAILBOXNAME"}
    assert personal.events == frozenset()


def test_first_group_that_covers_a_mailbox_decides() -> None:
    request = parse("SET (mailboxes Lists (MailboxName)) (personal (MessageNew MessageExpunge))")
    assert request is not None
    assert request.group_of("Lists", None, set(), "MESSAGENEW") is None
    assert request.group_of("Lists/sub", None, set(), "MESSAGENEW") is not None
    sub = parse("SET (subtree Lists (MessageNew MessageExpunge))")
    assert sub is not None
    assert sub.group_of("Lists/a", None, set(), "MESSAGENEW") is not None
    assert sub.group_of("Listsx", None, set(), "MESSAGENEW") is None


@pytest.mark.parametrize("text", [
    "SET (selected (MessageNew))",
    "SET (personal (MessageExpunge))",
    "SET (personal (FlagChange))",
    "SET (selected (MailboxName))",
    "SET (selected NONE) (selected-delayed NONE)",
    "SET (personal (MessageNew (UID) MessageExpunge))",
    "BOGUS",
])
def test_bad(text: str) -> None:
    with pytest.raises(Bad):
        parse(text)


@pytest.mark.parametrize("text", ["SET (nowhere NONE)", "SET (personal (MessageNew", "SET"])
def test_syntax(text: str) -> None:
    with pytest.raises((ParseError, Bad)):
        parse(text)


def test_badevent_lists_what_is_supported() -> None:
    with pytest.raises(No) as caught:
        parse("SET (personal (MessageNew MessageExpunge AnnotationChange))")
    assert caught.value.code == ("BADEVENT (MessageNew MessageExpunge FlagChange MailboxName "
                                 "SubscriptionChange)")


def test_too_many_mailboxes_is_overflow() -> None:
    names = " ".join(f"m{i}" for i in range(MAX_NAMED + 1))
    with pytest.raises(No) as caught:
        parse(f"SET (mailboxes ({names}) (MessageNew MessageExpunge))")
    assert caught.value.code == "NOTIFICATIONOVERFLOW"
