"""Mail is never lost or resurrected over IMAP (issue 16's first section), as transcripts.

APPEND and COPY make a new message with a new UID and exactly the flags given (RFC 3501
§6.3.11, §6.4.7; RFC 4315 APPENDUID/COPYUID); a UIDVALIDITY is never given twice to one name
(RFC 3501 §2.3.1.1); MOVE to the same mailbox renumbers (RFC 6851 §3.3); BINARY.SIZE leaves
\\Seen alone (RFC 3516 §4.2); an APPEND racing another session's EXPUNGE never fails.
"""

from __future__ import annotations

import threading

from tests.e2e.server import Server
from tests.e2e.transcript import LOGIN, Wire, play, run

ALICE = LOGIN.format(user="alice@example.test")
SAME = "{{Subject: same\\nMessage-ID: <same@example.test>\\n\\nthe same octets\\n}}"

SELECT_INBOX = r"""
C: s SELECT INBOX
S~ \* FLAGS .*
S~ \* OK \[PERMANENTFLAGS .*
S~ \* (?P<exists>\d+) EXISTS
S~ \* \d+ RECENT
S-~ \* OK \[UNSEEN \d+\].*
S~ \* OK \[UIDVALIDITY (?P<uidvalidity>\d+)\].*
S~ \* OK \[UIDNEXT \d+\].*
S~ \* OK \[HIGHESTMODSEQ \d+\].*
S~ \* OK \[MAILBOXID .*
S~ s OK \[READ-WRITE\] .*
"""


def test_append_same_octets_twice_makes_two_messages(server: Server) -> None:
    run(server.imap_port, ALICE + f"""
C: a1 APPEND INBOX {SAME}
S~ a1 OK \\[APPENDUID (?P<v>\\d+) 1\\] .*
C: a2 APPEND INBOX {SAME}
S: a2 OK [APPENDUID ${{v}} 2] APPEND completed
C: a3 STATUS INBOX (MESSAGES UIDNEXT)
S: * STATUS INBOX (MESSAGES 2 UIDNEXT 3)
S: a3 OK STATUS done
""")


def test_append_after_expunge_does_not_resurrect_deleted(server: Server) -> None:
    run(server.imap_port, ALICE + f"""
C: a1 APPEND INBOX (\\Seen) {SAME}
S~ a1 OK \\[APPENDUID (?P<v>\\d+) 1\\] .*
""" + SELECT_INBOX + f"""
C: b STORE 1 +FLAGS (\\Deleted)
S: * 1 FETCH (FLAGS (\\Deleted \\Seen \\Recent))
S: b OK STORE done
C: c EXPUNGE
S: * 1 EXPUNGE
S: c OK EXPUNGE done
C: d APPEND INBOX {SAME}
S: * 1 EXISTS
S: * 1 RECENT
S: d OK [APPENDUID ${{v}} 2] APPEND completed
C: e UID FETCH 2 (FLAGS)
S: * 1 FETCH (UID 2 FLAGS (\\Recent))
S: e OK UID FETCH done
C: f EXPUNGE
S: f OK EXPUNGE done
C: g UID SEARCH ALL
S: * SEARCH 2
S: g OK UID SEARCH done
""")


def test_copy_into_same_mailbox_makes_a_new_uid(server: Server) -> None:
    run(server.imap_port, ALICE + f"""
C: a1 APPEND INBOX (\\Flagged) {SAME}
S~ a1 OK \\[APPENDUID (?P<v>\\d+) 1\\] .*
""" + SELECT_INBOX + """
C: b COPY 1 INBOX
S: * 2 EXISTS
S: * 2 RECENT
S: b OK [COPYUID ${v} 1 2] COPY completed
C: c FETCH 1:2 (UID FLAGS)
S: * 1 FETCH (UID 1 FLAGS (\\Flagged \\Recent))
S: * 2 FETCH (UID 2 FLAGS (\\Flagged \\Recent))
S: c OK FETCH done
C: d STORE 2 -FLAGS (\\Flagged)
S: * 2 FETCH (FLAGS (\\Recent))
S: d OK STORE done
C: e FETCH 1 (FLAGS)
S: * 1 FETCH (FLAGS (\\Flagged \\Recent))
S: e OK FETCH done
""")


