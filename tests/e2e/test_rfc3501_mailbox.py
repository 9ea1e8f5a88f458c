"""Scripted transcripts: the mailbox namespace (RFC 3501 §5.1.3, §6.3; RFC 9051 §6.3;
RFC 5258 LIST-EXTENDED; RFC 5819 LIST-STATUS; RFC 6154 SPECIAL-USE; RFC 8621 isSubscribed).

Subscriptions are a list of names of their own; LIST/LSUB answer with the `%` levels,
\\NonExistent and CHILDINFO the RFCs give; STATUS DELETED counts \\Deleted; names that are not
valid modified UTF-7 are refused with NO; LIST patterns are matched in linear time (issue 17).

One server for the module, one user per test, so the tests stay apart and cheap.
"""

from __future__ import annotations

import imaplib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.jmapclient import Jmap
from tests.e2e.server import Server, serving
from tests.e2e.transcript import LOGIN, Wire, play, run

USERS = ("subs", "lists", "status", "names", "slow", "jmap", "fresh", "rename", "utf8")
DEFAULTS = ["INBOX", "Sent", "Drafts", "Trash", "Junk", "Archive", '"All Mail"']
"""A new account's mailboxes, in the order LIST gives them, as they appear on the wire."""
ATTRS = {"INBOX": "", "Sent": " \\Sent", "Drafts": " \\Drafts", "Trash": " \\Trash",
         "Junk": " \\Junk", "Archive": " \\Archive", '"All Mail"': " \\All"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with serving(Path(tmp_path_factory.mktemp("rfc3501_mailbox")), USERS) as srv:
        yield srv


def login(user: str) -> str:
    return LOGIN.format(user=f"{user}@example.test")


def defaults_lsub() -> str:
    return "".join(f"S: * LSUB () \"/\" {n}\n" for n in DEFAULTS)


def defaults_list(extra: str = "") -> str:
    return "".join(f"S: * LIST (\\HasNoChildren{ATTRS[n]}{extra}) \"/\" {n}\n"
                   for n in DEFAULTS)


# --------------------------------------------------------------------------- subscriptions


def test_subscriptions_are_a_list_of_names(server: Server) -> None:
    """RFC 3501 §6.3.6-6.3.9: CREATE does not subscribe, a name with no mailbox can be
    subscribed, DELETE leaves the name subscribed, UNSUBSCRIBE is idempotent; a new
    account's own mailboxes start subscribed (clients that show only those need them)."""
    run(server.imap_port, login("subs") + f"""
C: a LSUB "" *
{defaults_lsub()}S: a OK LSUB done
C: b CREATE Fruit/Apple
S~ b OK \\[MAILBOXID \\(.+\\)\\] CREATE completed
C: c LSUB "" Fruit*
S: c OK LSUB done
C: d SUBSCRIBE Fruit/Peach
S: d OK SUBSCRIBE done
C: e SUBSCRIBE Fruit/Apple
S: e OK SUBSCRIBE done
C: f SUBSCRIBE Fruit/Apple
S: f OK SUBSCRIBE done
C: g LSUB "" Fruit/*
S: * LSUB () "/" Fruit/Apple
S: * LSUB () "/" Fruit/Peach
S: g OK LSUB done
# §6.3.9: % at the end also gives the levels above subscribed names, \\Noselect if the
# level itself is not subscribed.
C: h LSUB "" F%
S: * LSUB (\\Noselect) "/" Fruit
S: h OK LSUB done
C: i DELETE Fruit/Apple
S: i OK DELETE done
C: j LSUB "" Fruit/*
S: * LSUB () "/" Fruit/Apple
S: * LSUB () "/" Fruit/Peach
S: j OK LSUB done
C: k UNSUBSCRIBE Fruit/Peach
S: k OK UNSUBSCRIBE done
C: l UNSUBSCRIBE Fruit/Peach
S: l OK UNSUBSCRIBE done
C: m LSUB "" Fruit/*
S: * LSUB () "/" Fruit/Apple
S: m OK LSUB done
# The name comes back when its mailbox does: the list holds names, not mailboxes.
C: n CREATE Fruit/Apple
S~ n OK .*
C: o LIST (SUBSCRIBED) "" Fruit/*
S: * LIST (\\HasNoChildren \\Subscribed) "/" Fruit/Apple
S: o OK LIST done
C: p UNSUBSCRIBE INBOX
S: p OK UNSUBSCRIBE done
C: q LSUB "" inbox
S: q OK LSUB done
C: r SUBSCRIBE inbox
S: r OK SUBSCRIBE done
C: s LSUB "" %
{defaults_lsub()}S: * LSUB (\\Noselect) "/" Fruit
S: s OK LSUB done
""")


def test_list_extended_subscribed_nonexistent_and_childinfo(server: Server) -> None:
    """RFC 5258 §3.1, §3.5 and examples 2, 8 and 10: \\Subscribed \\NonExistent for a
    subscribed name with no mailbox; RECURSIVEMATCH gives CHILDINFO, never \\Noselect."""
    run(server.imap_port, login("lists") + r"""
C: a CREATE Foo/Bar
S~ a OK .*
C: b CREATE Foo/Baz
S~ b OK .*
C: c CREATE Moo
S~ c OK .*
C: d SUBSCRIBE Foo/Baz
S: d OK SUBSCRIBE done
C: e SUBSCRIBE Fruit/Peach
S: e OK SUBSCRIBE done
C: f LIST (SUBSCRIBED) "" "F*"
S: * LIST (\HasNoChildren \Subscribed) "/" Foo/Baz
S: * LIST (\NonExistent \HasNoChildren \Subscribed) "/" Fruit/Peach
S: f OK LIST done
# Example 8A: no unsubscribed parent without RECURSIVEMATCH ...
C: g LIST (SUBSCRIBED) "" "F%"
S: g OK LIST done
# ... and with it, CHILDINFO (A2: \NonExistent for the parent that is no mailbox).
C: h LIST (SUBSCRIBED RECURSIVEMATCH) "" "F%"
S: * LIST (\HasChildren) "/" Foo ("CHILDINFO" ("SUBSCRIBED"))
S: * LIST (\NonExistent \HasNoChildren) "/" Fruit ("CHILDINFO" ("SUBSCRIBED"))
S: h OK LIST done
# A1: a subscribed parent keeps \Subscribed and gets CHILDINFO too.
C: i SUBSCRIBE Foo
S: i OK SUBSCRIBE done
C: j LIST (SUBSCRIBED RECURSIVEMATCH) "" "Foo"
S: * LIST (\HasChildren \Subscribed) "/" Foo ("CHILDINFO" ("SUBSCRIBED"))
S: j OK LIST done
# Example 10: multiple patterns; RETURN (SUBSCRIBED) reports, never selects, names.
C: k LIST "" ("Moo" "Foo/*") RETURN (SUBSCRIBED CHILDREN)
S: * LIST (\HasNoChildren) "/" Foo/Bar
S: * LIST (\HasNoChildren \Subscribed) "/" Foo/Baz
S: * LIST (\HasNoChildren) "/" Moo
S: k OK LIST done
C: l LIST (RECURSIVEMATCH) "" *
S~ l BAD .*
C: m LIST (SUBSCRIBED) "" * RETURN (FOO)
S~ m BAD .*
C: n LIST "" ""
S: * LIST (\Noselect) "/" ""
S: n OK LIST done
C: o LIST "Foo/" ""
S: * LIST (\Noselect) "/" ""
S: o OK LIST done
""")


def test_missing_parent_levels(server: Server) -> None:
    """RFC 3501 §6.3.8: a `%` level with no mailbox of its own (its mailbox was deleted, its
    children were not) is listed \\Noselect in a plain LIST, \\NonExistent in LIST-EXTENDED
    (RFC 5258 example 11); `*` lists the children instead and no level."""
    run(server.imap_port, login("lists") + r"""
C: a CREATE music/rock
S~ a OK .*
C: b DELETE music
S: b OK DELETE done
C: c LIST "" mus%
S: * LIST (\Noselect \HasChildren) "/" music
S: c OK LIST done
C: d LIST () "" mus%
S: * LIST (\NonExistent \HasChildren) "/" music
S: d OK LIST done
C: e LIST "" mus*
S: * LIST (\HasNoChildren) "/" music/rock
S: e OK LIST done
C: f LIST "" (mus% music/rock)
S: * LIST (\HasNoChildren) "/" music/rock
S: f OK LIST done
C: g LIST "music/" %
S: * LIST (\HasNoChildren) "/" music/rock
S: g OK LIST done
C: h SELECT music
S: h NO [NONEXISTENT] No such mailbox
""")


def test_rename_moves_subscriptions(server: Server) -> None:
    """RENAME takes the subscriptions of the mailbox and of those below it along (as
    Dovecot does); other subscribed names stay as they are."""
    run(server.imap_port, login("rename") + r"""
C: a CREATE Work/2024/Q1
S~ a OK .*
C: b SUBSCRIBE Work
S: b OK SUBSCRIBE done
C: c SUBSCRIBE Work/2024/Q1
S: c OK SUBSCRIBE done
C: d SUBSCRIBE Workshop
S: d OK SUBSCRIBE done
C: e RENAME Work Jobs
S: e OK RENAME done
C: f LSUB "" Jobs*
S: * LSUB () "/" Jobs
S: * LSUB () "/" Jobs/2024/Q1
S: f OK LSUB done
C: ff LSUB "" W*
S: * LSUB () "/" Workshop
S: ff OK LSUB done
C: g LIST "" Jobs/*
S: * LIST (\HasChildren) "/" Jobs/2024
S: * LIST (\HasNoChildren) "/" Jobs/2024/Q1
S: g OK LIST done
""")


def test_imaplib_client_sees_the_subscriptions(server: Server) -> None:
    """A real client library over the same list."""
    imap = imaplib.IMAP4("127.0.0.1", server.imap_port)
    try:
        imap.login("fresh@example.test", "secret-password")
        assert imap.create("Projects")[0] == "OK"
        typ, data = imap.lsub('""', "*")
        assert typ == "OK" and not any(b"Projects" in d for d in data if d)
        assert imap.subscribe("Projects")[0] == "OK"
        assert imap.subscribe("Nowhere")[0] == "OK"
        typ, data = imap.lsub('""', "*")
        names = {d.rsplit(b' "/" ', 1)[1] for d in data if d}
        assert {b"INBOX", b"Projects", b"Nowhere"} <= names
        assert imap.delete("Projects")[0] == "OK"
        typ, data = imap.list('""', "*")
        assert not any(b"Projects" in d for d in data if d)
        typ, data = imap.lsub('""', "Projects")
        assert data == [b'() "/" Projects']
    finally:
        imap.logout()


# --------------------------------------------------------------------------- JMAP


def test_jmap_is_subscribed_is_the_same_list(server: Server) -> None:
    """RFC 8621 §2: isSubscribed defaults to true for a mailbox the user creates; it reads
    and writes the list IMAP uses, and an IMAP (UN)SUBSCRIBE is a Mailbox change."""
    jmap = Jmap(server, "jmap@example.test")
    made = jmap.call("Mailbox/set", create={
        "on": {"name": "Newsletters"}, "off": {"name": "Receipts", "isSubscribed": False}})
    on, off = made["created"]["on"]["id"], made["created"]["off"]["id"]
    run(server.imap_port, login("jmap") + r"""
C: a LSUB "" Newsletters
S: * LSUB () "/" Newsletters
S: a OK LSUB done
C: b LSUB "" Receipts
S: b OK LSUB done
C: c UNSUBSCRIBE Newsletters
S: c OK UNSUBSCRIBE done
C: d SUBSCRIBE Receipts
S: d OK SUBSCRIBE done
""")
    state = jmap.state()
    got = {m["id"]: m["isSubscribed"] for m in jmap.call("Mailbox/get", ids=[on, off])["list"]}
    assert got == {on: False, off: True}
    assert jmap.call("Mailbox/query", filter={"isSubscribed": False})["ids"] == [on]
    run(server.imap_port, login("jmap") + "C: a SUBSCRIBE Newsletters\nS: a OK SUBSCRIBE done\n")
    changes = jmap.call("Mailbox/changes", sinceState=state)
    assert changes["updated"] == [on] and jmap.state() != state
    # A rename keeps isSubscribed: the subscription moves with the mailbox.
    jmap.call("Mailbox/set", update={on: {"name": "Digest"}})
    assert jmap.call("Mailbox/get", ids=[on])["list"][0]["isSubscribed"] is True
    run(server.imap_port, login("jmap") + r"""
C: a LSUB "" Digest
S: * LSUB () "/" Digest
S: a OK LSUB done
C: b LSUB "" Newsletters
S: b OK LSUB done
""")


# --------------------------------------------------------------------------- STATUS


def test_status_deleted_counts_deleted_messages(server: Server) -> None:
    """RFC 9051 §6.3.11: DELETED is the number of messages with \\Deleted."""
    run(server.imap_port, login("status") + r"""
C: a APPEND INBOX {{Subject: one\n\nbody\n}}
S~ a OK .*
C: b APPEND INBOX (\Deleted) {{Subject: two\n\nbody\n}}
S~ b OK .*
C: c APPEND INBOX (\Deleted \Seen) {{Subject: three\n\nbody\n}}
S~ c OK .*
C: d STATUS INBOX (MESSAGES DELETED UNSEEN)
S: * STATUS INBOX (MESSAGES 3 DELETED 2 UNSEEN 2)
S: d OK STATUS done
""")
    run(server.imap_port, login("status") + r"""
C: a LIST "" INBOX RETURN (STATUS (DELETED MESSAGES))
S: * LIST (\HasNoChildren) "/" INBOX
S: * STATUS INBOX (DELETED 2 MESSAGES 3)
S: a OK LIST done
C: b STATUS Nowhere (DELETED)
S: b NO [NONEXISTENT] No such mailbox
""")


def test_list_status_and_special_use(server: Server) -> None:
    """RFC 5819: a STATUS after each selectable mailbox, none for a \\NonExistent name;
    RFC 6154: the SPECIAL-USE selection option lists special-use mailboxes only."""
    run(server.imap_port, login("status") + r"""
C: a SUBSCRIBE Ghost
S: a OK SUBSCRIBE done
C: b LIST (SUBSCRIBED) "" (Ghost Sent) RETURN (STATUS (MESSAGES))
S: * LIST (\HasNoChildren \Sent \Subscribed) "/" Sent
S: * STATUS Sent (MESSAGES 0)
S: * LIST (\NonExistent \HasNoChildren \Subscribed) "/" Ghost
S: b OK LIST done
C: c LIST (SPECIAL-USE) "" * RETURN (SPECIAL-USE)
S: * LIST (\HasNoChildren \Sent) "/" Sent
S: * LIST (\HasNoChildren \Drafts) "/" Drafts
S: * LIST (\HasNoChildren \Trash) "/" Trash
S: * LIST (\HasNoChildren \Junk) "/" Junk
S: * LIST (\HasNoChildren \Archive) "/" Archive
S: * LIST (\HasNoChildren \All) "/" "All Mail"
S: c OK LIST done
""")


# --------------------------------------------------------------------------- names


def test_invalid_modified_utf7_names_are_refused_with_no(server: Server) -> None:
    """RFC 3501 §5.1.3: `&Jjo` is unterminated, `&AGE-` encodes ASCII, `&Jjo-&Jjo-` is not
    the one encoding of its name. Commands on such names answer NO, not BAD; a LIST
    pattern of one is OK and matches nothing."""
    run(server.imap_port, login("names") + r"""
C: a SELECT &Jjo
S: a NO [CANNOT] Mailbox name is not valid modified UTF-7
C: b EXAMINE &AGE-
S: b NO [CANNOT] Mailbox name is not valid modified UTF-7
C: c STATUS &Jjo (MESSAGES)
S: c NO [CANNOT] Mailbox name is not valid modified UTF-7
C: d CREATE &Jjo-&Jjo-
S: d NO [CANNOT] Mailbox name is not valid modified UTF-7
C: e SUBSCRIBE "a&b"
S: e NO [CANNOT] Mailbox name is not valid modified UTF-7
C: f RENAME INBOX &Jjo
S: f NO [CANNOT] Mailbox name is not valid modified UTF-7
C: g LIST "" &Jjo
S: g OK LIST done
C: h LIST "" (&AGE- INBOX)
S: * LIST (\HasNoChildren) "/" INBOX
S: h OK LIST done
C: i LSUB &Jjo *
S: i OK LSUB done
C: j CREATE &Jjo-
S~ j OK .*
C: k LIST "" &Jjo-
S: * LIST (\HasNoChildren) "/" &Jjo-
S: k OK LIST done
C: l CREATE "Tom &- Jerry"
S~ l OK .*
C: m LIST "" Tom*
S: * LIST (\HasNoChildren) "/" "Tom &- Jerry"
S: m OK LIST done
C: n SELECT &Jjo
S: n NO [CANNOT] Mailbox name is not valid modified UTF-7
""")


def test_utf8_names_once_enabled(server: Server) -> None:
    """RFC 6855 §3 / RFC 9051 §5.1: after ENABLE UTF8=ACCEPT names are UTF-8 and `&` is an
    ordinary character; invalid UTF-8 or control characters are NO."""
    wire = Wire.connect(server.imap_port)
    try:
        wire.line()
        play(wire, login("utf8") + r"""
C: a ENABLE UTF8=ACCEPT
S: * ENABLED UTF8=ACCEPT
S~ a OK .*
C: b CREATE "Tom & Jerry"
S~ b OK .*
C: c LIST "" Tom*
S: * LIST (\HasNoChildren) "/" "Tom & Jerry"
S: c OK LIST done
C: d CREATE "café"
S~ d OK .*
C: e LIST "" caf*
S: * LIST (\HasNoChildren) "/" "café"
S: e OK LIST done
""")
        wire.send(b'f CREATE "caf\xe9"\r\n')
        play(wire, "S: f NO [CANNOT] Mailbox name is not valid UTF-8\n")
        wire.send('g SELECT "a\u2028b"\r\n'.encode())
        play(wire, "S: g NO [CANNOT] Control characters are not allowed in mailbox names\n")
    finally:
        wire.close()
    run(server.imap_port, login("utf8") + r"""
C: a LIST "" caf*
S: * LIST (\HasNoChildren) "/" caf&AOk-
S: a OK LIST done
""")


# --------------------------------------------------------------------------- issue 17


def test_many_star_pattern_answers_quickly(server: Server) -> None:
    """Issue 17: `LIST "" "************x"` against a 30-character name took 44 s and froze
    the server. Timed against a plain LIST on the same connection (never a wall-clock
    figure), while another connection's NOOP keeps being answered; too long a pattern is
    NO [LIMIT]."""
    long_name = "a" * 30
    wire = Wire.connect(server.imap_port)
    try:
        wire.line()
        play(wire, login("slow") + f"C: a CREATE {long_name}\nS~ a OK .*\n")

        def timed(tag: str, pattern: str, expect: str) -> float:
            started = time.perf_counter()
            play(wire, f'C: {tag} LIST "" "{pattern}"\n{expect}S: {tag} OK LIST done\n')
            return time.perf_counter() - started

        plain = min(timed(f"p{i}", "*", defaults_list() +
                          f"S: * LIST (\\HasNoChildren) \"/\" {long_name}\n")
                    for i in range(3))
        answered = threading.Event()

        def probe() -> None:
            run(server.imap_port, "C: n NOOP\nS: n OK NOOP done\n")
            answered.set()

        evil = "*" * 12 + "x"
        prober = threading.Thread(target=probe)
        prober.start()
        slow = timed("e", evil, "")
        slower = timed("f", "*a" * 400 + "x", "")
        prober.join(timeout=60)
        assert answered.is_set()
        # A regex took minutes on these; the matcher is linear. Generous, relative bounds.
        assert slow < 50 * plain + 1.0, (slow, plain)
        assert slower < 50 * plain + 1.0, (slower, plain)
        play(wire, f'C: g LIST "" "{"*" * 1025}"\nS~ g NO \\[LIMIT\\] .*\n')
    finally:
        wire.close()
