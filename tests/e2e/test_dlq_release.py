"""Held spam can be released, and dead letters expire (issue 25).

Spam for an alias's remote target is held in the dead-letter queue (services/routing_delivery
.py). `mailyard dlq release ID` sends it over SMTP to the loopback remote MX (tests/fakemx.py)
as if it were not spam: it arrives once, from the SRS address, with the alias's Delivered-To;
a second release, a `retry` of held spam and the release of a dead letter that is no held
spam each answer one line, exit status 2, no traceback.

`mailyard gc` deletes dead letters older than `[queue] dead_letter_days` (30): the age is
put into the stored `died_at` (no waiting for the clock), and a letter of today stays. With
MAILYARD_TEST_CLUSTER=nats all of it runs on the NATS JetStream queue.
"""

from __future__ import annotations

import asyncio
import email.utils
import smtplib
import sqlite3
import time
import tomllib
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest

from mailyard.services.delivery import spool_id
from tests.dnsserver import TestDNS
from tests.e2e.server import Server, wait_port
from tests.fakemx import FakeMX, Received

ALICE, BOB = "alice@example.test", "bob@example.test"
FWD = "fwd@example.test"
FAR = "far@elsewhere.test"
GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"


@pytest.fixture(scope="module")
def dns_double() -> Iterator[TestDNS]:
    with TestDNS({
        ("elsewhere.test", "MX"): ["10 mx.elsewhere.test."],
        ("mx.elsewhere.test", "A"): ["127.0.0.1"],
        ("example.test", "TXT"): ["v=spf1 ip4:127.0.0.0/8 -all"],
    }) as server:
        yield server


@pytest.fixture(scope="module")
def mx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeMX]:
    with FakeMX(tmp_path_factory.mktemp("mx")) as server:
        yield server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, mx: FakeMX,
           dns_double: TestDNS) -> Iterator[Server]:
    """max_attempts 1: a delivery over quota is a dead letter at once (one that is no held
    spam)."""
    srv = Server(tmp_path_factory.mktemp("dlq"), queue={"max_attempts": 1},
                 outbound={"port": mx.port, "retry_schedule": [1.0]},
                 dns={"nameservers": [dns_double.address], "timeout": 2.0})
    with srv.config_path.open("a") as f:
        f.write('[routing]\nsrs_domain = "example.test"\n')
    for user in (ALICE, BOB):
        srv.add_user(user)
    srv.cli("alias", "add", FWD, FAR)
    srv.cli("user", "quota", BOB, "2K")
    srv.start()
    wait_port(srv.http_port)
    yield srv
    srv.stop()


def send(server: Server, rcpt: str, subject: str, body: str) -> None:
    """Without SIZE, so that a message over Bob's quota is accepted and then refused by the
    delivery (a dead letter), as in tests/e2e/test_gc.py."""
    m = EmailMessage()
    m["From"], m["To"], m["Subject"] = "Dora <dora@sender.test>", rcpt, subject
    m["Message-ID"] = f"<{time.monotonic_ns()}@sender.test>"
    m["Date"] = email.utils.formatdate()
    m.set_content(body)
    with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=30) as smtp:
        smtp.ehlo("sender.test")
        assert smtp.mail("dora@sender.test")[0] == 250
        assert smtp.rcpt(rcpt)[0] == 250
        assert smtp.data(m.as_bytes())[0] == 250


def arrived(mx: FakeMX, subject: str) -> list[Received]:
    return [r for r in mx.received if f"Subject: {subject}".encode() in r.data]


def dead_letters(server: Server) -> dict[str, str]:
    """Dead letter id -> its `dlq list` line."""
    out = server.cli("dlq", "list").stdout.decode()
    return {line.split("\t")[0]: line for line in out.splitlines() if "\t" in line}