def test_copy_into_a_mailbox_that_holds_the_email_makes_a_second_one(server: Server) -> None:
    run(server.imap_port, ALICE + f"""
C: c1 CREATE Work
S~ c1 OK .*
C: a1 APPEND INBOX {SAME}
S~ a1 OK .*
""" + SELECT_INBOX + """
C: b COPY 1 Work
S~ b OK \\[COPYUID (?P<w>\\d+) 1 1\\] .*
C: c COPY 1 Work
S: c OK [COPYUID ${w} 1 2] COPY completed
C: d STATUS Work (MESSAGES UIDNEXT)
S: * STATUS Work (MESSAGES 2 UIDNEXT 3)
S: d OK STATUS done
""")


def test_move_to_the_same_mailbox_renumbers(server: Server) -> None:
    run(server.imap_port, ALICE + f"""
C: a1 APPEND INBOX {SAME}
S~ a1 OK .*
""" + SELECT_INBOX + """
C: b MOVE 1 INBOX
S: * OK [COPYUID ${uidvalidity} 1 2] Moved
S: * 1 EXPUNGE
S: * 1 EXISTS
S: * 1 RECENT
S: b OK MOVE done
C: c UID FETCH 1:* (FLAGS)
S: * 1 FETCH (UID 2 FLAGS (\\Recent))
S: c OK UID FETCH done
""")


def test_uidvalidity_is_never_given_twice(server: Server) -> None:
    run(server.imap_port, ALICE + r"""
C: a CREATE x
S~ a OK .*
C: b STATUS x (UIDVALIDITY)
S~ \* STATUS x \(UIDVALIDITY (?P<first>\d+)\)
S~ b OK .*
C: c APPEND x {{Subject: one\n\nbody\n}}
S: c OK [APPENDUID ${first} 1] APPEND completed
C: d DELETE x
S~ d OK .*
C: e CREATE x
S~ e OK .*
C: f STATUS x (UIDVALIDITY)
S~ \* STATUS x \(UIDVALIDITY (?P<second>\d+)\)
S~ f OK .*
""")
    # (checked outside the script: a regex cannot say "not equal")
    wire = Wire.connect(server.imap_port)
    try:
        wire.line()
        values = play(wire, ALICE + r"""
C: g STATUS x (UIDVALIDITY)
S~ \* STATUS x \(UIDVALIDITY (?P<now>\d+)\)
S~ g OK .*
C: h DELETE x
S~ h OK .*
C: i CREATE x
S~ i OK .*
C: j STATUS x (UIDVALIDITY)
S~ \* STATUS x \(UIDVALIDITY (?P<after>\d+)\)
S~ j OK .*
""")
    finally:
        wire.close()
    assert int(values["after"]) > int(values["now"])


def test_binary_size_does_not_set_seen(server: Server) -> None:
    message = r"Subject: b\nContent-Transfer-Encoding: base64\n\naGVsbG8=\n"
    run(server.imap_port, ALICE + "C: a APPEND INBOX {{" + message + r"""}}
S~ a OK .*
""" + SELECT_INBOX + r"""
C: b FETCH 1 (BINARY.SIZE[1])
S: * 1 FETCH (BINARY.SIZE[1] 5)
S: b OK FETCH done
C: c FETCH 1 (FLAGS)
S: * 1 FETCH (FLAGS (\Recent))
S: c OK FETCH done
""")


