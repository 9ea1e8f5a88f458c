"""`[store] search` selects the PostgreSQL SearchIndex in a real `mailyard serve`: mail sent over
SMTP is indexed there (and nowhere else), and IMAP SEARCH (substrings) and X-GM-RAW (words,
diacritics folded) find it through imaplib; `mailyard reindex` refills it."""

from __future__ import annotations

import asyncio
import contextlib
import imaplib
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from tests.e2e.server import Server
from tests.e2e.test_smtp_inbound import message, send
from tests.pgserver import TestDatabase

ALICE = "alice@example.test"
PASSWORD = "secret-password"


@pytest.fixture(params=["search-only", "mailstore-too"])
def served(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Server, str]]:
    database = TestDatabase()
    dsn = asyncio.run(database.dsn())
    store = {"search": dsn} if request.param == "search-only" else {
        "metadata": dsn, "search": "postgresql"}
    server = Server(tmp_path, store=store)
    try:
        server.add_user(ALICE)
        server.start()
        yield server, dsn
    finally:
        server.stop()
        asyncio.run(database.drop())


def documents(dsn: str) -> int:
    async def count() -> int:
        conn = await asyncpg.connect(dsn)
        try:
            return int(await conn.fetchval("SELECT count(*) FROM search_docs"))
        finally:
            await conn.close()

    return asyncio.run(count())


def search(client: imaplib.IMAP4, *criteria: str) -> list[bytes]:
    typ, data = client.uid("SEARCH", *criteria)
    assert typ == "OK", data
    return data[0].split() if data[0] else []


def wait_indexed(dsn: str, count: int) -> None:
    deadline = time.monotonic() + 30
    while documents(dsn) < count:
        assert time.monotonic() < deadline, f"{documents(dsn)} documents indexed, not {count}"
        time.sleep(0.2)


def test_mail_sent_over_smtp_is_found_over_imap(served: tuple[Server, str]) -> None:
    server, dsn = served
    send(server, message("Quarterly budget for the Café", msgid="<budget@remote.test>",
                         body="Spreadsheet attached.\n"))
    send(server, message("Lunch plans", body="Pizza at noon?\n"))
    server.wait_emails(ALICE, 2)
    wait_indexed(dsn, 2)
    assert not (server.data_dir / "search.db").exists(), "the SQLite index was opened"

    client = imaplib.IMAP4("127.0.0.1", server.imap_port)
    try:
        client.login(ALICE, PASSWORD)
        client.select("INBOX")
        budget, lunch = search(client, "ALL")
        assert search(client, "TEXT", '"UDGET FOR"') == [budget]  # substring, any case
        assert search(client, "BODY", "noon") == [lunch]
        assert search(client, "SUBJECT", "plans") == [lunch]
        assert search(client, "X-GM-RAW", '"cafe"') == [budget]  # a word, accent folded
        assert search(client, "X-GM-RAW", '"subject:lunch OR spreadsheet"') == [budget, lunch]
        assert search(client, "X-GM-RAW", '"-pizza"') == [budget]
        assert search(client, "TEXT", "nowhere-to-be-found") == []
    finally:
        with contextlib.suppress(imaplib.IMAP4.error, OSError):
            client.logout()

    server.cli("reindex", ALICE)
    assert documents(dsn) == 2
    found = server.cli("search", ALICE, "budget").stdout.decode()
    assert "Quarterly budget" in found and "Lunch" not in found
