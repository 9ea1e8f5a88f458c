"""IMAP SEARCH answered through the query language and the search service, over imaplib.

A small mailbox is APPENDed with known senders, subjects, bodies, dates, sizes and flags; each
search is checked against what a plain Python reading of those messages says (the oracle
below), including keys that mix the session's view (UIDs, sequence numbers) with query keys
under OR/NOT, needles too short for the trigram index, and mail outside the selected mailbox.
"""

from __future__ import annotations

import contextlib
import imaplib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from tests.e2e.server import Server
from tests.e2e.test_imap import PASSWORD


@dataclass
class Msg:
    sender: str
    to: str
    cc: str
    subject: str
    body: str
    date: str  # internal date, as APPEND sends it
    flags: str
    extra: str = ""

    def raw(self) -> bytes:
        return (f"From: {self.sender}\r\nTo: {self.to}\r\nCc: {self.cc}\r\n"
                f"Subject: {self.subject}\r\n{self.extra}"
                f"Message-ID: <{time.time_ns()}@remote.test>\r\n\r\n{self.body}\r\n").encode()


MSGS = [
    Msg('"Ann Example" <ann@one.test>', "alice@example.test", "", "Quarterly invoice",
        "Please pay the invoice.", "01-Feb-2024 10:00:00 +0000", "\\Seen"),
    Msg("bob@two.test", "alice@example.test", "carol@three.test", "Lunch on Friday?",
        "Pizza or sushi, whatever you like." + " more" * 300, "15-Mar-2024 09:00:00 +0000",
        "\\Flagged"),
    Msg('"Ann Example" <ann@one.test>', "team@example.test", "", "Re: Quarterly invoice",
        "Paid. Q", "20-Mar-2024 12:00:00 +0000", "\\Seen \\Answered",
        "List-Id: <finance.example.test>\r\n"),
    Msg("dave@four.test", "alice@example.test", "ann@one.test", "Holiday photos",
        "See attached holiday pictures.", "02-Apr-2024 08:00:00 +0000", ""),
]


@pytest.fixture
def imap(server: Server) -> Iterator[imaplib.IMAP4]:
    client = imaplib.IMAP4("127.0.0.1", server.imap_port)
    client.login("alice@example.test", PASSWORD)
    for m in MSGS:
        typ, _ = client.append("INBOX", f"({m.flags})" if m.flags else None, f'"{m.date}"',
                               m.raw())
        assert typ == "OK"
    # mail elsewhere must never show up in INBOX searches
    client.append("Archive", None, None, Msg("ann@one.test", "x@y.test", "", "invoice elsewhere",
                                              "invoice", "01-Feb-2024 10:00:00 +0000", "").raw())
    client.select("INBOX")
    yield client
    with contextlib.suppress(imaplib.IMAP4.error, OSError):
        client.logout()


def uids(client: imaplib.IMAP4, *criteria: str) -> list[int]:
    typ, data = client.uid("SEARCH", *criteria)
    assert typ == "OK", data
    found = data[0].split(b" (MODSEQ ")[0]  # RFC 7162 §3.1.5: a MODSEQ key adds (MODSEQ n)
    return [int(n) for n in found.split()]


def where(pred: Callable[[int, Msg], bool]) -> list[int]:
    """The oracle: UIDs (1-based, in APPEND order) of the messages `pred` holds for."""
    return [i + 1 for i, m in enumerate(MSGS) if pred(i + 1, m)]


def has(text: str, needle: str) -> bool:
    return needle.lower() in text.lower()


