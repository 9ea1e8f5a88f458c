"""SORT, THREAD (RFC 5256), ESORT / CONTEXT=SORT (RFC 5267), PARTIAL (RFC 9394),
SORT=DISPLAY (RFC 5957) and the ENVELOPE of group syntax (RFC 3501 §7.4.2), as scripted
transcripts: the messages are APPENDed in the script, so every octet they hold is known.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.server import Server
from tests.e2e.transcript import LOGIN, Wire, play

USER = "alice@example.test"


def _message(*headers: str, body: str = "body") -> str:
    r"""A message as a `{{...}}` literal of the script (`\n` stands for CRLF there)."""
    return "\\n".join(headers) + "\\n\\n" + body + "\\n"


def _append(mailbox: str, tag: str, date: str, message: str, flags: str = "") -> str:
    flag_list = f"({flags}) " if flags else ""
    return (f'C: {tag} APPEND {mailbox} {flag_list}"{date}" {{{{{message}}}}}\n'
            f"S~ {tag} OK .*\n")


def _select(wire: Wire, mailbox: str) -> None:
    """SELECT, its untagged lines read whatever they are: the scripts are about what follows."""
    wire.send(f"sel SELECT {mailbox}\r\n".encode())
    while not (line := wire.line()).startswith("sel "):
        pass
    assert line.startswith("sel OK"), line


@pytest.fixture
def wire(server: Server) -> Iterator[Wire]:
    w = Wire.connect(server.imap_port)
    assert w.line().startswith("* OK")
    play(w, LOGIN.format(user=USER))
    yield w
    w.close()


# Four messages whose every sort key is known (message 0 is appended \Deleted and expunged,
# so that UIDs are sequence numbers plus one and UID SORT is told apart from SORT).
SORT_MESSAGES = [
    ("30-Dec-2023 00:00:00 +0000", _message("From: gone@x.test", "Subject: gone"), "\\Deleted"),
    ("05-Jan-2024 00:00:00 +0000", _message(
        'From: "Adam" <carol@x.test>', "To: bob@x.test", "Cc: group:;, group2: (foo) ;",
        "Subject: Re: [list] Hello (fwd)", "Date: Mon, 01 Jan 2024 10:00:00 +0000",
        "Message-ID: <s1@x.test>"), ""),
    ("04-Jan-2024 00:00:00 +0000", _message(
        "From: alice@x.test", 'To: "Ann" <zoe@x.test>',
        "Subject: [Fwd: apple]", "Date: Sun, 31 Dec 2023 23:00:00 -0200",
        "Message-ID: <s2@x.test>", body="a longer body than the others"), ""),
    ("01-Jan-2024 05:00:00 +0000", _message(
        "From: Aardvarks: dave@x.test;", "To: The Group:;", "Subject: hello",
        "Message-ID: <s3@x.test>", body="b"), ""),
    ("31-Dec-2023 12:00:00 +0000", _message(
        'From: "Xavier" <bob@x.test>',
        "Subject: Fwd: Banana", "Date: not a date at all", "Message-ID: <s4@x.test>",
        body="the longest body of the four messages here"), ""),
]


def _sort_mailbox(wire: Wire) -> None:
    script = "".join(_append("INBOX", f"a{n}", date, message, flags)
                     for n, (date, message, flags) in enumerate(SORT_MESSAGES))
    play(wire, script)
    _select(wire, "INBOX")
    play(wire, """
        C: x EXPUNGE
        S: * 1 EXPUNGE
        S~ x OK .*
    """)


def test_sort_keys(wire: Wire) -> None:
    _sort_mailbox(wire)
    sizes = [len(m.replace("\\n", "\r\n")) for _, m, _ in SORT_MESSAGES[1:]]
    by_size = " ".join(str(n) for _, n in sorted(zip(sizes, range(1, 5), strict=True)))
    play(wire, """
        # SUBJECT: base subjects Hello, apple, hello, Banana (RFC 5256 §2.1), compared with
        # i;unicode-casemap; "Hello" and "hello" tie and stay in sequence order
        C: s1 SORT (SUBJECT) UTF-8 ALL
        S: * SORT 2 4 1 3
        S~ s1 OK .*
        # REVERSE does not reverse the sequence-number tie-break (§3)
        C: s2 SORT (REVERSE SUBJECT) UTF-8 ALL
        S: * SORT 1 3 4 2
        S~ s2 OK .*
        # FROM: the first address's mailbox; a group sorts by its name (Aardvarks)
        C: s3 SORT (FROM) UTF-8 ALL
        S: * SORT 3 2 4 1
        S~ s3 OK .*
        # DISPLAYFROM: display name, else the addr-spec, group name for a group (RFC 5957)
        C: s4 SORT (DISPLAYFROM) UTF-8 ALL
        S: * SORT 3 1 2 4
        S~ s4 OK .*
        # TO: bob, zoe, "The Group", none (the empty string sorts first)
        C: s5 SORT (TO) UTF-8 ALL
        S: * SORT 4 1 3 2
        S~ s5 OK .*
        C: s6 SORT (DISPLAYTO) UTF-8 ALL
        S: * SORT 4 2 1 3
        S~ s6 OK .*
        # CC: only message 1 has one, the group "group" (no address was invented for "(foo)")
        C: s7 SORT (CC SUBJECT) UTF-8 ALL
        S: * SORT 2 4 3 1
        S~ s7 OK .*
        # DATE: the Date header in UTC (message 2 is 01:00 UTC on 1 Jan); INTERNALDATE where
        # it is missing (3) or unparsable (4)
        C: s8 SORT (DATE) UTF-8 ALL
        S: * SORT 4 2 3 1
        S~ s8 OK .*
        C: s9 SORT (ARRIVAL) UTF-8 ALL
        S: * SORT 4 3 2 1
        S~ s9 OK .*
        C: s10 SORT (SIZE) UTF-8 ALL
        S: * SORT ${by_size}
        S~ s10 OK .*
        C: s11 SORT (REVERSE DATE) UTF-8 SUBJECT hello
        S: * SORT 1 3
        S~ s11 OK .*
        C: s12 UID SORT (DATE) UTF-8 ALL
        S: * SORT 5 3 4 2
        S~ s12 OK .*
        # UID THREAD answers UIDs; "Re: [list] Hello (fwd)" is a reply, so it goes under
        # "hello" (§3 step 5), and ORDEREDSUBJECT orders within a subject by sent date
        C: t1 UID THREAD REFERENCES UTF-8 ALL
        S: * THREAD (5)(3)(4 2)
        S~ t1 OK .*
        C: t2 UID THREAD ORDEREDSUBJECT UTF-8 ALL
        S: * THREAD (5)(3)(4 2)
        S~ t2 OK .*
        C: s13 SORT (SUBJECT) UTF-8 SUBJECT nothing-like-this
        S: * SORT
        S~ s13 OK .*
        C: s14 SORT (SUBJECT NOSUCHKEY) UTF-8 ALL
        S~ s14 BAD .*
        C: s15 SORT (SUBJECT) NO-SUCH-CHARSET ALL
        S~ s15 NO \\[BADCHARSET.*
    """, {"by_size": by_size})


def test_esort_partial_and_context(wire: Wire) -> None:
    _sort_mailbox(wire)
    play(wire, """
        # ESORT (RFC 5267 §3): MIN and MAX are the first and last in sort order; ALL keeps
        # the sort order, joining only ascending runs
        C: e1 SORT RETURN (MIN MAX COUNT ALL) (FROM) UTF-8 ALL
        S: * ESEARCH (TAG "e1") MIN 3 MAX 1 COUNT 4 ALL 3,2,4,1
        S~ e1 OK .*
        C: e2 UID SORT RETURN () (DATE) UTF-8 ALL
        S: * ESEARCH (TAG "e2") UID ALL 5,3:4,2
        S~ e2 OK .*
        C: e3 SORT RETURN (MIN MAX COUNT ALL) (DATE) UTF-8 SUBJECT nothing-like-this
        S: * ESEARCH (TAG "e3") COUNT 0
        S~ e3 OK .*
        # PARTIAL (RFC 9394): positions in the sorted result, from its end when negative
        C: p1 SORT RETURN (PARTIAL 2:3) (DATE) UTF-8 ALL
        S: * ESEARCH (TAG "p1") PARTIAL (2:3 2:3)
        S~ p1 OK .*
        C: p2 UID SORT RETURN (COUNT PARTIAL -2:-1) (DATE) UTF-8 ALL
        S: * ESEARCH (TAG "p2") UID COUNT 4 PARTIAL (-1:-2 4,2)
        S~ p2 OK .*
        C: p3 SORT RETURN (PARTIAL 10:20) (DATE) UTF-8 ALL
        S: * ESEARCH (TAG "p3") PARTIAL (10:20 NIL)
        S~ p3 OK .*
        C: p4 SORT RETURN (PARTIAL 0:2) (DATE) UTF-8 ALL
        S~ p4 BAD .*
        C: p5 SORT RETURN (PARTIAL 1:-2) (DATE) UTF-8 ALL
        S~ p5 BAD .*
        # CONTEXT=SORT (RFC 5267 §4): CONTEXT is a hint; UPDATE is declined with NOUPDATE,
        # after the result itself; CANCELUPDATE is accepted
        C: c1 SORT RETURN (CONTEXT COUNT) (DATE) UTF-8 ALL
        S: * ESEARCH (TAG "c1") COUNT 4
        S~ c1 OK .*
        C: c2 SORT RETURN (UPDATE) (DATE) UTF-8 ALL
        S: * ESEARCH (TAG "c2") ALL 4,2:3,1
        S~ \\* NO \\[NOUPDATE "c2"\\] .*
        S~ c2 OK .*
        C: c3 CANCELUPDATE "c2"
        S~ c3 OK .*
        C: c4 SORT RETURN (BOGUS) (DATE) UTF-8 ALL
        S~ c4 BAD .*
    """)


def test_capabilities(wire: Wire) -> None:
    wire.send(b"k CAPABILITY\r\n")
    caps = wire.line().split()
    assert wire.line().startswith("k OK")
    for name in ("SORT", "SORT=DISPLAY", "ESORT", "CONTEXT=SORT", "THREAD=REFERENCES",
                 "THREAD=ORDEREDSUBJECT"):
        assert name in caps


THREAD_MESSAGES = [
    ("Message-ID: <1@x.test>", "Subject: alpha", "Date: Mon, 01 Jan 2024 10:00:00 +0000"),
    ("Message-ID: <2@x.test>", "References: <missing@x.test>", "Subject: beta",
     "Date: Tue, 02 Jan 2024 10:00:00 +0000"),
    ("Message-ID: <3@x.test>", "References: <missing@x.test>", "Subject: gamma",
     "Date: Wed, 03 Jan 2024 10:00:00 +0000"),
    # the same Message-ID as 1: a separate message, which nothing refers to
    ("Message-ID: <1@x.test>", "Subject: delta", "Date: Thu, 04 Jan 2024 10:00:00 +0000"),
    ("Message-ID: <5@x.test>", "References: <1@x.test>", "Subject: Re: alpha",
     "Date: Fri, 05 Jan 2024 10:00:00 +0000"),
    # 6 and 7 refer to each other: the loop is broken where the RFC breaks it
    ("Message-ID: <6@x.test>", "References: <7@x.test>", "Subject: loop a",
     "Date: Sat, 06 Jan 2024 10:00:00 +0000"),
    ("Message-ID: <7@x.test>", "References: <6@x.test>", "Subject: loop b",
     "Date: Sun, 07 Jan 2024 10:00:00 +0000"),
    # a reply without references joins the thread of its base subject (§3 step 5)
    ("Message-ID: <8@x.test>", "Subject: Re: delta", "Date: Mon, 08 Jan 2024 10:00:00 +0000"),
    # two originals of one base subject: siblings under a dummy
    ("Message-ID: <9@x.test>", "Subject: epsilon", "Date: Tue, 09 Jan 2024 10:00:00 +0000"),
    ("Message-ID: <10@x.test>", "Subject: Epsilon", "Date: Wed, 10 Jan 2024 10:00:00 +0000"),
    ("Message-ID: <11@x.test>", "In-Reply-To: <1@x.test>", "Subject: Re: Re: alpha",
     "Date: Thu, 11 Jan 2024 10:00:00 +0000"),
]


def test_thread(wire: Wire) -> None:
    script = "C: m CREATE threads\nS~ m OK .*\n" + "".join(
        _append("threads", f"t{n}", "01-Feb-2024 00:00:00 +0000",
                _message("From: someone@x.test", *headers))
        for n, headers in enumerate(THREAD_MESSAGES, 1))
    play(wire, script)
    _select(wire, "threads")
    play(wire, """
        C: r1 THREAD REFERENCES UTF-8 ALL
        S: * THREAD (1 (5)(11))((2)(3))(4 8)(7 6)((9)(10))
        S~ r1 OK .*
        C: r2 UID THREAD REFERENCES UTF-8 ALL
        S: * THREAD (1 (5)(11))((2)(3))(4 8)(7 6)((9)(10))
        S~ r2 OK .*
        # only the searched messages take part: 2 alone has no sibling for its dummy, and
        # without 1, 4 is the first message whose Message-ID 5 refers to
        C: r3 THREAD REFERENCES UTF-8 2,4:5,8
        S: * THREAD (2)(4 (5)(8))
        S~ r3 OK .*
        C: o1 THREAD ORDEREDSUBJECT UTF-8 ALL
        S: * THREAD (1 (5)(11))(2)(3)(4 8)(6)(7)(9 10)
        S~ o1 OK .*
        C: o2 THREAD ORDEREDSUBJECT UTF-8 SUBJECT nothing-like-this
        S: * THREAD
        S~ o2 OK .*
        C: o3 THREAD NOSUCHALGORITHM UTF-8 ALL
        S~ o3 BAD .*
    """)


def test_envelope_of_group_syntax(wire: Wire) -> None:
    message = _message("From: a@b.test", "To: x@y.test", "Cc: group:;, group2: (foo) ;",
                       "Bcc: (just a comment)", "Subject: env",
                       "Date: Mon, 01 Jan 2024 10:00:00 +0000", "Message-ID: <e@x.test>")
    play(wire, "C: m CREATE env\nS~ m OK .*\n" + _append("env", "a", "01-Feb-2024 00:00:00 +0000",
                                                        message))
    _select(wire, "env")
    a = '((NIL NIL "a" "b.test"))'
    # Cc: a group start and end for each group, and nothing for the comment "(foo)"; Bcc: a
    # comment alone is no address either
    cc = '((NIL NIL "group" NIL)(NIL NIL NIL NIL)(NIL NIL "group2" NIL)(NIL NIL NIL NIL))'
    envelope = (f'("Mon, 01 Jan 2024 10:00:00 +0000" "env" {a} {a} {a} '
                f'((NIL NIL "x" "y.test")) {cc} NIL NIL "<e@x.test>")')
    play(wire, """
        C: f FETCH 1 ENVELOPE
        S: * 1 FETCH (ENVELOPE ${envelope})
        S~ f OK .*
    """, {"envelope": envelope})
