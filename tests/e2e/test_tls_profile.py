"""Every TLS listener of a running server follows Mozilla's "intermediate" profile (issue 17):
SMTP STARTTLS (MX and submission), submissions, IMAP STARTTLS and IMAPS, POP3 STLS and POP3S,
and HTTPS (JMAP).

Checked for each listener: no SSL 2.0/3.0, TLS 1.0 or TLS 1.1 handshake is accepted; on TLS 1.2
only the profile's forward-secret AEAD suites are (no CBC suite, SHA-1 or SHA-2, no static RSA
key exchange); TLS 1.2 with the profile's suites and TLS 1.3 work.

Two scanners, each a real client over real sockets:
- "stdlib": Python's ssl client (OpenSSL 3), every version and every suite it knows offered at
  @SECLEVEL=0 so that the client never refuses what the server might accept. OpenSSL 3 has no
  SSL 2.0/3.0 at all (ssl.HAS_SSLv2/HAS_SSLv3 are False), and the server is built on the same
  library, so those two cannot be accepted; that fact is asserted.
- "sslyze": sslyze's scan (its own legacy OpenSSL also speaks SSL 2.0/3.0), when it can be run:
  importable here, or an interpreter that has it named by MAILYARD_SSLYZE_PYTHON (sslyze 6 needs
  cryptography < 47, so it may live in a venv of its own).
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import ssl
import subprocess
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.e2e.server import Server, serving

# Mozilla's intermediate profile (ssl-config.mozilla.org, v5.7), written here from the spec,
# not imported from mailyard/tls.py, so that a wrong list there fails here.
PROFILE_TLS12 = frozenset({
    "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305",
    "DHE-RSA-AES128-GCM-SHA256", "DHE-RSA-AES256-GCM-SHA384", "DHE-RSA-CHACHA20-POLY1305",
})

LISTENERS = ["smtp", "submission", "submissions", "imap", "imaps", "pop3", "pop3s", "https"]
STARTTLS = {"smtp": "smtp", "submission": "smtp", "imap": "imap", "pop3": "pop3"}
"""The listeners that start in plain text, and the protocol of their upgrade."""


def _sslyze_python() -> str | None:
    if importlib.util.find_spec("sslyze") is not None:
        return sys.executable
    return os.environ.get("MAILYARD_SSLYZE_PYTHON") or None


SCANNERS = ["stdlib"] + (["sslyze"] if _sslyze_python() else [])


@dataclass
class Profile:
    """What one listener accepted."""

    versions: set[str] = field(default_factory=set)
    """Protocol versions a handshake succeeded with: SSLv2, SSLv3, TLSv1.0 ... TLSv1.3."""
    tls12_suites: set[str] = field(default_factory=set)
    """TLS 1.2 suites accepted, OpenSSL names."""
    tls13_suites: set[str] = field(default_factory=set)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with serving(tmp_path_factory.mktemp("tls-profile"), []) as srv:
        yield srv


def port_of(server: Server, listener: str) -> int:
    return {"smtp": server.smtp_port, "submission": server.submission_port,
            "submissions": server.submissions_port, "imap": server.imap_port,
            "imaps": server.imaps_port, "pop3": server.pop3_port, "pop3s": server.pop3s_port,
            "https": server.http_port}[listener]


# ---------------------------------------------------------------------- the stdlib scanner

class _Plain:
    """Line reading on the plain-text socket that never reads past the upgrade reply."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def line(self) -> bytes:
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(4096)
            assert chunk, f"connection closed before the TLS upgrade: {self.buf!r}"
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def smtp_reply(self) -> list[bytes]:
        lines = [self.line()]
        while lines[-1][3:4] == b"-":
            lines.append(self.line())
        return lines


def _upgrade(sock: socket.socket, protocol: str) -> None:
    """The plain-text part of a STARTTLS connection. Anything unexpected fails the test (a
    listener that cannot upgrade must not pass as one that refuses old protocols)."""
    plain = _Plain(sock)
    if protocol == "smtp":
        assert plain.smtp_reply()[0].startswith(b"220")
        sock.sendall(b"EHLO probe.example.test\r\n")
        ehlo = plain.smtp_reply()
        assert any(x[4:].upper() == b"STARTTLS" for x in ehlo), ehlo
        sock.sendall(b"STARTTLS\r\n")
        assert plain.smtp_reply()[0].startswith(b"220")
    elif protocol == "imap":
        assert plain.line().startswith(b"* OK")
        sock.sendall(b"a STARTTLS\r\n")
        assert plain.line().startswith(b"a OK")
    else:
        assert plain.line().startswith(b"+OK")
        sock.sendall(b"STLS\r\n")
        assert plain.line().startswith(b"+OK")
    assert plain.buf == b""


