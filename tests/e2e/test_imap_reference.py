"""The same RFC transcripts against Mailyard and against Dovecot, the reference server.

Each test plays one script on both servers (a private Dovecot 2.3 from Debian's dovecot-imapd,
tests/dovecotserver.py, and a Mailyard `serve`), so every expected line below is one a
reference implementation sends too: the scripts measure Mailyard against the RFC, not against
itself. What the RFCs leave to the server is matched loosely: the text after a tagged
OK/NO/BAD (`OK FETCH done` here, `OK Fetch completed (0.001 + 0.000 secs).` there), response
codes only one of them sends (HIGHESTMODSEQ and MAILBOXID in SELECT, `* n RECENT` after an
EXPUNGE), MODSEQ and UIDVALIDITY values (captured, then compared to each other). Where the two
differ and both are allowed, the script says so beside the step.

Each test logs in as a user of its own, so the tests stay apart on one server per module.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.dovecotserver import Dovecot
from tests.e2e.server import serving
from tests.e2e.transcript import LOGIN, run

pytestmark = pytest.mark.slow

USERS = ("append", "empty", "beyond", "envelope", "condstore", "search", "recent", "binary",
         "keyword", "subscribe", "uidvalidity", "names", "sort", "examine")
PASSWORD = "secret-password"
"""The e2e server's password (transcript.LOGIN), given to Dovecot's users as well."""


ENVELOPE_MAIL = r"\n".join([
    "From: Ann <ann@x.test>", "Cc: group:;, group2: (foo) ;",
    'To: "Bob (the) Builder" <bob@x.test> (comment)',
    "Subject: Re: [list] Fwd: Hello (fwd)", "Date: Mon, 1 Jan 2029 23:30:00 -0500",
    "Message-ID: <m1@x.test>", "", "body one", ""])
ENVELOPE = ('"Mon, 1 Jan 2029 23:30:00 -0500" "Re: [list] Fwd: Hello (fwd)"'
            ' (("Ann" NIL "ann" "x.test")) (("Ann" NIL "ann" "x.test"))'
            ' (("Ann" NIL "ann" "x.test")) (("Bob (the) Builder" NIL "bob" "x.test"))'
            ' ((NIL NIL "group" NIL)(NIL NIL NIL NIL)(NIL NIL "group2" NIL)(NIL NIL NIL NIL))'
            ' NIL NIL "<m1@x.test>"')
SUBJECT_AND_SEEN = (r"\* 1 FETCH \((FLAGS \(\\Seen \\Recent\) )?BODY\[HEADER\.FIELDS \(SUBJECT\)\]"
                    r" \{40\}Subject: Re: \[list\] Fwd: Hello \(fwd\)\\r\\n\\r\\n"
                    r"( FLAGS \(\\Seen \\Recent\))?\)")
SEARCH_ONE = r"\n".join([
    "From: Ann <ann@x.test>", 'To: "Bob (the) Builder" <bob@x.test> (comment)',
    "Subject: one", "Date: Mon, 1 Jan 2029 23:30:00 -0500", "", "body one", ""])
SEARCH_TWO = r"\n".join([
    "From: carl@x.test", "Subject: two", "Date: Tue, 2 Jan 2029 00:30:00 +0100",
    "X-Only: zebrafish", "", "body two", ""])
BINARY_MAIL = r"\n".join([
    "Subject: bin", "MIME-Version: 1.0", "Content-Type: multipart/mixed; boundary=XX", "",
    "--XX", "Content-Type: text/plain", "Content-Transfer-Encoding: quoted-printable", "",
    "soft=", "break and trailing   ", "line=3D2", "--XX",
    "Content-Type: application/octet-stream", "Content-Transfer-Encoding: base64", "",
    "AAEC", "--XX--", ""])
SUBSCRIBED_GONE = (r'\* LIST \(\\(Subscribed \\NonExistent'
                   r'|NonExistent( \\HasNoChildren)? \\Subscribed)\) "/" Fruit/Apple')


@dataclass(frozen=True)
class Imap:
    name: str
    port: int


def reference_server(which: str, users: tuple[str, ...], root: Path) -> Iterator[Imap]:
    """A module's server: a private Dovecot or a Mailyard `serve`, with `users` (each
    `<user>@example.test`, PASSWORD), stopped when the module is done."""
    if which == "dovecot":
        dovecot = Dovecot({f"{u}@example.test": PASSWORD for u in users})
        try:
            yield Imap("dovecot", dovecot.port)
        finally:
            dovecot.stop()
        return
    with serving(root, users) as srv:
        yield Imap("mailyard", srv.imap_port)


@pytest.fixture(scope="module", params=["mailyard", "dovecot"])
def imap(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[Imap]:
    yield from reference_server(request.param, USERS, tmp_path_factory.mktemp("imap-reference"))


def login(user: str) -> str:
    return LOGIN.format(user=f"{user}@example.test")


def select(tag: str, mailbox: str, exists: int, recent: int, uidnext: int, *,
           unseen: int | None = None, command: str = "SELECT") -> str:
    """The SELECT/EXAMINE reply both servers give (RFC 3501 §6.3.1), in their shared order;
    HIGHESTMODSEQ (RFC 7162) and MAILBOXID (RFC 8474) are optional lines."""
    permanent = (r"\(\)" if command == "EXAMINE"
                 else r"\(\\Answered \\Flagged \\Deleted \\Seen \\Draft \\\*\)")
    mode = "READ-ONLY" if command == "EXAMINE" else "READ-WRITE"
    return (f"C: {tag} {command} {mailbox}\n"
            "S-~ \\* OK \\[CLOSED\\].*\n"
            "S: * FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\n"
            f"S~ \\* OK \\[PERMANENTFLAGS {permanent}\\].*\n"
            f"S: * {exists} EXISTS\n"
            f"S: * {recent} RECENT\n"
            + (f"S~ \\* OK \\[UNSEEN {unseen}\\].*\n" if unseen is not None else "")
            + "S~ \\* OK \\[UIDVALIDITY (?P<uidvalidity>\\d+)\\].*\n"
            f"S~ \\* OK \\[UIDNEXT {uidnext}\\].*\n"
            "S-~ \\* OK \\[HIGHESTMODSEQ (?P<highestmodseq>\\d+)\\].*\n"
            "S-~ \\* OK \\[MAILBOXID .*\n"
            f"S~ {tag} OK \\[{mode}\\] .*\n")


def ok(tag: str, code: str = "") -> str:
    """A tagged OK with any text (`code`: a regex for its response code)."""
    return f"S~ {tag} OK {code + ' ' if code else ''}.*\n"


def create(tag: str, name: str) -> str:
    return f"C: {tag} CREATE {name}\n" + ok(tag)


# --------------------------------------------------------------------------- APPEND, COPY


def test_append_and_copy_always_make_a_new_message(imap: Imap) -> None:
    """RFC 3501 §6.3.11, §6.4.7, RFC 4315, RFC 6851: the same octets appended twice are two
    messages; an expunged message's octets appended again come back as a new UID without its
    old flags; COPY and MOVE into the same mailbox make a new UID (COPYUID)."""
    run(imap.port, login("append") + create("b", "ref") + r"""
