"""Messages imported with bare LF (or mixed) line ends (issue 18, "The doors agree"): IMAP and
POP3 serve them with CRLF and count the CRLF octets (RFC822.SIZE, LIST), `mailyard export`
gives back the octets that were imported, and gc and fsck treat the kept original with its
message. Everything goes through the CLI and the real listeners (imaplib, poplib)."""

from __future__ import annotations

import imaplib
import os
import poplib
import re
import time
from pathlib import Path

from mailyard.core.mailformats import iter_mbox, write_mbox
from tests.e2e.server import Server

ALICE = "alice@example.test"
PASSWORD = "secret-password"
BARE_LF = re.compile(rb"(?<!\r)\n")


def crlf(raw: bytes) -> bytes:
    """What a client must be served: every bare LF a CRLF (written here, not taken from the
    code under test)."""
    return raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def message(n: int, eol: bytes = b"\n", tail: bytes = b"") -> bytes:
    lines = [b"From: Sender %d <s%d@remote.test>" % (n, n), b"To: alice@example.test",
             b"Subject: line ends %d" % n, b"Message-ID: <le%d@remote.test>" % n,
             b"Date: Mon, 01 Jan 2024 10:00:00 +0000", b"", b"first body line",
             b".a line that starts with a dot", b"From the middle", b"last line"]
    return eol.join(lines) + eol + tail


# Bare LF; mixed (CRLF header, LF body); and one whose LF lines hold a lone CR.
LF = message(1)
MIXED = message(2, eol=b"\r\n").replace(b"first body line\r\n", b"first body line\n") \
    .replace(b"last line\r\n", b"last line\n")
LONE_CR = message(3, tail=b"a lone CR \r stays\n")
SOURCES = {"lf": LF, "mixed": MIXED, "lone-cr": LONE_CR}


def imap_view(server: Server) -> dict[bytes, tuple[bytes, int, bytes]]:
    """Message-ID -> (BODY[], RFC822.SIZE, BODY[HEADER]) for every INBOX message."""
    out = {}
    with imaplib.IMAP4("127.0.0.1", server.imap_port) as imap:
        imap.login(ALICE, PASSWORD)
        imap.select("INBOX", readonly=True)
        _, data = imap.fetch("1:*", "(RFC822.SIZE BODY.PEEK[] BODY.PEEK[HEADER])")
    parts = [p for p in data if isinstance(p, tuple)]
    for body_part, header_part in zip(parts[::2], parts[1::2], strict=True):
        size = re.search(rb"RFC822\.SIZE (\d+)", body_part[0])
        assert size, body_part[0]
        msgid = re.search(rb"Message-ID: (<[^>]+>)", body_part[1])
        assert msgid, body_part[1]
        out[msgid.group(1)] = (body_part[1], int(size.group(1)), header_part[1])
    return out


def pop3_view(server: Server) -> list[tuple[int, int, bytes]]:
    """(LIST size, RETR octets, RETR message) of every message, as poplib reads them."""
    pop = poplib.POP3("127.0.0.1", server.pop3_port, timeout=60)
    try:
        pop.user(ALICE)
        pop.pass_(PASSWORD)
        _, listing, _ = pop.list()
        out = []
        for entry in listing:
            number, size = entry.split()
            _, lines, octets = pop.retr(int(number))
            out.append((int(size), octets, b"".join(line + b"\r\n" for line in lines)))
        return out
    finally:
        pop.quit()


def check_served(server: Server, originals: list[bytes]) -> None:
    served = {re.search(rb"<le\d+@remote\.test>", o).group(0): crlf(o)  # type: ignore[union-attr]
              for o in originals}
    view = imap_view(server)
    assert view.keys() == served.keys()
    for msgid, (body, size, header) in view.items():
        assert body == served[msgid], msgid
        assert BARE_LF.search(body) is None
        assert size == len(body)
        assert header.endswith(b"\r\n\r\n") and BARE_LF.search(header) is None
    pop = pop3_view(server)
    assert sorted(raw for _, _, raw in pop) == sorted(served.values())
    for size, octets, raw in pop:
        assert size == octets == len(raw)


def exported(server: Server, tmp_path: Path) -> tuple[list[bytes], list[bytes]]:
    """The account's messages as `mailyard export` writes them: (Maildir files, mbox)."""
    server.cli("export", ALICE, str(tmp_path / "export-maildir"), "--format", "maildir")
    maildir = [p.read_bytes() for p in (tmp_path / "export-maildir").rglob("cur/*")]
    server.cli("export", ALICE, str(tmp_path / "export.mbox"))
    mbox = [m.raw for m in iter_mbox((tmp_path / "export.mbox").read_bytes())]
    return sorted(maildir), sorted(mbox)


