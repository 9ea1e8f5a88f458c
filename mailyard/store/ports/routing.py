"""The RoutingStore port: aliases, domain aliases and catch-alls."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

if TYPE_CHECKING:
    pass


RouteKind = Literal["alias", "domain", "catchall"]
"""alias: an address to a target address (several rows: several targets); domain: every
address at a domain to the same local part at the target domain; catchall: any address at a
domain that nothing else accepts, to one target address."""


@dataclass(frozen=True, slots=True)
class RouteRow:
    """One routing rule as stored: addresses and domains lower case, IDNs as A-labels."""

    kind: RouteKind
    source: str
    target: str


class RoutingStore(Protocol):
    """The routing rules (services/routing.py reads and keeps them): global, like domains,
    so one table of rows on every engine (on sharded PostgreSQL, in the directory shard)."""

    async def add_route(self, row: RouteRow) -> None:
        """Conflict when that very row exists."""
        ...

    async def remove_routes(self, kind: RouteKind, source: str,
                            target: str | None = None) -> int:
        """Remove the source's rows of that kind (only the one to `target`, if given); how
        many were removed."""
        ...

    async def targets(self, kind: RouteKind, source: str) -> list[str]:
        """The targets of one source, in the order they were added."""
        ...

    async def routes(self, kind: RouteKind | None = None) -> list[RouteRow]:
        """Every row (of one kind), by kind, source, then the order added."""
        ...

    def close(self) -> None: ...
