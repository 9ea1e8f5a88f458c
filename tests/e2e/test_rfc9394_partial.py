"""RFC 9394 PARTIAL for FETCH, as a transcript (SEARCH's PARTIAL is in test_rfc_search.py):
the window counts the messages the FETCH returns (those changed since CHANGEDSINCE when it is
given), from the first or, for a negative range, from the last."""

from __future__ import annotations

from tests.e2e.server import Server
from tests.e2e.transcript import LOGIN, run


def _appends(count: int) -> str:
    return "".join(f"C: a{n} APPEND INBOX {{{{Subject: m{n}\\n\\nbody\\n}}}}\nS~ a{n} OK .*\n"
                   for n in range(1, count + 1))


def test_fetch_partial(server: Server) -> None:
    run(server.imap_port, LOGIN.format(user="alice@example.test") + _appends(5) + r"""
C: e ENABLE IMAP4rev2 CONDSTORE
S: * ENABLED IMAP4rev2 CONDSTORE
S: e OK ENABLE done
C: s SELECT INBOX
S~ \* FLAGS .*
S~ \* OK \[PERMANENTFLAGS .*
S: * 5 EXISTS
S~ \* OK \[UIDVALIDITY .*
S~ \* OK \[UIDNEXT .*
S~ \* OK \[HIGHESTMODSEQ (?P<hms>\d+)\].*
S~ \* OK \[MAILBOXID .*
S~ s OK \[READ-WRITE\] .*
C: f1 UID FETCH 1:* (FLAGS) (PARTIAL -1:-2)
S~ \* 4 FETCH \(UID 4 FLAGS \(\) MODSEQ \(\d+\)\)
S~ \* 5 FETCH \(UID 5 FLAGS \(\) MODSEQ \(\d+\)\)
S: f1 OK UID FETCH done
C: f2 UID FETCH 1:* (UID) (PARTIAL 2:3)
S: * 2 FETCH (UID 2)
S: * 3 FETCH (UID 3)
S: f2 OK UID FETCH done
C: f3 UID FETCH 1:* (UID) (PARTIAL 9:10)
S: f3 OK UID FETCH done
C: st STORE 1,3 +FLAGS.SILENT (\Flagged)
S~ \* 1 FETCH \(UID 1 MODSEQ \(\d+\)\)
S~ \* 3 FETCH \(UID 3 MODSEQ \(\d+\)\)
S: st OK STORE done
C: f4 UID FETCH 1:* (FLAGS) (CHANGEDSINCE ${hms} PARTIAL -1:-1)
S~ \* 3 FETCH \(UID 3 MODSEQ \(\d+\) FLAGS \(\\Flagged\)\)
S: f4 OK UID FETCH done
C: f5 UID FETCH 1:* (UID) (PARTIAL 0:3)
S~ f5 BAD .*
C: f6 UID FETCH 1:* (UID) (PARTIAL 1:2 PARTIAL 1:2)
S~ f6 BAD .*
""")
