"""Sieve scripts and the duplicate test's memory on PostgreSQL (store.ports SieveScriptStore),
in the directory database (the first DSN when sharded): tables of their own, with their own
migration component ("sieve"), so the MailStore's schema is not touched."""

from __future__ import annotations

import time

import asyncpg

from mailyard.core.ids import new_id
from mailyard.store.ports import Conflict, NotFound, SieveScriptRecord
from mailyard.store.postgres.pool import LazyPool
from mailyard.store.postgres.schema import migrate

T = 'text COLLATE "C"'
MIGRATIONS: tuple[str, ...] = (
    f"""
    CREATE TABLE sieve_scripts (
        account_id {T} NOT NULL,
        name {T} NOT NULL,
        content text NOT NULL,
        active boolean NOT NULL DEFAULT false,
        updated_at double precision NOT NULL,
        PRIMARY KEY (account_id, name)
    );
    CREATE UNIQUE INDEX sieve_one_active ON sieve_scripts (account_id) WHERE active;
    CREATE TABLE sieve_duplicates (
        account_id {T} NOT NULL,
        key {T} NOT NULL,
        expires double precision NOT NULL,
        PRIMARY KEY (account_id, key)
    );
    """,
    # 2: an id given at creation and kept through replace and rename (JMAP's immutable id)
    f"""
    ALTER TABLE sieve_scripts ADD COLUMN script_id {T} NOT NULL DEFAULT '';
    UPDATE sieve_scripts SET script_id = 'S' || md5(account_id || '/' || name || '/'
        || random()::text) WHERE script_id = '';
    """,
)
_COLUMNS = "account_id, name, content, active, updated_at, script_id"


async def _migrate(conn: asyncpg.Connection) -> None:
    await migrate(conn, "sieve", MIGRATIONS)


def _record(row: asyncpg.Record) -> SieveScriptRecord:
    return SieveScriptRecord(row["account_id"], row["name"], row["content"], row["active"],
                             row["updated_at"], row["script_id"])


class PostgresSieveStore:
    def __init__(self, dsn: str) -> None:
        self.pool = LazyPool(dsn, _migrate, max_size=4)

    @classmethod
    async def connect(cls, dsn: str) -> PostgresSieveStore:
        store = cls(dsn)
        await store.pool.get()
        return store

    def close(self) -> None:
        self.pool.close()

    async def put_script(self, account_id: str, name: str, content: str) -> None:
        pool = await self.pool.get()
        await pool.execute(
            "INSERT INTO sieve_scripts (account_id, name, content, updated_at, script_id)"
            " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (account_id, name) DO UPDATE"
            " SET content = EXCLUDED.content, updated_at = EXCLUDED.updated_at",
            account_id, name, content, time.time(), new_id("S"))

    async def list_scripts(self, account_id: str) -> list[SieveScriptRecord]:
        pool = await self.pool.get()
        rows = await pool.fetch(f"SELECT {_COLUMNS} FROM sieve_scripts WHERE account_id = $1"
                                " ORDER BY name", account_id)
        return [_record(r) for r in rows]

    async def get_script(self, account_id: str, name: str) -> SieveScriptRecord:
        pool = await self.pool.get()
        row = await pool.fetchrow(f"SELECT {_COLUMNS} FROM sieve_scripts WHERE account_id = $1"
                                  " AND name = $2", account_id, name)
        if row is None:
            raise NotFound(f"no script {name!r}")
        return _record(row)

    async def get_active(self, account_id: str) -> SieveScriptRecord | None:
        pool = await self.pool.get()
        row = await pool.fetchrow(f"SELECT {_COLUMNS} FROM sieve_scripts WHERE account_id = $1"
                                  " AND active", account_id)
        return None if row is None else _record(row)

    async def set_active(self, account_id: str, name: str | None) -> None:
        pool = await self.pool.get()
        async with pool.acquire() as conn, conn.transaction():
            if name is not None and await conn.fetchval(
                    "SELECT 1 FROM sieve_scripts WHERE account_id = $1 AND name = $2"
                    " FOR UPDATE", account_id, name) is None:
                raise NotFound(f"no script {name!r}")
            await conn.execute("UPDATE sieve_scripts SET active = false WHERE account_id = $1"
                               " AND active", account_id)
            if name is not None:
                await conn.execute("UPDATE sieve_scripts SET active = true"
                                   " WHERE account_id = $1 AND name = $2", account_id, name)

    async def rename_script(self, account_id: str, old: str, new: str) -> None:
        pool = await self.pool.get()
        try:
            status = await pool.execute("UPDATE sieve_scripts SET name = $3"
                                        " WHERE account_id = $1 AND name = $2",
                                        account_id, old, new)
        except asyncpg.UniqueViolationError:
            raise Conflict(f"a script {new!r} exists") from None
        if status.endswith(" 0"):
            raise NotFound(f"no script {old!r}")

    async def delete_script(self, account_id: str, name: str) -> None:
        pool = await self.pool.get()
        status = await pool.execute("DELETE FROM sieve_scripts WHERE account_id = $1"
                                    " AND name = $2", account_id, name)
        if status.endswith(" 0"):
            raise NotFound(f"no script {name!r}")

    async def duplicate_seen(self, account_id: str, key: str, now: float) -> bool:
        pool = await self.pool.get()
        return await pool.fetchval("SELECT 1 FROM sieve_duplicates WHERE account_id = $1"
                                   " AND key = $2 AND expires > $3",
                                   account_id, key, now) is not None

    async def record_duplicate(self, account_id: str, key: str, expires: float, *,
                               last: bool) -> None:
        pool = await self.pool.get()
        now = time.time()
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute("DELETE FROM sieve_duplicates WHERE account_id = $1"
                               " AND expires <= $2", account_id, now)
            await conn.execute(
                "INSERT INTO sieve_duplicates (account_id, key, expires) VALUES ($1, $2, $3)"
                " ON CONFLICT (account_id, key) DO UPDATE SET expires = EXCLUDED.expires"
                + ("" if last else " WHERE sieve_duplicates.expires <= $4"),
                *((account_id, key, expires) if last else (account_id, key, expires, now)))
