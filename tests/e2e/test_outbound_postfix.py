"""Outbound delivery to real receiving MTAs on loopback: Debian's Postfix with and without
PIPELINING, CHUNKING and STARTTLS, and a bare server that answers a pipelined MAIL+RCPT group in
one write or byte by byte (issue 17: the group answered in one write stalled every delivery).

One mailyard server for the module sends every remote.test mail to 127.0.0.1 at one port
(the DNS double's MX, [outbound] port); each test puts its own receiving MTA on that port.
Every message must arrive exactly once per accepted recipient, counted by Message-ID.
"""

from __future__ import annotations

import email
import email.policy
import smtplib
from collections import Counter
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest

from tests import tlsca
from tests.dnsserver import TestDNS
from tests.e2e.server import Server, free_port
from tests.fakemx import RawMX
from tests.postfixmx import PostfixMX

ALICE, PASSWORD = "alice@example.test", "secret-password"
ACCEPTED = ["ann@remote.test", "ben@remote.test", "cid@remote.test"]
REJECTED = "nobody@remote.test"
BODY = ("Grüße aus dem Test.\n.\n.a line that starts with a dot\n..two dots\n"
        "a last line without a newline")


@pytest.fixture(scope="module")
def port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, port: int) -> Iterator[Server]:
    with TestDNS({("remote.test", "MX"): ["10 mx.remote.test."],
                  ("mx.remote.test", "A"): ["127.0.0.1"]}) as dns:
        srv = Server(tmp_path_factory.mktemp("outbound"),
                     outbound={"port": port, "retry_schedule": [1.0], "command_timeout": 20.0},
                     dns={"nameservers": [dns.address], "timeout": 2.0})
        srv.add_user(ALICE, PASSWORD)
        srv.start()
        try:
            yield srv
        finally:
            srv.stop()


def message(message_id: str, recipients: list[str]) -> EmailMessage:
    m = EmailMessage()
    m["From"] = f"Alice <{ALICE}>"
    m["To"] = ", ".join(recipients)
    m["Subject"] = f"Outbound {message_id}"
    m["Message-ID"] = message_id
    m.set_content(BODY, cte="8bit")
    return m


def submit(server: Server, messages: list[EmailMessage], recipients: list[str]) -> None:
    """All messages over one submission session (plaintext on loopback is allowed)."""
    with smtplib.SMTP("127.0.0.1", server.submission_port) as smtp:
        smtp.login(ALICE, PASSWORD)
        for m in messages:
            # CRLF lines: smtplib dot-stuffs after a bare LF too, which is no line end in SMTP
            smtp.sendmail(ALICE, recipients, m.as_bytes(policy=email.policy.SMTP),
                          mail_options=["BODY=8BITMIME"])


def body_of(data: bytes) -> str:
    part = email.message_from_bytes(data, policy=email.policy.default)
    return str(part.get_content()).replace("\r\n", "\n")  # type: ignore[attr-defined]


def _message_id(data: bytes) -> str:
    return str(email.message_from_bytes(data, policy=email.policy.default)["Message-ID"])


FEATURES = {
    "all": {"pipelining": True, "chunking": True, "starttls": True},
    "no-pipelining": {"pipelining": False, "chunking": True, "starttls": True},
    "no-chunking": {"pipelining": True, "chunking": False, "starttls": True},
    "no-starttls": {"pipelining": True, "chunking": True, "starttls": False},
    "none": {"pipelining": False, "chunking": False, "starttls": False},
}


@pytest.mark.parametrize("case", FEATURES)
def test_postfix_receives_every_message_once(case: str, server: Server, port: int,
                                             tmp_path: Path) -> None:
    features = FEATURES[case]
    tls = tlsca.TestCA(tmp_path / "ca").issue("mx.remote.test") if features["starttls"] else None
    ids = [f"<{case}.{i}@example.test>" for i in range(3)]
    with PostfixMX(port, pipelining=features["pipelining"], chunking=features["chunking"],
                   tls=tls, reject=(REJECTED,)) as mx:
        submit(server, [message(i, [*ACCEPTED, REJECTED]) for i in ids],
               [*ACCEPTED, REJECTED])
        mx.wait(len(ids) * len(ACCEPTED))
        server.wait_queue_empty()
        # after the queue is empty, so a late duplicate would be here; a failed earlier test's
        # mail still in the queue may arrive too and is not this test's to judge
        copies = [c for c in mx.delivered() if c.message_id in ids]
        log = mx.log
    assert Counter((c.message_id, c.recipient) for c in copies) == Counter(
        {(i, r): 1 for i in ids for r in ACCEPTED}), log[-3000:]
    for copy in copies:
        assert body_of(copy.data) == BODY + "\n", "dot-stuffing and 8-bit text survive"
        received = copy.data.split(b"\nReceived:", 1)[1].split(b";", 1)[0]
        assert (b"using TLS" in received) == features["starttls"], received
        assert b"with ESMTP" in received, received
    assert "improper command pipelining" not in log
    if not features["pipelining"]:
        assert "discarding EHLO keywords: PIPELINING" in log
    # The refused recipient of each message was asked once: a 5xx is final, never retried
    # (and the queue is empty: it went to the dead letters, not back to the queue).
    assert log.count(f"reject: RCPT from unknown[127.0.0.1]: 554 5.1.1 <{REJECTED}>") \
        == len(ids), log[-3000:]


@pytest.mark.parametrize("mode", ["group", "bytes"])
def test_replies_are_read_once_whatever_the_packet_boundaries(mode: str, server: Server,
                                                              port: int) -> None:
    """"group" is issue 17's stall: two complete replies in one read, of which aiosmtplib's
    protocol delivered the first and kept the second where no read would look. "bytes" splits
    every reply (and the multi-line EHLO answer) over many reads, which must be joined."""
    ids = [f"<raw-{mode}.{i}@example.test>" for i in range(3)]
    with RawMX(port, mode) as mx:
        submit(server, [message(i, ACCEPTED) for i in ids], ACCEPTED)
        mx.wait(len(ids))
        server.wait_queue_empty()
        received = [(r, d) for r, d in mx.received if _message_id(d) in ids]
        grouped = mx.grouped
    by_id: Counter[str] = Counter()
    for recipients, data in received:
        assert sorted(recipients) == ACCEPTED, "one transaction with every recipient"
        assert body_of(data) == BODY + "\n"
        by_id[_message_id(data)] += 1
    assert by_id == Counter({i: 1 for i in ids})
    if mode == "group":
        assert grouped >= len(ids), "MAIL and RCPT were pipelined and answered in one write"
