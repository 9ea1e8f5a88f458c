"""A private Postfix delivering by LMTP to a private Dovecot, for bench/smtp_ingest.py --compare.

The reference system of issue 24: Debian's postfix (smtpd, cleanup, qmgr, lmtp: no content
filter, no milter, no SPF/DKIM policy service) in front of Debian's dovecot-lmtpd and
dovecot-imapd (maildir, default `mail_fsync = optimized`, no FTS). Both are normal processes
with their own configuration and directories under one temporary root; the system's own
services are not used (install the packages, then keep their services stopped:
`apt-get install -y dovecot-lmtpd dovecot-imapd`, `systemctl disable --now dovecot`).
Nothing in the test suite uses this. Run as root: both masters drop privileges themselves.

Postfix is tests/postfixmx.PostfixMX with `virtual_transport` pointed at Dovecot's LMTP
listener instead of virtual(8), and an `lmtp` service in its master.cf.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from tests.e2e.server import free_port, wait_port
from tests.postfixmx import PostfixMX

PASSWORD = "bench-password-123"


class Dovecot:
    """Dovecot on 127.0.0.1: LMTP at `lmtp_port`, IMAP at `imap_port`, maildir, any user."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="mailyard-bench-dovecot-"))
        self.lmtp_port = free_port()
        self.imap_port = free_port()

    @property
    def master_pid(self) -> int:
        return int((self.root / "run" / "master.pid").read_text().split()[0])

    def start(self) -> Dovecot:
        if shutil.which("dovecot") is None:
            raise SystemExit("dovecot is not installed: apt-get install -y dovecot-lmtpd"
                             " dovecot-imapd")
        nobody = pwd.getpwnam("nobody")
        nogroup = grp.getgrnam("nogroup").gr_gid
        self.root.chmod(0o755)
        for sub in ("run", "state", "mail"):
            (self.root / sub).mkdir()
        os.chown(self.root / "mail", nobody.pw_uid, nogroup)
        passwd = self.root / "passwd"
        passwd.write_text(f"alice@example.test:{{PLAIN}}{PASSWORD}::::::\n")
        passwd.chmod(0o644)
        root = self.root
        (root / "dovecot.conf").write_text(f"""\
instance_name = mailyard-bench-lmtp
protocols = imap lmtp
listen = 127.0.0.1
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
info_log_path = {root}/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
login_trusted_networks = 127.0.0.1/32
mail_location = maildir:{root}/mail/%u/Maildir
mail_privileged_group =
first_valid_uid = {nobody.pw_uid}
mail_max_userip_connections = 100000
mail_plugins =
lmtp_save_to_detail_mailbox = no
postmaster_address = postmaster@example.test
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {passwd}
}}
userdb {{
  driver = static
  args = uid={nobody.pw_uid} gid={nogroup} home={root}/mail/%u allow_all_users=yes
}}
namespace inbox {{
  inbox = yes
  separator = /
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.imap_port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {self.lmtp_port}
  }}
  unix_listener lmtp {{
    mode = 0
  }}
}}
service imap {{
  process_limit = 1024
}}
service anvil {{
  chroot =
}}
""")
        subprocess.run(["dovecot", "-c", str(root / "dovecot.conf")], check=True, timeout=30)
        wait_port(self.imap_port)
        wait_port(self.lmtp_port)
        return self

    def stop(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            pid = self.master_pid
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.05)
        shutil.rmtree(self.root, ignore_errors=True)


class PostfixLMTP(PostfixMX):
    """tests/postfixmx.PostfixMX for example.test, handing every mail to Dovecot by LMTP."""

    def __init__(self, port: int, lmtp_port: int) -> None:
        super().__init__(port, domains=("example.test",), chunking=True)
        self.lmtp_port = lmtp_port

    def _main_cf(self) -> str:
        return super()._main_cf() + (
            f"virtual_transport = lmtp:inet:127.0.0.1:{self.lmtp_port}\n"
            "smtpd_client_connection_count_limit = 0\n"
            "smtpd_client_connection_rate_limit = 0\n"
            "lmtp_destination_concurrency_limit = 20\n")

    def _postfix(self, action: str, *, check: bool = True) -> None:
        if action == "start":  # postfixmx's master.cf has no lmtp client service
            with (self.config / "master.cf").open("a") as f:
                f.write("lmtp unix - - n - - lmtp\n")
        super()._postfix(action, check=check)

    @property
    def master_pid(self) -> int:
        pid = self._master_pid()
        assert pid is not None
        return pid


def cpu_seconds(root: int) -> float:
    """CPU time of `root` and all its descendants: utime + stime of every live one, plus
    cutime + cstime (its children already reaped) of each."""
    ticks = os.sysconf("SC_CLK_TCK")
    stats: dict[int, tuple[int, float]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                parent = int(fields[1])
                used = sum(int(v) for v in fields[11:15]) / ticks
                stats[int(entry.name)] = (parent, used)
    tree, grew = {root}, True
    while grew:
        more = {pid for pid, (parent, _) in stats.items() if parent in tree} - tree
        tree |= more
        grew = bool(more)
    return sum(stats[pid][1] for pid in tree if pid in stats)