C: c APPEND ref {{Subject: same\n\nthe same body\n}}
S~ c OK \[APPENDUID (?P<v>\d+) 1\] .*
C: d APPEND ref {{Subject: same\n\nthe same body\n}}
S~ d OK \[APPENDUID ${v} 2\] .*
""" + select("e", "ref", 2, 2, 3, unseen=1) + r"""
C: f FETCH 1:* (UID FLAGS)
S: * 1 FETCH (UID 1 FLAGS (\Recent))
S: * 2 FETCH (UID 2 FLAGS (\Recent))
S~ f OK .*
C: g STORE 1 +FLAGS (\Deleted)
S: * 1 FETCH (FLAGS (\Deleted \Recent))
S~ g OK .*
C: h EXPUNGE
S: * 1 EXPUNGE
S-~ \* 1 RECENT
S~ h OK .*
C: i APPEND ref {{Subject: same\n\nthe same body\n}}
S: * 2 EXISTS
S: * 2 RECENT
S~ i OK \[APPENDUID ${v} 3\] .*
C: j FETCH 1:* (UID FLAGS)
S: * 1 FETCH (UID 2 FLAGS (\Recent))
S: * 2 FETCH (UID 3 FLAGS (\Recent))
S~ j OK .*
C: k COPY 1 ref
S: * 3 EXISTS
S: * 3 RECENT
S~ k OK \[COPYUID ${v} 2 4\] .*
C: l MOVE 1 ref
S~ \* OK \[COPYUID ${v} 2 5\] .*
S: * 1 EXPUNGE
S: * 3 EXISTS
# RFC 3501 §7.3.2 lets a server send RECENT when the count changes; only Mailyard does here.
S-~ \* 3 RECENT
S~ l OK .*
C: m UID FETCH 1:* (FLAGS)
S: * 1 FETCH (UID 3 FLAGS (\Recent))
S: * 2 FETCH (UID 4 FLAGS (\Recent))
S: * 3 FETCH (UID 5 FLAGS (\Recent))
S~ m OK .*
""")


# --------------------------------------------------------------------------- sequence numbers


def test_sequence_numbers_in_an_empty_mailbox_are_bad(imap: Imap) -> None:
    """RFC 9051 §9 (seq-number): a message sequence number beyond the mailbox's count is
    answered BAD, which includes `*` in an empty mailbox; a UID set may name no message."""
    run(imap.port, login("empty") + create("b", "void") + select("c", "void", 0, 0, 1) + r"""
