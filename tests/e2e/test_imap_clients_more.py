"""More real IMAP clients from Debian against the server: offlineimap3 and neomutt (under tmux).

Both talk STARTTLS on the plain IMAP port and trust our self-signed certificate through a CA
file, so nothing prompts. scripts/test-deps.sh installs offlineimap3, neomutt and tmux.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.e2e.server import Server
from tests.e2e.test_imap import PASSWORD, deliver
from tests.e2e.test_smtp_inbound import message

ALICE = "alice@example.test"


def by_subject(server: Server, label: str | None = None) -> dict[str, dict[str, Any]]:
    return {str(e["subject"]): e for e in server.emails(ALICE, label=label)}


# ------------------------------------------------------------------------------ offlineimap


def offlineimap_config(server: Server, tmp_path: Path) -> Path:
    config = tmp_path / "offlineimaprc"
    config.write_text(f"""
[general]
accounts = test
metadata = {tmp_path / "offlineimap-meta"}
ui = basic

[Account test]
localrepository = local
remoterepository = remote

[Repository local]
type = Maildir
localfolders = {tmp_path / "Mail"}

[Repository remote]
type = IMAP
remotehost = 127.0.0.1
remoteport = {server.imap_port}
remoteuser = {ALICE}
remotepass = {PASSWORD}
ssl = no
starttls = yes
sslcacertfile = {server.data_dir / "tls-cert.pem"}
""")
    return config


def offlineimap(config: Path) -> subprocess.CompletedProcess[str]:
    # -o: one run; -u basic: no curses; -d imap: the protocol exchange, for the failure messages;
    # stdin from /dev/null so that a prompt would fail instead of hanging
    return subprocess.run(["offlineimap", "-c", str(config), "-o", "-u", "basic", "-d", "imap"],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)


def report(run: subprocess.CompletedProcess[str]) -> str:
    out = run.stdout + run.stderr
    wire = [line for line in out.splitlines() if " writer > " in line or " reader < " in line
            or "ERROR" in line or "Traceback" in line]
    return "\n".join(wire[-60:]) + "\n" + out[-3000:]


def maildir_files(folder: Path) -> list[Path]:
    return sorted([*(folder / "new").iterdir(), *(folder / "cur").iterdir()])


def test_offlineimap_syncs_down_and_up(server: Server, tmp_path: Path) -> None:
    deliver(server, "down one", "down two")
    config = offlineimap_config(server, tmp_path)
    first = offlineimap(config)
    assert first.returncode == 0, report(first)
    assert "ERROR" not in first.stdout + first.stderr, report(first)
    # it really went through STARTTLS and logged in over TLS
    out = first.stdout + first.stderr
    assert "STARTTLS\\r\\n" in out and "OK Begin TLS" in out and "Logged in" in out, report(first)
    inbox = tmp_path / "Mail" / "INBOX"
    local = maildir_files(inbox)
    assert len(local) == 2, report(first)
    # offlineimap writes the maildir with LF line ends (CRLF -> LF) and adds no header of its
    # own (the server has UIDPLUS), so the files are the server's octets with CRLF turned to LF
    bodies = sorted(p.read_bytes() for p in local)
    assert all(b"\r" not in body for body in bodies)
    raws = sorted(server.raw(ALICE, str(e["id"])).replace(b"\r\n", b"\n")
                  for e in server.emails(ALICE))
    assert bodies == raws
    assert {p.name.rsplit(":2,", 1)[1] for p in local} == {""}  # nothing is \Seen yet

    # a draft written locally (LF line ends, seen) goes up, and a local flag change too
    drafts = tmp_path / "Mail" / "Drafts" / "cur"
    assert drafts.is_dir()  # offlineimap created the local folder from the server's LIST
    draft = message("written locally")
    (drafts / "1700000000.1.local:2,S").write_bytes(draft.replace(b"\r\n", b"\n"))
    down_one = next(p for p in local if b"Subject: down one\n" in p.read_bytes())
    base = down_one.name.rsplit(":2,", 1)[0]
    down_one.rename(inbox / "cur" / f"{base}:2,FS")
    second = offlineimap(config)
    assert second.returncode == 0, report(second)
    assert "ERROR" not in second.stdout + second.stderr, report(second)
    on_server = by_subject(server, label="Drafts")
    assert list(on_server) == ["written locally"], report(second)
    assert on_server["written locally"]["keywords"] == ["$seen"]
    uploaded = server.raw(ALICE, str(on_server["written locally"]["id"]))
    assert uploaded == draft  # LF -> CRLF on the way up, nothing else changed
    emails = by_subject(server)
    assert sorted(emails["down one"]["keywords"]) == ["$flagged", "$seen"], report(second)
    assert emails["down two"]["keywords"] == []

    # a third run with nothing new changes nothing, on either side
    third = offlineimap(config)
    assert third.returncode == 0, report(third)
    assert len(server.emails(ALICE)) == 3
    assert len(maildir_files(inbox)) == 2
    assert [p.name.rsplit(":2,", 1)[1] for p in maildir_files(tmp_path / "Mail" / "Drafts")
            ] == ["S"]


# ------------------------------------------------------------------------------ neomutt


class Tmux:
    """A private tmux server (own socket) running one program in a 200x50 window."""

    def __init__(self, tmp_path: Path) -> None:
        self.socket = tmp_path / "tmux.sock"

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["tmux", "-S", str(self.socket), *args], capture_output=True,
                              text=True, timeout=60)

    def start(self, command: str) -> None:
        started = self.run("new-session", "-d", "-x", "200", "-y", "50", command)
        assert started.returncode == 0, started.stderr

    def screen(self) -> str:
        return self.run("capture-pane", "-p").stdout

    def keys(self, *keys: str) -> None:
        self.run("send-keys", *keys)

    def alive(self) -> bool:
        return self.run("has-session").returncode == 0

    def wait(self, predicate: Callable[[str], bool], what: str, timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            if predicate(screen):
                return screen
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; screen:\n{screen}")
            time.sleep(0.2)

    def kill(self) -> None:
        self.run("kill-server")


def neomutt_wire(log: Path) -> str:
    logs = sorted(log.parent.glob(log.name + "*"))
    lines = [line for p in logs for line in p.read_text(errors="replace").splitlines()
             if "mutt_socket_write_d()" in line or "mutt_socket_readln_d()" in line]
    return "\n".join(lines[-80:])


def test_neomutt_reads_the_inbox(server: Server, tmp_path: Path) -> None:
    assert shutil.which("neomutt"), "neomutt is not installed (scripts/test-deps.sh)"
    deliver(server, "for neomutt one", "for neomutt two")
    certs = tmp_path / "certificates"
    certs.write_bytes((server.data_dir / "tls-cert.pem").read_bytes())
    muttrc = tmp_path / "muttrc"
    # the certificate names mx.example.test and we connect to 127.0.0.1: trust the certificate
    # through certificate_file, but do not match the host name
    muttrc.write_text(f"""
