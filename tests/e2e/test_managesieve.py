"""ManageSieve (RFC 5804) over a real socket: transcripts of client lines and the exact server
lines, STARTTLS before AUTHENTICATE PLAIN, and two real clients, Debian's `sieve-connect`
and sievelib's ManageSieve client, uploading and activating a script that then files mail."""

from __future__ import annotations

import base64
import os
import re
import smtplib
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.server import Server

ALICE = "alice@example.test"
PASSWORD = "secret-password"
SIEVE_CAP = ('"SIEVE" "fileinto reject ereject envelope body relational variables imap4flags'
             ' date index regex subaddress duplicate editheader mailbox copy vacation'
             ' vacation-seconds encoded-character comparator-i;octet comparator-i;ascii-casemap'
             ' comparator-i;ascii-numeric"')


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(Path(tmp_path_factory.mktemp("managesieve")))
    srv.add_user(ALICE, PASSWORD)
    srv.start()
    yield srv
    srv.stop()


class Wire:
    """A raw ManageSieve connection: send lines, read lines."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.file = self.sock.makefile("rb")

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def line(self) -> bytes:
        return self.file.readline().rstrip(b"\r\n")

    def until_status(self) -> list[bytes]:
        """Lines up to and including the first OK / NO / BYE."""
        out = []
        while True:
            line = self.line()
            out.append(line)
            if re.match(rb"(OK|NO|BYE)\b", line) or not line:
                return out

    def starttls(self) -> list[bytes]:
        self.send(b"STARTTLS\r\n")
        assert self.line() == b'OK "Begin TLS negotiation"'
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        self.sock = context.wrap_socket(self.sock, server_hostname="mx.example.test")
        self.file = self.sock.makefile("rb")
        return self.until_status()

    def login(self) -> None:
        token = base64.b64encode(f"\0{ALICE}\0{PASSWORD}".encode())
        self.send(b'AUTHENTICATE "PLAIN" "' + token + b'"\r\n')
        assert self.line() == b'OK "Logged in"'

    def close(self) -> None:
        self.sock.close()


def greeting_caps(tls: bool) -> list[bytes]:
    caps = [b'"IMPLEMENTATION" "Mailyard"', b'"SASL" "PLAIN"' if tls else b'"SASL" ""',
            SIEVE_CAP.encode()]
    if not tls:
        caps.append(b'"STARTTLS"')
    return [*caps, b'"MAXREDIRECTS" "5"', b'"VERSION" "1.0"']


def test_greeting_starttls_and_authenticate(server: Server) -> None:
    """RFC 5804 §1.7 (greeting), §2.2 (STARTTLS: capabilities again), §2.1 (PLAIN only
    under TLS; the empty challenge form)."""
    w = Wire(server.managesieve_port)
    try:
        assert w.until_status() == [*greeting_caps(False), b'OK "Mailyard ManageSieve ready"']
        w.send(b"LISTSCRIPTS\r\n")
        assert w.line() == b'NO "Authenticate first"'
        token = base64.b64encode(f"\0{ALICE}\0{PASSWORD}".encode())
        w.send(b'AUTHENTICATE "PLAIN" "' + token + b'"\r\n')
        assert w.line() == b'NO (ENCRYPT-NEEDED) "Authentication needs TLS: STARTTLS first"'
        assert w.starttls() == [*greeting_caps(True), b'OK "TLS active"']
        bad = base64.b64encode(f"\0{ALICE}\0wrong".encode())
        w.send(b'AUTHENTICATE "PLAIN" "' + bad + b'"\r\n')
        assert w.line() == b'NO "Invalid credentials"'
        w.send(b'AUTHENTICATE "PLAIN"\r\n')
        assert w.line() == b'""'
        w.send(b'"' + token + b'"\r\n')
        assert w.line() == b'OK "Logged in"'
        w.send(b"CAPABILITY\r\n")
        assert w.until_status()[1] == b'"SASL" ""'  # nothing more to authenticate with
        w.send(b"UNAUTHENTICATE\r\nLISTSCRIPTS\r\n")
        assert w.line() == b"OK"
        assert w.line() == b'NO "Authenticate first"'
        w.send(b"LOGOUT\r\n")
        assert w.line() == b'OK "Bye"'
    finally:
        w.close()
    log = server.log_path.read_text()
    assert re.search(r"mailyard\.auth authentication failed: protocol=managesieve"
                     r" user='alice@example\.test' ip=127\.0\.0\.1$", log, re.M)


def test_script_commands(server: Server) -> None:
    """PUTSCRIPT with both literal forms, CHECKSCRIPT's error naming the line, LISTSCRIPTS,
    SETACTIVE, GETSCRIPT, RENAMESCRIPT, DELETESCRIPT with their response codes (§2.5-2.12),
    HAVESPACE (§2.5), NOOP with a tag (§2.13)."""
    w = Wire(server.managesieve_port)
    try:
        w.until_status()
        w.starttls()
        w.login()
        script = b'require "fileinto";\r\nif header :contains "subject" "x" {\r\n' \
                 b'  fileinto "X";\r\n}\r\n'
        w.send(b'PUTSCRIPT "one" {%d+}\r\n' % len(script) + script + b"\r\n")
        assert w.line() == b"OK"
        w.send(b'PUTSCRIPT "two" {8}\r\ndiscard;\r\n')
        assert w.line() == b"OK"
        broken = b'if true {\r\n  keep\r\n}\r\n'
        w.send(b"CHECKSCRIPT {%d+}\r\n" % len(broken) + broken + b"\r\n")
        assert w.line() == b'NO "line 3: expected \\";\\" or \\"{\\" after keep, found \'}\'"'
        w.send(b'PUTSCRIPT "bad" "fileinto \\"x\\";"\r\n')
        assert w.line() == b'NO "line 1: fileinto needs require \\"fileinto\\""'
        w.send(b'CHECKSCRIPT "keep;"\r\n')
        assert w.line() == b"OK"
        w.send(b'SETACTIVE "one"\r\nLISTSCRIPTS\r\n')
        assert w.line() == b"OK"
        assert w.until_status() == [b'"one" ACTIVE', b'"two"', b"OK"]
        w.send(b'GETSCRIPT "one"\r\n')
        assert w.line() == b"{%d}" % len(script)
        assert w.file.read(len(script)) == script
        assert w.line() == b""
        assert w.line() == b"OK"
        w.send(b'GETSCRIPT "nope"\r\n')
        assert w.line() == b'NO (NONEXISTENT) "There is no script \'nope\'"'
        w.send(b'DELETESCRIPT "one"\r\n')
        assert w.line() == b'NO (ACTIVE) "script \'one\' is active"'
        w.send(b'RENAMESCRIPT "one" "two"\r\n')
        assert w.line() == b'NO (ALREADYEXISTS) "A script \'two\' exists"'
        w.send(b'RENAMESCRIPT "one" "uno"\r\nLISTSCRIPTS\r\n')
        assert w.line() == b"OK"
        assert w.until_status() == [b'"two"', b'"uno" ACTIVE', b"OK"]
        w.send(b'DELETESCRIPT "two"\r\nSETACTIVE ""\r\nLISTSCRIPTS\r\n')
        assert w.line() == b"OK"
        assert w.line() == b"OK"
        assert w.until_status() == [b'"uno"', b"OK"]
        w.send(b'HAVESPACE "big" 100000000\r\n')
        assert w.line() == b'NO (QUOTA/MAXSIZE) "script larger than 65536 octets"'
        w.send(b'HAVESPACE "small" 100\r\n')
        assert w.line() == b"OK"
        w.send(b'NOOP "tag-1"\r\n')
        assert w.line() == b'OK (TAG "tag-1") "Done"'
        w.send(b"FROB\r\n")
        assert w.line() == b'NO "Unknown command FROB"'
        w.send(b"LOGOUT\r\n")
        assert w.line() == b'OK "Bye"'
    finally:
        w.close()


def _wait_subject_in(server: Server, mailbox: str, subject: str) -> bool:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if any(e.get("subject") == subject
               for e in server.emails(ALICE, label=mailbox)):
            return True
        time.sleep(0.3)
    return False


def _send(server: Server, subject: str) -> None:
    with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=30) as smtp:
        smtp.sendmail("x@remote.test", [ALICE],
                      f"From: x@remote.test\r\nTo: {ALICE}\r\nSubject: {subject}\r\n\r\nhi\r\n")


def test_sieve_connect_uploads_and_activates(server: Server, tmp_path: Path) -> None:
    script = tmp_path / "filter.sieve"
    script.write_text('require ["fileinto", "mailbox"];\n'
                      'if header :contains "subject" "via sieve-connect" {\n'
                      '  fileinto :create "Connected";\n}\n')
    read, write = os.pipe()
    os.write(write, PASSWORD.encode() + b"\n")
    os.close(write)
    base = ["sieve-connect", "--server", "127.0.0.1", "--port", str(server.managesieve_port),
            "--user", ALICE, "--passwordfd", str(read), "--notlsverify",
            "--authmech", "PLAIN"]
    try:
        result = subprocess.run([*base, "--upload", "--localsieve", str(script),
                                 "--remotesieve", "connected"], pass_fds=(read,),
                                capture_output=True, timeout=60, check=False)
    finally:
        os.close(read)
    assert result.returncode == 0, result.stderr.decode()
    read, write = os.pipe()
    os.write(write, PASSWORD.encode() + b"\n")
    os.close(write)
    base[base.index("--passwordfd") + 1] = str(read)
    try:
        result = subprocess.run([*base, "--activate", "--remotesieve", "connected"],
                                pass_fds=(read,), capture_output=True, timeout=60,
                                check=False)
    finally:
        os.close(read)
    assert result.returncode == 0, result.stderr.decode()
    assert "* connected" in server.cli("sieve", "list", ALICE).stdout.decode()
    _send(server, "via sieve-connect")
    assert _wait_subject_in(server, "Connected", "via sieve-connect")


def test_sievelib_client(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    import sievelib.managesieve
    from sievelib.managesieve import Client

    default_context = ssl.create_default_context

    def trusting_our_certificate() -> ssl.SSLContext:
        """The client's TLS set up to trust the server's self-signed certificate, whose name
        (mx.example.test) is not the address it connects to."""
        context = default_context(cafile=server.data_dir / "tls-cert.pem")
        context.check_hostname = False
        return context

    monkeypatch.setattr(sievelib.managesieve.ssllib, "create_default_context",
                        trusting_our_certificate)
    client = Client("127.0.0.1", server.managesieve_port)
    assert client.connect(ALICE, PASSWORD, starttls=True, authmech="PLAIN")
    try:
        assert client.checkscript('require "fileinto";\nfileinto "Lib";\n')
        assert not client.checkscript('fileinto "Lib";\n')
        assert client.putscript("lib", 'require ["fileinto", "mailbox"];\n'
                                        'if header :contains "subject" "via sievelib" {\n'
                                        '  fileinto :create "Lib";\n}\n')
        assert client.setactive("lib")
        active, others = client.listscripts()
        assert active == "lib"
        assert "fileinto :create" in client.getscript("lib")
    finally:
        client.logout()
    _send(server, "via sievelib")
    assert _wait_subject_in(server, "Lib", "via sievelib")


def test_malformed_commands_are_refused_and_the_session_goes_on(server: Server) -> None:
    w = Wire(server.managesieve_port)
    try:
        w.until_status()
        w.starttls()
        w.login()
        for line, answer in [
            (b"PUTSCRIPT\r\n", b'NO "PUTSCRIPT takes 2 string arguments"'),
            (b'PUTSCRIPT "a"\r\n', b'NO "PUTSCRIPT takes 2 string arguments"'),
            (b'GETSCRIPT "unterminated\r\n', b'NO "syntax error in the arguments"'),
            (b'"no command"\r\n', b'NO "a command starts with its name"'),
            (b"\r\n", b'NO "empty command"'),
            (b'HAVESPACE "a" "b"\r\n', b'NO "HAVESPACE takes a script name and a size"'),
            (b"GETSCRIPT \xff\xfe\r\n", b'NO "syntax error in the arguments"'),
            (b'PUTSCRIPT "\x01bad" "keep;"\r\n', b'NO "bad script name \'\\\\x01bad\'"'),
        ]:
            w.send(line)
            assert w.line() == answer, line
        w.send(b'NOOP\r\n')
        assert w.line() == b'OK "Done"'
        w.send(b'PUTSCRIPT "huge" {99999999+}\r\n')
        assert w.line() == (b'BYE (QUOTA/MAXSIZE) "literal of 99999999 octets is over the'
                            b' limit of 66560"')
        assert w.line() == b""  # closed
    finally:
        w.close()
