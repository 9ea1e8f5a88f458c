"""`mailyard fsck` on a real data directory: mail delivered over SMTP by a real server, then
damaged the way a crash, a bug or a careless hand would, then checked and repaired.

Every test runs with the metadata and the search index in SQLite files and in PostgreSQL (one
database, and two shards): the damage is done on whichever engine's tables the server uses."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import smtplib
import sqlite3
import tomllib
from collections.abc import Iterator
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from mailyard.store.sqlite import search as sqlite_search
from tests.e2e.server import Server

ALICE = "alice@example.test"


def message(subject: str, word: str, attachment: bytes) -> bytes:
    msg = EmailMessage()
    msg["From"] = "carol@elsewhere.test"
    msg["To"] = ALICE
    msg["Subject"] = subject
    msg["Message-ID"] = f"<{word}@elsewhere.test>"
    msg.set_content(f"The word of the day is {word}.\n")
    msg.add_attachment(attachment, maintype="application", subtype="octet-stream",
                       filename=f"{word}.bin")
    return msg.as_bytes(policy=policy.SMTP)


class Tables:
    """The server's own tables on whichever engine holds them: mail.db and search.db, or the
    PostgreSQL databases of its config (every shard, the index in the first). SQL is written
    with `?` and given PostgreSQL's `$n` there; the columns it touches are the same on both."""

    def __init__(self, srv: Server) -> None:
        self.srv = srv
        metadata = tomllib.loads(srv.config_path.read_text()).get("store", {}).get("metadata")
        self.dsns: list[str] = [] if not metadata else \
            [metadata] if isinstance(metadata, str) else list(metadata)
        self.search_dsn = srv.search_database()

    def mail(self, sql: str, *args: Any, pg: str | None = None) -> int:
        """Run a change on the mail store (on every shard: the rows are where they are);
        `pg` when PostgreSQL needs other words. Returns the rows changed."""
        if not self.dsns:
            conn = sqlite3.connect(self.srv.data_dir / "mail.db")
            with conn:
                count = conn.execute(sql, args).rowcount
            conn.close()
            return count
        return sum(int(asyncio.run(_pg(dsn, "execute", pg or sql, args)).split()[-1])
                   for dsn in self.dsns)

    def value(self, sql: str, *args: Any) -> Any:
        """The first column of the first row found (on the first shard that has one)."""
        if not self.dsns:
            conn = sqlite3.connect(self.srv.data_dir / "mail.db")
            row = conn.execute(sql, args).fetchone()
            conn.close()
            return row[0]
        for dsn in self.dsns:
            if (row := asyncio.run(_pg(dsn, "fetchrow", sql, args))) is not None:
                return row[0]
        raise AssertionError(f"no row: {sql}")

    def lose_index_document(self, email_id: str) -> None:
        """The email's whole document goes, and one of an email that never existed comes."""
        if self.search_dsn is None:
            search = sqlite3.connect(self.srv.data_dir / "search.db")
            with search:
                # The email's id entry, its words and its trigrams, all of it as the index's
                # own delete takes it out (the trigram tables are contentless: FTS5 must be
                # told the values it indexed, which a plain DELETE cannot).
                [(account_id,)] = search.execute(
                    "SELECT account_id FROM doc_ids WHERE email_id = ?", (email_id,)).fetchall()
                sqlite_search._remove(search, account_id, email_id)
                search.execute("INSERT INTO doc_ids VALUES ((SELECT account_id FROM doc_ids"
                               " LIMIT 1), 'eGHOST0000000', 1)")
            search.close()
            return
        assert asyncio.run(_pg(self.search_dsn, "execute",
                               "DELETE FROM search_docs WHERE email_id = ?",
                               (email_id,))) == "DELETE 1"
        asyncio.run(_pg(self.search_dsn, "execute",
                        "INSERT INTO search_docs (account_id, email_id, received_at, doc,"
                        " subject, body, subject_fold, addresses_fold, body_fold)"
                        " SELECT account_id, 'eGHOST0000000', 1, '', '', '', '', '', ''"
                        " FROM search_docs LIMIT 1", ()))


async def _pg(dsn: str, method: str, sql: str, args: tuple[Any, ...]) -> Any:
    for n in range(1, len(args) + 1):
        sql = sql.replace("?", f"${n}", 1)
    conn = await asyncpg.connect(dsn)
    try:
        return await getattr(conn, method)(sql, *args)
    finally:
        await conn.close()


@pytest.fixture(params=["sqlite", "postgres", "postgres-sharded"])
def delivered(tmp_path: Path, request: pytest.FixtureRequest
              ) -> Iterator[tuple[Server, dict[str, str]]]:
    """Three messages with distinct attachments of 8 KiB, delivered and indexed; the server
    stopped again, so the test damages files nobody holds open."""
    srv = Server(tmp_path, metadata="" if request.param == "sqlite" else request.param)
    srv.add_user(ALICE)
    srv.start()
    words = {"zanzibar": b"Z" * 8192, "quokka": bytes(range(256)) * 32,
             "marmalade": b"M" * 8192}
    with smtplib.SMTP("127.0.0.1", srv.smtp_port) as smtp:
        for word, data in words.items():
            smtp.sendmail("carol@elsewhere.test", [ALICE], message(word.title(), word, data))
    emails = srv.wait_emails(ALICE, 3)
    assert len(emails) == 3
    srv.wait_queue_empty()
    srv.stop()
    ids = {e["subject"].lower(): e["id"] for e in emails}
    ids.update({f"{w}.sha256": hashlib.sha256(d).hexdigest() for w, d in words.items()})
    yield srv, ids
    srv.stop()


