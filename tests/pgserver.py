"""PostgreSQL for the tests: one server per test session, one fresh database per test.

Which server: $MAILYARD_TEST_PG_DSN when set (CI points it anywhere), else the machine's own on
127.0.0.1:5432 when it answers (trust authentication, as user postgres or root), else a private
server that scripts/postgres-up.sh starts in a temporary directory for this session and stops
at exit. Every test gets `CREATE DATABASE mailyard_test_<random>` and it is dropped afterwards,
so tests share nothing and may run side by side.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

ROOT = Path(__file__).resolve().parent.parent
_admin: str | None = None


async def _answers(dsn: str) -> bool:
    try:
        conn = await asyncpg.connect(dsn, timeout=3)
    except (TimeoutError, OSError, asyncpg.PostgresError):
        return False
    await conn.close()
    return True


def _start_private() -> str:
    directory = tempfile.mkdtemp(prefix="mailyard-pg-")
    out = subprocess.run([str(ROOT / "scripts" / "postgres-up.sh"), directory], check=True,
                         capture_output=True, text=True, timeout=180)

    def stop() -> None:
        subprocess.run([str(ROOT / "scripts" / "postgres-up.sh"), "stop", directory],
                       check=False, capture_output=True, timeout=60)
        shutil.rmtree(directory, ignore_errors=True)

    atexit.register(stop)
    return out.stdout.strip().splitlines()[-1]


async def admin_dsn() -> str:
    """A DSN of a superuser on the session's server (found or started once)."""
    global _admin
    if _admin is not None:
        return _admin
    if os.environ.get("MAILYARD_TEST_PG_DSN"):
        _admin = os.environ["MAILYARD_TEST_PG_DSN"]
        return _admin
    for user in ("postgres", "root"):
        dsn = f"postgresql://{user}@127.0.0.1:5432/postgres"
        if await _answers(dsn):
            _admin = dsn
            return dsn
    _admin = await asyncio.get_running_loop().run_in_executor(None, _start_private)
    return _admin


def with_database(dsn: str, name: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path="/" + name))


class TestDatabase:
    """A database made on first use and dropped by `drop` (with any connections left)."""

    __test__ = False  # not a test class, whatever its name says to pytest

    def __init__(self) -> None:
        self.name = f"mailyard_test_{uuid.uuid4().hex[:16]}"
        self._dsn: str | None = None

    async def dsn(self) -> str:
        if self._dsn is None:
            admin = await admin_dsn()
            conn = await asyncpg.connect(admin)
            try:
                await conn.execute(f'CREATE DATABASE "{self.name}"')
            finally:
                await conn.close()
            self._dsn = with_database(admin, self.name)
        return self._dsn

    async def drop(self) -> None:
        if self._dsn is None:
            return
        conn = await asyncpg.connect(await admin_dsn())
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        finally:
            await conn.close()
        self._dsn = None
