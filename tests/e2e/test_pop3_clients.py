"""POP3 with the clients people run: Debian's fetchmail (keep and non-keep modes, over
verified STLS and over POP3S) and curl (LIST, RETR, DELE), against the real listener."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

from tests.e2e.server import Server
from tests.e2e.test_pop3 import ALICE, PASSWORD, deliver, imap_mailbox, pop


def fetchmail(server: Server, tmp: Path, *, keep: bool, implicit_tls: bool = False
              ) -> list[bytes]:
    """Run fetchmail once; the messages its MDA received, in delivery order."""
    out = tmp / f"delivered-{len(list(tmp.glob('delivered-*')))}"
    out.mkdir()
    mda = tmp / "mda.sh"
    mda.write_text('#!/bin/sh\nexec cat > "$1/$(date +%s%N).eml"\n')
    mda.chmod(0o755)
    port = server.pop3s_port if implicit_tls else server.pop3_port
    rc = tmp / "fetchmailrc"
    rc.write_text(
        f"poll 127.0.0.1 with proto POP3 port {port} uidl\n"
        f'  user "{ALICE}" there with password "{PASSWORD}" is "someone" here\n'
        f"  {'keep' if keep else 'nokeep'} fetchall\n"
        f"  {'ssl' if implicit_tls else 'sslproto tls1.2+'} sslcertck"
        f" sslcertfile {server.data_dir / 'tls-cert.pem'} sslcommonname mx.example.test\n"
        f'  mda "{mda} {out}"\n')
    rc.chmod(stat.S_IRUSR | stat.S_IWUSR)
    env = {**os.environ, "HOME": str(tmp), "FETCHMAILHOME": str(tmp)}
    result = subprocess.run(["fetchmail", "-v", "--nodetach", "--nosyslog", "-f", str(rc),
                             "--idfile", str(tmp / "fetchids")],
                            env=env, capture_output=True, timeout=120)
    log = result.stdout.decode() + result.stderr.decode()
    assert result.returncode in (0, 1), log  # 1: no mail
    if not implicit_tls:
        assert "POP3> STLS" in log and "Server certificate verification" not in log, log
    return [p.read_bytes() for p in sorted(out.iterdir())]


def test_fetchmail_keep_then_nokeep(server: Server, tmp_path: Path) -> None:
    ids = deliver(server, ("first", "one\n.dot\n"), ("second", "two\n"))
    raws = [server.raw(ALICE, i) for i in ids]
    kept = fetchmail(server, tmp_path, keep=True)
    assert len(kept) == 2
    for got, raw in zip(kept, raws, strict=True):
        # fetchmail hands the MDA LF line ends and puts its Received field after the
        # Return-Path; every other octet is the stored message's.
        return_path, rest = raw.replace(b"\r\n", b"\n").split(b"\n", 1)
        assert got.startswith(return_path + b"\nReceived: from 127.0.0.1"), got[:300]
        assert b"with POP3 (fetchmail" in got[:300] and got.endswith(b"\n" + rest)
    with pop(server) as client:
        assert client.stat()[0] == 2  # keep: left on the server
        client.quit()
    assert fetchmail(server, tmp_path, keep=True, implicit_tls=True) != []  # fetchall
    taken = fetchmail(server, tmp_path, keep=False, implicit_tls=True)
    assert len(taken) == 2
    with pop(server) as client:
        assert client.stat() == (0, 0)
        client.quit()
    assert imap_mailbox(server, "Trash") == [b"Subject: first", b"Subject: second"]
    assert fetchmail(server, tmp_path, keep=False) == []


def curl(server: Server, *args: str) -> bytes:
    result = subprocess.run(["curl", "-sS", "--max-time", "60", "-u", f"{ALICE}:{PASSWORD}",
                             *args], capture_output=True, timeout=90)
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout


def test_curl_list_retr_and_dele(server: Server) -> None:
    ids = deliver(server, ("one", "1\n"), ("two", ".leading dot\n"))
    raws = [server.raw(ALICE, i) for i in ids]
    base = f"pop3://127.0.0.1:{server.pop3_port}"
    listing = curl(server, base + "/")
    assert listing == "".join(f"{n} {len(r)}\r\n" for n, r in enumerate(raws, 1)).encode()
    assert curl(server, base + "/2") == raws[1]
    secure = f"pop3s://127.0.0.1:{server.pop3s_port}"
    assert curl(server, "-k", secure + "/1") == raws[0]
    assert curl(server, "-k", "--ssl-reqd", base + "/2") == raws[1]  # STLS
    assert curl(server, "-X", "UIDL", base + "/") == \
        "".join(f"{n} {i}\r\n" for n, i in enumerate(ids, 1)).encode()
    curl(server, "-X", "DELE", "-I", base + "/1")
    assert curl(server, base + "/") == f"1 {len(raws[1])}\r\n".encode()
