"""ManageSieve against hostile clients (security review of issue 25): what was sent in
plaintext after STARTTLS is never run as if it came over TLS (CVE-2011-0411's class), an
unauthenticated client cannot make the server hold more than a few KB (many literals, a huge
SASL literal), and a number of thousands of digits is a syntax error, not a traceback."""

from __future__ import annotations

import base64
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.server import Server
from tests.e2e.test_managesieve import ALICE, PASSWORD, Wire, greeting_caps


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(Path(tmp_path_factory.mktemp("managesieve-hardening")))
    srv.add_user(ALICE, PASSWORD)
    srv.start()
    yield srv
    srv.stop()


def _tls(w: Wire) -> None:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    w.sock = context.wrap_socket(w.sock, server_hostname="mx.example.test")
    w.file = w.sock.makefile("rb")


def test_plaintext_pipelined_after_starttls_is_discarded(server: Server) -> None:
    token = base64.b64encode(f"\0{ALICE}\0{PASSWORD}".encode())
    w = Wire(server.managesieve_port)
    try:
        w.until_status()
        w.send(b'STARTTLS\r\nAUTHENTICATE "PLAIN" "' + token + b'"\r\nNOOP "INJECTED"\r\n')
        assert w.line() == b'OK "Begin TLS negotiation"'
        _tls(w)
        assert w.until_status() == [*greeting_caps(True), b'OK "TLS active"']
        w.send(b'NOOP "after"\r\nLISTSCRIPTS\r\n')
        assert w.line() == b'OK (TAG "after") "Done"', "the injected commands never ran"
        assert w.line() == b'NO "Authenticate first"', "the injected login never ran"
    finally:
        w.close()


def test_literals_before_authentication_are_small_and_few(server: Server) -> None:
    w = Wire(server.managesieve_port)
    try:
        w.until_status()
        w.send(b"NOOP {9000+}\r\n")
        assert w.line() == b'BYE (QUOTA/MAXSIZE) "literal of 9000 octets is over the limit' \
                           b' of 8192"'
        assert w.line() == b"", "the connection is closed"
    finally:
        w.close()
    w = Wire(server.managesieve_port)
    try:
        w.until_status()
        w.send(b"NOOP " + b"{10+}\r\n0123456789 " * 9 + b"\r\n")
        assert w.line() == b'BYE (QUOTA/MAXSIZE) "a command may hold at most 8 literals and' \
                           b' 40960 octets"'
    finally:
        w.close()


def test_a_huge_sasl_literal_ends_the_session(server: Server) -> None:
    w = Wire(server.managesieve_port)
    try:
        w.until_status()
        w.send(b"STARTTLS\r\n")
        assert w.line() == b'OK "Begin TLS negotiation"'
        _tls(w)
        w.until_status()
        w.send(b'AUTHENTICATE "PLAIN"\r\n')
        assert w.line() == b'""'
        w.send(b"{300000000+}\r\n" + b"A" * 65536)
        assert w.line() == b"", "closed without reading 300 MB"
    finally:
        w.close()


def test_a_number_of_thousands_of_digits_is_a_syntax_error(server: Server) -> None:
    w = Wire(server.managesieve_port)
    try:
        w.until_status()
        w.send(b"NOOP " + b"9" * 5000 + b"\r\n")
        assert w.line() == b'NO "syntax error in the arguments"'
        w.send(b'NOOP "still here"\r\n')
        assert w.line() == b'OK (TAG "still here") "Done"'
    finally:
        w.close()
    assert "Traceback" not in server.log_path.read_text()
