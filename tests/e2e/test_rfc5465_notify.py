"""Scripted transcripts: NOTIFY (RFC 5465).

Two connections per test: one says NOTIFY SET and then only reads (the events must come
without a command), the other makes the changes (APPEND, STORE, EXPUNGE, CREATE, RENAME,
DELETE, SUBSCRIBE, SMTP delivery). Each step waits for the line it expects, never for the
clock; an event that must NOT be sent is checked by making a later one that must, and
reading that one first.

One server for the module, one user per test, so the tests stay apart and cheap.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.server import Server, serving
from tests.e2e.test_smtp_inbound import message, send
from tests.e2e.transcript import LOGIN, Wire, play, run

USERS = ("status", "selected", "delayed", "names", "errors", "smtp", "idle", "none")
EVENTS = "MessageNew MessageExpunge FlagChange MailboxName SubscriptionChange"
OTHER_GROUP = "(mailboxes Other (MessageNew MessageExpunge FlagChange))"
SUBJECT = "BODY.PEEK[HEADER.FIELDS (SUBJECT)]"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with serving(Path(tmp_path_factory.mktemp("rfc5465_notify")), USERS) as srv:
        yield srv


def login(user: str) -> str:
    return LOGIN.format(user=f"{user}@example.test")


def select(tag: str, name: str = "INBOX") -> str:
    """SELECT with its untagged lines skipped (test_rfc3501_mailbox checks them)."""
    return f"C: {tag} SELECT {name}\n" + "S-~ \\* .*\n" * 12 + f"S~ {tag} OK .*\n"


def connect(server: Server, user: str) -> Wire:
    wire = Wire.connect(server.imap_port)
    assert wire.line().startswith("* OK")
    play(wire, login(user))
    return wire


def test_capability_and_errors(server: Server) -> None:
    """BAD for what §5/§6.1 forbid, NO [BADEVENT (the events we send)] for events we do not
    send, NO [NOTIFICATIONOVERFLOW] for a request too large (§3.1)."""
    names = " ".join(f"m{i}" for i in range(1001))
    run(server.imap_port, login("errors") + f"""
C: a CAPABILITY
S~ \\* CAPABILITY .* NOTIFY .*
S: a OK CAPABILITY done
C: b NOTIFY SET (selected (MessageNew))
S~ b BAD .*
C: c NOTIFY SET (personal (MessageExpunge))
S~ c BAD .*
C: d NOTIFY SET (personal (FlagChange))
S~ d BAD .*
C: e NOTIFY SET (selected (MailboxName))
S~ e BAD .*
C: f NOTIFY SET (selected (MessageNew MessageExpunge)) (selected-delayed NONE)
S~ f BAD .*
C: g NOTIFY SET (personal (MessageNew (UID) MessageExpunge))
S~ g BAD .*
C: h NOTIFY SET (personal (MessageNew MessageExpunge AnnotationChange))
S~ h NO \\[BADEVENT \\({EVENTS}\\)\\] .*
C: i NOTIFY SET (inboxes (QuotaChange))
S~ i NO \\[BADEVENT \\({EVENTS}\\)\\] .*
C: j NOTIFY SET (mailboxes ({names}) (MessageNew MessageExpunge))
S~ j NO \\[NOTIFICATIONOVERFLOW\\] .*
C: k NOTIFY SET (unknown (MessageNew MessageExpunge))
S~ k BAD .*
C: l NOTIFY BOGUS
S~ l BAD .*
C: m NOTIFY SET (personal NONE) (selected-delayed (MessageNew MessageExpunge FlagChange))
S: m OK NOTIFY done
C: n NOTIFY NONE
S: n OK NOTIFY done
C: o LOGOUT
S~ \\* BYE .*
S~ o OK .*
""")


def test_status_for_other_mailboxes(server: Server) -> None:
    """NOTIFY SET STATUS tells each watched mailbox's counters before its OK (§3.1); then
    MessageNew/MessageExpunge elsewhere come as STATUS without a command (§5.2, §5.3); a flag
    change comes only when FlagChange was asked for (§5.1); NOTIFY NONE stops it all."""
    watcher, changer = connect(server, "status"), connect(server, "status")
    try:
        play(changer, """
