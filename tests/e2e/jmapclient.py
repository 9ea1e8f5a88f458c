"""A small JMAP client over httpx for the e2e tests: one account, calls with the capabilities
they need, and helpers to deliver mail over SMTP and wait for it."""

from __future__ import annotations

import smtplib
import time
from email.message import EmailMessage
from typing import Any

import httpx

from tests.e2e.server import Server

PASSWORD = "secret-password"
CORE, MAIL = "urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail"
QUOTA = "urn:ietf:params:jmap:quota"


class Jmap:
    def __init__(self, server: Server, user: str, using: tuple[str, ...] = (CORE, MAIL)
                 ) -> None:
        self.server = server
        self.user = user
        self.using = list(using)
        self.client = httpx.Client(base_url=f"https://127.0.0.1:{server.http_port}",
                                   verify=False, auth=(user, PASSWORD), timeout=30)
        self.session = self.client.get("/jmap/session").json()
        self.account_id: str = self.session["primaryAccounts"][MAIL]

    def calls(self, *calls: tuple[str, dict[str, Any]]) -> list[list[Any]]:
        body = {"using": self.using,
                "methodCalls": [[name, {"accountId": self.account_id, **args}, f"c{n}"]
                                for n, (name, args) in enumerate(calls)]}
        response = self.client.post("/jmap/api", json=body)
        assert response.status_code == 200, response.text
        result: list[list[Any]] = response.json()["methodResponses"]
        return result

    def call(self, name: str, **args: Any) -> dict[str, Any]:
        [[answer, result, _]] = self.calls((name, args))
        assert answer == name, result
        return result  # type: ignore[no-any-return]

    def error(self, name: str, **args: Any) -> dict[str, Any]:
        [[answer, result, _]] = self.calls((name, args))
        assert answer == "error", result
        return result  # type: ignore[no-any-return]

    def boxes(self) -> dict[str, dict[str, Any]]:
        """Mailboxes by role, or by name for those without one."""
        return {b["role"] or b["name"]: b for b in self.call("Mailbox/get", ids=None)["list"]}

    def state(self) -> str:
        return str(self.call("Mailbox/get", ids=[])["state"])


def deliver(server: Server, rcpt: str, subject: str, body: str = "Hello.\n") -> None:
    m = EmailMessage()
    m["From"], m["To"], m["Subject"] = "sender@remote.test", rcpt, subject
    m.set_content(body)
    with smtplib.SMTP("127.0.0.1", server.smtp_port) as s:
        s.send_message(m, from_addr="sender@remote.test", to_addrs=[rcpt])


def wait_count(server: Server, address: str, count: int, timeout: float = 30.0) -> None:
    """Until the account holds `count` emails (delivery goes through the queue)."""
    deadline = time.monotonic() + timeout
    while len(server.emails(address)) < count:
        assert time.monotonic() < deadline, f"{address} never reached {count} emails"
        time.sleep(0.1)
