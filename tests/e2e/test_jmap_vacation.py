"""VacationResponse (RFC 8621 §8) end to end: set over JMAP, mail arriving over SMTP is answered
at the sender's MX (a loopback aiosmtpd) once per sender, from the null reverse-path with
Auto-Submitted, and never to lists, robots, automatic mail or when the user is only Bcc'd.
"""

from __future__ import annotations

import email
import smtplib
import time
from collections.abc import Iterator
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path

import pytest

from tests.dnsserver import TestDNS
from tests.e2e.server import Server
from tests.e2e.test_jmap_mail import ALICE, BOB, CORE, MAIL, Jmap
from tests.fakemx import FakeMX

VACATION = "urn:ietf:params:jmap:vacationresponse"


USING = (CORE, MAIL, VACATION)


@pytest.fixture(scope="module")
def mx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeMX]:
    with FakeMX(Path(tmp_path_factory.mktemp("mx"))) as server:
        yield server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, mx: FakeMX) -> Iterator[Server]:
    with TestDNS({("remote.test", "MX"): ["10 mx.remote.test."],
                  ("mx.remote.test", "A"): ["127.0.0.1"]}) as dns:
        srv = Server(Path(tmp_path_factory.mktemp("jmap-vacation")),
                     outbound={"port": mx.port, "retry_schedule": [1.0]},
                     dns={"nameservers": [dns.address], "timeout": 2.0})
        srv.add_user(ALICE)
        srv.add_user(BOB)
        srv.start()
        yield srv
        srv.stop()


@pytest.fixture(scope="module")
def alice(server: Server) -> Jmap:
    return Jmap(server, ALICE, USING)


def send(server: Server, sender: str, subject: str, *, to: str = ALICE,
         rcpt: str = ALICE, **headers: str) -> None:
    m = EmailMessage()
    m["From"], m["To"], m["Subject"] = sender, to, subject
    m["Message-ID"] = f"<{subject.replace(' ', '.')}@remote.test>"
    for name, value in headers.items():
        m[name.replace("_", "-")] = value
    m.set_content("Are you there?\n")
    with smtplib.SMTP("127.0.0.1", server.smtp_port) as s:
        s.send_message(m, from_addr=sender, to_addrs=[rcpt])


def test_get_defaults_and_bad_sets(alice: Jmap) -> None:
    [settings] = alice.call("VacationResponse/get", ids=None)["list"]
    assert settings == {"id": "singleton", "isEnabled": False, "fromDate": None,
                        "toDate": None, "subject": None, "textBody": None, "htmlBody": None}
    answer = alice.call("VacationResponse/set", create={"x": {}}, destroy=["singleton"],
                        update={"singleton": {"isEnabled": "yes"}, "other": {}})
    assert answer["notCreated"]["x"]["type"] == "singleton"
    assert answer["notDestroyed"]["singleton"]["type"] == "singleton"
    assert answer["notUpdated"]["singleton"]["type"] == "invalidProperties"
    assert answer["notUpdated"]["other"]["type"] == "notFound"
    assert alice.call("VacationResponse/get", ids=["nope"])["notFound"] == ["nope"]


def test_vacation_replies_once_per_sender_and_never_to_robots(
        server: Server, alice: Jmap, mx: FakeMX) -> None:
    state = alice.call("VacationResponse/get", ids=None)["state"]
    answer = alice.call("VacationResponse/set", update={"singleton": {
        "isEnabled": True, "fromDate": "2020-01-01T00:00:00Z", "toDate": None,
        "subject": "Out of office", "textBody": "Back on Monday.\n",
        "htmlBody": "<p>Back on <b>Monday</b>.</p>"}})
    assert answer["updated"] == {"singleton": None} and answer["newState"] != state
    send(server, "friend@remote.test", "Lunch tomorrow")
    send(server, "friend@remote.test", "Lunch tomorrow again")   # the same sender: no reply
    send(server, "news@remote.test", "Weekly news", List_Id="<news.remote.test>")
    send(server, "robot@remote.test", "Your order", Auto_Submitted="auto-generated")
    send(server, "bulk@remote.test", "Offers", Precedence="bulk")
    send(server, "noreply@remote.test", "Receipt")
    send(server, "boss@remote.test", "Bcc only", to="team@remote.test")
    send(server, "other@remote.test", "Second friend")
    server.wait_emails(ALICE, 8)
    got = mx.wait(2, timeout=30)
    time.sleep(2.0)  # anything else that was going to be sent has been by now
    assert sorted(r for m in mx.received for r in m.recipients) == [
        "friend@remote.test", "other@remote.test"]
    reply = next(m for m in mx.received if m.recipients == ["friend@remote.test"])
    assert reply.mail_from in ("", "<>")  # the null reverse-path, as aiosmtpd reports it
    parsed = email.message_from_bytes(reply.data, policy=default_policy)
    assert parsed["Subject"] == "Out of office" and parsed["Auto-Submitted"] == "auto-replied"
    assert parsed["In-Reply-To"] == "<Lunch.tomorrow@remote.test>"
    assert parsed["From"] == ALICE and parsed["To"] == "friend@remote.test"
    assert "Back on Monday." in parsed.get_body(("plain",)).get_content()
    assert len(got) >= 2
    subjects = {e["subject"] for e in server.emails(ALICE, "Sent")}
    assert "Out of office" not in subjects, "auto-replies are not filed in Sent"


def test_disabled_or_out_of_dates_sends_nothing(server: Server, alice: Jmap,
                                                mx: FakeMX) -> None:
    before = len(mx.received)
    alice.call("VacationResponse/set", update={"singleton": {
        "fromDate": "2090-01-01T00:00:00Z"}})
    send(server, "future@remote.test", "Too early")
    alice.call("VacationResponse/set", update={"singleton": {
        "isEnabled": False, "fromDate": None}})
    send(server, "late@remote.test", "Disabled now")
    server.wait_emails(ALICE, 10)
    server.wait_queue_empty()
    time.sleep(2.0)
    assert len(mx.received) == before