C: d FETCH 1:* (UID FLAGS)
S~ d BAD .*
C: e STORE 1 +FLAGS (\Seen)
S~ e BAD .*
C: f UID FETCH 1:* (FLAGS)
S~ f OK .*
C: g SEARCH ALL
S: * SEARCH
S~ g OK .*
""")


def test_sequence_numbers_beyond_the_count_are_bad(imap: Imap) -> None:
    """RFC 3501 §9 / RFC 9051 §9: FETCH and STORE of a number past EXISTS are BAD (a command
    is never partly BAD); UID FETCH of UIDs past UIDNEXT answers those that exist; a SEARCH
    key of such a number matches nothing."""
    run(imap.port, login("beyond") + create("b", "three") + r"""
C: c APPEND three {{Subject: one\n\nx\n}}
S~ c OK .*
C: d APPEND three {{Subject: two\n\nx\n}}
S~ d OK .*
""" + select("e", "three", 2, 2, 3, unseen=1) + r"""
C: f FETCH 9 UID
S~ f BAD .*
C: g FETCH 2:9 UID
S~ g BAD .*
C: h STORE 9 +FLAGS (\Seen)
S~ h BAD .*
C: i UID FETCH 1:99 UID
S: * 1 FETCH (UID 1)
S: * 2 FETCH (UID 2)
S~ i OK .*
C: j SEARCH 7
S: * SEARCH
S~ j OK .*
""")


# --------------------------------------------------------------------------- ENVELOPE


def test_envelope_of_groups_comments_and_quoted_names(imap: Imap) -> None:
    """RFC 3501 §7.4.2 ENVELOPE: a group is a start marker (NIL NIL "name" NIL) and an end
    marker (NIL NIL NIL NIL), with no invented address inside an empty group; a quoted
    display name keeps its parentheses; a trailing comment is not part of the address."""
    run(imap.port, login("envelope") + create("b", "env") + r"""
C: c APPEND env {{""" + ENVELOPE_MAIL + r"""}}
S~ c OK .*
""" + select("d", "env", 1, 1, 2, unseen=1) + r"""
C: e FETCH 1 (ENVELOPE)
S: * 1 FETCH (ENVELOPE (""" + ENVELOPE + r"""))
S~ e OK .*
# BODY[...] (not .PEEK) sets \Seen, so the reply carries FLAGS too, before (Dovecot) or
# after (Mailyard) the section: RFC 3501 §7.4.2 fixes no order of the items.
C: f FETCH 1 (BODY[HEADER.FIELDS (SUBJECT)])
S~ """ + SUBJECT_AND_SEEN + r"""
S~ f OK .*
C: g FETCH 1 (FLAGS)
S: * 1 FETCH (FLAGS (\Seen \Recent))
S~ g OK .*
""")


# --------------------------------------------------------------------------- CONDSTORE


def test_condstore_search_and_fetch_report_modseq(imap: Imap) -> None:
    """RFC 7162 §3.1: a STORE .SILENT still reports the new MODSEQ; SEARCH MODSEQ ends with
    (MODSEQ n), the highest of the matches; ESEARCH (RFC 4731) gives MIN/MAX/ALL and MODSEQ;
    FETCH MODSEQ gives the same value."""
    values = run(imap.port, login("condstore") + create("b", "cs") + r"""
