"""A private Dovecot (Debian's dovecot-imapd) on loopback: the reference IMAP server.

tests/e2e/test_imap_reference.py plays the same RFC transcripts against it and against
Mailyard, so an expected line is known to be what a reference implementation sends, not only
what ours does. Its own configuration file and directories under a temporary root; IMAP on a
free port, no TLS, plaintext LOGIN (loopback only), maildir, a passwd-file of users; no
systemd: `dovecot -c FILE` starts the master, `dovecot -c FILE stop` ends it. Dovecot's master
drops to the package's `dovecot`/`dovenull` users and the mail processes run as `nobody`, so
the suite must run as root (it does: scripts/test-deps.sh installs Debian packages too).
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from tests.e2e.server import free_port

MAIL_USER, MAIL_GROUP = "nobody", "nogroup"
READY_SECONDS = 60.0
"""Bounds a failed start only: every wait is on the port answering."""


class Dovecot:
    """One running Dovecot with `users` (address -> password)."""

    def __init__(self, users: dict[str, str]) -> None:
        if shutil.which("dovecot") is None:
            raise RuntimeError("dovecot is not installed (scripts/test-deps.sh installs it)")
        self.root = Path(tempfile.mkdtemp(prefix="mailyard-dovecot-"))
        self.root.chmod(0o755)
        self.port = free_port()
        self.config = self.root / "dovecot.conf"
        uid = pwd.getpwnam(MAIL_USER).pw_uid
        gid = grp.getgrnam(MAIL_GROUP).gr_gid
        for sub in ("run", "state", "mail"):
            (self.root / sub).mkdir()
        os.chown(self.root / "mail", uid, gid)
        passwd = self.root / "passwd"
        passwd.write_text("".join(f"{u}:{{PLAIN}}{p}::::::\n" for u, p in users.items()))
        passwd.chmod(0o644)
        r = self.root
        self.config.write_text(f"""\
instance_name = mailyard-test-{self.port}
protocols = imap
listen = 127.0.0.1
base_dir = {r}/run
state_dir = {r}/state
log_path = {r}/dovecot.log
info_log_path = {r}/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:{r}/mail/%u/Maildir
mail_privileged_group =
first_valid_uid = {uid}
mail_plugins =
imap_capability = +MOVE
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {passwd}
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={r}/mail/%u
}}
namespace inbox {{
  inbox = yes
  separator = /
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service anvil {{
  chroot =
}}
""")
        # The master daemonizes: no pipes of ours may stay open in it.
        subprocess.run(["dovecot", "-c", str(self.config)], check=True, timeout=60,
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + READY_SECONDS
        while not self._answers():
            if time.monotonic() > deadline:
                log = (self.root / "dovecot.log").read_text(errors="replace")
                self.stop()
                raise RuntimeError(f"dovecot did not answer on {self.port}: {log[-2000:]}")
            time.sleep(0.1)

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
                return s.recv(100).startswith(b"* OK")
        except OSError:
            return False

    def stop(self) -> None:
        subprocess.run(["dovecot", "-c", str(self.config), "stop"], check=False, timeout=60,
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        pid_file = self.root / "run" / "master.pid"
        deadline = time.monotonic() + READY_SECONDS
        while pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        shutil.rmtree(self.root, ignore_errors=True)