C: a CREATE Lists
S~ a OK .*
C: b CREATE Other
S~ b OK .*
""")
        values = play(watcher, """
C: n NOTIFY SET STATUS (mailboxes (INBOX Lists) (MessageNew MessageExpunge)) ${other_group}
S?~ \\* STATUS INBOX \\(MESSAGES 0 UIDNEXT 1 UIDVALIDITY (?P<inbox>\\d+) UNSEEN 0\\)
S?~ \\* STATUS Lists \\(MESSAGES 0 UIDNEXT 1 UIDVALIDITY (?P<lists>\\d+) UNSEEN 0\\)
S?~ \\* STATUS Other \\(MESSAGES 0 UIDNEXT 1 UIDVALIDITY (?P<other>\\d+) UNSEEN 0 ${hms}\\)
S: n OK NOTIFY done
""", {"other_group": OTHER_GROUP, "hms": "HIGHESTMODSEQ \\d+"})
        play(changer, """
C: c APPEND Lists {{Subject: one\\n\\nbody\\n}}
S~ c OK .*
""")
        play(watcher, """
S: * STATUS Lists (MESSAGES 1 UIDNEXT 2 UIDVALIDITY ${lists} UNSEEN 1)
""", values)
        # A flag change in Lists is not asked for: the EXPUNGE after it is the next line.
        play(changer, """
""" + select("d", "Lists") + """
C: e STORE 1 +FLAGS.SILENT (\\Seen)
S~ e OK .*
C: f STORE 1 +FLAGS.SILENT (\\Deleted)
S~ f OK .*
C: g EXPUNGE
S: * 1 EXPUNGE
S~ g OK .*
""")
        play(watcher, """
S: * STATUS Lists (MESSAGES 0 UIDNEXT 2 UIDVALIDITY ${lists} UNSEEN 0)
""", values)
        # In Other, FlagChange was asked for: the flag change comes, with HIGHESTMODSEQ.
        play(changer, """
C: h APPEND Other {{Subject: two\\n\\nbody\\n}}
S~ h OK .*
""")
        play(watcher, """
S~ \\* STATUS Other \\(MESSAGES 1 UIDNEXT 2 UIDVALIDITY ${other} UNSEEN 1 HIGHESTMODSEQ \\d+\\)
""", values)
        play(changer, """
""" + select("i", "Other") + """
C: j STORE 1 +FLAGS.SILENT (\\Seen)
S~ j OK .*
""")
        play(watcher, """
S~ \\* STATUS Other \\(MESSAGES 1 UIDNEXT 2 UIDVALIDITY ${other} UNSEEN 0 HIGHESTMODSEQ \\d+\\)
""", values)
        # Own APPEND to INBOX: told too (a STATUS, like anyone's).
        play(watcher, """
C: k APPEND INBOX {{Subject: three\\n\\nbody\\n}}
S~ k OK .*
S: * STATUS INBOX (MESSAGES 1 UIDNEXT 2 UIDVALIDITY ${inbox} UNSEEN 1)
C: l NOTIFY NONE
S: l OK NOTIFY done
""", values)
        play(changer, """
C: m APPEND INBOX {{Subject: four\\n\\nbody\\n}}
S~ m OK .*
""")
        play(watcher, """
C: o NOOP
S: o OK NOOP done
""")
    finally:
        watcher.close()
        changer.close()


def test_selected_mailbox_events_and_fetch(server: Server) -> None:
    """`selected` (§5.1-5.3, §6.1): EXISTS then a FETCH of what MessageNew asked for, flag
    changes as FETCH UID FLAGS, EXPUNGE between commands; the implicit NOOP of NOTIFY SET."""
    watcher, changer = connect(server, "selected"), connect(server, "selected")
    try:
        play(watcher, """
""" + select("a", "INBOX") + """
""")
        play(changer, """
C: b APPEND INBOX {{Subject: before\\n\\nbody\\n}}
S~ b OK .*
""")
        # NOTIFY SET reports what changed already, as NOOP would (§3.1).
        play(watcher, """
C: n NOTIFY SET (selected (MessageNew (UID ${subject}) MessageExpunge FlagChange))
S: * 1 EXISTS
S-~ \\* 1 RECENT
S: n OK NOTIFY done
""", {"subject": SUBJECT})
        play(changer, """
