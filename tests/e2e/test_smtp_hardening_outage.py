"""An engine outage under SMTP (issue 17): Mailyard on a private PostgreSQL that the test stops
and starts again. While it is down every stage answers 451 4.3.0 (a temporary failure the
sender retries), never a 5xx that would bounce the mail, and no exception text reaches the
client; once it is back, mail is accepted and delivered without restarting Mailyard."""

from __future__ import annotations

import base64
import smtplib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.server import Server
from tests.faults import PrivatePostgres

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "postgres-up.sh"
ALICE, PASSWORD = "alice@example.test", "secret-password"
CAROL = "carol@remote.test"


@pytest.fixture
def postgres() -> Iterator[PrivatePostgres]:
    pg = PrivatePostgres()
    yield pg
    pg.remove()


def message(subject: str, sender: str = CAROL) -> bytes:
    return (f"From: <{sender}>\r\nTo: <{ALICE}>\r\nSubject: {subject}\r\n"
            "Date: Sat, 28 Nov 2026 10:00:00 +0000\r\n\r\nHello.\r\n").encode()


def plain(user: str, password: str = PASSWORD) -> str:
    return base64.b64encode(f"\0{user}\0{password}".encode()).decode()


class Replies:
    """Every reply the clients saw while the engine was down."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, int, str]] = []

    def add(self, stage: str, code: int, text: bytes | str) -> tuple[int, str]:
        reply = text.decode(errors="replace") if isinstance(text, bytes) else text
        self.seen.append((stage, code, reply))
        return code, reply

    def check(self) -> None:
        for stage, code, reply in self.seen:
            assert code < 500, f"{stage}: {code} {reply}: a 5xx bounces the mail"
            assert not any(word in reply for word in
                           ("Error", "Exception", "Errno", "refused", "asyncpg", "sqlite")), \
                f"{stage}: exception text reached the client: {reply}"


def test_postgres_outage_is_451_at_every_stage_and_recovers_without_restart(
        tmp_path: Path, postgres: PrivatePostgres) -> None:
    server = Server(tmp_path / "srv", store={
        "metadata": postgres.database("mailyard_outage"), "search": "postgresql"})
    server.add_user(ALICE, PASSWORD)
    server.start()
    try:
        with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=60) as smtp:
            smtp.sendmail(CAROL, [ALICE], message("before"))
        server.wait_emails(ALICE, 1)

        # Transactions opened while the engine is up, finished while it is down (DATA).
        mx = smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=60)
        mx.ehlo("client.remote.test")
        assert mx.mail(CAROL)[0] == 250 and mx.rcpt(ALICE)[0] == 250
        msa = smtplib.SMTP("127.0.0.1", server.submission_port, timeout=60)
        msa.ehlo("client.example.test")
        assert msa.docmd("AUTH", f"PLAIN {plain(ALICE)}")[0] == 235
        assert msa.mail(ALICE)[0] == 250 and msa.rcpt(ALICE)[0] == 250

        postgres.stop()
        seen = Replies()
        # The MX's queue and spool are on local disk here: the message may be made durable
        # without PostgreSQL (250, delivered once it is back), or refused for now (451).
        code, reply = seen.add("MX DATA", *mx.data(message("queued during")))
        assert code in (250, 451), reply
        queued_during = code == 250
        # The submission stores the Sent copy in PostgreSQL before it may say 250.
        code, reply = seen.add("MSA DATA", *msa.data(message("during", ALICE)))
        assert (code, reply[:5]) == (451, "4.3.0"), reply
        mx.quit()
        msa.quit()

        with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=60) as smtp:
            seen.add("MX EHLO", *smtp.ehlo("client.remote.test"))
            code, _ = seen.add("MX MAIL", *smtp.mail(CAROL))
            if code == 250:
                code, reply = seen.add("MX RCPT", *smtp.rcpt(ALICE))
                assert (code, reply[:5]) == (451, "4.3.0"), reply
        with smtplib.SMTP("127.0.0.1", server.submission_port, timeout=60) as smtp:
            seen.add("MSA EHLO", *smtp.ehlo("client.example.test"))
            code, reply = seen.add("MSA AUTH", *smtp.docmd("AUTH", f"PLAIN {plain(ALICE)}"))
            assert (code, reply[:5]) == (451, "4.3.0"), reply
            assert smtp.noop()[0] == 250, "the session goes on after a 451"
        seen.check()

        postgres.start()
        deadline = time.monotonic() + 60
        while True:  # the sender's retry: 451 until the engine answers again, then 250
            with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=60) as smtp:
                smtp.ehlo("client.remote.test")
                smtp.mail(CAROL)
                code, reply = smtp.rcpt(ALICE)
                if code == 250:
                    code, reply = smtp.data(message("after"))
                seen.add("MX after restart", code, reply)
            if code == 250 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert code == 250, reply
        with smtplib.SMTP("127.0.0.1", server.submission_port, timeout=60) as smtp:
            smtp.login(ALICE, PASSWORD)
            smtp.sendmail(ALICE, [ALICE], message("submitted after", ALICE))
        seen.check()
        expected = {"before", "after", "submitted after"} | (
            {"queued during"} if queued_during else set())
        emails = server.wait_emails(ALICE, len(expected), timeout=90)
        assert sorted(e["subject"] for e in emails) == sorted(expected), \
            "every acknowledged message delivered exactly once, the refused one never"
    finally:
        server.stop()
    log = server.log_path.read_text(errors="replace")
    assert "answered 451" in log, "the outage is logged server-side"
    assert "SMTP session exception" not in log, "aiosmtpd's own 500 path was taken"


def test_an_outage_logs_one_traceback_per_burst(tmp_path: Path,
                                                postgres: PrivatePostgres) -> None:
    """Every RCPT of every connection fails the same way while the engine is down: the first
    is logged with its traceback, the others within the minute one line each."""
    server = Server(tmp_path / "srv", store={
        "metadata": postgres.database("mailyard_burst"), "search": "postgresql"})
    server.add_user(ALICE, PASSWORD)
    server.start()
    tries = 8
    try:
        postgres.stop()
        with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=60) as smtp:
            smtp.ehlo("client.remote.test")
            assert smtp.mail(CAROL)[0] == 250
            for _ in range(tries):
                code, reply = smtp.rcpt(ALICE)
                assert (code, reply[:5]) == (451, b"4.3.0"), reply
    finally:
        server.stop()
    lines = server.log_path.read_text(errors="replace").splitlines()
    faults = [n for n, line in enumerate(lines) if "RCPT" in line and "answered 451" in line]
    assert len(faults) == tries, lines[-40:]
    with_traceback = [n for n in faults
                      if n + 1 < len(lines) and lines[n + 1].startswith("Traceback")]
    assert with_traceback == faults[:1], "only the first of the burst has its traceback"
    assert all("traceback logged within" in lines[n] for n in faults[1:]), lines[faults[1]]
