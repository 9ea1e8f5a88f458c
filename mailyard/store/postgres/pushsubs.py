"""JMAP push subscriptions on PostgreSQL (store.ports PushSubscriptionStore), in the directory
database (the first DSN when sharded), so every node of a cluster sees the subscriptions any
node made: a table of its own with its own migration component ("pushsubs"), outside the
MailStore's schema and change log (a subscription is no account data and moves no state).

The deliverer reads every verified subscription at start, across accounts: one database holds
them all, so that is one query; they are few (at most 50 an account) and change rarely.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg
import orjson

from mailyard.store.ports import NotFound, PushSubscriptionRecord
from mailyard.store.postgres.pool import LazyPool
from mailyard.store.postgres.schema import migrate

COMPONENT = "pushsubs"
T = 'text COLLATE "C"'
MIGRATIONS: tuple[str, ...] = (
    f"""
    CREATE TABLE push_subscriptions (
        id {T} PRIMARY KEY,
        account_id {T} NOT NULL,
        device_client_id text NOT NULL,
        url text NOT NULL,
        keys bytea,
        verification_code text NOT NULL,
        verified boolean NOT NULL,
        expires double precision NOT NULL,
        types bytea
    );
    CREATE INDEX push_subscriptions_account ON push_subscriptions (account_id, id);
    CREATE INDEX push_subscriptions_expires ON push_subscriptions (expires);
    """,
)
_COLUMNS = ("id, account_id, device_client_id, url, keys, verification_code, verified,"
            " expires, types")


async def _migrate(conn: asyncpg.Connection) -> None:
    await migrate(conn, COMPONENT, MIGRATIONS)


def _record(row: asyncpg.Record) -> PushSubscriptionRecord:
    # keys and types as JSON (bytea), as the SQLite adapter keeps them: None stays None,
    # and an empty list of types stays empty.
    types = orjson.loads(row["types"]) if row["types"] is not None else None
    return PushSubscriptionRecord(
        id=row["id"], account_id=row["account_id"], device_client_id=row["device_client_id"],
        url=row["url"], keys=orjson.loads(row["keys"]) if row["keys"] is not None else None,
        verification_code=row["verification_code"], verified=row["verified"],
        expires=row["expires"], types=tuple(types) if types is not None else None)


class PostgresPushSubscriptionStore:
    def __init__(self, dsn: str, *, max_size: int = 4) -> None:
        self.pool = LazyPool(dsn, _migrate, max_size=max_size)

    @classmethod
    async def connect(cls, dsn: str) -> PostgresPushSubscriptionStore:
        store = cls(dsn)
        await store.pool.get()
        return store

    def close(self) -> None:
        self.pool.close()

    async def put(self, record: PushSubscriptionRecord) -> None:
        pool = await self.pool.get()
        await pool.execute(
            f"INSERT INTO push_subscriptions ({_COLUMNS})"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (id) DO UPDATE SET"
            " account_id = EXCLUDED.account_id, device_client_id = EXCLUDED.device_client_id,"
            " url = EXCLUDED.url, keys = EXCLUDED.keys,"
            " verification_code = EXCLUDED.verification_code, verified = EXCLUDED.verified,"
            " expires = EXCLUDED.expires, types = EXCLUDED.types",
            record.id, record.account_id, record.device_client_id, record.url,
            orjson.dumps(record.keys) if record.keys is not None else None,
            record.verification_code, record.verified, float(record.expires),
            orjson.dumps(list(record.types)) if record.types is not None else None)

    async def get(self, account_id: str, ids: Sequence[str] | None = None
                  ) -> list[PushSubscriptionRecord]:
        pool = await self.pool.get()
        if ids is None:
            rows = await pool.fetch(f"SELECT {_COLUMNS} FROM push_subscriptions"
                                    " WHERE account_id = $1 ORDER BY id", account_id)
        else:
            rows = await pool.fetch(f"SELECT {_COLUMNS} FROM push_subscriptions"
                                    " WHERE account_id = $1 AND id = ANY($2::text[])"
                                    " ORDER BY id", account_id, list(ids))
        return [_record(r) for r in rows]

    async def delete(self, account_id: str, subscription_id: str) -> None:
        pool = await self.pool.get()
        status = await pool.execute("DELETE FROM push_subscriptions WHERE account_id = $1"
                                    " AND id = $2", account_id, subscription_id)
        if status.endswith(" 0"):
            raise NotFound(f"push subscription {subscription_id}")

    async def verified(self, now: float) -> list[PushSubscriptionRecord]:
        pool = await self.pool.get()
        rows = await pool.fetch(f"SELECT {_COLUMNS} FROM push_subscriptions"
                                " WHERE verified AND expires > $1 ORDER BY id", float(now))
        return [_record(r) for r in rows]

    async def delete_expired(self, now: float) -> int:
        pool = await self.pool.get()
        status = await pool.execute("DELETE FROM push_subscriptions WHERE expires <= $1",
                                    float(now))
        return int(status.split()[-1])
