"""Issue 19: bounces and DSNs come from the configured hostname (the From, Reporting-MTA and
Message-ID of a delivery status notification), not from "localhost" or the machine's name.
A real server sends to a fake MX that refuses one recipient."""

from __future__ import annotations

import email
import email.policy
from pathlib import Path

from tests.dnsserver import TestDNS
from tests.e2e.server import Server
from tests.e2e.test_sending import ALICE, dns, inbox, mail, mx, submit
from tests.fakemx import FakeMX

__all__ = ["dns", "mx"]  # the fixtures this module uses from test_sending

HOSTNAME = "relay7.example.test"


def test_a_bounce_comes_from_the_configured_hostname(tmp_path: Path, mx: FakeMX,
                                                      dns: TestDNS) -> None:
    srv = Server(tmp_path / "srv", hostname=HOSTNAME,
                 outbound={"port": mx.port, "retry_schedule": [1.0]},
                 dns={"nameservers": [dns.address], "timeout": 2.0})
    srv.add_user(ALICE)
    mx.script["nobody@remote.test"] = ["550 5.1.1 No such user here"]
    srv.start()
    try:
        submit(srv, mail(["nobody@remote.test"], "Lost letter"), ["nobody@remote.test"])
        [bounce] = inbox(srv, ALICE, 1, label="INBOX")
        raw = srv.raw(ALICE, bounce["id"])
    finally:
        srv.stop()
    report = email.message_from_bytes(raw, policy=email.policy.default)
    assert report.get_content_type() == "multipart/report"
    assert report["From"].addresses[0].domain == HOSTNAME, report["From"]
    assert report["Message-ID"].rstrip(">").endswith("@" + HOSTNAME), report["Message-ID"]
    assert f"Reporting-MTA: dns; {HOSTNAME}".encode() in raw
    assert b"localhost" not in raw.split(b"\r\n\r\n", 1)[0]
