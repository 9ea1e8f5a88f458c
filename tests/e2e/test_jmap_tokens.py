"""Bearer tokens (`mailyard token`): made by the CLI, accepted by the JMAP listener over HTTPS
(httpx and curl), refused once revoked, expired, altered or presented as someone else's."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.server import Server
from tests.e2e.test_jmap_mail import ALICE, BOB

MAIL = "urn:ietf:params:jmap:mail"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(Path(tmp_path_factory.mktemp("jmap-tokens")))
    srv.add_user(ALICE)
    srv.add_user(BOB)
    srv.start()
    yield srv
    srv.stop()


def token(server: Server, *args: str) -> str:
    result = server.cli("token", "create", *args)
    return result.stdout.decode().strip()


def session(server: Server, bearer: str) -> httpx.Response:
    return httpx.get(f"https://127.0.0.1:{server.http_port}/jmap/session", verify=False,
                     headers={"Authorization": f"Bearer {bearer}"}, timeout=10)


def test_a_token_opens_its_own_account(server: Server) -> None:
    alice = token(server, ALICE, "--name", "phone")
    r = session(server, alice)
    assert r.status_code == 200, r.text
    assert r.json()["username"] == ALICE
    out = subprocess.run(
        ["curl", "-sS", "-k", "-H", f"Authorization: Bearer {alice}",
         f"https://127.0.0.1:{server.http_port}/jmap/session"],
        capture_output=True, check=True, timeout=10).stdout
    assert b'"username":"alice@example.test"' in out
    listing = server.cli("token", "list", ALICE).stdout.decode()
    assert "phone" in listing and alice.split(".")[2] in listing


def test_altered_or_foreign_tokens_are_refused(server: Server) -> None:
    alice = token(server, ALICE)
    bob = token(server, BOB)
    prefix, account, token_id, secret = alice.split(".")
    _, bob_account, bob_id, bob_secret = bob.split(".")
    for bad in (f"{prefix}.{account}.{token_id}.{secret[:-1]}x",
                f"{prefix}.{bob_account}.{token_id}.{secret}",   # Alice's token, Bob's account
                f"{prefix}.{account}.{bob_id}.{bob_secret}",     # Bob's token, Alice's account
                "myt1...", "garbage", "x" * 600):
        r = session(server, bad)
        assert r.status_code == 401, bad
        assert 'error="invalid_token"' in r.headers["www-authenticate"]


def test_revoked_and_expired_tokens_stop_working(server: Server) -> None:
    alice = token(server, ALICE)
    assert session(server, alice).status_code == 200
    server.cli("token", "revoke", ALICE, alice.split(".")[2])
    assert session(server, alice).status_code == 401
    # Made with a lifetime the machine cannot outrun between two steps, then asked until the
    # server refuses it: a 1.5 s token raced the CLI call that made it on a busy machine.
    lifetime = 10.0
    made = time.monotonic()
    short = token(server, ALICE, "--days", str(lifetime / 86400))
    answer = session(server, short).status_code
    if time.monotonic() - made < lifetime:
        assert answer == 200
    deadline = made + lifetime + 60
    while (answer := session(server, short).status_code) == 200:
        assert time.monotonic() < deadline, "the token outlived its lifetime"
        time.sleep(0.5)
    assert answer == 401
    assert time.monotonic() - made >= lifetime - 1, "refused before its expiry"