C: c APPEND cs {{Subject: one\n\nx\n}}
S~ c OK .*
C: d APPEND cs (\Seen) {{Subject: two\n\nx\n}}
S~ d OK .*
C: e ENABLE CONDSTORE
S: * ENABLED CONDSTORE
S~ e OK .*
""" + select("f", "cs", 2, 2, 3, unseen=1).replace("S-~ \\* OK \\[HIGHESTMODSEQ",
                                                   "S~ \\* OK \\[HIGHESTMODSEQ") + r"""
# Mailyard adds UID to the FETCH of a non-UID STORE; RFC 3501 §7.4.2 allows any items more.
C: g STORE 1 +FLAGS.SILENT (\Flagged)
S~ \* 1 FETCH \((UID 1 )?MODSEQ \((?P<m>\d+)\)\)
S~ g OK .*
C: h SEARCH MODSEQ 1
S: * SEARCH 1 2 (MODSEQ ${m})
S~ h OK .*
C: i UID SEARCH RETURN (MIN MAX ALL) MODSEQ 1
S: * ESEARCH (TAG "i") UID MIN 1 MAX 2 ALL 1:2 MODSEQ ${m}
S~ i OK .*
C: j FETCH 1 (MODSEQ)
S: * 1 FETCH (MODSEQ (${m}))
S~ j OK .*
""")
    assert int(values["m"]) > int(values["highestmodseq"])


# --------------------------------------------------------------------------- SEARCH


def test_search_addresses_header_text_and_sent_dates(imap: Imap) -> None:
    """RFC 3501 §6.4.4: FROM/TO match in the address fields (a display name with a comment
    in it included); TEXT matches a word found only in a header; SENTON compares the Date
    header's own day, in its own offset, not the UTC day."""
    run(imap.port, login("search") + create("b", "s") + r"""
C: c APPEND s {{""" + SEARCH_ONE + r"""}}
S~ c OK .*
C: d APPEND s (\Seen) {{""" + SEARCH_TWO + r"""}}
S~ d OK .*
""" + select("e", "s", 2, 2, 3, unseen=1) + r"""
C: f SEARCH FROM ann
S: * SEARCH 1
S~ f OK .*
C: g SEARCH TO builder
S: * SEARCH 1
S~ g OK .*
C: h SEARCH TEXT zebrafish
S: * SEARCH 2
S~ h OK .*
C: i SEARCH SENTON 1-Jan-2029
S: * SEARCH 1
S~ i OK .*
C: j SEARCH SENTON 2-Jan-2029
S: * SEARCH 2
S~ j OK .*
C: k SEARCH SENTBEFORE 2-Jan-2029
S: * SEARCH 1
S~ k OK .*
C: l SEARCH SENTSINCE 2-Jan-2029
S: * SEARCH 2
S~ l OK .*
C: m SEARCH BODY "body two"
S: * SEARCH 2
S~ m OK .*
""")


def test_recent_new_and_old(imap: Imap) -> None:
    """RFC 3501 §2.3.2, §6.4.4: the session that first selects a mailbox sees its messages
    \\Recent; NEW is RECENT UNSEEN, OLD is NOT RECENT; the next session to select sees none
    recent, and STATUS RECENT counts them."""
    run(imap.port, login("recent") + create("b", "r") + r"""
C: c APPEND r {{Subject: one\n\nx\n}}
S~ c OK .*
C: d APPEND r (\Seen) {{Subject: two\n\nx\n}}
S~ d OK .*
C: e STATUS r (MESSAGES RECENT UNSEEN)
S: * STATUS r (MESSAGES 2 RECENT 2 UNSEEN 1)
S~ e OK .*
""" + select("f", "r", 2, 2, 3, unseen=1) + r"""
C: g SEARCH NEW
S: * SEARCH 1
S~ g OK .*
C: h SEARCH RECENT
S: * SEARCH 1 2
S~ h OK .*
C: i SEARCH OLD
S: * SEARCH
S~ i OK .*
C: j CLOSE
S~ j OK .*
C: k STATUS r (MESSAGES RECENT UIDNEXT UNSEEN)
S: * STATUS r (MESSAGES 2 RECENT 0 UIDNEXT 3 UNSEEN 1)
S~ k OK .*
""" + select("l", "r", 2, 0, 3, unseen=1, command="EXAMINE") + r"""
C: m SEARCH OLD
S: * SEARCH 1 2
S~ m OK .*
C: n FETCH 1 (FLAGS)
S: * 1 FETCH (FLAGS ())
S~ n OK .*
""")