def test_append_while_another_session_expunges(server: Server) -> None:
    """One session appends messages flagged \\Deleted while another expunges in a loop: every
    APPEND answers OK with a UID, none [SERVERBUG] (the issue saw 656 of 1,317 fail)."""
    rounds = 60
    failures: list[str] = []
    done = threading.Event()

    def expunger() -> None:
        wire = Wire.connect(server.imap_port)
        wire.line()
        play(wire, ALICE + "C: s SELECT INBOX\n")
        while wire.line().startswith("*"):
            pass
        n = 0
        while not done.is_set():
            n += 1
            wire.send(f"x{n} EXPUNGE\r\n".encode())
            while True:
                line = wire.line()
                if line.startswith(f"x{n} "):
                    if not line.startswith(f"x{n} OK"):
                        failures.append(line)
                    break
        wire.close()

    thread = threading.Thread(target=expunger)
    thread.start()
    try:
        wire = Wire.connect(server.imap_port)
        wire.line()
        play(wire, ALICE)
        for n in range(rounds):
            body = f"Subject: race {n}\r\n\r\nbody\r\n"
            wire.send(f"a{n} APPEND INBOX (\\Deleted) {{{len(body)}+}}\r\n{body}\r\n".encode())
            while True:
                line = wire.line()
                if line.startswith(f"a{n} "):
                    if "APPENDUID" not in line or not line.startswith(f"a{n} OK"):
                        failures.append(line)
                    break
        wire.close()
    finally:
        done.set()
        thread.join()
    assert failures == []


def _selecting(tag: str, command: str, recent: int, mode: str, *, closed: bool = False) -> str:
    """SELECT/EXAMINE INBOX of one message, as a script: `recent` in its RECENT line."""
    permanent = r"\(\)\]" if mode == "READ-ONLY" else ""
    return (f"C: {tag} {command} INBOX\n"
            + ("S: * OK [CLOSED] Previous mailbox closed\n" if closed else "")
            + f"S~ \\* FLAGS .*\nS~ \\* OK \\[PERMANENTFLAGS {permanent}.*\n"
            + f"S: * 1 EXISTS\nS: * {recent} RECENT\n"
            + "S-~ \\* OK \\[UNSEEN \\d+\\].*\n"
            + "".join(f"S~ \\* OK \\[{code} .*\n"
                      for code in ("UIDVALIDITY", "UIDNEXT", "HIGHESTMODSEQ", "MAILBOXID"))
            + f"S~ {tag} OK \\[{mode}\\] .*\n")


def test_recent_belongs_to_the_first_session_and_status_counts_it(server: Server) -> None:
    """RFC 3501 §2.3.2: \\Recent goes to the first session that selects the mailbox after
    the message came; STATUS RECENT counts what no session has seen; EXAMINE does not take
    it; IMAP4rev2 (RFC 9051) has no RECENT at all."""
    first = Wire.connect(server.imap_port)
    second = Wire.connect(server.imap_port)
    try:
        for wire in (first, second):
            wire.line()
            play(wire, ALICE)
        play(first, r"""
C: a APPEND INBOX {{Subject: one\n\nbody\n}}
S~ a OK .*
C: b STATUS INBOX (MESSAGES RECENT)
S: * STATUS INBOX (MESSAGES 1 RECENT 1)
S: b OK STATUS done
""" + _selecting("c", "EXAMINE", 1, "READ-ONLY") + r"""
""" + _selecting("d", "SELECT", 1, "READ-WRITE", closed=True) + r"""
C: e SEARCH RECENT
S: * SEARCH 1
S: e OK SEARCH done
""")
        play(second, r"""
C: f STATUS INBOX (RECENT)
S: * STATUS INBOX (RECENT 0)
S: f OK STATUS done
""" + _selecting("g", "SELECT", 0, "READ-WRITE") + r"""
C: h FETCH 1 FLAGS
S: * 1 FETCH (FLAGS ())
S: h OK FETCH done
C: i ENABLE IMAP4rev2
S: * ENABLED IMAP4rev2
S: i OK ENABLE done
""")
        play(first, r"""
C: j APPEND INBOX {{Subject: two\n\nbody\n}}
S: * 2 EXISTS
S: * 2 RECENT
S~ j OK .*
C: k FETCH 2 FLAGS
S: * 2 FETCH (FLAGS (\Recent))
S: k OK FETCH done
""")
        play(second, r"""
C: l NOOP
S: * 2 EXISTS
S: l OK NOOP done
""")
    finally:
        first.close()
        second.close()


