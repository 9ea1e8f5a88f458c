"""The lazily opened, migrated asyncpg pool that every PostgreSQL adapter sits on.

An adapter is built by the composition root before the event loop that serves with it runs,
and an asyncpg pool belongs to the loop that creates it; so the pool is opened on first use,
once (a lock keeps concurrent first callers from opening two), and the adapter's schema is
brought up to date on one of its connections before anyone else gets the pool.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import asyncpg

Migrate = Callable[[asyncpg.Connection], Awaitable[Any]]


class LazyPool:
    """One asyncpg pool on `dsn`, opened and migrated by the first `get()`."""

    def __init__(self, dsn: str, migrate: Migrate, *, min_size: int = 1, max_size: int = 10,
                 server_settings: Mapping[str, str] | None = None) -> None:
        self.dsn = dsn
        self._migrate = migrate
        self._sizes = (min_size, max_size)
        self._settings = dict(server_settings or {})
        self._pool: asyncpg.Pool | None = None
        self._opening: asyncio.Lock | None = None

    async def get(self) -> asyncpg.Pool:
        """The open pool; opened and migrated now if this is the first call."""
        if self._pool is not None:
            return self._pool
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:
            if self._pool is None:
                pool = await asyncpg.create_pool(
                    self.dsn, min_size=self._sizes[0], max_size=self._sizes[1],
                    server_settings=self._settings or None)
                try:
                    async with pool.acquire() as conn:
                        await self._migrate(conn)
                except BaseException:
                    await pool.close()
                    raise
                self._pool = pool
        return self._pool

    def close(self) -> None:
        """Synchronous, as the composition root closes every adapter: the connections are
        cut (no transaction is open when the services have stopped). A later `get()` opens
        a new pool."""
        if self._pool is not None:
            self._pool.terminate()
            self._pool = None
