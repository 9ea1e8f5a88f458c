"""CATENATE (RFC 4469) as scripted transcripts: APPEND of a message made of TEXT literals and
IMAP URLs (RFC 5092) to the user's own messages, with MULTIAPPEND (RFC 3502) and LITERAL+.

A URL is fetched as BODY.PEEK[section]<partial> (the source keeps its flags); a URL that names
nothing of this user on this server answers NO [BADURL url], a result over APPENDLIMIT
NO [TOOBIG]; either way nothing of the APPEND is stored. After ENABLE UTF8=ACCEPT a part may
be UTF8 (literal8) (RFC 6855 §4).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.server import Server
from tests.e2e.transcript import LOGIN, run

ALICE = LOGIN.format(user="alice@example.test")

SOURCE = ("{{From: a@example.test\\nSubject: source\\nMIME-Version: 1.0\\n"
          "Content-Type: multipart/mixed; boundary=x\\n\\n"
          "--x\\nContent-Type: text/plain\\n\\nfirst part\\n"
          "--x\\nContent-Type: text/plain\\n\\nsecond part\\n--x--\\n}}")
HEADER = ("From: a@example.test\\r\\nSubject: source\\r\\nMIME-Version: 1.0\\r\\n"
          "Content-Type: multipart/mixed; boundary=x\\r\\n\\r\\n")

SETUP = ALICE + f"""
C: a APPEND INBOX {SOURCE}
S~ a OK \\[APPENDUID (?P<v>\\d+) 1\\] .*
"""

EXAMINE_DRAFTS = r"""
C: s EXAMINE Drafts
S-~ \* .*
S-~ \* .*
S-~ \* .*
S-~ \* .*
S-~ \* .*
S-~ \* .*
S-~ \* .*
S-~ \* .*
S-~ \* .*
S-~ \* .*
S~ s OK \[READ-ONLY\] .*
"""

REDRAFT = " ".join([
    'URL "/INBOX;UIDVALIDITY=${v}/;UID=1/;SECTION=HEADER"',
    "TEXT {{--x\\nContent-Type: text/plain\\n\\nnew text\\n--x\\n}}",
    'URL "/INBOX/;uid=1/;section=2.MIME"',
    'URL "/INBOX/;UID=1/;SECTION=2"',
    "TEXT {{\\n--x--\\n}}",
])
"""A new draft from the source's header and second part: the URLs of RFC 4469 §5's example."""

ABSOLUTE = ("imap://alice%40example.test@mx.example.test"
            "/INBOX;UIDVALIDITY=${v}/;UID=1/;SECTION=1/;PARTIAL=0.5")

MULTI = 'CATENATE (TEXT {{Subject: joined\\n\\n}} URL "' + ABSOLUTE + '" TEXT {{!\\n}})'
"""The second message of a MULTIAPPEND: an absolute URL (RFC 5092) with ;PARTIAL (RFC 5550)."""

DRAFTS_EMPTY = r"""
C: z STATUS Drafts (MESSAGES)
S: * STATUS Drafts (MESSAGES 0)
S: z OK STATUS done
"""


def test_capability_and_catenate_of_urls_and_text(server: Server) -> None:
    run(server.imap_port, SETUP + r"""
C: c CAPABILITY
S~ \* CAPABILITY .* MULTIAPPEND CATENATE .*
S: c OK CAPABILITY done
C: b APPEND Drafts (\Draft) CATENATE (""" + REDRAFT + r""")
S~ b OK \[APPENDUID \d+ 1\] .*
""" + EXAMINE_DRAFTS + r"""
C: f FETCH 1 (RFC822.SIZE BODY.PEEK[1] BODY.PEEK[2] FLAGS)
S~ \* 1 FETCH \(RFC822.SIZE 199 BODY\[1\] \{8\}new text BODY\[2\] \{11\}second part .*\)
S: f OK FETCH done
""" + f"""
C: g FETCH 1 BODY.PEEK[HEADER]
S: * 1 FETCH (BODY[HEADER] {{103}}{HEADER})
S: g OK FETCH done
# the source was read as BODY.PEEK: still unseen
C: h STATUS INBOX (UNSEEN)
S: * STATUS INBOX (UNSEEN 1)
S: h OK STATUS done
""")


def test_absolute_url_partial_and_multiappend(server: Server) -> None:
    run(server.imap_port, SETUP + r"""