C: c APPEND INBOX {{Subject: pushed\\n\\nbody\\n}}
S~ c OK .*
""")
        play(watcher, """
S: * 2 EXISTS
S-~ \\* \\d+ RECENT
S: * 2 FETCH (UID 2 BODY[HEADER.FIELDS (SUBJECT)] {19}Subject: pushed\\r\\n\\r\\n)
""")
        play(changer, """
""" + select("d", "INBOX") + """
C: e STORE 2 +FLAGS.SILENT (\\Flagged)
S~ e OK .*
""")
        play(watcher, """
S~ \\* 2 FETCH \\(UID 2 FLAGS \\(\\\\Flagged( \\\\Recent)?\\)\\)
""")
        play(changer, """
C: f STORE 1 +FLAGS.SILENT (\\Deleted)
S~ f OK .*
""")
        play(watcher, """
S~ \\* 1 FETCH \\(UID 1 FLAGS \\(\\\\Deleted( \\\\Recent)?\\)\\)
""")
        play(changer, """
C: g EXPUNGE
S: * 1 EXPUNGE
S~ g OK .*
""")
        play(watcher, """
S: * 1 EXPUNGE
C: h UID FETCH 2 (FLAGS)
S~ \\* 1 FETCH \\(UID 2 FLAGS \\(\\\\Flagged( \\\\Recent)?\\)\\)
S: h OK UID FETCH done
""")
    finally:
        watcher.close()
        changer.close()


def test_selected_delayed_holds_expunges(server: Server) -> None:
    """`selected-delayed` (§6.1.2): new messages come at once, an EXPUNGE waits for a command
    that may send it (not FETCH: RFC 3501 §7.4.1)."""
    watcher, changer = connect(server, "delayed"), connect(server, "delayed")
    try:
        play(changer, """
C: a APPEND INBOX {{Subject: one\\n\\nbody\\n}}
S~ a OK .*
C: b CREATE Other
S~ b OK .*
""")
        play(watcher, """
""" + select("c", "INBOX") + """
C: n NOTIFY SET (selected-delayed (MessageNew MessageExpunge)) ${other_group}
S: n OK NOTIFY done
""", {"other_group": "(mailboxes Other (MessageNew MessageExpunge))"})
        play(changer, """
C: d APPEND INBOX {{Subject: two\\n\\nbody\\n}}
S~ d OK .*
""")
        play(watcher, """
S: * 2 EXISTS
S-~ \\* \\d+ RECENT
""")
        play(changer, """
""" + select("e", "INBOX") + """
C: f STORE 1 +FLAGS.SILENT (\\Deleted)
S~ f OK .*
C: g EXPUNGE
S: * 1 EXPUNGE
S~ g OK .*
C: h APPEND Other {{Subject: three\\n\\nbody\\n}}
S~ h OK .*
""")
        # The STATUS of Other comes first: the EXPUNGE before it was held back.
        play(watcher, """
S~ \\* STATUS Other \\(MESSAGES 1 UIDNEXT 2 UIDVALIDITY \\d+ UNSEEN 1\\)
C: i FETCH 1 (UID)
S~ \\* 1 FETCH \\(UID 1.*\\)
S-~ \\* 1 FETCH \\(UID 1.*\\)
S: i OK FETCH done
C: j NOOP
S: * 1 EXPUNGE
S: j OK NOOP done
""")
    finally:
        watcher.close()
        changer.close()


def test_mailbox_name_and_subscription_change(server: Server) -> None:
    """MailboxName (§5.4): LIST on create, LIST with OLDNAME on rename, LIST \\NonExistent on
    delete; SubscriptionChange (§5.5): LIST with \\Subscribed, and without it again."""
    watcher, changer = connect(server, "names"), connect(server, "names")
    try:
        play(watcher, """
C: n NOTIFY SET (personal (MailboxName SubscriptionChange))
S: n OK NOTIFY done
""")
        play(changer, """
C: a CREATE Projects
S~ a OK .*
""")
        play(watcher, """
S: * LIST (\\HasNoChildren) "/" Projects
""")
        play(changer, """
C: b RENAME Projects Work
S~ b OK .*
""")
        play(watcher, """
S: * LIST (\\HasNoChildren) "/" Work ("OLDNAME" (Projects))
""")
        play(changer, """