# --------------------------------------------------------------------------- BINARY


def test_binary_sizes_literal8_and_no_seen(imap: Imap) -> None:
    """RFC 3516: BINARY.SIZE is the decoded size (quoted-printable soft line breaks removed,
    trailing white space kept as decoded); a decoded part with NUL goes in a literal8
    (`~{n}`); BINARY.SIZE and BINARY.PEEK do not set \\Seen."""
    run(imap.port, login("binary") + create("b", "bin") + r"""
C: c APPEND bin {{""" + BINARY_MAIL + r"""}}
S~ c OK .*
""" + select("d", "bin", 1, 1, 2, unseen=1) + r"""
C: e FETCH 1 (BINARY.SIZE[1] BINARY.SIZE[2])
S: * 1 FETCH (BINARY.SIZE[1] 30 BINARY.SIZE[2] 3)
S~ e OK .*
C: f FETCH 1 (FLAGS)
S: * 1 FETCH (FLAGS (\Recent))
S~ f OK .*
C: g FETCH 1 (BINARY.PEEK[2])
S: * 1 FETCH (BINARY[2] ~{3}\x00\x01\x02)
S~ g OK .*
# RFC 3516 §4.3 lets a part with no NUL come in either literal form: Dovecot sends ~{30}.
C: h FETCH 1 (BINARY.PEEK[1])
S~ \* 1 FETCH \(BINARY\[1\] ~?\{30\}softbreak and trailing\\r\\nline=2\)
S~ h OK .*
C: i FETCH 1 (FLAGS)
S: * 1 FETCH (FLAGS (\Recent))
S~ i OK .*
""")


# --------------------------------------------------------------------------- keywords


def test_a_new_keyword_joins_flags_and_permanentflags(imap: Imap) -> None:
    """RFC 3501 §7.2.6: a STORE of a keyword the mailbox has not had sends FLAGS and
    PERMANENTFLAGS with it before the FETCH; a registered keyword keeps its registered
    spelling ($Important, RFC 8457)."""
    run(imap.port, login("keyword") + create("b", "kw") + r"""
C: c APPEND kw {{Subject: k\n\nx\n}}
S~ c OK .*
""" + select("d", "kw", 1, 1, 2, unseen=1) + r"""
C: e STORE 1 +FLAGS ($Important)
S: * FLAGS (\Answered \Flagged \Deleted \Seen \Draft $Important)
S~ \* OK \[PERMANENTFLAGS \(\\Answered \\Flagged \\Deleted \\Seen \\Draft \$Important \\\*\)\].*
S~ \* 1 FETCH \(FLAGS \((\\Recent \$Important|\$Important \\Recent)\)\)
S~ e OK .*
C: f STORE 1 -FLAGS ($Important)
S~ \* 1 FETCH \(FLAGS \(\\Recent\)\)
S~ f OK .*
""")


# --------------------------------------------------------------------------- mailboxes


def test_subscriptions_outlive_their_mailbox(imap: Imap) -> None:
    """RFC 3501 §6.3.6-6.3.9, RFC 5258: CREATE does not subscribe; LSUB with `%` shows an
    unsubscribed parent as \\Noselect; DELETE keeps the subscription, which LIST (SUBSCRIBED)
    then shows \\NonExistent."""
    run(imap.port, login("subscribe") + create("b", "Fruit/Apple") + r"""
C: c LSUB "" Fruit*
S~ c OK .*
C: d SUBSCRIBE Fruit/Apple
S~ d OK .*
C: e LSUB "" F%
S: * LSUB (\Noselect) "/" Fruit
S~ e OK .*
C: f LIST (SUBSCRIBED) "" "Fruit/*"
S~ \* LIST \((\\HasNoChildren )?\\Subscribed\) "/" Fruit/Apple
S~ f OK .*
C: g DELETE Fruit/Apple
S~ g OK .*
C: h LIST (SUBSCRIBED) "" "Fruit/*"
S~ """ + SUBSCRIBED_GONE + r"""
S~ h OK .*
C: i LSUB "" Fruit/Apple
S: * LSUB () "/" Fruit/Apple
S~ i OK .*
""")


