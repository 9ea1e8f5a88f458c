"""Sending end to end: submission with AUTH over TLS, delivery to local users and by MX to a
remote server on loopback (aiosmtpd) found through a DNS server on loopback (dnslib), DKIM,
retries, bounces, the dead-letter queue, held and cancelled sends, and relay refusal."""

from __future__ import annotations

import asyncio
import base64
import email
import email.policy
import json
import re
import smtplib
import ssl
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import dkim
import pytest

from mailyard.dns import Resolver
from tests.dnsserver import TestDNS
from tests.e2e.server import Server
from tests.fakemx import FakeMX

ALICE, BOB, PASSWORD = "alice@example.test", "bob@example.test", "secret-password"


def unverified() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def mail(to: list[str], subject: str = "Hello", *, sender: str = ALICE, bcc: str = "",
         body: str = "Hi there.\n", date: bool = True) -> EmailMessage:
    m = EmailMessage()
    m["From"] = f"Alice <{sender}>"
    m["To"] = ", ".join(to)
    if bcc:
        m["Bcc"] = bcc
    m["Subject"] = subject
    if date:
        m["Date"] = "Sun, 29 Nov 2026 10:00:00 +0000"
    m.set_content(body)
    return m


def submit(server: Server, msg: EmailMessage, rcpts: list[str], *, user: str = ALICE,
           mail_options: list[str] | None = None) -> None:
    with smtplib.SMTP("127.0.0.1", server.submission_port) as smtp:
        smtp.starttls(context=unverified())
        smtp.ehlo()
        smtp.login(user, PASSWORD)
        smtp.sendmail(user, rcpts, msg.as_bytes(), mail_options=mail_options or [])


@pytest.fixture
def mx(tmp_path: Path) -> Iterator[FakeMX]:
    with FakeMX(tmp_path / "mx") as server:
        yield server


@pytest.fixture
def dns(mx: FakeMX) -> Iterator[TestDNS]:
    with TestDNS({
        ("remote.test", "MX"): ["10 mx.remote.test."],
        ("mx.remote.test", "A"): ["127.0.0.1"],
        ("other.test", "MX"): ["10 dead.other.test.", "20 mx.other.test."],
        ("dead.other.test", "A"): ["127.0.0.2"],  # nothing listens there: the next MX is tried
        ("mx.other.test", "A"): ["127.0.0.1"],
        ("implicit.test", "A"): ["127.0.0.1"],  # no MX: the A record is the implicit MX
        ("nullmx.test", "MX"): ["0 ."],
        ("unreachable.test", "MX"): ["10 mx.unreachable.test."],
        ("mx.unreachable.test", "A"): ["127.0.0.2"],
    }) as server:
        yield server


def make_server(root: Path, mx: FakeMX, dns: TestDNS, **outbound: Any) -> Server:
    srv = Server(root, outbound={"port": mx.port, "retry_schedule": [1.0], **outbound},
                 dns={"nameservers": [dns.address], "timeout": 2.0})
    srv.add_user(ALICE)
    srv.add_user(BOB)
    return srv


@pytest.fixture
def server(tmp_path: Path, mx: FakeMX, dns: TestDNS) -> Iterator[Server]:
    srv = make_server(tmp_path / "srv", mx, dns)
    srv.start()
    yield srv
    srv.stop()