set imap_user = "{ALICE}"
set imap_pass = "{PASSWORD}"
set folder = "imap://127.0.0.1:{server.imap_port}/"
set spoolfile = "+INBOX"
set ssl_starttls = yes
set ssl_force_tls = yes
set certificate_file = "{certs}"
set ssl_verify_host = no
set header_cache = ""
set message_cachedir = ""
set imap_check_subscribed = no
set mail_check_stats = no
set sidebar_visible = no
set mark_old = no
set move = no
set quit = yes
set wait_key = no
set sort = subject
set index_format = "%4C %Z %s"
set arrow_cursor = yes
""")
    log = tmp_path / "neomutt.log"
    rc = tmp_path / "neomutt.rc"
    tmux = Tmux(tmp_path)
    # -n: no system muttrc; HOME points into tmp_path so no user config is read either
    tmux.start(f"env TERM=xterm HOME={tmp_path} neomutt -n -F {muttrc} -d 5 -l {log}; "
               f"echo $? > {rc}")
    try:
        index = tmux.wait(lambda s: "for neomutt one" in s and "for neomutt two" in s,
                          "the INBOX index")
        assert "q:Quit" in index
        # jump to "for neomutt two" by its number in the index, and open it in the pager
        found = re.search(r"(?m)^(?:->)?\s*(\d+)\s.*for neomutt two\s*$", index)
        assert found, index
        tmux.keys(*found.group(1), "Enter")
        tmux.wait(lambda s: re.search(r"(?m)^->.*for neomutt two\s*$", s) is not None,
                  "the cursor on the message")
        tmux.keys("Enter")
        pager = tmux.wait(lambda s: "Hello there." in s, "the pager")
        assert "Subject: for neomutt two" in pager
        assert "From: Carol Sender <carol@remote.test>" in pager
        tmux.keys("q")
        tmux.wait(lambda s: "q:Quit" in s, "back to the index")
        tmux.keys("q")
        deadline = time.monotonic() + 60
        while tmux.alive() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not tmux.alive(), "neomutt did not quit:\n" + tmux.screen()
    finally:
        tmux.kill()
    wire = neomutt_wire(log)
    assert rc.read_text().strip() == "0", wire
    assert "STARTTLS" in wire and "OK Begin TLS" in wire, wire
    assert 'SELECT "INBOX"' in wire, wire
    # the server saw the message read: neomutt set \Seen on it and on nothing else
    emails = by_subject(server)
    assert emails["for neomutt two"]["keywords"] == ["$seen"], wire
    assert emails["for neomutt one"]["keywords"] == [], wire
