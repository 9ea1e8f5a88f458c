"""FETCH of body data sets \\Seen (RFC 3501 §6.4.5, RFC 9051 §6.4.5) as scripted transcripts:
the responses carry the new FLAGS (and MODSEQ once CONDSTORE is on, RFC 7162 §3.2), a message
already \\Seen or fetched with .PEEK is left alone, and the flag change of one FETCH over many
messages is one storage write: each message's MODSEQ steps once, to the same value, and
another session is told of all three at once."""

from __future__ import annotations

from tests.e2e.server import Server
from tests.e2e.transcript import LOGIN, Wire, play

ALICE = LOGIN.format(user="alice@example.test")

SETUP = r"""
C: a1 APPEND INBOX {{Subject: one\n\nfirst body\n}}
S~ a1 OK \[APPENDUID \d+ 1\] .*
C: a2 APPEND INBOX (\Seen) {{Subject: two\n\nsecond body\n}}
S~ a2 OK \[APPENDUID \d+ 2\] .*
C: a3 APPEND INBOX {{Subject: three\n\nthird body\n}}
S~ a3 OK \[APPENDUID \d+ 3\] .*
C: a4 APPEND INBOX {{Subject: four\n\nfourth body\n}}
S~ a4 OK \[APPENDUID \d+ 4\] .*
C: e ENABLE CONDSTORE
S: * ENABLED CONDSTORE
S~ e OK .*
C: s SELECT INBOX
S~ \* FLAGS .*
S~ \* OK \[PERMANENTFLAGS .*
S: * 4 EXISTS
S~ \* \d+ RECENT
S-~ \* OK \[UNSEEN \d+\].*
S~ \* OK \[UIDVALIDITY \d+\].*
S~ \* OK \[UIDNEXT \d+\].*
S~ \* OK \[HIGHESTMODSEQ (?P<before>\d+)\].*
S~ \* OK \[MAILBOXID .*
S~ s OK \[READ-WRITE\] .*
"""

WATCHER = r"""
C: w1 SELECT INBOX (CONDSTORE)
S~ \* FLAGS .*
S~ \* OK \[PERMANENTFLAGS .*
S: * 4 EXISTS
S~ \* \d+ RECENT
S-~ \* OK \[UNSEEN \d+\].*
S~ \* OK \[UIDVALIDITY \d+\].*
S~ \* OK \[UIDNEXT \d+\].*
S~ \* OK \[HIGHESTMODSEQ \d+\].*
S~ \* OK \[MAILBOXID .*
S~ w1 OK \[READ-WRITE\] .*
"""


def fetched(n: int, body: str, subject: str, modseq: str | None) -> str:
    """The expected response to message n of the FETCH below: its new FLAGS and MODSEQ
    (captured as `modseq`) if it was unseen; this session is the first to see the messages
    (\\Recent, RFC 3501 §2.3.2)."""
    text = rf"{body} body\\r\\n"  # a literal's CR LF, as the transcript spells it
    head = rf"Subject: {subject}\\r\\n\\r\\n"
    line = (rf"S~ \* {n} FETCH \(BODY\[TEXT\] \{{{len(body) + 7}\}}{text} "
            rf"BODY\[HEADER.FIELDS \(SUBJECT\)\] \{{{len(subject) + 13}\}}{head}")
    if modseq is not None:
        line += rf" FLAGS \(\\Seen \\Recent\) MODSEQ \((?P<{modseq}>\d+)\)"
    return line + r"\)" + "\n"


def test_one_fetch_sets_seen_on_many_in_one_step_each(server: Server) -> None:
    main = Wire.connect(server.imap_port)
    watcher = Wire.connect(server.imap_port)
    try:
        for wire in (main, watcher):
            assert wire.line().startswith("* OK")  # the greeting
        got = play(main, ALICE + SETUP)
        play(watcher, ALICE + WATCHER)
        got = play(main, "C: f FETCH 1:4 (BODY[TEXT] BODY.PEEK[HEADER.FIELDS (SUBJECT)])\n"
                   + fetched(1, "first", "one", "m1") + fetched(2, "second", "two", None)
                   + fetched(3, "third", "three", "m3") + fetched(4, "fourth", "four", "m4")
                   + r"""S: f OK FETCH done
C: p FETCH 1:4 BODY.PEEK[TEXT]
S: * 1 FETCH (BODY[TEXT] {12}first body\r\n)
S: * 2 FETCH (BODY[TEXT] {13}second body\r\n)
S: * 3 FETCH (BODY[TEXT] {12}third body\r\n)
S: * 4 FETCH (BODY[TEXT] {13}fourth body\r\n)
S: p OK FETCH done
C: n NOOP
S: n OK NOOP done
""", got)
        before, seen = int(got["before"]), sorted(int(got[k]) for k in ("m1", "m3", "m4"))
        # One storage write: every message steps once, to the same new MODSEQ (RFC 7162 lets
        # one operation give its messages one mod-sequence), not one write per message.
        assert seen == [before + 1] * 3, (before, seen)
        # The other session hears of the three at its next command (UID too: CONDSTORE).
        told = "".join(rf"S?~ \* (?P<n{k}>\d) FETCH \(UID \d FLAGS \(\\Seen\) "
                       rf"MODSEQ \({seen[0]}\)\)" + "\n" for k in range(3))
        heard = play(watcher, "C: w2 NOOP\n" + told + "S: w2 OK NOOP done\n")
        assert sorted(heard[f"n{k}"] for k in range(3)) == ["1", "3", "4"], heard
    finally:
        main.close()
        watcher.close()