def fsck(srv: Server, *args: str) -> tuple[int, list[str], str]:
    result = srv.cli("fsck", *args, check=False)
    assert result.returncode in (0, 1), result.stderr.decode()
    return result.returncode, result.stdout.decode().splitlines(), result.stderr.decode()


def blob_path(srv: Server, blob_id: str) -> Path:
    return srv.data_dir / "blobs" / blob_id[-2:] / blob_id  # FsBlobStore.path (issue 24)


def test_clean_store_has_no_problem(delivered: tuple[Server, dict[str, str]]) -> None:
    srv, _ = delivered
    code, lines, summary = fsck(srv)
    assert code == 0, lines
    assert lines == []
    assert "3 email(s)" in summary and "0 problem(s)" in summary


def test_finds_and_repairs_deleted_index_row_and_missing_attachment_ref(
        delivered: tuple[Server, dict[str, str]]) -> None:
    srv, ids = delivered
    zanzibar, quokka = ids["zanzibar"], ids["quokka"]
    assert srv.cli("search", ALICE, "zanzibar").stdout.decode().startswith(zanzibar)

    tables = Tables(srv)
    tables.lose_index_document(zanzibar)
    assert tables.mail("UPDATE emails SET blob_refs = ? WHERE id = ?", b"[]", quokka) == 1
    assert tables.mail("UPDATE accounts SET used = 12345") == 1
    assert tables.mail("UPDATE mailboxes SET total = 99 WHERE role = 'inbox'") == 1
    assert srv.cli("search", ALICE, "zanzibar", check=False).stdout == b""

    code, lines, _ = fsck(srv)
    assert code == 1
    kinds = {line.split("\t")[1] for line in lines}
    assert kinds == {"index-missing", "index-dangling", "missing-attachment-ref",
                     "quota-usage", "mailbox-counters"}, lines
    assert all("\trepairable\t" in line for line in lines)
    assert any(zanzibar in line and "index-missing" in line for line in lines)
    assert any(quokka in line and ids["quokka.sha256"] in line for line in lines)

    code, lines, _ = fsck(srv, "--repair")
    assert code == 0, lines
    assert len(lines) == 5 and all("\trepaired\t" in line for line in lines), lines

    code, lines, _ = fsck(srv)
    assert (code, lines) == (0, [])
    assert srv.cli("search", ALICE, "zanzibar").stdout.decode().startswith(zanzibar)
    refs = tables.value("SELECT blob_refs FROM emails WHERE id = ?", quokka)
    used = tables.value("SELECT used FROM accounts")
    assert ids["quokka.sha256"] in bytes(refs).decode()
    assert used == sum(e["size"] for e in srv.emails(ALICE))


def test_missing_and_corrupt_attachment_blobs_are_reported_not_repaired(
        delivered: tuple[Server, dict[str, str]]) -> None:
    srv, ids = delivered
    blob_path(srv, ids["marmalade.sha256"]).unlink()
    corrupt = blob_path(srv, ids["zanzibar.sha256"])
    corrupt.write_bytes(b"Y" + corrupt.read_bytes()[1:])

    code, lines, summary = fsck(srv, "--repair")
    assert code == 1
    problems = {(line.split("\t")[1], line.split("\t")[2]) for line in lines}
    assert problems == {("missing-blob", "NOT REPAIRABLE"), ("bad-blob", "NOT REPAIRABLE")}, \
        lines
    assert any(ids["marmalade"] in line and ids["marmalade.sha256"] in line for line in lines)
    assert any(ids["zanzibar"] in line and ids["zanzibar.sha256"] in line for line in lines)
    assert "2 left" in summary
    # The healthy message is untouched and still reads back whole.
    raw = srv.raw(ALICE, ids["quokka"])
    assert base64.b64encode(bytes(range(256)) * 32)[:76] in raw.replace(b"\r\n", b"\n")


def test_one_account_only(delivered: tuple[Server, dict[str, str]]) -> None:
    srv, ids = delivered
    srv.add_user("bob@example.test")
    blob_path(srv, ids["marmalade.sha256"]).unlink()
    assert fsck(srv, "bob@example.test")[0] == 0
    assert fsck(srv, ALICE)[0] == 1
    result = srv.cli("fsck", "nobody@example.test", check=False)
    assert result.returncode == 2 and b"no account" in result.stderr, "a user error"


def test_uid_modseq_and_thread_invariants(delivered: tuple[Server, dict[str, str]]) -> None:
    """UIDNEXT fallen to a UID in use is raised by --repair; an email MODSEQ above the
    account's and a reply outside its parent's thread are reported, not guessed at."""
    srv, ids = delivered
    tables = Tables(srv)
    assert tables.mail("UPDATE mailboxes SET uidnext = 2 WHERE role = 'inbox'") == 1
    assert tables.mail("UPDATE emails SET modseq = 1000000 WHERE id = ?", ids["marmalade"]) == 1
    assert tables.mail(
        "UPDATE emails SET headers = json_set(headers, '$.in_reply_to',"
        " json_array('zanzibar@elsewhere.test')) WHERE id = ?", ids["quokka"],
        pg="UPDATE emails SET headers = convert_to(jsonb_set(convert_from(headers, 'UTF8')"
           "::jsonb, '{in_reply_to}', '[\"zanzibar@elsewhere.test\"]')::text, 'UTF8')"
           " WHERE id = ?") == 1
    code, lines, _ = fsck(srv, "--repair")
    assert code == 1
    found = {(line.split("\t")[1], line.split("\t")[2]) for line in lines}
    assert found == {("uidnext", "repaired"), ("modseq", "NOT REPAIRABLE"),
                     ("thread-link", "NOT REPAIRABLE")}, lines
    assert any(ids["quokka"] in line for line in lines if "\tthread-link\t" in line)
    assert tables.value("SELECT uidnext FROM mailboxes WHERE role = 'inbox'") == 4