def _handshake(port: int, starttls: str | None, version: ssl.TLSVersion,
               ciphers: str) -> tuple[str, str] | None:
    """(version, suite) the server agreed to, or None if it refused the handshake."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TLSVersion.TLSv1 and 1.1
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.minimum_version = ctx.maximum_version = version
        ctx.set_ciphers(ciphers + ":@SECLEVEL=0")
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        if starttls:
            _upgrade(sock, starttls)
        try:
            with ctx.wrap_socket(sock) as tls:
                cipher = tls.cipher()
                assert cipher is not None
                return str(tls.version()), cipher[0]
        except (ssl.SSLError, ConnectionError):
            return None


def scan_stdlib(port: int, starttls: str | None) -> Profile:
    assert not ssl.HAS_SSLv2 and not ssl.HAS_SSLv3  # see the module's docstring
    everything = "ALL:COMPLEMENTOFALL"
    found = Profile()
    for version, name in ((ssl.TLSVersion.TLSv1, "TLSv1.0"), (ssl.TLSVersion.TLSv1_1, "TLSv1.1"),
                          (ssl.TLSVersion.TLSv1_3, "TLSv1.3")):
        agreed = _handshake(port, starttls, version, everything)
        if agreed:
            found.versions.add(name)
            if name == "TLSv1.3":
                found.tls13_suites.add(agreed[1])
    # TLS 1.2: first the profile's own suites (must work), then everything else, each
    # accepted suite taken out of the offer until the server refuses what is left.
    agreed = _handshake(port, starttls, ssl.TLSVersion.TLSv1_2, ":".join(sorted(PROFILE_TLS12)))
    if agreed:
        found.tls12_suites.add(agreed[1])
    excluded = set(PROFILE_TLS12)
    while len(excluded) < 200:
        offer = everything + "".join(f":-{suite}" for suite in sorted(excluded))
        agreed = _handshake(port, starttls, ssl.TLSVersion.TLSv1_2, offer)
        if agreed is None:
            break
        found.tls12_suites.add(agreed[1])
        excluded.add(agreed[1])
    if found.tls12_suites:
        found.versions.add("TLSv1.2")
    return found


# ---------------------------------------------------------------------- the sslyze scanner

_SSLYZE_COMMANDS = {"ssl_2_0_cipher_suites": "SSLv2", "ssl_3_0_cipher_suites": "SSLv3",
                    "tls_1_0_cipher_suites": "TLSv1.0", "tls_1_1_cipher_suites": "TLSv1.1",
                    "tls_1_2_cipher_suites": "TLSv1.2", "tls_1_3_cipher_suites": "TLSv1.3"}


def scan_sslyze(server: Server, tmp: Path) -> dict[str, Profile]:
    """One sslyze run per kind of upgrade (none, smtp, imap, pop3), all listeners of a kind
    together; every scan must have completed (an errored scan is a failure, not a pass)."""
    python = _sslyze_python()
    assert python is not None
    groups: dict[str | None, list[str]] = {}
    for listener in LISTENERS:
        groups.setdefault(STARTTLS.get(listener), []).append(listener)
    profiles: dict[str, Profile] = {}
    for starttls, listeners in groups.items():
        out = tmp / f"sslyze-{starttls or 'tls'}.json"
        targets = [f"127.0.0.1:{port_of(server, name)}" for name in listeners]
        result = subprocess.run(
            [python, "-m", "sslyze", "--quiet", f"--json_out={out}", "--mozilla_config=disable",
             "--sslv2", "--sslv3", "--tlsv1", "--tlsv1_1", "--tlsv1_2", "--tlsv1_3",
             *(["--starttls", starttls] if starttls else []), *targets],
            capture_output=True, timeout=300, check=False)
        assert out.exists(), result.stdout.decode() + result.stderr.decode()
        by_port = {port_of(server, name): name for name in listeners}
        for scan in json.loads(out.read_text())["server_scan_results"]:
            name = by_port[scan["server_location"]["port"]]
            assert scan["scan_status"] == "COMPLETED", (name, scan["connectivity_error_trace"])
            profile = profiles[name] = Profile()
            for command, version in _SSLYZE_COMMANDS.items():
                attempt = scan["scan_result"][command]
                assert attempt["status"] == "COMPLETED", (name, command, attempt["error_trace"])
                accepted = {s["cipher_suite"]["openssl_name"]
                            for s in attempt["result"]["accepted_cipher_suites"]}
                if accepted:
                    profile.versions.add(version)
                if version == "TLSv1.2":
                    profile.tls12_suites = accepted
                elif version == "TLSv1.3":
                    profile.tls13_suites = accepted
    return profiles


# ---------------------------------------------------------------------- the checks

@pytest.fixture(scope="module")
def profiles(server: Server, tmp_path_factory: pytest.TempPathFactory
             ) -> dict[str, dict[str, Profile]]:
    found: dict[str, dict[str, Profile]] = {
        "stdlib": {name: scan_stdlib(port_of(server, name), STARTTLS.get(name))
                   for name in LISTENERS}}
    if "sslyze" in SCANNERS:
        found["sslyze"] = scan_sslyze(server, tmp_path_factory.mktemp("sslyze"))
    return found


@pytest.mark.parametrize("scanner", SCANNERS)
@pytest.mark.parametrize("listener", LISTENERS)
def test_listener_follows_the_intermediate_profile(
        profiles: dict[str, dict[str, Profile]], scanner: str, listener: str) -> None:
    profile = profiles[scanner][listener]
    old = profile.versions & {"SSLv2", "SSLv3", "TLSv1.0", "TLSv1.1"}
    assert not old, f"{listener} accepts {sorted(old)}"
    outside = profile.tls12_suites - PROFILE_TLS12
    assert not outside, f"{listener} accepts on TLS 1.2: {sorted(outside)}"
    not_aead = {s for s in profile.tls12_suites if "GCM" not in s and "POLY1305" not in s}
    assert not not_aead, f"{listener} accepts CBC (or other non-AEAD) suites: {not_aead}"
    assert profile.tls12_suites, f"{listener}: no TLS 1.2 handshake with the profile's suites"
    assert "TLSv1.3" in profile.versions and profile.tls13_suites, f"{listener}: no TLS 1.3"


def test_the_scans_leave_no_traceback(server: Server,
                                      profiles: dict[str, dict[str, Profile]]) -> None:
    """Hundreds of refused handshakes, aborted sessions and scanner tricks are what a
    listener on the Internet sees all day: none of them is a server error."""
    assert set(profiles) == set(SCANNERS)  # the scans ran (the fixture), then the log
    log = server.log_path.read_bytes()
    assert b"Traceback" not in log and b"Unhandled" not in log, log.decode(errors="replace")
