"""GET /metrics, /healthz and /readyz on the real HTTP listener, scraped with curl (no
credentials: they bypass the JMAP authentication, which still guards everything else), after
real SMTP, IMAP, POP3 and JMAP traffic; the figures are parsed with prometheus-client's own
text parser and must count exactly what the test did."""

from __future__ import annotations

import imaplib
import json
import poplib
import smtplib
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.jmapclient import Jmap
from tests.e2e.server import Server, wait_port

ALICE = "alice@example.test"
PASSWORD = "secret-password"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    srv = Server(tmp_path)
    srv.add_user(ALICE)
    srv.start()
    wait_port(srv.http_port)
    yield srv
    srv.stop()


def curl(srv: Server, path: str) -> tuple[int, str]:
    result = subprocess.run(
        ["curl", "-sk", "-o", "-", "-w", "\n%{http_code}",
         f"https://127.0.0.1:{srv.http_port}{path}"], capture_output=True, timeout=30,
        check=True)
    body, _, code = result.stdout.decode().rpartition("\n")
    return int(code), body


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(found: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str,
          **labels: str) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


def test_healthz_and_readyz_answer_without_credentials(server: Server) -> None:
    assert curl(server, "/healthz") == (200, "ok\n")
    code, body = curl(server, "/readyz")
    assert code == 200
    assert json.loads(body) == {"mailstore": "ok", "queue": "ok", "search": "ok", "blobs": "ok"}
    # Everything else still needs credentials.
    assert curl(server, "/jmap/session")[0] == 401


def test_metrics_count_the_traffic(server: Server) -> None:
    before = samples(curl(server, "/metrics")[1])
    assert value(before, "mailyard_mails_total", outcome="accepted") == 0
    assert value(before, "mailyard_mails_total", outcome="dead_lettered") == 0
    with smtplib.SMTP("127.0.0.1", server.smtp_port) as smtp:
        for n in range(3):
            smtp.sendmail("carol@elsewhere.test", [ALICE],
                          f"Subject: metrics {n}\r\n\r\nHello {n}.\r\n".encode())
    server.wait_emails(ALICE, 3)
    server.wait_queue_empty()
    with imaplib.IMAP4("127.0.0.1", server.imap_port) as imap:
        imap.login(ALICE, PASSWORD)
        imap.select("INBOX")
        imap.fetch("1:*", "(FLAGS)")
        imap.fetch("1:*", "(FLAGS)")
        imap.logout()
    pop = poplib.POP3("127.0.0.1", server.pop3_port)
    pop.user(ALICE)
    pop.pass_(PASSWORD)
    assert pop.stat()[0] == 3
    pop.quit()
    jmap = Jmap(server, ALICE)
    jmap.call("Email/query", filter={"text": "hello"})

    code, text = curl(server, "/metrics")
    assert code == 200
    found = samples(text)
    assert value(found, "mailyard_mails_total", outcome="accepted") == 3
    assert value(found, "mailyard_mails_total", outcome="delivered") == 3
    assert value(found, "mailyard_mails_total", outcome="deferred") == 0
    assert value(found, "mailyard_connections_total", protocol="smtp") == 1
    assert value(found, "mailyard_connections_total", protocol="imap") == 1
    assert value(found, "mailyard_connections_total", protocol="pop3") == 1
    assert value(found, "mailyard_open_connections", protocol="imap") == 0
    count = "mailyard_command_seconds_count"
    assert value(found, count, protocol="smtp", command="DATA") == 3
    assert value(found, count, protocol="smtp", command="RCPT") == 3
    assert value(found, count, protocol="imap", command="FETCH") == 2
    assert value(found, count, protocol="imap", command="LOGIN") == 1
    assert value(found, count, protocol="pop3", command="STAT") == 1
    assert value(found, count, protocol="jmap", command="Email/query") == 1
    fetch_le_inf = value(found, "mailyard_command_seconds_bucket", protocol="imap",
                         command="FETCH", le="+Inf")
    assert fetch_le_inf == 2
    assert value(found, "mailyard_search_seconds_count") >= 1
    for state in ("ready", "leased", "delayed", "dead"):
        assert ("mailyard_queue_items", frozenset({("state", state)})) in found
        assert value(found, "mailyard_queue_items", state=state) == 0
    assert value(found, "mailyard_queue_oldest_age_seconds") == 0
    assert value(found, "mailyard_store_bytes", store="blobs") > 0
    assert value(found, "mailyard_store_bytes", store="mail") > 0


def test_queue_gauges_see_a_waiting_item(tmp_path: Path) -> None:
    """A message the pipeline cannot deliver yet (Bob's quota is full, retry in an hour) is
    counted as delayed, and the oldest-item age grows."""
    srv = Server(tmp_path, queue={"backoff_base": 3600.0, "max_attempts": 5})
    srv.add_user("bob@example.test")
    srv.cli("user", "quota", "bob@example.test", "1K")
    srv.start()
    try:
        wait_port(srv.http_port)
        with smtplib.SMTP("127.0.0.1", srv.smtp_port) as smtp:
            smtp.ehlo()
            assert smtp.mail("carol@elsewhere.test")[0] == 250
            assert smtp.rcpt("bob@example.test")[0] == 250
            body = b"Subject: big\r\n\r\n" + (b"y" * 70 + b"\r\n") * 50
            assert smtp.data(body)[0] == 250
        # One scrape reads the queue's gauges before it writes the counters, so it can see
        # the deferral counted and the item not yet delayed: wait for a scrape with both.
        deadline = time.monotonic() + 60
        while True:
            found = samples(curl(srv, "/metrics")[1])
            if value(found, "mailyard_mails_total", outcome="deferred") == 1 \
                    and value(found, "mailyard_queue_items", state="delayed") == 1:
                break
            assert time.monotonic() < deadline, f"no deferral seen: {found}"
            time.sleep(0.1)
        assert value(found, "mailyard_mails_total", outcome="deferred") == 1
        assert value(found, "mailyard_queue_items", state="delayed") == 1
        assert value(found, "mailyard_queue_oldest_age_seconds") > 0
    finally:
        srv.stop()