C: b APPEND Drafts {{Subject: plain\n\nbody\n}} """ + MULTI + r"""
S~ b OK \[APPENDUID \d+ 1:2\] .*
""" + EXAMINE_DRAFTS + r"""
C: f FETCH 2 BODY.PEEK[]
S: * 2 FETCH (BODY[] {27}Subject: joined\r\n\r\nfirst!\r\n)
S: f OK FETCH done
""")


@pytest.mark.parametrize("url", [
    "/INBOX;UIDVALIDITY=1/;UID=1",  # UIDVALIDITY that is not the mailbox's
    "/INBOX/;UID=7",  # no such message
    "/Nowhere/;UID=1",  # no such mailbox
    "/INBOX/;UID=1/;SECTION=9",  # no such part
    "/INBOX/;UID=1/;SECTION=FOO",  # no such section
    "imap://bob%40example.test@mx.example.test/INBOX/;UID=1",  # another user's mail
    "imap://alice%40example.test@elsewhere.test/INBOX/;UID=1",  # another server
    "imap://mx.example.test/INBOX/;UID=1",  # anonymous
    "http://example.test/",
    "INBOX/;UID=1",
])
def test_badurl_stores_nothing(server: Server, url: str) -> None:
    first = "{{Subject: first\\n\\nfirst\\n}}"
    run(server.imap_port, SETUP + f"""
C: b APPEND Drafts {first} CATENATE (TEXT {{{{Subject: x\\n\\n}}}} URL "{url}")
S~ b NO \\[BADURL {re.escape(url)}\\] Cannot use that URL: .*
""" + DRAFTS_EMPTY)


@pytest.mark.parametrize("data", [
    "CATENATE ()",
    'CATENATE (TEXT "abc")',
    'CATENATE (FOO "abc")',
    "CATENATE (URL)",
    "CATENATE",
])
def test_bad_syntax(server: Server, data: str) -> None:
    run(server.imap_port, ALICE + f"""
C: b APPEND Drafts {data}
S~ b BAD .*
""" + DRAFTS_EMPTY)


def test_utf8_part_after_enable(server: Server) -> None:
    """RFC 6855 §4: cat-part =/ "UTF8" SP "(" literal8 ")", once UTF8=ACCEPT is enabled."""
    run(server.imap_port, SETUP + r"""
C: b APPEND Drafts CATENATE (UTF8 (~{{Subject: x\n\nb\n}}))
S~ b BAD .*
C: e ENABLE UTF8=ACCEPT
S: * ENABLED UTF8=ACCEPT
S~ e OK .*
C: c APPEND Drafts CATENATE (UTF8 (~{{Subject: héllo\n\n}}) URL "/INBOX/;UID=1/;SECTION=1")
S~ c OK \[APPENDUID \d+ 1\] .*
""" + EXAMINE_DRAFTS + r"""
C: f FETCH 1 BODY.PEEK[]
S: * 1 FETCH (BODY[] {29}Subject: h\xc3\xa9llo\r\n\r\nfirst part)
S: f OK FETCH done
""")


@pytest.fixture
def small_server(tmp_path: Path) -> Iterator[Server]:
    srv = Server(tmp_path, limits={"message_size": 4096})
    srv.add_user("alice@example.test")
    srv.start()
    yield srv
    srv.stop()


def test_toobig(small_server: Server) -> None:
    body = "x" * 70 + "\\n"
    big = "{{Subject: big\\n\\n" + body * 40 + "}}"  # about 2900 octets: under the limit
    run(small_server.imap_port, ALICE + f"""
C: a APPEND INBOX {big}
S~ a OK \\[APPENDUID \\d+ 1\\] .*
C: b APPEND Drafts CATENATE (URL "/INBOX/;UID=1" URL "/INBOX/;UID=1")
S~ b NO \\[TOOBIG\\] .*
C: c APPEND Drafts CATENATE (URL "/INBOX/;UID=1" TEXT {{{{more\\n}}}})
S~ c OK \\[APPENDUID \\d+ 1\\] .*
""")