def test_uidvalidity_of_a_recreated_mailbox_is_new(imap: Imap) -> None:
    """RFC 3501 §2.3.1.1: a mailbox deleted and created again under the same name in the
    same second gets another UIDVALIDITY, so (UIDVALIDITY, UID) never names two messages."""
    values = run(imap.port, login("uidvalidity") + create("b", "again") + r"""
C: c STATUS again (UIDVALIDITY)
S~ \* STATUS again \(UIDVALIDITY (?P<first>\d+)\)
S~ c OK .*
C: d DELETE again
S~ d OK .*
""" + create("e", "again") + r"""
C: f STATUS again (UIDVALIDITY)
S~ \* STATUS again \(UIDVALIDITY (?P<second>\d+)\)
S~ f OK .*
""")
    assert values["first"] != values["second"]


def test_names_that_are_not_modified_utf7(imap: Imap) -> None:
    """RFC 3501 §5.1.3: a name that is not valid modified UTF-7 names no mailbox: SELECT
    answers NO (not BAD), LIST matches nothing; a valid encoded name that does not exist
    is NO too."""
    run(imap.port, login("names") + r"""
C: b SELECT bad&name
S~ b NO .*
C: c LIST "" bad&name
S~ c OK .*
C: d SELECT &Jjo-x
S~ d NO .*
""")


# --------------------------------------------------------------------------- SORT, THREAD


def test_sort_by_base_subject_and_thread_with_a_missing_parent(imap: Imap) -> None:
    """RFC 5256 §2.1 base subject ("Re:", "Fwd:", "[list]" and "(fwd)" removed) for SORT;
    THREAD=REFERENCES makes a dummy parent for the missing message two others refer to
    (`((2)(3)(4))`: message 4's base subject joins it, §4 step 5); ORDEREDSUBJECT groups by
    base subject in date order."""
    run(imap.port, login("sort") + create("b", "st") + r"""
C: c APPEND st {{Subject: Re: b\nMessage-ID: <a@x>\n\nx\n}}
S~ c OK .*
C: d APPEND st {{Subject: a\nMessage-ID: <b@x>\nReferences: <p@x>\n\nx\n}}
S~ d OK .*
C: e APPEND st {{Subject: Fwd: c\nMessage-ID: <c@x>\nReferences: <p@x>\n\nx\n}}
S~ e OK .*
C: f APPEND st {{Subject: [list] A (fwd)\nMessage-ID: <d@x>\n\nx\n}}
S~ f OK .*
""" + select("g", "st", 4, 4, 5, unseen=1) + r"""
C: h SORT (SUBJECT) UTF-8 ALL
S: * SORT 2 4 1 3
S~ h OK .*
C: i SORT (REVERSE SUBJECT) UTF-8 ALL
S: * SORT 3 1 2 4
S~ i OK .*
C: j THREAD REFERENCES UTF-8 ALL
S: * THREAD (1)((2)(3)(4))
S~ j OK .*
C: k THREAD ORDEREDSUBJECT UTF-8 ALL
S: * THREAD (1)(2 4)(3)
S~ k OK .*
""")


def test_close_expunges_and_examine_is_read_only(imap: Imap) -> None:
    """RFC 3501 §6.4.2: CLOSE removes \\Deleted messages without EXPUNGE responses; EXAMINE
    selects read-only with no permanent flags; a FETCH of BODY[...] there sets no \\Seen."""
    run(imap.port, login("examine") + create("b", "ex") + r"""
C: c APPEND ex {{Subject: one\n\nx\n}}
S~ c OK .*
C: d APPEND ex {{Subject: two\n\nx\n}}
S~ d OK .*
""" + select("e", "ex", 2, 2, 3, unseen=1) + r"""
C: f STORE 1 +FLAGS (\Deleted)
S: * 1 FETCH (FLAGS (\Deleted \Recent))
S~ f OK .*
C: g CLOSE
S~ g OK .*
C: h STATUS ex (MESSAGES RECENT UIDNEXT UNSEEN)
S: * STATUS ex (MESSAGES 1 RECENT 0 UIDNEXT 3 UNSEEN 1)
S~ h OK .*
""" + select("i", "ex", 1, 0, 3, unseen=1, command="EXAMINE") + r"""
C: j FETCH 1 (BODY[HEADER.FIELDS (SUBJECT)])
S: * 1 FETCH (BODY[HEADER.FIELDS (SUBJECT)] {16}Subject: two\r\n\r\n)
S~ j OK .*
C: k FETCH 1 (FLAGS)
S: * 1 FETCH (FLAGS ())
S~ k OK .*
""")
