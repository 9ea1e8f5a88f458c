"""IMAP UTF8=ACCEPT (RFC 6855) and COMPRESS=DEFLATE (RFC 4978) against the real listener.

UTF-8 is driven with imaplib (which speaks ENABLE UTF8=ACCEPT) and imapclient; the `UTF8 (...)`
APPEND form over a raw socket, since imaplib's own (3.11) counts "UTF8 (" into the literal.
COMPRESS is driven by a raw socket client that inflates and deflates with zlib itself, and by
mbsync (isync), which asks for COMPRESS DEFLATE whenever the server offers it.
"""

from __future__ import annotations

import contextlib
import imaplib
import re
import socket
import subprocess
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from imapclient import IMAPClient

from tests.e2e.server import Server
from tests.e2e.test_imap import PASSWORD, deliver
from tests.e2e.test_imap_clients import mbsync_config

USER = "alice@example.test"


class Wire:
    """A raw IMAP client over a socket that can switch itself to raw deflate (wbits -15)."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.buffer = b""
        self.inflate: zlib._Decompress | None = None
        self.deflate: zlib._Compress | None = None
        self.sent_raw = 0
        self.received_raw = 0
        self.n = 0
        self.line()  # greeting

    def send(self, data: bytes) -> None:
        if self.deflate is not None:
            data = self.deflate.compress(data) + self.deflate.flush(zlib.Z_SYNC_FLUSH)
        self.sent_raw += len(data)
        self.sock.sendall(data)

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError("server closed the connection")
        self.received_raw += len(chunk)
        self.buffer += self.inflate.decompress(chunk) if self.inflate is not None else chunk

    def line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            self._fill()
        line, _, self.buffer = self.buffer.partition(b"\r\n")
        return line + b"\r\n"

    def exactly(self, n: int) -> bytes:
        while len(self.buffer) < n:
            self._fill()
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def response(self, tag: bytes) -> tuple[bytes, list[bytes]]:
        """Lines (literals inline) up to the tagged one; returns (tagged line, the rest)."""
        lines: list[bytes] = []
        while True:
            line = self.line()
            m = re.search(rb"\{(\d+)\}\r\n\Z", line)
            if m:
                line += self.exactly(int(m.group(1)))
                line += self.line()
            if line.startswith(tag + b" "):
                return line, lines
            lines.append(line)

    def command(self, text: bytes, *literals: bytes) -> tuple[bytes, list[bytes]]:
        """`text` may hold `{n}` markers; each synchronising literal waits for "+"."""
        self.n += 1
        tag = b"w%d" % self.n
        pieces = re.split(rb"(?<=[0-9]\})\r\n", tag + b" " + text)
        assert len(pieces) == len(literals) + 1
        for piece, literal in zip(pieces, literals, strict=False):
            self.send(piece + b"\r\n")
            cont = self.line()
            assert cont.startswith(b"+"), cont
            self.send(literal)
        self.send(pieces[-1] + b"\r\n")
        return self.response(tag)

    def start_compress(self) -> bytes:
        tagged, _ = self.command(b"COMPRESS DEFLATE")
        if tagged.split()[1] == b"OK":
            assert self.buffer == b""  # nothing may follow the OK uncompressed
            self.inflate = zlib.decompressobj(-15)
            self.deflate = zlib.compressobj(6, zlib.DEFLATED, -15)
        return tagged

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


@pytest.fixture
def wire(server: Server) -> Iterator[Wire]:
    w = Wire(server.imap_port)
    tagged, _ = w.command(f'LOGIN "{USER}" "{PASSWORD}"'.encode())
    assert b" OK " in tagged
    yield w
    w.close()


def utf8_message(subject: str) -> bytes:
    """A message with raw 8-bit UTF-8 headers (RFC 6532), no encoded words."""
    return (f"From: Zoë Ünïcode <zoe@remote.test>\r\nTo: {USER}\r\n"
            f"Subject: {subject}\r\nMessage-ID: <{time.time_ns()}@remote.test>\r\n"
            "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
            "Content-Transfer-Encoding: 8bit\r\n\r\nGrüße aus Köln.\r\n").encode()


# ------------------------------------------------------------------------------ UTF8=ACCEPT


def test_utf8_accept_names_both_ways(server: Server) -> None:
    """A client that enabled UTF8=ACCEPT names mailboxes in UTF-8; one that did not sees the
    same mailbox in modified UTF-7, and both reach it."""
    modern = imaplib.IMAP4("127.0.0.1", server.imap_port)
    assert "UTF8=ACCEPT" in modern.capabilities
    modern.login(USER, PASSWORD)
    typ, data = modern.enable("UTF8=ACCEPT")
    assert typ == "OK" and modern.untagged_responses.get("ENABLED") in (None, [b"UTF8=ACCEPT"])
    assert modern._simple_command("CREATE", '"Réunions/Über"')[0] == "OK"
    typ, listed = modern.list()
    assert typ == "OK"
    assert any('"Réunions/Über"'.encode() in line for line in listed if isinstance(line, bytes))
    assert any(b'"R\xc3\xa9unions"' in line for line in listed if isinstance(line, bytes))
    assert modern.select('"Réunions/Über"')[0] == "OK"
    typ, status = modern.status('"Réunions"', "(MESSAGES)")
    assert typ == "OK" and "Réunions".encode() in status[0]
    modern.logout()

    legacy = imaplib.IMAP4("127.0.0.1", server.imap_port)
    legacy.login(USER, PASSWORD)
    typ, listed = legacy.list()
    names = b"\n".join(line for line in listed if isinstance(line, bytes))
    assert b"R&AOk-unions/&ANw-ber" in names and b"\xc3" not in names
    assert legacy.select("R&AOk-unions/&ANw-ber")[0] == "OK"
    # 8-bit in a mailbox name from a client that did not enable UTF-8 is no valid modified
    # UTF-7 name: NO (as Dovecot), not BAD (issue 16)
    typ, _ = legacy._simple_command("SELECT", b'"R\xc3\xa9unions"')
    assert typ == "NO"
    legacy.logout()


def test_imapclient_utf8_folders(server: Server) -> None:
    """imapclient encodes folder names itself: mUTF-7 by default, UTF-8 once it enabled it."""
    with IMAPClient("127.0.0.1", port=server.imap_port, ssl=False) as client:
        client.login(USER, PASSWORD)
        client.create_folder("Bücher")
        names = [name for _, _, name in client.list_folders()]
        assert "Bücher" in names  # decoded from &APw-
    with IMAPClient("127.0.0.1", port=server.imap_port, ssl=False) as client:
        client.login(USER, PASSWORD)
        assert client.enable("UTF8=ACCEPT") == [b"UTF8=ACCEPT"]
        client.folder_encode = False
        raw = client._imap.list('""', "*")[1]
        assert any("Bücher".encode() in line for line in raw if isinstance(line, bytes))


def test_utf8_append_form_and_8bit_headers_returned_as_is(server: Server, wire: Wire) -> None:
    message = utf8_message("Grüße — ünïcode")
    tagged, _ = wire.command(b"APPEND INBOX UTF8 (~{%d}\r\n)" % len(message), message)
    assert b" BAD " in tagged  # the UTF8 form only after ENABLE UTF8=ACCEPT
    tagged, lines = wire.command(b"ENABLE UTF8=ACCEPT")
    assert lines == [b"* ENABLED UTF8=ACCEPT\r\n"] and b" OK " in tagged
    tagged, _ = wire.command(b"APPEND INBOX UTF8 (~{%d}\r\n)" % len(message), message)
    assert b"[APPENDUID " in tagged, tagged
    uid = int(re.search(rb"APPENDUID \d+ (\d+)", tagged).group(1))  # type: ignore[union-attr]
    [stored] = server.emails(USER)
    assert server.raw(USER, stored["id"]) == message  # stored exactly as sent

    assert b" OK " in wire.command(b"SELECT INBOX")[0]
    tagged, lines = wire.command(b"UID FETCH %d (BODY.PEEK[HEADER.FIELDS (SUBJECT FROM)])" % uid)
    assert b" OK " in tagged
    assert "Subject: Grüße — ünïcode".encode() in b"".join(lines)
    assert "From: Zoë Ünïcode".encode() in b"".join(lines)
    tagged, lines = wire.command("UID SEARCH SUBJECT \"grüße\"".encode())
    assert lines == [b"* SEARCH %d\r\n" % uid], lines
    tagged, lines = wire.command("SEARCH CHARSET UTF-8 SUBJECT \"grüße\"".encode())
    assert b" BAD " in tagged  # RFC 6855 erratum 4029: no CHARSET once UTF-8 is on
    # ENABLE UTF8=ACCEPT belongs to the authenticated state only
    second = Wire(server.imap_port)
    second.command(f'LOGIN "{USER}" "{PASSWORD}"'.encode())
    second.command(b"SELECT INBOX")
    assert b" BAD " in second.command(b"ENABLE UTF8=ACCEPT")[0]
    second.close()


def test_imaplib_reads_8bit_headers_after_enable(server: Server) -> None:
    w = Wire(server.imap_port)
    w.command(f'LOGIN "{USER}" "{PASSWORD}"'.encode())
    message = utf8_message("Überraschung")
    assert b" OK " in w.command(b"APPEND INBOX ~{%d}\r\n" % len(message), message)[0]
    w.close()
    client = imaplib.IMAP4("127.0.0.1", server.imap_port)
    client.login(USER, PASSWORD)
    client.enable("UTF8=ACCEPT")
    client.select("INBOX")
    typ, found = client.search(None, "SUBJECT", '"Überraschung"')
    assert typ == "OK" and found == [b"1"]
    typ, data = client.fetch("1", "(BODY.PEEK[HEADER])")
    first = data[0]
    assert typ == "OK" and isinstance(first, tuple)
    assert "Subject: Überraschung".encode() in first[1]
    client.logout()


def test_gmail_labels_follow_the_name_encoding(server: Server, wire: Wire) -> None:
    """X-GM-LABELS names mailboxes, so it writes them as LIST does: modified UTF-7, or UTF-8
    once enabled; STORE takes either form accordingly."""
    deliver(server, "labelled")
    wire.command(b"SELECT INBOX")
    tagged, lines = wire.command(b'STORE 1 +X-GM-LABELS ("B&APw-cher")')
    assert b" OK " in tagged and b'"B&APw-cher"' in b"".join(lines), lines
    tagged, lines = wire.command(b"FETCH 1 (X-GM-LABELS)")
    assert b'X-GM-LABELS (\\Inbox "B&APw-cher")' in b"".join(lines), lines
    utf8 = Wire(server.imap_port)
    utf8.command(f'LOGIN "{USER}" "{PASSWORD}"'.encode())
    utf8.command(b"ENABLE UTF8=ACCEPT")
    utf8.command(b"SELECT INBOX")
    tagged, lines = utf8.command(b"FETCH 1 (X-GM-LABELS)")
    assert 'X-GM-LABELS (\\Inbox "Bücher")'.encode() in b"".join(lines), lines
    tagged, lines = utf8.command('UID SEARCH X-GM-LABELS "Bücher"'.encode())
    assert lines == [b"* SEARCH 1\r\n"], lines
    utf8.close()


# ------------------------------------------------------------------------------ COMPRESS


def test_compress_deflate_both_ways(server: Server, wire: Wire) -> None:
    deliver(server, "compressed one", "compressed two")
    assert b"COMPRESS=DEFLATE" in wire.command(b"CAPABILITY")[1][0]
    assert b" OK " in wire.start_compress()
    assert wire.inflate is not None
    tagged, lines = wire.command(b"SELECT INBOX")
    assert b" OK " in tagged and b"* 2 EXISTS\r\n" in lines
    before = wire.received_raw
    tagged, lines = wire.command(b"FETCH 1:* (BODY.PEEK[])")
    assert b" OK " in tagged and len(lines) == 2
    assert b"Subject: compressed one" in lines[0]
    plain = sum(len(line) for line in lines) + len(tagged)
    assert wire.received_raw - before < plain  # it really went compressed
    # a second COMPRESS is refused, inside the compressed stream
    tagged, _ = wire.command(b"COMPRESS DEFLATE")
    assert b"NO [COMPRESSIONACTIVE]" in tagged
    # literals, synchronising and not, and a multi-message APPEND over the compressed stream
    big = b"Subject: big\r\n\r\n" + b"0123456789abcdef" * 20_000 + b"\r\n"
    small = b"Subject: small\r\n\r\nhi\r\n"
    tagged, _ = wire.command(b"APPEND INBOX (\\Seen) {%d}\r\n {%d}\r\n" % (len(big), len(small)),
                             big, small)
    assert b"[APPENDUID " in tagged, tagged
    tagged, _ = wire.command(b"APPEND INBOX {%d+}\r\n" % len(small) + small)
    assert b" OK " in tagged, tagged
    tagged, lines = wire.command(b"UID FETCH 3 (BODY.PEEK[])")
    assert b" OK " in tagged and big in lines[0]
    tagged, lines = wire.command(b"SEARCH SUBJECT small")
    assert lines == [b"* SEARCH 4 5\r\n"]


def test_compress_idle_wakes_on_delivery(server: Server, wire: Wire) -> None:
    assert b" OK " in wire.start_compress()
    assert b" OK " in wire.command(b"SELECT INBOX")[0]
    wire.n += 1
    wire.send(b"w%d IDLE\r\n" % wire.n)
    assert wire.line().startswith(b"+")
    deliver(server, "wake the compressed idler")
    wire.sock.settimeout(20)
    assert wire.line() == b"* 1 EXISTS\r\n"
    wire.send(b"DONE\r\n")
    tagged, _ = wire.response(b"w%d" % wire.n)
    assert b" OK " in tagged
    tagged, _ = wire.command(b"LOGOUT")
    assert b" OK " in tagged


def test_compress_needs_login_and_knows_one_mechanism(server: Server) -> None:
    w = Wire(server.imap_port)
    assert b" BAD " in w.command(b"COMPRESS DEFLATE")[0]  # not authenticated yet
    w.command(f'LOGIN "{USER}" "{PASSWORD}"'.encode())
    assert b" BAD " in w.command(b"COMPRESS ZSTD")[0]
    assert b" OK " in w.command(b"NOOP")[0]  # the stream is still plain and in step
    w.close()


def test_compress_garbage_ends_only_that_session(server: Server, wire: Wire) -> None:
    assert b" OK " in wire.start_compress()
    wire.sock.sendall(b"\xff\xfe not deflate at all \x00" * 10)
    with contextlib.suppress(OSError, EOFError):
        while True:
            wire._fill()
    other = Wire(server.imap_port)  # the server is fine
    assert b" OK " in other.command(f'LOGIN "{USER}" "{PASSWORD}"'.encode())[0]
    other.close()


def test_mbsync_syncs_over_compress(server: Server, tmp_path: Path) -> None:
    """mbsync asks for COMPRESS DEFLATE when offered (isync >= 1.2) and syncs through it."""
    deliver(server, "mbsync compressed one", "mbsync compressed two")
    config = mbsync_config(server, tmp_path)
    run = subprocess.run(["mbsync", "-D", "-c", str(config), "-a"], capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "COMPRESS DEFLATE" in run.stdout + run.stderr
    inbox = tmp_path / "Mail" / "INBOX"
    local = list((inbox / "new").iterdir()) + list((inbox / "cur").iterdir())
    assert sorted(b"compressed one" in p.read_bytes() or b"compressed two" in p.read_bytes()
                  for p in local) == [True, True]


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_compressed_overlong_line_is_read_in_bounded_memory(server: Server, wire: Wire) -> None:
    """128 MiB of one line deflate to ~128 KiB: the server inflates a chunk at a time as it
    reads, answers BAD [TOOBIG] at the line end and goes on, its memory hardly moving."""
    assert server.process is not None
    assert b" OK " in wire.start_compress()
    before = _rss_kib(server.process.pid)
    wire.n += 1
    tag = b"w%d" % wire.n
    wire.send(tag + b" NOOP ")
    chunk = b"a" * (1 << 20)
    for _ in range(128):
        wire.send(chunk)
    wire.send(b"\r\n")
    tagged, _ = wire.response(tag)
    assert b"BAD [TOOBIG]" in tagged, tagged
    grown = _rss_kib(server.process.pid) - before
    assert grown < 32 * 1024, f"server grew {grown} KiB"
    assert b" OK " in wire.command(b"NOOP")[0]
