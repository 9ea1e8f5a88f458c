"""MULTIAPPEND (RFC 3502) and BINARY APPEND (RFC 3516) against the real listener.

Several messages in one APPEND are stored together or not at all: a third message over
APPENDLIMIT, with a flag a client cannot set, empty, or over the account's quota leaves the
mailbox as it was. The raw socket client of test_imap_utf8_compress speaks the literals.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.server import Server
from tests.e2e.test_imap import PASSWORD
from tests.e2e.test_imap_utf8_compress import Wire

USER = "alice@example.test"
LIMIT = 4096


@pytest.fixture
def small_server(tmp_path: Path) -> Iterator[Server]:
    srv = Server(tmp_path, limits={"message_size": LIMIT})
    srv.add_user(USER)
    srv.start()
    yield srv
    srv.stop()


def login(server: Server) -> Wire:
    w = Wire(server.imap_port)
    tagged, _ = w.command(f'LOGIN "{USER}" "{PASSWORD}"'.encode())
    assert b" OK " in tagged
    return w


def msg(n: int, body: bytes = b"hello") -> bytes:
    return (b"From: a@remote.test\r\nTo: alice@example.test\r\nSubject: multi %d\r\n"
            b"Message-ID: <m%d-%d@remote.test>\r\n\r\n" % (n, n, time.time_ns())) + body + b"\r\n"


def append(w: Wire, mailbox: bytes, parts: list[tuple[bytes, bytes]]) -> bytes:
    """APPEND with one (prefix, data) per message; prefix is flags/date and the literal mark."""
    text = b"APPEND " + mailbox
    literals = []
    for prefix, data in parts:
        text += b" " + prefix % len(data) + b"\r\n"
        literals.append(data)
    tagged, _ = w.command(text, *literals)
    return tagged


def inbox_subjects(server: Server) -> list[str]:
    return sorted(e["subject"] for e in server.emails(USER, label="INBOX"))


def test_multiappend_stores_all_with_one_appenduid_set(server: Server) -> None:
    w = login(server)
    tagged = append(w, b"INBOX", [(b"(\\Seen) {%d}", msg(1)),
                                  (b'(\\Flagged $Work) " 7-Feb-2024 22:43:04 -0800" {%d}', msg(2)),
                                  (b"{%d}", msg(3))])
    m = re.search(rb"\[APPENDUID (\d+) ([0-9:,]+)\]", tagged)
    assert m, tagged
    assert m.group(2) == b"1:3"
    tagged, lines = w.command(b"SELECT INBOX")
    assert b"* 3 EXISTS\r\n" in lines and b"[UIDVALIDITY %s]" % m.group(1) in b"".join(lines)
    tagged, lines = w.command(b"UID FETCH 1:3 (FLAGS INTERNALDATE BODY.PEEK[HEADER.FIELDS "
                              b"(SUBJECT)])")
    text = b"".join(lines)
    assert re.search(rb"UID 1 [^*]*\\Seen", text) and b"multi 1" in text
    assert re.search(rb"UID 2 INTERNALDATE \"08-Feb-2024 06:43:04 \+0000\"", text), text
    assert b"$work" in text.lower() and b"\\Flagged" in text
    assert inbox_subjects(server) == ["multi 1", "multi 2", "multi 3"]
    w.close()


def test_a_bad_third_message_stores_none(small_server: Server) -> None:
    server = small_server
    w = login(server)
    ok = [(b"{%d}", msg(1)), (b"{%d}", msg(2))]
    # over APPENDLIMIT: refused before its octets are sent, no "+" for it
    assert f"APPENDLIMIT={LIMIT}".encode() in w.command(b"CAPABILITY")[1][0]
    text = b"APPEND INBOX {%d}\r\n {%d}\r\n {%d}" % (len(msg(1)), len(msg(2)), LIMIT + 1)
    w.n += 1
    tag = b"w%d" % w.n
    pieces = (tag + b" " + text).split(b"\r\n")
    for piece, literal in zip(pieces[:2], [msg(1), msg(2)], strict=True):
        w.send(piece + b"\r\n")
        assert w.line().startswith(b"+")
        w.send(literal)
    w.send(pieces[2] + b"\r\n")
    tagged, _ = w.response(tag)
    assert b"NO [TOOBIG]" in tagged, tagged
    # a flag the client cannot set
    assert b" BAD " in append(w, b"INBOX", [*ok, (b"(\\Recent) {%d}", msg(3))])
    assert b" BAD " in append(w, b"INBOX", [*ok, (b"(\\Bogus) {%d}", msg(3))])
    # an empty message
    assert b" NO " in append(w, b"INBOX", [*ok, (b"{%d}", b"")])
    # no such mailbox
    assert b"NO [TRYCREATE]" in append(w, b"Nowhere", ok)
    assert inbox_subjects(server) == []
    # and the stream is still in step: a good one goes in
    assert b"[APPENDUID " in append(w, b"INBOX", ok)
    assert inbox_subjects(server) == ["multi 1", "multi 2"]
    w.close()


def test_over_quota_in_the_third_stores_none(server: Server) -> None:
    w = login(server)
    assert b" OK " in append(w, b"INBOX", [(b"{%d}", msg(0))])
    used = len(msg(0))
    server.cli("user", "quota", USER, str(used + 2 * len(msg(1)) + 10))
    parts = [(b"{%d}", msg(1)), (b"{%d}", msg(2)), (b"{%d}", msg(3, b"x" * 200))]
    tagged = append(w, b"INBOX", parts)
    assert b"NO [OVERQUOTA]" in tagged, tagged
    assert inbox_subjects(server) == ["multi 0"]
    assert b"[APPENDUID " in append(w, b"INBOX", parts[:2])
    assert inbox_subjects(server) == ["multi 0", "multi 1", "multi 2"]
    w.close()


def test_binary_append_literal8_with_nul(server: Server) -> None:
    """RFC 3516 §4.4: NUL octets only in a literal8 (~{n}); in a literal they are BAD."""
    w = login(server)
    data = (b"From: a@remote.test\r\nSubject: binary\r\nContent-Type: application/octet-stream"
            b"\r\nContent-Transfer-Encoding: binary\r\n\r\n\x00\x01\x02\xff\x00 end\r\n")
    assert b" BAD " in append(w, b"INBOX", [(b"{%d}", data)])
    assert inbox_subjects(server) == []
    tagged = append(w, b"INBOX", [(b"~{%d}", data), (b"{%d}", msg(2))])
    assert b"[APPENDUID " in tagged, tagged
    [binary] = [e for e in server.emails(USER) if e["subject"] == "binary"]
    assert server.raw(USER, binary["id"]) == data
    w.command(b"SELECT INBOX")
    tagged, lines = w.command(b"UID FETCH 1 (BINARY.PEEK[1])")
    assert b" OK " in tagged
    assert b"BINARY[1] ~{11}\r\n\x00\x01\x02\xff\x00 end\r\n" in b"".join(lines)
    # non-synchronising literal8 in a MULTIAPPEND, too
    w.n += 1
    tag = b"w%d" % w.n
    other = data.replace(b"binary", b"binary2")
    w.send(tag + b" APPEND INBOX ~{%d+}\r\n" % len(data) + data
           + b" ~{%d+}\r\n" % len(other) + other + b"\r\n")
    tagged, _ = w.response(tag)
    assert b"[APPENDUID " in tagged and b" 3:4]" in tagged, tagged
    w.close()
