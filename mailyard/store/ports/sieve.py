"""The SieveScriptStore port: each account's Sieve scripts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    pass


@dataclass(frozen=True, slots=True)
class SieveScriptRecord:
    """One of an account's Sieve scripts (RFC 5804's model: named scripts, at most one
    active); the content is stored as the user wrote it, checked by services/sieve.py."""

    account_id: str
    name: str
    content: str
    active: bool
    updated_at: float
    id: str = ""
    """Given when the script is first stored and kept through replacing and renaming
    (JMAP's immutable id, RFC 9661); "" only from an engine that predates it."""


class SieveScriptStore(Protocol):
    """Each account's Sieve scripts and the duplicate test's memory (RFC 7352)."""

    async def put_script(self, account_id: str, name: str, content: str) -> None:
        """Create or replace; a replaced script keeps its active flag and its id."""
        ...

    async def list_scripts(self, account_id: str) -> list[SieveScriptRecord]:
        """By name."""
        ...

    async def get_script(self, account_id: str, name: str) -> SieveScriptRecord:
        """Raises NotFound."""
        ...

    async def get_active(self, account_id: str) -> SieveScriptRecord | None: ...

    async def set_active(self, account_id: str, name: str | None) -> None:
        """Make `name` the one active script (None: none); raises NotFound."""
        ...

    async def rename_script(self, account_id: str, old: str, new: str) -> None:
        """Raises NotFound for `old`, Conflict when `new` exists; the script keeps its id."""
        ...

    async def delete_script(self, account_id: str, name: str) -> None:
        """Raises NotFound."""
        ...

    async def duplicate_seen(self, account_id: str, key: str, now: float) -> bool:
        """Whether `key` was recorded and has not expired at `now`."""
        ...

    async def record_duplicate(self, account_id: str, key: str, expires: float, *,
                               last: bool) -> None:
        """Remember `key` until `expires`; an unexpired record keeps its expiry unless
        `last` (RFC 7352 §3.3 :last: the period counts from the latest message)."""
        ...

    def close(self) -> None: ...