def wait_dead(server: Server, marker: str, timeout: float = 60.0) -> str:
    """The id of the dead letter whose line has `marker`, once there is one."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for ident, line in dead_letters(server).items():
            if marker in line:
                return ident
        time.sleep(0.2)
    raise AssertionError(f"no dead letter with {marker!r}: {dead_letters(server)}")


def age_dead_letter(server: Server, item_id: str, seconds: float) -> None:
    """Make the dead letter `seconds` older by its stored `died_at`: in queue.db, or (with
    MAILYARD_TEST_CLUSTER=nats) by publishing its JSON again on its subject of the dead
    stream, which keeps one message per subject."""
    if not server.cluster:
        with sqlite3.connect(server.data_dir / "queue.db") as db:
            assert db.execute("UPDATE dead SET died_at = died_at - ? WHERE id = ?",
                              (seconds, item_id)).rowcount == 1
        return
    import nats
    import orjson

    from mailyard.store.nats.connection import stream_name, subject_token

    cluster = tomllib.loads(server.config_path.read_text())["cluster"]
    subject = f"{cluster['prefix']}.dead.{subject_token(item_id)}"

    async def republish() -> None:
        nc = await nats.connect(cluster["nats"][0])
        try:
            js = nc.jetstream()
            last = await js.get_last_msg(stream_name(cluster["prefix"], "dead"), subject)
            letter = orjson.loads(last.data or b"")
            letter["died_at"] -= seconds
            await js.publish(subject, orjson.dumps(letter))
        finally:
            await nc.close()

    asyncio.run(republish())


def one_line_error(server: Server, *args: str) -> str:
    result = server.cli(*args, check=False)
    err = result.stderr.decode()
    assert result.returncode == 2, (result.returncode, result.stdout, err)
    assert err.startswith("mailyard: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    return err


def test_released_spam_reaches_the_remote_target_once(server: Server, mx: FakeMX) -> None:
    send(server, FWD, "held spam", f"Buy now {GTUBE}\n")
    held = wait_dead(server, f"not forwarded to {FAR}")
    server.wait_queue_empty()
    assert not arrived(mx, "held spam")

    err = one_line_error(server, "dlq", "retry", held)  # it would only be held again
    assert f"mailyard dlq release {held}" in err, err
    assert held in dead_letters(server)

    out = server.cli("dlq", "release", held).stdout.decode()
    assert out.startswith(f"{held} released: 1 send(s) queued"), out
    assert held not in dead_letters(server)
    deadline = time.monotonic() + 60
    while not arrived(mx, "held spam") and time.monotonic() < deadline:
        time.sleep(0.1)
    [copy] = arrived(mx, "held spam")
    assert copy.recipients == [FAR]
    assert copy.mail_from.startswith("SRS0=") and copy.mail_from.endswith("@example.test")
    assert f"Delivered-To: {FWD}".encode() in copy.data
    assert GTUBE.encode() in copy.data and not copy.data.startswith(b"Return-Path:")

    err = one_line_error(server, "dlq", "release", held)
    assert f"no dead letter {held}" in err, err
    server.wait_queue_empty()
    assert len(arrived(mx, "held spam")) == 1, "sent once, however often released"
    assert held not in dead_letters(server)


def test_only_held_spam_is_released(server: Server, mx: FakeMX) -> None:
    send(server, BOB, "over quota", "B" * 5000 + "\n")
    dead = wait_dead(server, BOB)
    err = one_line_error(server, "dlq", "release", dead)
    assert "is not spam held from remote targets" in err, err
    assert dead in dead_letters(server), "a refused release keeps the letter"
    one_line_error(server, "dlq", "release", "q-no-such-item")
    server.cli("dlq", "drop", dead)


def test_gc_deletes_dead_letters_older_than_the_retention(server: Server) -> None:
    send(server, FWD, "old spam", f"Cheap pills {GTUBE}\n")
    old = wait_dead(server, "not forwarded to")
    send(server, BOB, "young failure", "Y" * 5000 + "\n")
    young = wait_dead(server, BOB)
    server.wait_queue_empty()
    age_dead_letter(server, old, 31 * 86400)

    result = server.cli("gc", "--dry-run")
    assert "1 dead letter(s) older than 30 days would be deleted" in result.stderr.decode()
    assert set(dead_letters(server)) == {old, young}

    result = server.cli("gc", "--grace", "0")
    summary = result.stderr.decode()
    assert "1 dead letter(s) older than 30 days deleted" in summary, summary
    assert set(dead_letters(server)) == {young}
    freed = {line.split("\t")[1] for line in result.stdout.decode().splitlines()}
    assert spool_id(old) in freed, (freed, summary)  # its message goes with it
    assert spool_id(young) not in freed
    server.cli("dlq", "show", young)
    server.cli("dlq", "drop", young)


def test_a_retention_of_0_keeps_dead_letters(tmp_path: Path) -> None:
    srv = Server(tmp_path, queue={"max_attempts": 1, "dead_letter_days": 0})
    srv.add_user(BOB)
    srv.cli("user", "quota", BOB, "2K")
    srv.start()
    try:
        send(srv, BOB, "kept", "K" * 5000 + "\n")
        dead = wait_dead(srv, BOB)
    finally:
        srv.stop()
    age_dead_letter(srv, dead, 3650 * 86400)
    assert "dead letter" not in srv.cli("gc").stderr.decode()
    assert set(dead_letters(srv)) == {dead}
