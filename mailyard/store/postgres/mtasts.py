"""The MTA-STS policies every node has fetched (mtasts.SeenPolicies), in the directory database
(the first DSN of `[store] metadata`): one row per domain, the latest policy fetched, in a table
of its own (migration component "mtasts"). Why a database and not Redis: see SeenPolicies.

Rows whose max_age has run out are deleted when a policy is written (rare: a fetch), so the
table holds the domains mailed within the last max_age and no more.
"""

from __future__ import annotations

import time

import asyncpg

from mailyard.mtasts import Mode, Policy
from mailyard.store.postgres.pool import LazyPool
from mailyard.store.postgres.schema import migrate

COMPONENT = "mtasts"
T = 'text COLLATE "C"'
MIGRATIONS: tuple[str, ...] = (
    f"""
    CREATE TABLE mta_sts_policies (
        domain {T} PRIMARY KEY,
        mode {T} NOT NULL CHECK (mode IN ('enforce', 'testing', 'none')),
        mx text[] COLLATE "C" NOT NULL,
        max_age bigint NOT NULL,
        id {T} NOT NULL,
        fetched_at double precision NOT NULL
    );
    CREATE INDEX mta_sts_policies_expiry ON mta_sts_policies ((fetched_at + max_age));
    """,
)


async def _migrate(conn: asyncpg.Connection) -> None:
    await migrate(conn, COMPONENT, MIGRATIONS)


class PostgresSeenPolicies:
    def __init__(self, dsn: str, *, max_size: int = 2) -> None:
        self._pool = LazyPool(dsn, _migrate, min_size=1, max_size=max_size)

    def close(self) -> None:
        self._pool.close()

    async def get(self, domain: str) -> Policy | None:
        pool = await self._pool.get()
        row = await pool.fetchrow("SELECT mode, mx, max_age, id, fetched_at"
                                  " FROM mta_sts_policies WHERE domain = $1", domain)
        if row is None:
            return None
        mode: Mode = row["mode"]
        return Policy(mode, tuple(row["mx"]), int(row["max_age"]), row["id"],
                      float(row["fetched_at"]))

    async def put(self, domain: str, policy: Policy) -> None:
        pool = await self._pool.get()
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO mta_sts_policies (domain, mode, mx, max_age, id, fetched_at)"
                " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (domain) DO UPDATE SET"
                " mode = EXCLUDED.mode, mx = EXCLUDED.mx, max_age = EXCLUDED.max_age,"
                " id = EXCLUDED.id, fetched_at = EXCLUDED.fetched_at"
                " WHERE mta_sts_policies.fetched_at <= EXCLUDED.fetched_at",
                domain, policy.mode, list(policy.mx), policy.max_age, policy.id,
                policy.fetched_at)
            await conn.execute("DELETE FROM mta_sts_policies WHERE fetched_at + max_age < $1",
                               time.time())
