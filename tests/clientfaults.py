"""Clients that go away badly, for the listeners' hardening tests (IMAP, POP3): a reset right
after a command, a TLS record that does not decrypt."""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
import struct


def reset_after(port: int, data: bytes, times: int = 20) -> None:
    """Send `data` after the greeting and reset the connection at once (SO_LINGER 0)."""
    for _ in range(times):
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            assert sock.recv(4096)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.sendall(data)


def bad_record_after_handshake(port: int) -> None:
    """Finish a TLS handshake, then send a record that does not decrypt (a broken or hostile
    peer, or a scanner aborting): the server's next read fails with an SSL error."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock, \
            ctx.wrap_socket(sock) as tls:
        assert tls.recv(4096)  # the greeting, over TLS
        raw = socket.socket(fileno=os.dup(tls.fileno()))
        raw.sendall(b"\x17\x03\x03\x00\x20" + b"\x00" * 32)
        raw.close()
        with contextlib.suppress(OSError):
            while tls.recv(4096):
                pass
