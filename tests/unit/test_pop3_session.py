"""Fuzzing a real POP3 session: an in-process listener on the embedded stores, driven over a
loopback socket with random and mutated command lines. Whatever arrives, every line gets one
+OK or -ERR answer (multi-line ones properly ended) and the session keeps serving."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailyard.app import Runtime
from mailyard.config import Auth, Config
from mailyard.protocols.pop3.server import start_pop3
from mailyard.protocols.pop3.session import POP3Policy, POP3Services
from mailyard.store.ports import Account

ALICE = "alice@example.test"
PASSWORD = "pop3 fuzz password"
MESSAGE = (b"From: a@example.test\r\nSubject: fuzz\r\n\r\n.leading dot\r\nbody\r\n")
MAX_LINE = 512

VALID = [b"STAT", b"LIST", b"LIST 1", b"LIST 2", b"UIDL", b"UIDL 1", b"RETR 1", b"RETR 3",
         b"TOP 1 0", b"TOP 2 1", b"DELE 1", b"DELE 2", b"RSET", b"NOOP", b"CAPA", b"AUTH",
         b"AUTH PLAIN", b"AUTH PLAIN =", b"USER " + ALICE.encode(), b"PASS wrong", b"APOP a b",
         b"STLS", b"QUIT", b"LIST 0", b"TOP 1", b"RETR 1 2", b"list 1", b"uidl"]


@pytest.fixture(scope="module")
def pop3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Callable[[], None]]]:
    """(port, refill): a listener in a thread of its own; refill() tops the Inbox up to three
    messages, since fuzzed DELE ... QUIT sequences empty it."""
    data_dir: Path = tmp_path_factory.mktemp("pop3")
    loop = asyncio.new_event_loop()
    ready: dict[str, Any] = {}
    started = threading.Event()

    async def setup() -> None:
        # No failed-login limit: the fuzzing logs in wrongly over and over from one address.
        runtime = Runtime.open(Config(data_dir=data_dir, domains=("example.test",), auth=Auth(
            failures_per_network_per_hour=0, failures_per_account_per_hour=0)))
        account = await runtime.accounts.add_user(ALICE, PASSWORD)
        services = POP3Services(runtime.accounts, runtime.mailbox, POP3Policy(
            hostname="fuzz.test", max_line=MAX_LINE, allow_plaintext_loopback=True,
            connections_per_ip=0), tls=None)
        server = await start_pop3(services, "127.0.0.1", 0)
        ready.update(runtime=runtime, account=account, server=server,
                     port=server.sockets[0].getsockname()[1])

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(setup())
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert started.wait(60)
    runtime: Runtime = ready["runtime"]
    account: Account = ready["account"]

    async def top_up() -> None:
        inbox = await runtime.mailbox.mailbox(account, "INBOX")
        have = len((await runtime.mailbox.snapshot(account, inbox)).entries)
        for n in range(have, 3):
            unique = MESSAGE.replace(b"fuzz", b"fuzz %d %f" % (n, time.time()))
            await runtime.mailbox.append(account, inbox, unique)

    def refill() -> None:
        asyncio.run_coroutine_threadsafe(top_up(), loop).result(60)

    refill()
    port: int = ready["port"]
    yield port, refill
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


def multiline_expected(line: bytes) -> bool:
    """RFC 1939/2449: which commands answer +OK with a multi-line response."""
    try:
        keyword, _, rest = line.decode("utf-8").partition(" ")
    except UnicodeDecodeError:
        return False
    keyword = keyword.upper()
    return keyword in ("CAPA", "RETR", "TOP") or (keyword in ("LIST", "UIDL", "AUTH")
                                                  and not rest.split())


class Client:
    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=20)
        self.file = self.sock.makefile("rb")
        assert self.file.readline().startswith(b"+OK")

    def send(self, line: bytes) -> bytes:
        self.sock.sendall(line + b"\r\n")
        return self.file.readline()

    def rest_of_multiline(self) -> None:
        while (line := self.file.readline()) != b".\r\n":
            assert line.endswith(b"\r\n"), line

    def log_in(self) -> None:
        deadline = time.monotonic() + 10
        while True:  # the previous example's lock goes once the server has seen its EOF
            assert self.send(b"USER " + ALICE.encode()).startswith(b"+OK")
            answer = self.send(b"PASS " + PASSWORD.encode())
            if answer.startswith(b"+OK"):
                return
            assert b"[IN-USE]" in answer and time.monotonic() < deadline, answer
            time.sleep(0.05)


def clean(data: bytes) -> bytes:
    return data.replace(b"\r", b"").replace(b"\n", b"")


LINES = st.one_of(
    st.sampled_from(VALID),
    st.tuples(st.sampled_from(VALID), st.binary(max_size=12), st.integers(0, 20))
    .map(lambda t: t[0][:t[2]] + t[1] + t[0][t[2]:]),
    st.binary(max_size=80),
    st.binary(min_size=MAX_LINE, max_size=MAX_LINE + 300),
).map(clean)


@given(lines=st.lists(LINES, min_size=1, max_size=10), log_in=st.booleans())
@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_every_line_gets_ok_or_err(pop3: tuple[int, Callable[[], None]], lines: list[bytes],
                                   log_in: bool) -> None:
    port, refill = pop3
    refill()
    client = Client(port)
    try:
        if log_in:
            client.log_in()
        for line in lines:
            answer = client.send(line)
            if answer == b"+ \r\n":  # AUTH PLAIN waits for the client's response
                answer = client.send(b"*")
                assert answer.startswith(b"-ERR"), answer
                continue
            assert answer.startswith((b"+OK", b"-ERR")), (line, answer)
            assert answer.endswith(b"\r\n")
            if answer.startswith(b"+OK") and multiline_expected(line):
                client.rest_of_multiline()
            if answer.startswith(b"+OK") and line.upper().startswith(b"QUIT"):
                assert client.file.readline() == b""
                return
        assert client.send(b"CAPA").startswith(b"+OK")
        client.rest_of_multiline()
    finally:
        with contextlib.suppress(OSError):
            client.sock.close()