C: c SUBSCRIBE Work
S~ c OK .*
""")
        play(watcher, """
S: * LIST (\\HasNoChildren \\Subscribed) "/" Work
""")
        play(changer, """
C: d UNSUBSCRIBE Work
S~ d OK .*
""")
        play(watcher, """
S: * LIST (\\HasNoChildren) "/" Work
""")
        play(changer, """
C: e DELETE Work
S~ e OK .*
""")
        play(watcher, """
S: * LIST (\\NonExistent) "/" Work
C: f NOOP
S: f OK NOOP done
""")
    finally:
        watcher.close()
        changer.close()


def test_smtp_delivery_is_message_new(server: Server) -> None:
    """Mail delivered by SMTP (the pipeline, another process) is a MessageNew for INBOX:
    a STATUS with `inboxes`; EXISTS for the selected INBOX of another session."""
    watcher, selected = connect(server, "smtp"), connect(server, "smtp")
    try:
        play(watcher, """
C: n NOTIFY SET (inboxes (MessageNew MessageExpunge))
S: n OK NOTIFY done
""")
        play(selected, """
""" + select("a", "INBOX") + """
C: m NOTIFY SET (selected (MessageNew MessageExpunge))
S: m OK NOTIFY done
""")
        send(server, message("delivered"), to="smtp@example.test")
        play(watcher, """
S~ \\* STATUS INBOX \\(MESSAGES 1 UIDNEXT 2 UIDVALIDITY \\d+ UNSEEN 1\\)
""")
        play(selected, """
S: * 1 EXISTS
S-~ \\* 1 RECENT
""")
    finally:
        watcher.close()
        selected.close()


def test_idle_sends_what_notify_asked(server: Server) -> None:
    """§4: during IDLE the server sends the events NOTIFY set (STATUS for another mailbox,
    from a hibernated session too), and not the selected mailbox's, which NOTIFY left out."""
    watcher, changer = connect(server, "idle"), connect(server, "idle")
    try:
        play(changer, """
C: a CREATE Lists
S~ a OK .*
""")
        play(watcher, """
""" + select("b", "INBOX") + """
C: n NOTIFY SET (mailboxes Lists (MessageNew MessageExpunge))
S: n OK NOTIFY done
C: i IDLE
S~ \\+ .*
""")
        play(changer, """
C: c APPEND INBOX {{Subject: one\\n\\nbody\\n}}
S~ c OK .*
C: d APPEND Lists {{Subject: two\\n\\nbody\\n}}
S~ d OK .*
""")
        play(watcher, """
S~ \\* STATUS Lists \\(MESSAGES 1 UIDNEXT 2 UIDVALIDITY \\d+ UNSEEN 1\\)
C: DONE
S: i OK IDLE terminated
C: j NOOP
S: * 1 EXISTS
S-~ \\* 1 RECENT
S: j OK NOOP done
""")
    finally:
        watcher.close()
        changer.close()


def test_condstore_status_has_highestmodseq(server: Server) -> None:
    """§5.2: with CONDSTORE enabled, the STATUS carries HIGHESTMODSEQ."""
    watcher, changer = connect(server, "none"), connect(server, "none")
    try:
        play(watcher, """
C: e ENABLE CONDSTORE
S: * ENABLED CONDSTORE
S~ e OK .*
C: n NOTIFY SET STATUS (inboxes (MessageNew MessageExpunge))
S?~ \\* STATUS INBOX \\(MESSAGES 0 UIDNEXT 1 UIDVALIDITY \\d+ UNSEEN 0 HIGHESTMODSEQ \\d+\\)
S?~ \\* STATUS Junk \\(MESSAGES 0 UIDNEXT 1 UIDVALIDITY \\d+ UNSEEN 0 HIGHESTMODSEQ \\d+\\)
S: n OK NOTIFY done
""")
        play(changer, """
C: a APPEND INBOX {{Subject: one\\n\\nbody\\n}}
S~ a OK .*
""")
        play(watcher, """
S~ \\* STATUS INBOX \\(MESSAGES 1 UIDNEXT 2 UIDVALIDITY \\d+ UNSEEN 1 HIGHESTMODSEQ \\d+\\)
""")
    finally:
        watcher.close()
        changer.close()
