"""Keys every node of a cluster must hold alike, in the directory database (the first DSN of
`[store] metadata`): today the SRS key when `[routing] srs_secret` is unset.

A key is made once for the whole cluster: each node offers a candidate with an insert that does
nothing when the name is taken, then reads what is there. Two nodes starting at the same
instant both offer; the primary key lets one insert win and the other wait for its commit and
read it, so they agree without any coordination of their own. The table has its own migration
component ("secrets").
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

import asyncpg

from mailyard.store.postgres.schema import migrate

COMPONENT = "secrets"
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE cluster_secrets (
        name text COLLATE "C" PRIMARY KEY,
        value bytea NOT NULL,
        created_at double precision NOT NULL
    );
    """,
)


async def shared_secret(dsn: str, name: str, candidate: bytes, *,
                        timeout: float = 10.0) -> bytes:
    """The cluster's key `name`: `candidate` if no node had made one yet, else theirs."""
    conn = await asyncpg.connect(dsn, timeout=timeout)
    try:
        await migrate(conn, COMPONENT, MIGRATIONS)
        await conn.execute("INSERT INTO cluster_secrets (name, value, created_at)"
                           " VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING",
                           name, candidate, time.time())
        return bytes(await conn.fetchval("SELECT value FROM cluster_secrets WHERE name = $1",
                                         name))
    finally:
        await conn.close()


def shared_secret_sync(dsn: str, name: str, candidate: bytes) -> bytes:
    """`shared_secret` for a synchronous caller, which may itself be running on an event loop
    (a Runtime part built on first use): on a thread and a loop of its own, once per process."""
    with ThreadPoolExecutor(1, thread_name_prefix="secrets") as pool:
        return pool.submit(asyncio.run, shared_secret(dsn, name, candidate)).result()
