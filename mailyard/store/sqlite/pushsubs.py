"""PushSubscriptionStore on SQLite, in its own small database file.

Push subscriptions change rarely and are read once at start-up and on every JMAP call that names
them; a file of their own keeps them out of the mail store's write lock and its change log (a
subscription is no account data and must not move the account's state).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path

import orjson

from mailyard.store.ports import NotFound, PushSubscriptionRecord
from mailyard.store.sqlite.db import Database

SCHEMA = """
CREATE TABLE IF NOT EXISTS push_subscriptions (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    device_client_id TEXT NOT NULL,
    url TEXT NOT NULL,
    keys BLOB,
    verification_code TEXT NOT NULL,
    verified INTEGER NOT NULL,
    expires REAL NOT NULL,
    types BLOB
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS push_subscriptions_account
    ON push_subscriptions (account_id, id);
"""

_COLUMNS = ("id, account_id, device_client_id, url, keys, verification_code, verified,"
            " expires, types")


def _record(row: sqlite3.Row) -> PushSubscriptionRecord:
    types = orjson.loads(row["types"]) if row["types"] is not None else None
    return PushSubscriptionRecord(
        id=row["id"], account_id=row["account_id"], device_client_id=row["device_client_id"],
        url=row["url"], keys=orjson.loads(row["keys"]) if row["keys"] is not None else None,
        verification_code=row["verification_code"], verified=bool(row["verified"]),
        expires=row["expires"], types=tuple(types) if types is not None else None)


class SqlitePushSubscriptionStore:
    def __init__(self, path: Path) -> None:
        self.db = Database(path, SCHEMA)

    def close(self) -> None:
        self.db.close()

    async def put(self, record: PushSubscriptionRecord) -> None:
        row = (record.id, record.account_id, record.device_client_id, record.url,
               orjson.dumps(record.keys) if record.keys is not None else None,
               record.verification_code, int(record.verified), record.expires,
               orjson.dumps(list(record.types)) if record.types is not None else None)

        def write(conn: sqlite3.Connection) -> None:
            conn.execute(f"INSERT OR REPLACE INTO push_subscriptions ({_COLUMNS})"
                         " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", row)
        await self.db.write(write)

    async def get(self, account_id: str, ids: Sequence[str] | None = None
                  ) -> list[PushSubscriptionRecord]:
        def read(conn: sqlite3.Connection) -> list[PushSubscriptionRecord]:
            if ids is None:
                rows = conn.execute(f"SELECT {_COLUMNS} FROM push_subscriptions"
                                    " WHERE account_id = ? ORDER BY id", (account_id,))
            else:
                rows = conn.execute(
                    f"SELECT {_COLUMNS} FROM push_subscriptions WHERE account_id = ?"
                    " AND id IN (SELECT value FROM json_each(?)) ORDER BY id",
                    (account_id, orjson.dumps(list(ids)).decode()))
            return [_record(r) for r in rows]
        return await self.db.read(read)

    async def delete(self, account_id: str, subscription_id: str) -> None:
        def write(conn: sqlite3.Connection) -> None:
            cur = conn.execute("DELETE FROM push_subscriptions WHERE account_id = ? AND id = ?",
                               (account_id, subscription_id))
            if cur.rowcount == 0:
                raise NotFound(f"push subscription {subscription_id}")
        await self.db.write(write)

    async def verified(self, now: float) -> list[PushSubscriptionRecord]:
        def read(conn: sqlite3.Connection) -> list[PushSubscriptionRecord]:
            rows = conn.execute(f"SELECT {_COLUMNS} FROM push_subscriptions"
                                " WHERE verified = 1 AND expires > ? ORDER BY id", (now,))
            return [_record(r) for r in rows]
        return await self.db.read(read)

    async def delete_expired(self, now: float) -> int:
        def write(conn: sqlite3.Connection) -> int:
            return conn.execute("DELETE FROM push_subscriptions WHERE expires <= ?",
                                (now,)).rowcount
        return await self.db.write(write)
