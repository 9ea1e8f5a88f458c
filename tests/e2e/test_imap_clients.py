"""Real IMAP clients from Debian against the server: curl and mbsync (isync)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from tests.e2e.server import Server
from tests.e2e.test_imap import PASSWORD, deliver
from tests.e2e.test_smtp_inbound import message


def curl(server: Server, path: str, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["curl", "-sS", "--max-time", "20", "-u", f"alice@example.test:{PASSWORD}",
         f"imap://127.0.0.1:{server.imap_port}/{path}", *args],
        capture_output=True, timeout=60)


def test_curl_list_examine_fetch_append(server: Server, tmp_path: Path) -> None:
    deliver(server, "for curl")
    listing = curl(server, "")
    assert listing.returncode == 0, listing.stderr
    assert b"INBOX" in listing.stdout and b"\\Sent" in listing.stdout
    examine = curl(server, "", "-X", "EXAMINE INBOX")
    assert examine.returncode == 0, examine.stderr
    assert b"1 EXISTS" in examine.stdout and b"UIDVALIDITY" in examine.stdout
    fetched = curl(server, "INBOX;UID=1")
    assert fetched.returncode == 0, fetched.stderr
    email = server.emails("alice@example.test")[0]
    assert fetched.stdout == server.raw("alice@example.test", email["id"])
    upload = tmp_path / "up.eml"
    upload.write_bytes(message("uploaded by curl"))
    appended = curl(server, "Drafts", "-T", str(upload))
    assert appended.returncode == 0, appended.stderr
    drafts = server.emails("alice@example.test", label="Drafts")
    assert [e["subject"] for e in drafts] == ["uploaded by curl"]


def mbsync_config(server: Server, tmp_path: Path) -> Path:
    maildir = tmp_path / "Mail"
    maildir.mkdir()
    config = tmp_path / "mbsyncrc"
    config.write_text(f"""
IMAPAccount test
Host 127.0.0.1
Port {server.imap_port}
User alice@example.test
Pass {PASSWORD}
SSLType STARTTLS
CertificateFile {server.data_dir / "tls-cert.pem"}

IMAPStore remote
Account test

MaildirStore local
Path {maildir}/
Inbox {maildir}/INBOX
SubFolders Verbatim

Channel sync
Far :remote:
Near :local:
Patterns *
Create Both
Expunge Both
SyncState *
""")
    return config


def mbsync(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["mbsync", "-c", str(config), "-a"], capture_output=True, text=True,
                          timeout=120)


def test_mbsync_syncs_down_and_up(server: Server, tmp_path: Path) -> None:
    deliver(server, "down one", "down two")
    config = mbsync_config(server, tmp_path)
    first = mbsync(config)
    assert first.returncode == 0, first.stdout + first.stderr
    inbox = tmp_path / "Mail" / "INBOX"
    local = sorted((inbox / "new").iterdir()) + sorted((inbox / "cur").iterdir())
    assert len(local) == 2
    # a maildir keeps LF line ends, and mbsync adds its X-TUID tracking header
    bodies = sorted(re.sub(rb"(?m)^X-TUID: .*\n", b"", p.read_bytes()) for p in local)
    raws = sorted(server.raw("alice@example.test", e["id"]).replace(b"\r\n", b"\n")
                  for e in server.emails("alice@example.test"))
    assert bodies == raws
    # a message written locally goes up on the next run
    (tmp_path / "Mail" / "Drafts" / "cur").mkdir(parents=True, exist_ok=True)
    (tmp_path / "Mail" / "Drafts" / "cur" / "1700000000.1.local:2,S").write_bytes(
        message("written locally"))
    second = mbsync(config)
    assert second.returncode == 0, second.stdout + second.stderr
    drafts = server.emails("alice@example.test", label="Drafts")
    assert [e["subject"] for e in drafts] == ["written locally"]
    assert drafts[0]["keywords"] == ["$seen"]
    # a third run with nothing new changes nothing
    third = mbsync(config)
    assert third.returncode == 0, third.stdout + third.stderr
    assert len(server.emails("alice@example.test")) == 3