def test_a_new_keyword_is_announced_to_every_session(server: Server) -> None:
    """RFC 3501 §7.2.6: a session learns of a keyword from FLAGS (and PERMANENTFLAGS) before
    a FETCH shows it, whichever session made it."""
    first = Wire.connect(server.imap_port)
    second = Wire.connect(server.imap_port)
    try:
        for wire in (first, second):
            wire.line()
            play(wire, ALICE)
        play(first, "C: a APPEND INBOX {{Subject: one\\n\\nbody\\n}}\nS~ a OK .*\n")
        for wire in (first, second):
            play(wire, SELECT_INBOX)
        play(first, r"""
C: b STORE 1 +FLAGS ($Important)
S: * FLAGS (\Answered \Flagged \Deleted \Seen \Draft $Important)
S: * OK [PERMANENTFLAGS (\Answered \Flagged \Deleted \Seen \Draft $Important \*)] Flags permitted
S~ \* 1 FETCH \(FLAGS \(\$Important( \\Recent)?\)\)
S: b OK STORE done
""")
        play(second, r"""
C: c NOOP
S: * FLAGS (\Answered \Flagged \Deleted \Seen \Draft $Important)
S: * OK [PERMANENTFLAGS (\Answered \Flagged \Deleted \Seen \Draft $Important \*)] Flags permitted
S~ \* 1 FETCH \(UID 1 FLAGS \(\$Important( \\Recent)?\)\)
S: c OK NOOP done
C: d SELECT INBOX
S: * OK [CLOSED] Previous mailbox closed
S: * FLAGS (\Answered \Flagged \Deleted \Seen \Draft $Important)
S~ \* OK \[PERMANENTFLAGS .*\$Important \\\*\)\] .*
""")
    finally:
        first.close()
        second.close()


def test_modseq_never_goes_back_for_a_session(server: Server) -> None:
    """RFC 7162 §3.1: what a session is told of a message's MODSEQ only grows. Session A
    stores twice; session B, which stored in between, is told A's changes in order and never
    an older one after its own newer STORE reply."""
    a = Wire.connect(server.imap_port)
    b = Wire.connect(server.imap_port)
    try:
        for wire in (a, b):
            wire.line()
            play(wire, ALICE)
        play(a, "C: x APPEND INBOX {{Subject: one\\n\\nbody\\n}}\nS~ x OK .*\n")
        for wire in (a, b):
            play(wire, "C: e ENABLE CONDSTORE\nS~ \\* ENABLED.*\nS~ e OK .*\n" + SELECT_INBOX)
        values = play(a, r"""
C: a1 STORE 1 +FLAGS (\Answered)
S~ \* 1 FETCH \(UID 1 FLAGS \(\\Answered( \\Recent)?\) MODSEQ \((?P<m1>\d+)\)\)
S: a1 OK STORE done
""")
        values = play(b, r"""
C: b1 STORE 1 +FLAGS ($a)
S: * FLAGS (\Answered \Flagged \Deleted \Seen \Draft $a)
S~ \* OK \[PERMANENTFLAGS .*
S~ \* 1 FETCH \(UID 1 FLAGS \(\$a \\Answered\) MODSEQ \((?P<m2>\d+)\)\)
S: b1 OK STORE done
C: b2 NOOP
S: b2 OK NOOP done
C: b3 FETCH 1 (FLAGS MODSEQ)
S: * 1 FETCH (MODSEQ (${m2}) FLAGS ($a \Answered))
S: b3 OK FETCH done
""", values)
        assert int(values["m2"]) > int(values["m1"])
    finally:
        a.close()
        b.close()
