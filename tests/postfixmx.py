"""Debian's Postfix as a remote MX on loopback: a private instance per test, so that outbound
delivery is tried against the MTA most of the Internet runs rather than only our own doubles.

Everything lives in one directory of its own (config_directory, queue_directory,
data_directory, the log and the Maildir): the machine's /etc/postfix is only read for the
package's file list (`postfix check`). The instance listens on 127.0.0.1 at one port (its
master.cf), accepts mail for `domains` into one Maildir through virtual(8), which writes a
Delivered-To header per recipient, so a test counts copies by (Message-ID, recipient). It
relays nothing: any other destination is an error transport. PIPELINING, CHUNKING and
STARTTLS can each be switched off (`smtpd_discard_ehlo_keywords`, no TLS key). `stop()`
waits until the master and every process it started are gone.

It needs root (Postfix starts as root and drops to the `postfix` user) and the Debian package
(scripts/test-deps.sh installs it).
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tests.e2e.server import wait_port

_SERVICES = """\
{port} inet n - n - - smtpd
pickup unix n - n 60 1 pickup
cleanup unix n - n - 0 cleanup
qmgr unix n - n 300 1 qmgr
tlsmgr unix - - n 1000? 1 tlsmgr
rewrite unix - - n - - trivial-rewrite
bounce unix - - n - 0 bounce
defer unix - - n - 0 bounce
trace unix - - n - 0 bounce
verify unix - - n - 1 verify
flush unix n - n 1000? 0 flush
proxymap unix - - n - - proxymap
smtp unix - - n - - smtp
showq unix n - n - - showq
error unix - - n - - error
retry unix - - n - - error
discard unix - - n - - discard
virtual unix - n n - - virtual
anvil unix - - n - 1 anvil
scache unix - - n - 1 scache
postlog unix-dgram n - n - 1 postlogd
"""


@dataclass(frozen=True)
class Delivered:
    """One copy Postfix put in the Maildir."""

    recipient: str
    message_id: str
    data: bytes


class PostfixMX:
    """A private Postfix on 127.0.0.1:`port`; a context manager."""

    def __init__(self, port: int, *, domains: tuple[str, ...] = ("remote.test",),
                 pipelining: bool = True, chunking: bool = True,
                 tls: tuple[Path, Path] | None = None,
                 reject: tuple[str, ...] = ()) -> None:
        """`tls`: certificate and key files (STARTTLS is offered only with them); `reject`:
        recipients answered 550 at RCPT."""
        self.port = port
        self.domains = domains
        self.pipelining = pipelining
        self.chunking = chunking
        self.tls = tls
        self.reject = reject
        self.root: Path | None = None
        self._pids: set[int] = set()

    @property
    def config(self) -> Path:
        assert self.root is not None
        return self.root / "etc"

    @property
    def maildir(self) -> Path:
        assert self.root is not None
        return self.root / "mail" / "box"

    @property
    def log(self) -> str:
        assert self.root is not None
        path = self.root / "maillog"
        return path.read_text(errors="replace") if path.exists() else ""

    def _main_cf(self) -> str:
        assert self.root is not None
        owner = pwd.getpwnam("postfix")
        discard = [k for k, on in (("pipelining", self.pipelining),
                                   ("chunking", self.chunking)) if not on]
        lines = [
            "compatibility_level = 3.6",
            f"config_directory = {self.config}",
            f"queue_directory = {self.root / 'queue'}",
            f"data_directory = {self.root / 'data'}",
            f"maillog_file = {self.root / 'maillog'}",
            f"maillog_file_prefixes = {self.root}",
            "mail_owner = postfix",
            "setgid_group = postdrop",
            "myhostname = mx.remote.test",
            "mydomain = remote.test",
            "inet_interfaces = 127.0.0.1",
            "inet_protocols = ipv4",
            "mynetworks = 192.0.2.1/32",  # our client is an outside MX client, not a trusted one
            "mydestination =",
            "alias_maps =",
            "alias_database =",
            "biff = no",
            "smtpd_peername_lookup = no",
            "smtputf8_enable = yes",
            "message_size_limit = 104857600",
            "virtual_mailbox_limit = 0",
            "default_transport = error:this test MX relays nothing",
            "relay_transport = error:this test MX relays nothing",
            "notify_classes =",
            "virtual_mailbox_domains = " + ", ".join(self.domains),
            f"virtual_mailbox_base = {self.root / 'mail'}",
            "virtual_mailbox_maps = static:box/",  # a trailing slash: Maildir
            f"virtual_uid_maps = static:{owner.pw_uid}",
            f"virtual_gid_maps = static:{owner.pw_gid}",
            "smtpd_discard_ehlo_keywords = " + ", ".join(discard),
        ]
        if self.reject:
            table = ", ".join(f"{{{r}=REJECT 5.1.1 no such user here}}" for r in self.reject)
            lines.append(f"smtpd_recipient_restrictions = check_recipient_access "
                         f"inline:{{{table}}}")
        if self.tls:
            cert, key = self.tls
            lines += ["smtpd_tls_security_level = may", f"smtpd_tls_cert_file = {cert}",
                      f"smtpd_tls_key_file = {key}", "smtpd_tls_received_header = yes"]
        else:
            lines.append("smtpd_tls_security_level = none")
        return "\n".join(lines) + "\n"

    def start(self) -> PostfixMX:
        # Its own directory under /tmp with traversable modes: virtual(8) and smtpd(8) run as
        # the postfix user, which cannot enter pytest's root-only tmp_path.
        self.root = Path(tempfile.mkdtemp(prefix="mailyard-postfix-"))
        self.root.chmod(0o755)
        owner = pwd.getpwnam("postfix")
        for sub in ("etc", "queue", "data", "mail"):
            (self.root / sub).mkdir(mode=0o755)
        os.chown(self.root / "data", owner.pw_uid, owner.pw_gid)
        os.chown(self.root / "mail", owner.pw_uid, owner.pw_gid)
        if self.tls:  # copies smtpd can read before it drops privileges, in our own tree
            cert, key = (self.config / "tls.crt", self.config / "tls.key")
            shutil.copyfile(self.tls[0], cert)
            shutil.copyfile(self.tls[1], key)
            key.chmod(0o600)
            self.tls = (cert, key)
        (self.config / "main.cf").write_text(self._main_cf())
        (self.config / "master.cf").write_text(
            _SERVICES.format(port=f"127.0.0.1:{self.port}"))
        try:
            self._postfix("start")
            wait_port(self.port)
        except BaseException:
            self.stop()  # nothing half-started outlives a failed start
            raise
        self._pids = self._processes()
        return self

    def _postfix(self, action: str, *, check: bool = True) -> None:
        result = subprocess.run(["postfix", "-c", str(self.config), action],
                                capture_output=True, timeout=60, check=False)
        if check and result.returncode != 0:
            raise AssertionError(f"postfix {action} failed ({result.returncode}):\n"
                                 f"{result.stdout.decode()}{result.stderr.decode()}\n"
                                 f"{self.log}")

    def _master_pid(self) -> int | None:
        if self.root is None:
            return None
        with contextlib.suppress(OSError, ValueError):
            pid = int((self.root / "queue" / "pid" / "master.pid").read_text().split()[0])
            os.kill(pid, 0)
            return pid
        return None

    def _processes(self) -> set[int]:
        """The master and all its descendants now."""
        master = self._master_pid()
        if master is None:
            return set()
        parents: dict[int, int] = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError, IndexError, ValueError):
                    stat = (entry / "stat").read_text()
                    parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
        found, grew = {master}, True
        while grew:
            more = {pid for pid, parent in parents.items() if parent in found} - found
            found |= more
            grew = bool(more)
        return found

    def running(self) -> set[int]:
        """Which of the instance's processes (seen at start and now) are still alive."""
        alive = set()
        for pid in self._pids | self._processes():
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                continue
            with contextlib.suppress(OSError):
                if "zombie" in Path(f"/proc/{pid}/status").read_text().lower():
                    continue
            alive.add(pid)
        return alive

    def stop(self, timeout: float = 30.0) -> None:
        if self.root is None:
            return
        self._pids |= self._processes()
        if self._master_pid() is not None:
            # "not running" is fine: a master that died at start-up leaves its pid file
            self._postfix("stop", check=False)
        deadline = time.monotonic() + timeout
        while self.running() and time.monotonic() < deadline:
            time.sleep(0.05)
        left = self.running()
        if left:
            raise AssertionError(f"postfix processes left after stop: {sorted(left)}")
        shutil.rmtree(self.root, ignore_errors=True)
        self.root = None

    def __enter__(self) -> PostfixMX:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---------------------------------------------------------------- what arrived

    def delivered(self) -> list[Delivered]:
        copies = []
        for sub in ("new", "cur"):
            folder = self.maildir / sub
            for path in sorted(folder.iterdir()) if folder.is_dir() else []:
                data = path.read_bytes()
                head = email.message_from_bytes(data, policy=email.policy.compat32)
                copies.append(Delivered((head["Delivered-To"] or "").strip().lower(),
                                        (head["Message-ID"] or "").strip(), data))
        return copies

    def wait(self, count: int, timeout: float = 30.0) -> list[Delivered]:
        """Until `count` copies are in the Maildir (or the time is up)."""
        deadline = time.monotonic() + timeout
        while len(found := self.delivered()) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return found