def test_a_bare_lf_maildir_is_served_with_crlf_and_exported_as_it_came(
        server: Server, tmp_path: Path) -> None:
    root = tmp_path / "Maildir"
    for sub in ("cur", "new", "tmp"):
        (root / sub).mkdir(parents=True)
    for n, (name, raw) in enumerate(SOURCES.items()):
        (root / "cur" / f"{100 + n}.{name}.host:2,S").write_bytes(raw)
    out = server.cli("import", ALICE, str(root)).stdout.decode()
    assert "3 imported, 0 skipped as duplicates, 0 failed" in out
    check_served(server, list(SOURCES.values()))
    maildir, mbox = exported(server, tmp_path)
    assert maildir == mbox == sorted(SOURCES.values())
    # The same source again is known (its key is the octets it came with).
    again = server.cli("import", ALICE, str(root)).stdout.decode()
    assert again.startswith("0 imported, 3 skipped as duplicates")


def test_a_bare_lf_mbox_is_served_with_crlf_and_exported_as_it_came(
        server: Server, tmp_path: Path) -> None:
    mbox = tmp_path / "inbox.mbox"
    mbox.write_bytes(write_mbox([(raw, "s@remote.test", 1_700_000_000_000)
                                 for raw in SOURCES.values()]))
    out = server.cli("import", ALICE, str(mbox)).stdout.decode()
    assert "3 imported, 0 skipped as duplicates, 0 failed" in out
    check_served(server, list(SOURCES.values()))
    maildir, from_mbox = exported(server, tmp_path)
    assert maildir == from_mbox == sorted(SOURCES.values())


def test_an_imported_crlf_message_keeps_no_side_copy_and_gc_and_fsck_keep_the_pair(
        tmp_path: Path) -> None:
    """A message that came with CRLF needs no original beside it. One that came with bare
    LFs has its original kept as long as the message, checked by fsck, and removed by gc once
    the message is gone. On the file blob store, whose files the test ages and corrupts."""
    srv = Server(tmp_path / "srv", blobs="")
    srv.add_user(ALICE)
    source = tmp_path / "in.mbox"
    source.write_bytes(write_mbox([(LF, "s@remote.test", 1_700_000_000_000),
                                   (message(4, eol=b"\r\n"), "s@remote.test",
                                    1_700_000_000_000)]))
    assert "2 imported" in srv.cli("import", ALICE, str(source)).stdout.decode()
    blobs = srv.data_dir / "blobs"
    sides = [p for pattern in ("??/original-*", "??/??/original-*") for p in blobs.glob(pattern)]
    assert len(sides) == 1 and sides[0].read_bytes() == LF
    assert srv.cli("fsck").stdout == b""

    old = time.time() - 7200
    for path in blobs.rglob("*"):
        if path.is_file():
            os.utime(path, (old, old))
    assert srv.cli("gc", "--grace", "3600").stdout == b""  # both emails live: nothing goes
    assert sides[0].exists()

    sides[0].write_bytes(LF.replace(b"last line", b"LAST LINE"))  # bit rot
    result = srv.cli("fsck", check=False)
    assert result.returncode == 1 and b"bad-original" in result.stdout, result.stdout
    # Export never gives octets that are not this message: the stored CRLF form instead.
    srv.cli("export", ALICE, str(tmp_path / "after-rot"), "--format", "maildir")
    written = sorted(p.read_bytes() for p in (tmp_path / "after-rot").rglob("cur/*"))
    assert written == sorted([crlf(LF), message(4, eol=b"\r\n")])
    sides[0].write_bytes(LF)

    srv.start()
    try:
        with imaplib.IMAP4("127.0.0.1", srv.imap_port) as imap:
            imap.login(ALICE, PASSWORD)
            imap.select("INBOX")
            _, found = imap.search(None, "HEADER", "Message-ID", "<le1@remote.test>")
            [number] = found[0].split()
            imap.store(number.decode(), "+FLAGS", "\\Deleted")
            imap.expunge()
            imap.select('"All Mail"')
            _, found = imap.search(None, "HEADER", "Message-ID", "<le1@remote.test>")
            for n in found[0].split():
                imap.store(n.decode(), "+FLAGS", "\\Deleted")
            imap.expunge()
    finally:
        srv.stop()
    assert [e["subject"] for e in srv.emails(ALICE)] == ["line ends 4"]
    for path in blobs.rglob("*"):
        if path.is_file():
            os.utime(path, (old, old))
    freed = {line.split("\t")[1] for line in
             srv.cli("gc", "--grace", "3600").stdout.decode().splitlines()}
    assert sides[0].name in freed and not sides[0].exists()
    assert any(b.startswith("bodies/") for b in freed), freed  # with its message's body
    assert srv.cli("fsck").stdout == b""