CASES: list[tuple[tuple[str, ...], Callable[[int, Msg], bool]]] = [
    (("FROM", '"ann@one"'), lambda u, m: has(m.sender, "ann@one")),
    (("FROM", '"ann example"'), lambda u, m: has(m.sender, "ann example")),
    (("FROM", '"Example\\" <ann"'), lambda u, m: has(m.sender, 'Example" <ann')),
    (("TO", "TEAM"), lambda u, m: has(m.to, "team")),
    (("CC", '"one.test"'), lambda u, m: has(m.cc, "one.test")),
    (("SUBJECT", "invoice"), lambda u, m: has(m.subject, "invoice")),
    (("SUBJECT", '"re: q"'), lambda u, m: has(m.subject, "re: q")),
    (("BODY", "sushi"), lambda u, m: has(m.body, "sushi")),
    (("BODY", "Q"), lambda u, m: has(m.body, "q")),  # too short for trigrams: read here
    (("TEXT", "holiday"), lambda u, m: has(m.subject + m.body, "holiday")),
    (("HEADER", "List-Id", '""'), lambda u, m: bool(m.extra)),
    (("HEADER", "List-Id", "finance"), lambda u, m: has(m.extra, "finance")),
    (("SEEN",), lambda u, m: "Seen" in m.flags),
    (("UNSEEN",), lambda u, m: "Seen" not in m.flags),
    (("ANSWERED", "SEEN"), lambda u, m: "Answered" in m.flags),
    (("SINCE", "15-Mar-2024"), lambda u, m: u >= 2),
    (("BEFORE", "15-Mar-2024"), lambda u, m: u == 1),
    (("ON", "20-Mar-2024"), lambda u, m: u == 3),
    (("LARGER", "1000"), lambda u, m: len(m.raw()) > 1000),
    (("SMALLER", "1000"), lambda u, m: len(m.raw()) < 1000),
    (("OR", "FROM", "bob", "UID", "4"), lambda u, m: has(m.sender, "bob") or u == 4),
    (("NOT", "OR", "SUBJECT", "invoice", "1"), lambda u, m: u != 1 and
     not has(m.subject, "invoice")),
    (("UID", "2:*", "NOT", "FLAGGED", "TEXT", "invoice"),
     lambda u, m: u >= 2 and "Flagged" not in m.flags and has(m.subject + m.body, "invoice")),
    (("OR", "BODY", "Q", "FROM", "dave"), lambda u, m: has(m.body, "q") or has(m.sender, "dave")),
    (("X-GM-RAW", '"from:ann"'), lambda u, m: has(m.sender, "ann")),
    (("X-GM-RAW", '"holiday OR sushi"'), lambda u, m: u in (2, 4)),
    (("X-GM-RAW", '"invoice -is:unread"'), lambda u, m: u in (1, 3)),
]


@pytest.mark.parametrize(("criteria", "pred"), CASES, ids=[" ".join(c) for c, _ in CASES])
def test_search_keys_match_the_oracle(imap: imaplib.IMAP4, criteria: tuple[str, ...],
                                      pred: Callable[[int, Msg], bool]) -> None:
    assert uids(imap, *criteria) == where(pred)


def test_search_follows_changes_labels_and_expunge(imap: imaplib.IMAP4) -> None:
    imap.uid("STORE", "4", "+FLAGS", "(\\Seen)")
    assert uids(imap, "UNSEEN") == [2]
    assert uids(imap, "NOT", "UNSEEN", "FROM", "dave") == [4]  # a query key after a STORE
    assert uids(imap, "X-GM-LABELS", "Archive") == []
    imap.uid("COPY", "1,3", "Archive")
    assert uids(imap, "X-GM-LABELS", "Archive") == [1, 3]
    imap.uid("STORE", "2", "+FLAGS", "(\\Answered)")
    typ, data = imap.uid("FETCH", "2", "(MODSEQ)")
    modseq = int(data[0].split(b"MODSEQ (")[1].split(b")")[0])
    assert uids(imap, "MODSEQ", str(modseq)) == [2]  # the latest change
    assert uids(imap, "MODSEQ", str(modseq), "FROM", "bob") == [2]
    assert uids(imap, "MODSEQ", str(modseq), "FROM", "dave") == []
    imap.uid("STORE", "1", "+FLAGS", "(\\Deleted)")
    imap.expunge()
    assert uids(imap, "SUBJECT", "invoice") == [3]
    assert uids(imap, "FROM", "ann") == [3]
    assert uids(imap, "OR", "FROM", "ann", "CC", "ann") == [3, 4]
    typ, data = imap.search(None, "OR", "FROM", "ann", "CC", "ann")  # renumbered after it
    assert data[0].split() == [b"2", b"3"]
