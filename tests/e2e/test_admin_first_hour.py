"""Issue 19, as an admin meets it on a real server: every failed login on every protocol is
one line that docs/fail2ban.md's filter matches, with the real client IP (the web login's
empty fields included); and a search value that cannot be read is an error naming the
operator or filter property over IMAP X-GM-RAW and JMAP Email/query, not "nothing found"."""

from __future__ import annotations

import base64
import imaplib
import poplib
import re
import smtplib
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.server import Server

ALICE = "alice@example.test"
PASSWORD = "secret-password"
DOC = Path(__file__).resolve().parents[2] / "docs" / "fail2ban.md"
HOST = r"(?P<host>[0-9a-fA-F.:]+)"  # what fail2ban's <HOST> captures for an IP


def documented_filter() -> list[re.Pattern[str]]:
    """The failregex lines of docs/fail2ban.md, <HOST> as fail2ban reads it for an IP."""
    block = DOC.read_text().split("failregex =", 1)[1].split("ignoreregex", 1)[0]
    lines = [ln.strip() for ln in block.splitlines()]
    return [re.compile(ln.replace("<HOST>", HOST)) for ln in lines
            if ln and not ln.startswith("#")]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    # Limits high enough that no attempt here is refused instead of failed.
    srv = Server(tmp_path_factory.mktemp("admin"), auth={
        "failures_per_network_per_hour": 1000, "failures_per_account_per_hour": 1000})
    srv.start()
    try:
        srv.add_user(ALICE, PASSWORD)
        yield srv
    finally:
        srv.stop()


def managesieve_plain(port: int, user: str, password: str) -> bytes:
    """AUTHENTICATE "PLAIN" after STARTTLS (RFC 5804), the server's answer line."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as raw:
        f = raw.makefile("rb")
        while not f.readline().startswith(b"OK"):
            pass
        raw.sendall(b"STARTTLS\r\n")
        assert f.readline().startswith(b"OK")
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        with context.wrap_socket(raw) as s:
            f = s.makefile("rb")
            while not f.readline().startswith(b"OK"):  # the capabilities again
                pass
            token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
            s.sendall(f'AUTHENTICATE "PLAIN" "{token}"\r\n'.encode())
            return f.readline()


def web_login(srv: Server, form: dict[str, str]) -> int:
    origin = f"https://127.0.0.1:{srv.http_port}"
    r = httpx.post(origin + "/login", json=form, verify=False, timeout=30,
                   headers={"Origin": origin, "X-Mailyard-CSRF": "1"})
    return r.status_code


def attempt(srv: Server, protocol: str, user: str) -> None:
    """One failed login of `user` by `protocol`, through the protocol's own client."""
    if protocol == "imap":
        imap = imaplib.IMAP4("127.0.0.1", srv.imap_port)
        with pytest.raises(imaplib.IMAP4.error):
            imap.login(user, "wrong")
        imap.logout()
    elif protocol == "pop3":
        pop = poplib.POP3("127.0.0.1", srv.pop3_port)
        pop.user(user)
        with pytest.raises(poplib.error_proto):
            pop.pass_("wrong")
        pop.quit()
    elif protocol == "smtp":
        smtp = smtplib.SMTP("127.0.0.1", srv.submission_port, timeout=30)
        smtp.ehlo("client.test")
        code, _ = smtp.docmd("AUTH", "PLAIN " + base64.b64encode(
            f"\0{user}\0wrong".encode()).decode())
        assert code == 535
        smtp.quit()
    elif protocol == "jmap":
        r = httpx.get(f"https://127.0.0.1:{srv.http_port}/jmap/session", verify=False,
                      auth=(user, "wrong"), timeout=30)
        assert r.status_code == 401
    elif protocol == "web":
        assert web_login(srv, {"username": user, "password": "wrong"}) == 401
    elif protocol == "web-empty":
        assert web_login(srv, {"username": user, "password": ""}) == 401
    elif protocol == "managesieve":
        assert managesieve_plain(srv.managesieve_port, user, "wrong").startswith(b"NO")
    else:
        raise AssertionError(protocol)


PROTOCOLS = {"imap": "imap", "pop3": "pop3", "smtp": "smtp", "jmap": "jmap", "web": "web",
             "web-empty": "web", "managesieve": "managesieve"}


def auth_lines(srv: Server, user: str) -> list[str]:
    return [ln for ln in srv.log_path.read_text(errors="replace").splitlines()
            if "mailyard.auth" in ln and repr(user) in ln]


@pytest.mark.parametrize("kind", PROTOCOLS)
def test_a_failed_login_is_one_line_the_documented_filter_matches(server: Server,
                                                                    kind: str) -> None:
    user = f"guess-{kind}@example.test"
    attempt(server, kind, user)
    attempt(server, kind, user)
    deadline = time.monotonic() + 30
    while len(auth_lines(server, user)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    lines = auth_lines(server, user)
    assert len(lines) == 2, lines  # once per attempt, not once per layer
    for line in lines:
        assert f"protocol={PROTOCOLS[kind]} " in line, line
        hosts = [m.group("host") for p in documented_filter() if (m := p.search(line))]
        assert hosts == ["127.0.0.1"], line


def jmap_query(srv: Server, condition: dict[str, Any]) -> list[Any]:
    session = httpx.get(f"https://127.0.0.1:{srv.http_port}/jmap/session", verify=False,
                        auth=(ALICE, PASSWORD), timeout=30).json()
    account = session["primaryAccounts"]["urn:ietf:params:jmap:mail"]
    r = httpx.post(f"https://127.0.0.1:{srv.http_port}/jmap/api", verify=False, timeout=30,
                   auth=(ALICE, PASSWORD), json={
                       "using": ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail"],
                       "methodCalls": [["Email/query", {"accountId": account,
                                                         "filter": condition}, "q"]]})
    assert r.status_code == 200, r.text
    response: list[Any] = r.json()["methodResponses"][0]
    return response


@pytest.mark.parametrize("condition", [
    {"before": "notadate"}, {"after": "2026-13-45T00:00:00Z"}, {"minSize": "huge"},
    {"maxSize": -5}, {"hasKeyword": "bad keyword"}], ids=lambda c: next(iter(c)))
def test_jmap_names_the_filter_property_it_cannot_read(server: Server,
                                                        condition: dict[str, Any]) -> None:
    name, args, _ = jmap_query(server, {"operator": "AND", "conditions": [
        {"text": "hello"}, condition]})
    assert name == "error" and args["type"] == "invalidArguments", args
    assert repr(next(iter(condition))) in args["description"], args
    name, args, _ = jmap_query(server, {"text": "hello"})
    assert name == "Email/query" and args["ids"] == []


@pytest.mark.parametrize("query", ["before:notadate", "larger:huge", "older_than:xyz",
                                   "is:bogus", "newer_than:3x", "has:bogus"])
def test_x_gm_raw_names_the_operator_it_cannot_read(server: Server, query: str) -> None:
    imap = imaplib.IMAP4("127.0.0.1", server.imap_port)
    imap.login(ALICE, PASSWORD)
    imap.select("INBOX")
    operator, _, value = query.partition(":")
    with pytest.raises(imaplib.IMAP4.error, match=f'{operator}: cannot read "{value}"'):
        imap.uid("SEARCH", "X-GM-RAW", f'"{query}"')
    assert imap.uid("SEARCH", "X-GM-RAW", '"older_than:7d"')[0] == "OK"
    imap.logout()