def inbox(server: Server, address: str, count: int, label: str | None = None,
          timeout: float = 60.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        found = server.emails(address, label)
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def parsed(data: bytes) -> Any:
    return email.message_from_bytes(data, policy=email.policy.default)


# ---------------------------------------------------------------------- who may submit


def test_submission_needs_auth_and_tls(tmp_path: Path, mx: FakeMX, dns: TestDNS) -> None:
    srv = make_server(tmp_path / "srv", mx, dns)
    srv.plaintext_on_loopback = False
    srv.__post_init__()  # rewrite the config with loopback plaintext off
    srv.start()
    try:
        with smtplib.SMTP("127.0.0.1", srv.submission_port) as smtp:
            smtp.ehlo()
            assert not smtp.has_extn("auth"), "AUTH is offered only inside TLS"
            code, _ = smtp.mail(ALICE)
            assert code == 530  # STARTTLS first
            with pytest.raises(smtplib.SMTPException):
                smtp.login(ALICE, PASSWORD)
        with smtplib.SMTP("127.0.0.1", srv.submission_port) as smtp:
            smtp.starttls(context=unverified())
            smtp.ehlo()
            assert smtp.has_extn("auth") and "PLAIN" in smtp.esmtp_features["auth"]
            code, reply = smtp.mail(ALICE)
            assert code == 530 and b"5.7.0" in reply, reply  # no MAIL before AUTH
            with pytest.raises(smtplib.SMTPAuthenticationError) as bad:
                smtp.login(ALICE, "wrong")
            assert bad.value.smtp_code == 535 and b"5.7.8" in bad.value.smtp_error
            smtp.login(ALICE, PASSWORD)
            code, reply = smtp.mail(BOB)
            assert code == 553 and b"5.7.1" in reply, "not alice's address to send as"
        with smtplib.SMTP_SSL("127.0.0.1", srv.submissions_port, context=unverified()) as smtp:
            smtp.login(ALICE, PASSWORD)
            smtp.sendmail(ALICE, ["someone@remote.test"], mail(["someone@remote.test"])
                          .as_bytes())
        assert [r.recipients for r in mx.wait(1, timeout=60)] == [["someone@remote.test"]]
    finally:
        srv.stop()


def test_no_relay_without_auth_on_any_port(server: Server, mx: FakeMX) -> None:
    with smtplib.SMTP("127.0.0.1", server.smtp_port) as smtp:  # the MX role
        smtp.ehlo()
        assert not smtp.has_extn("auth")
        smtp.mail("spammer@evil.test")
        code, reply = smtp.rcpt("victim@remote.test")
        assert code == 550 and b"5.7.1" in reply
    for port in (server.submission_port,):
        with smtplib.SMTP("127.0.0.1", port) as smtp:
            smtp.starttls(context=unverified())
            smtp.ehlo()
            code, _ = smtp.mail("spammer@evil.test")
            assert code == 530
            code, _ = smtp.rcpt("victim@remote.test")
            assert code in (503, 530)
    with smtplib.SMTP_SSL("127.0.0.1", server.submissions_port, context=unverified()) as smtp:
        smtp.ehlo()
        code, _ = smtp.mail("spammer@evil.test")
        assert code == 530
    # The server's own record: nothing was queued, so nothing can leave later either.
    assert server.queue_stats() == {"ready": 0, "leased": 0, "delayed": 0, "dead": 0}
    assert mx.received == []


def test_login_failures_are_limited_per_ip(tmp_path: Path, mx: FakeMX, dns: TestDNS) -> None:
    srv = make_server(tmp_path / "srv", mx, dns)
    srv.auth = {"failures_per_network_per_hour": 3}
    srv.__post_init__()
    srv.start()
    try:
        codes = []
        bad = base64.b64encode(f"\0{ALICE}\0wrong".encode()).decode()
        for _ in range(5):
            with smtplib.SMTP("127.0.0.1", srv.submission_port) as smtp:
                smtp.starttls(context=unverified())
                smtp.ehlo()
                try:
                    codes.append(smtp.docmd("AUTH", f"PLAIN {bad}")[0])
                except smtplib.SMTPServerDisconnected:
                    codes.append(0)
        assert codes[:3] == [535, 535, 535]
        assert all(c in (454, 0) for c in codes[3:]), codes
    finally:
        srv.stop()


# ---------------------------------------------------------------------- delivery


def test_local_and_remote_recipients_sent_copy_bcc_and_dkim(server: Server, mx: FakeMX,
                                                              dns: TestDNS) -> None:
    out = server.cli("domain", "dkim", "generate", "example.test", "--algorithm", "both",
                     "--selector", "s1").stdout.decode()
    records: dict[str, str] = {}
    for line in out.splitlines():
        name, _, value = line.partition(". IN TXT ")
        strings = re.findall(r'"([^"]*)"', value)  # zone file character-strings
        assert strings and all(len(s) <= 255 for s in strings), value
        records[name] = "".join(strings)
        dns.set(name, "TXT", [records[name]])  # published, as the operator would

    resolver = Resolver([dns.address])

    def dnsfunc(name: bytes, timeout: float = 5.0) -> bytes:
        """dkimpy asks the test DNS server itself for the published key."""
        found = asyncio.run(resolver.txt(name.decode()))
        return found[0].encode() if found else b""

    msg = mail([BOB, "carol@remote.test", "dan@remote.test", "erin@other.test"],
               "Quarterly plans", bcc="secret@implicit.test", date=False)
    submit(server, msg, [BOB, "carol@remote.test", "dan@remote.test", "erin@other.test",
                         "secret@implicit.test"])
    received = mx.wait(3, timeout=60)
    assert sorted(sorted(r.recipients) for r in received) == [
        ["carol@remote.test", "dan@remote.test"], ["erin@other.test"],
        ["secret@implicit.test"]], "one transaction per domain, all its recipients in it"
    assert all(r.tls for r in received), "STARTTLS is used whenever offered"
    for r in received:
        assert r.mail_from == ALICE
        assert b"\nBcc:" not in r.data and not r.data.startswith(b"Bcc:"), "Bcc never travels"
        assert b"Quarterly plans" in r.data
        assert r.data.count(b"DKIM-Signature:") == 2  # RSA and Ed25519
        checker = dkim.DKIM(r.data)
        assert checker.verify(idx=0, dnsfunc=dnsfunc), "the first signature (dkimpy checks)"
        assert checker.verify(idx=1, dnsfunc=dnsfunc), "the second signature (dkimpy checks)"
        head = parsed(r.data)
        assert head["Date"] and head["Message-ID"], "added when missing"
    [local] = inbox(server, BOB, 1)
    assert local["subject"] == "Quarterly plans"
    [sent] = inbox(server, ALICE, 1, label="Sent")
    assert "$seen" in sent["keywords"]
    raw = server.raw(ALICE, sent["id"])
    assert b"Bcc: secret@implicit.test" in raw, "the Sent copy keeps the Bcc"
    server.wait_queue_empty()
    assert server.queue_stats()["dead"] == 0


def test_temporary_failure_is_retried_until_accepted(server: Server, mx: FakeMX) -> None:
    mx.script["slow@remote.test"] = ["451 4.3.0 Greylisted, try again", "450 4.2.0 Busy"]
    submit(server, mail(["slow@remote.test", "quick@remote.test"]),
           ["slow@remote.test", "quick@remote.test"])
    received = mx.wait(2, timeout=60)
    assert [r.recipients for r in received] == [["quick@remote.test"], ["slow@remote.test"]]
    assert mx.handler.rcpt_log.count("slow@remote.test") == 3
    server.wait_queue_empty()
    assert server.queue_stats()["dead"] == 0
    assert len(server.emails(ALICE, "INBOX")) == 0, "no bounce for a delivered message"


def test_permanent_failure_bounces_to_the_sender_and_dead_letters(server: Server,
                                                                   mx: FakeMX) -> None:
    mx.script["nobody@remote.test"] = ["550 5.1.1 No such user here"]
    submit(server, mail(["nobody@remote.test", "real@remote.test"], "Lost letter"),
           ["nobody@remote.test", "real@remote.test"])
    assert [r.recipients for r in mx.wait(1, timeout=60)] == [["real@remote.test"]]
    [bounce] = inbox(server, ALICE, 1, label="INBOX")
    raw = server.raw(ALICE, bounce["id"])
    report = parsed(raw)
    assert report.get_content_type() == "multipart/report"
    assert report.get_param("report-type") == "delivery-status"
    text = raw.decode("utf-8", "replace")
    assert "Final-Recipient: rfc822; nobody@remote.test" in text
    assert "Action: failed" in text and "Status: 5.1.1" in text
    assert "550 5.1.1 No such user here" in text
    assert "Subject: Lost letter" in text
    deadline = time.monotonic() + 60
    while server.queue_stats()["dead"] == 0 and time.monotonic() < deadline:
        time.sleep(0.2)
    out = server.cli("dlq", "list").stdout.decode()
    assert "nobody@remote.test" in out and "550 5.1.1" in out and "real@" not in out


def test_null_mx_and_unknown_domain_bounce_at_once(server: Server, mx: FakeMX) -> None:
    submit(server, mail(["x@nullmx.test", "y@nowhere.test"], "Nowhere"),
           ["x@nullmx.test", "y@nowhere.test"])
    bounces = inbox(server, ALICE, 2, label="INBOX")
    text = "".join(server.raw(ALICE, b["id"]).decode("utf-8", "replace") for b in bounces)
    assert "Status: 5.1.10" in text and "x@nullmx.test" in text
    assert "y@nowhere.test" in text and "Status: 5.1.2" in text
    assert mx.received == []


def test_unreachable_mx_delays_then_expires(tmp_path: Path, mx: FakeMX, dns: TestDNS) -> None:
    # Retried every second: between the delay notice (1.5 s) and giving up (10 s) come
    # several attempts, however slowly the machine runs them.
    srv = make_server(tmp_path / "srv", mx, dns, give_up_after=10.0, delay_notice_after=1.5,
                      connect_timeout=1.0)
    srv.start()
    try:
        submit(srv, mail(["far@unreachable.test"], "Far away"), ["far@unreachable.test"])
        notices = inbox(srv, ALICE, 2, label="INBOX", timeout=120)
        texts = [srv.raw(ALICE, n["id"]).decode("utf-8", "replace") for n in notices]
        delayed = [t for t in texts if "Action: delayed" in t]
        failed = [t for t in texts if "Action: failed" in t]
        assert len(delayed) == 1 and "Will-Retry-Until:" in delayed[0]
        assert len(failed) == 1 and "Status: 4.4.7" in failed[0]
        deadline = time.monotonic() + 60
        while srv.queue_stats()["dead"] == 0 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "far@unreachable.test" in srv.cli("dlq", "list").stdout.decode()
    finally:
        srv.stop()


HOLD = 60
"""Seconds the held sends wait: far longer than the steps taken while they wait (an SMTP
submission and one CLI call, several seconds each on a machine at load 30)."""


def _queued_as(reply: bytes) -> str:
    """The submission id from "250 2.0.0 OK queued as <id>"."""
    return reply.decode().rsplit(" ", 1)[-1]


def _delivered_at(srv: Server, item_id: str) -> float:
    """When the server logged delivering `item_id`: its own record, not the test's clock.
    The line is written once the remote server's 250 is in, after the MX has the message:
    read the log until it is there."""
    deadline = time.monotonic() + 60
    while True:
        for line in srv.log_path.read_text(errors="replace").splitlines():
            if not line.startswith("{"):
                continue
            event = json.loads(line)
            if event.get("queue_id") == item_id and event["msg"].startswith(
                    f"item {item_id}: delivered"):
                return datetime.fromisoformat(event["ts"]).timestamp()
        assert time.monotonic() < deadline, f"no delivery of {item_id} in the log"
        time.sleep(0.1)


def test_held_send_leaves_on_time_and_cancelled_send_never(tmp_path: Path, mx: FakeMX,
                                                            dns: TestDNS) -> None:
    srv = make_server(tmp_path / "srv", mx, dns)
    with srv.config_path.open("a") as config:
        config.write('[log]\nformat = "json"\n')  # timestamps with milliseconds, in UTC
    srv.start()
    try:
        with smtplib.SMTP("127.0.0.1", srv.submission_port) as smtp:
            smtp.starttls(context=unverified())
            smtp.ehlo()
            assert smtp.has_extn("futurerelease")
            smtp.login(ALICE, PASSWORD)
            code, reply = smtp.mail(ALICE, ["HOLDFOR=99999999"])
            assert code == 501, reply
            smtp.rset()
            # The send to cancel comes due first: had the cancel not taken it back, it would
            # leave before the other one does. Two domains: two queue items, both cancelled.
            asked = time.time()
            never = ["never@remote.test", "never@implicit.test"]
            smtp.mail(ALICE, [f"HOLDFOR={HOLD}"])
            for rcpt in never:
                smtp.rcpt(rcpt)
            code, reply = smtp.data(mail(never, "Never").as_bytes())
            assert code == 250, reply
            cancel = _queued_as(reply)
            smtp.mail(ALICE, [f"HOLDFOR={HOLD}"])
            smtp.rcpt("later@remote.test")
            code, reply = smtp.data(mail(["later@remote.test"], "Later").as_bytes())
            assert code == 250, reply
            later = _queued_as(reply)
        out = srv.cli("queue", "cancel", cancel).stdout.decode()
        assert sorted(out.split()) == sorted([f"{cancel}.1", f"{cancel}.2", "cancelled",
                                              "cancelled"]), (
            f"{out} (cancelled {time.time() - asked:.0f} s after submitting: more than the"
            f" {HOLD} s hold?)")
        listing = srv.cli("queue", "list").stdout.decode()
        assert cancel not in listing, listing
        assert [line.split("\t")[2].split()[:2] for line in listing.splitlines()] == [
            ["held", "until"]], listing
        shown = srv.cli("queue", "show", f"{later}.1").stdout.decode()
        [next_line] = [line for line in shown.splitlines() if line.startswith("next: ")]
        release = datetime.strptime(next_line.removeprefix("next: "), "%Y-%m-%d %H:%M:%S"
                                    ).replace(tzinfo=UTC).timestamp()
        assert release >= int(asked + HOLD), f"held until {next_line}: the hold is {HOLD} s"

        [sent] = mx.wait(1, timeout=HOLD + 120)
        assert sent.recipients == ["later@remote.test"] and b"Subject: Later" in sent.data
        assert _delivered_at(srv, f"{later}.1") >= asked + HOLD, "it left before its time"
        srv.wait_queue_empty()  # the cancelled items were due first: they would be gone too
        assert [r.recipients for r in mx.received] == [["later@remote.test"]]
        assert srv.queue_stats()["dead"] == 0
    finally:
        srv.stop()


def test_sending_limits(tmp_path: Path, mx: FakeMX, dns: TestDNS) -> None:
    srv = make_server(tmp_path / "srv", mx, dns)
    srv.submission = {"messages_per_hour": 2, "recipients_per_message": 2}
    srv.__post_init__()
    srv.start()
    try:
        with smtplib.SMTP("127.0.0.1", srv.submission_port) as smtp:
            smtp.starttls(context=unverified())
            smtp.ehlo()
            smtp.login(ALICE, PASSWORD)
            smtp.mail(ALICE)
            assert smtp.rcpt("a@remote.test")[0] == 250
            assert smtp.rcpt("b@remote.test")[0] == 250
            code, reply = smtp.rcpt("c@remote.test")
            assert code == 452 and b"4.5.3" in reply
            smtp.rset()
            for n in range(2):
                smtp.sendmail(ALICE, ["a@remote.test"], mail(["a@remote.test"], f"n{n}")
                              .as_bytes())
            code, reply = smtp.mail(ALICE)
            assert code == 450 and b"4.7.1" in reply
    finally:
        srv.stop()


# ---------------------------------------------------------------------- real clients


def test_swaks_submits_over_starttls_and_implicit_tls(server: Server, mx: FakeMX) -> None:
    for args in (["--server", f"127.0.0.1:{server.submission_port}", "--tls"],
                 ["--server", f"127.0.0.1:{server.submissions_port}", "--tlsc"]):
        result = subprocess.run(
            ["swaks", *args, "--auth", "PLAIN", "--auth-user", ALICE, "--auth-password",
             PASSWORD, "--from", ALICE, "--to", "swaks@remote.test", "--header",
             f"From: {ALICE}", "--header", "Subject: via swaks", "--timeout", "20"],
            capture_output=True, timeout=60)
        assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()
    assert len(mx.wait(2, timeout=60)) == 2


def test_curl_submits_over_starttls_and_implicit_tls(server: Server, mx: FakeMX,
                                                     tmp_path: Path) -> None:
    body = tmp_path / "mail.txt"
    body.write_bytes(mail(["curl@remote.test"], "via curl").as_bytes())
    for url, tls in ((f"smtp://127.0.0.1:{server.submission_port}", ["--ssl-reqd"]),
                     (f"smtps://127.0.0.1:{server.submissions_port}", [])):
        result = subprocess.run(
            ["curl", "-sS", "-k", *tls, url, "--user", f"{ALICE}:{PASSWORD}",
             "--mail-from", ALICE, "--mail-rcpt", "curl@remote.test", "--upload-file",
             str(body)], capture_output=True, timeout=60)
        assert result.returncode == 0, result.stderr.decode()
    received = mx.wait(2, timeout=60)
    assert [r.recipients for r in received] == [["curl@remote.test"]] * 2


def test_auth_login_mechanism(server: Server, mx: FakeMX) -> None:
    with smtplib.SMTP("127.0.0.1", server.submission_port) as smtp:
        smtp.starttls(context=unverified())
        smtp.ehlo()
        code, reply = smtp.docmd("AUTH", "LOGIN " + base64.b64encode(ALICE.encode()).decode())
        assert code == 334
        code, reply = smtp.docmd(base64.b64encode(PASSWORD.encode()).decode())
        assert code == 235, reply


# ---------------------------------------------------------------------- MTA-STS


class _PolicyServer:
    """https://mta-sts.<domain>/.well-known/mta-sts.txt on loopback, with a CA-issued cert."""

    def __init__(self, ctx: ssl.SSLContext, policies: dict[str, str]) -> None:
        import http.server
        import threading

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                host = (self.headers.get("Host") or "").split(":")[0]
                body = policies.get(host.removeprefix("mta-sts."))
                if self.path != "/.well-known/mta-sts.txt" or body is None:
                    self.send_error(404)
                    return
                data = body.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.httpd.shutdown()


def test_mta_sts_enforce_uses_only_policy_mx_with_verified_tls(tmp_path: Path) -> None:
    from tests.tlsca import TestCA

    ca = TestCA(tmp_path / "ca")
    names = ["mx.sts.test", "mta-sts.sts.test", "mta-sts.badmx.test"]
    policy = "version: STSv1\r\nmode: enforce\r\nmx: mx.sts.test\r\nmax_age: 86400\r\n"
    https = _PolicyServer(ca.server_context(*names), {"sts.test": policy,
                                                      "badmx.test": policy})
    with FakeMX(tmp_path / "mx", tls=ca.server_context("mx.sts.test")) as mx, TestDNS({
            ("sts.test", "MX"): ["10 mx.sts.test."],
            ("mx.sts.test", "A"): ["127.0.0.1"],
            ("_mta-sts.sts.test", "TXT"): ["v=STSv1; id=20261129"],
            ("mta-sts.sts.test", "A"): ["127.0.0.1"],
            ("badmx.test", "MX"): ["10 rogue.badmx.test."],  # not named by the policy
            ("rogue.badmx.test", "A"): ["127.0.0.1"],
            ("_mta-sts.badmx.test", "TXT"): ["v=STSv1; id=20261129"],
            ("mta-sts.badmx.test", "A"): ["127.0.0.1"]}) as dns:
        srv = make_server(tmp_path / "srv", mx, dns, mta_sts_port=https.port,
                          cafile=str(ca.cafile))
        srv.start()
        try:
            submit(srv, mail(["ok@sts.test"], "Policy ok"), ["ok@sts.test"])
            submit(srv, mail(["no@badmx.test"], "Policy mismatch"), ["no@badmx.test"])
            [received] = mx.wait(1, timeout=60)
            assert received.recipients == ["ok@sts.test"] and received.tls
            # Until the mismatching domain has been tried again and again: still nothing.
            deadline = time.monotonic() + 60
            while True:
                listing = srv.cli("queue", "list").stdout.decode()
                [line] = [x for x in listing.splitlines() if "no@badmx.test" in x] or [""]
                attempts = int(line.split("attempts ")[1].split("\t")[0]) if line else 0
                if attempts >= 3 or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            assert attempts >= 3 and "MTA-STS" in line, listing
            assert [r.recipients for r in mx.received] == [["ok@sts.test"]]
        finally:
            srv.stop()
            https.stop()
