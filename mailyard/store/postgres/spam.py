"""The spam model on PostgreSQL (store.ports SpamModel), in the directory database (the first
DSN when sharded), so that every node of a cluster classifies with what any node learnt: tables
of their own with their own migration component ("spam"), outside the MailStore's schema.

One database holds the global model ("") and every account's: a lesson teaches both in one
transaction, which is the port's promise (idempotent per account and message, the opposite
lesson first taking the earlier one back). Per-account rows in the account's shard would need
that transaction split in two; see docs/DEPLOY.md for what that means at scale.

A lesson is serialised with any other lesson of the same (account, message) by a transaction
advisory lock, so two nodes applying the same lesson at once learn it once. Token rows are
upserted in token order; lessons that still meet in another order (a lesson taken back and a
new one in one transaction) and deadlock are tried again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import asyncpg

from mailyard.core.addresses import normalize
from mailyard.core.spam import Counts
from mailyard.store.postgres.pool import LazyPool
from mailyard.store.postgres.schema import migrate

COMPONENT = "spam"
T = 'text COLLATE "C"'
MIGRATIONS: tuple[str, ...] = (
    f"""
    CREATE TABLE spam_tokens (
        model {T} NOT NULL, token bigint NOT NULL,
        spam double precision NOT NULL DEFAULT 0, ham double precision NOT NULL DEFAULT 0,
        PRIMARY KEY (model, token)
    );
    CREATE TABLE spam_models (
        model {T} PRIMARY KEY,
        nspam double precision NOT NULL DEFAULT 0, nham double precision NOT NULL DEFAULT 0
    );
    CREATE TABLE spam_lessons (
        account_id {T} NOT NULL, message_key {T} NOT NULL, is_spam boolean NOT NULL,
        weight double precision NOT NULL, tokens bigint[] NOT NULL,
        PRIMARY KEY (account_id, message_key)
    );
    CREATE TABLE spam_reports (
        kind {T} NOT NULL, key {T} NOT NULL, account_id {T} NOT NULL,
        at double precision NOT NULL,
        PRIMARY KEY (kind, key, account_id)
    );
    CREATE TABLE spam_allowed_senders (
        account_id {T} NOT NULL, sender {T} NOT NULL, PRIMARY KEY (account_id, sender)
    );
    """,
)
_TRIES = 5
"""Attempts of one lesson that meets a deadlock."""


async def _migrate(conn: asyncpg.Connection) -> None:
    await migrate(conn, COMPONENT, MIGRATIONS)


def _lock_key(account_id: str, message_key: str) -> int:
    digest = hashlib.blake2b(f"{account_id}\0{message_key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


async def _apply(conn: asyncpg.Connection, model: str, tokens: list[int], is_spam: bool,
                 weight: float) -> None:
    """Add `weight` (negative: take back) to each token's count and the model's total, no
    count below 0; token rows left at 0 for both are dropped. `tokens`: sorted, unique."""
    column = "spam" if is_spam else "ham"
    total = "nspam" if is_spam else "nham"
    await conn.execute(
        f"INSERT INTO spam_tokens (model, token, {column})"
        " SELECT $1, t, greatest($3::float8, 0) FROM unnest($2::bigint[]) AS t"
        f" ON CONFLICT (model, token) DO UPDATE"
        f" SET {column} = greatest(spam_tokens.{column} + $3::float8, 0)",
        model, tokens, weight)
    await conn.execute("DELETE FROM spam_tokens WHERE model = $1 AND token = ANY($2::bigint[])"
                       " AND spam <= 0 AND ham <= 0", model, tokens)
    await conn.execute(
        f"INSERT INTO spam_models (model, {total}) VALUES ($1, greatest($2::float8, 0))"
        f" ON CONFLICT (model) DO UPDATE SET {total} = greatest(spam_models.{total}"
        " + $2::float8, 0)", model, weight)


class PostgresSpamModel:
    def __init__(self, dsn: str, *, max_size: int = 4) -> None:
        self.pool = LazyPool(dsn, _migrate, max_size=max_size)

    @classmethod
    async def connect(cls, dsn: str) -> PostgresSpamModel:
        model = cls(dsn)
        await model.pool.get()
        return model

    def close(self) -> None:
        self.pool.close()

    async def counts(self, model: str, tokens: Sequence[int]) -> Counts:
        pool = await self.pool.get()
        # One round trip (a delivery asks this twice): no row when the model has learnt
        # nothing, else the totals on every row and the tokens seen (one NULL row if none).
        rows = await pool.fetch(
            "SELECT m.nspam, m.nham, t.token, t.spam, t.ham FROM spam_models m"
            " LEFT JOIN spam_tokens t ON t.model = m.model AND t.token = ANY($2::bigint[])"
            " WHERE m.model = $1", model, list(dict.fromkeys(tokens)))
        if not rows:
            return Counts()
        found = {r[2]: (r[3], r[4]) for r in rows if r[2] is not None}
        return Counts(rows[0][0], rows[0][1], found)

    async def totals(self, model: str) -> tuple[float, float]:
        pool = await self.pool.get()
        row = await pool.fetchrow("SELECT nspam, nham FROM spam_models WHERE model = $1",
                                  model)
        return (0.0, 0.0) if row is None else (row[0], row[1])

    async def learn(self, account_id: str, message_key: str, tokens: Sequence[int],
                    is_spam: bool, *, global_weight: float) -> bool:
        unique = sorted(set(tokens))
        pool = await self.pool.get()
        for attempt in range(_TRIES):
            try:
                async with pool.acquire() as conn, conn.transaction():
                    return await self._learn(conn, account_id, message_key, unique, is_spam,
                                             global_weight)
            except asyncpg.DeadlockDetectedError:
                if attempt == _TRIES - 1:
                    raise
        raise AssertionError("unreachable")

    @staticmethod
    async def _learn(conn: asyncpg.Connection, account_id: str, message_key: str,
                     unique: list[int], is_spam: bool, global_weight: float) -> bool:
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _lock_key(account_id,
                                                                          message_key))
        row = await conn.fetchrow("SELECT is_spam, weight, tokens FROM spam_lessons"
                                  " WHERE account_id = $1 AND message_key = $2",
                                  account_id, message_key)
        if row is not None:
            if row["is_spam"] == is_spam:
                return False
            earlier = sorted(row["tokens"])
            await _apply(conn, account_id, earlier, row["is_spam"], -1.0)
            if row["weight"]:
                await _apply(conn, "", earlier, row["is_spam"], -row["weight"])
        await _apply(conn, account_id, unique, is_spam, 1.0)
        if global_weight:
            await _apply(conn, "", unique, is_spam, global_weight)
        await conn.execute(
            "INSERT INTO spam_lessons (account_id, message_key, is_spam, weight, tokens)"
            " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (account_id, message_key) DO UPDATE"
            " SET is_spam = EXCLUDED.is_spam, weight = EXCLUDED.weight,"
            " tokens = EXCLUDED.tokens",
            account_id, message_key, is_spam, float(global_weight), unique)
        return True

    async def report(self, kind: str, key: str, account_id: str, at: float) -> None:
        pool = await self.pool.get()
        await pool.execute(
            "INSERT INTO spam_reports (kind, key, account_id, at) VALUES ($1, $2, $3, $4)"
            " ON CONFLICT (kind, key, account_id)"
            " DO UPDATE SET at = greatest(spam_reports.at, EXCLUDED.at)",
            kind, key, account_id, float(at))

    async def retract(self, kind: str, key: str, account_id: str) -> None:
        pool = await self.pool.get()
        await pool.execute("DELETE FROM spam_reports WHERE kind = $1 AND key = $2"
                           " AND account_id = $3", kind, key, account_id)

    async def reporters(self, kind: str, key: str, since: float) -> int:
        pool = await self.pool.get()
        return int(await pool.fetchval("SELECT count(*) FROM spam_reports WHERE kind = $1"
                                       " AND key = $2 AND at >= $3", kind, key, float(since)))

    async def allow_sender(self, account_id: str, sender: str) -> None:
        pool = await self.pool.get()
        await pool.execute("INSERT INTO spam_allowed_senders (account_id, sender)"
                           " VALUES ($1, $2) ON CONFLICT DO NOTHING",
                           account_id, normalize(sender))

    async def disallow_sender(self, account_id: str, sender: str) -> None:
        pool = await self.pool.get()
        await pool.execute("DELETE FROM spam_allowed_senders WHERE account_id = $1"
                           " AND sender = $2", account_id, normalize(sender))

    async def sender_allowed(self, account_id: str, sender: str) -> bool:
        pool = await self.pool.get()
        return await pool.fetchval("SELECT 1 FROM spam_allowed_senders WHERE account_id = $1"
                                   " AND sender = $2", account_id,
                                   normalize(sender)) is not None
