"""The routing rules on PostgreSQL: one table, its own schema component ("routing").

Routing is global like domains: with shards it lives in the directory database (the first DSN
of `[store] metadata`), which the composition root hands this adapter.
"""

from __future__ import annotations

import time

import asyncpg

from mailyard.store.ports import Conflict, RouteKind, RouteRow
from mailyard.store.postgres import schema
from mailyard.store.postgres.pool import LazyPool

COMPONENT = "routing"
T = 'text COLLATE "C"'
MIGRATIONS: tuple[str, ...] = (
    f"""
    CREATE TABLE routes (
        kind {T} NOT NULL CHECK (kind IN ('alias', 'domain', 'catchall')),
        source {T} NOT NULL,
        target {T} NOT NULL,
        position bigint GENERATED ALWAYS AS IDENTITY,
        created_at double precision NOT NULL,
        PRIMARY KEY (kind, source, target)
    );
    """,
)


async def _migrate(conn: asyncpg.Connection) -> None:
    await schema.migrate(conn, COMPONENT, MIGRATIONS)


class PostgresRoutingStore:
    def __init__(self, dsn: str, *, max_size: int = 4) -> None:
        self._pool = LazyPool(dsn, _migrate, min_size=1, max_size=max_size)

    def close(self) -> None:
        self._pool.close()

    async def add_route(self, row: RouteRow) -> None:
        pool = await self._pool.get()
        try:
            await pool.execute(
                "INSERT INTO routes (kind, source, target, created_at) VALUES ($1, $2, $3, $4)",
                row.kind, row.source, row.target, time.time())
        except asyncpg.UniqueViolationError:
            raise Conflict(f"{row.source} already routes to {row.target}") from None

    async def remove_routes(self, kind: RouteKind, source: str,
                            target: str | None = None) -> int:
        pool = await self._pool.get()
        if target is None:
            status = await pool.execute("DELETE FROM routes WHERE kind = $1 AND source = $2",
                                        kind, source)
        else:
            status = await pool.execute(
                "DELETE FROM routes WHERE kind = $1 AND source = $2 AND target = $3",
                kind, source, target)
        return int(status.split()[-1])

    async def targets(self, kind: RouteKind, source: str) -> list[str]:
        pool = await self._pool.get()
        return [r[0] for r in await pool.fetch(
            "SELECT target FROM routes WHERE kind = $1 AND source = $2 ORDER BY position",
            kind, source)]

    async def routes(self, kind: RouteKind | None = None) -> list[RouteRow]:
        pool = await self._pool.get()
        if kind is None:
            rows = await pool.fetch(
                "SELECT kind, source, target FROM routes ORDER BY kind, source, position")
        else:
            rows = await pool.fetch("SELECT kind, source, target FROM routes WHERE kind = $1"
                                    " ORDER BY source, position", kind)
        return [RouteRow(r[0], r[1], r[2]) for r in rows]
