"""The SearchIndex sharded with the MailStore: each account's documents live in the shard
database that holds its mail (`[store] search = "postgresql"` with `metadata` a list).

Before, the whole index was in the first shard: every search and every indexed message of
every account went to one database, which then bounded the installation. Now a shard is the
unit of both, and `mailyard account move` carries the account's index with its mail
(move_with_index).

Routing reads the MailStore's directory (ShardedMailStore.lookup, cached and emptied by the
directory's NOTIFY). Writes lock the account's row in the shard they go to (search._held):
one that waited on a move's final phase, or came after it, finds no row there and is routed
again to the account's new shard, as the MailStore's own writes are. So once the move has
switched the directory, no index write lands on the old shard any more.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TypeVar

from mailyard.core.query import Node
from mailyard.store.ports import Hits, IndexDocument, NotFound, Order, Snippet
from mailyard.store.postgres.search import PostgresSearchIndex
from mailyard.store.postgres.sharded import ShardedMailStore

log = logging.getLogger(__name__)
R = TypeVar("R")


class ShardedSearchIndex:
    """The SearchIndex port over one PostgresSearchIndex per shard of `store`."""

    def __init__(self, store: ShardedMailStore, *, query_seconds: float = 10.0,
                 max_size: int | None = None) -> None:
        """`max_size`: connections per shard; by default the one unsharded index's 10 shared
        out (at least 2 each), so that sharding does not multiply a node's connections."""
        if max_size is None:
            max_size = max(2, 10 // len(store.shards))
        self.store = store
        self.shards: dict[str, PostgresSearchIndex] = {
            name: PostgresSearchIndex(shard.dsn, query_seconds=query_seconds,
                                      max_size=max_size)
            for name, shard in store.shards.items()}
        self.reroutes = 0
        """Writes that found their account moved away under them and were sent again."""
        self._checked = False

    async def shard_of(self, account_id: str, *, fresh: bool = False) -> str:
        """The account's shard as the directory says; "0" for one it does not know (which
        then answers as a single index answers for an unknown account)."""
        entry = await self.store.lookup(account_id, fresh=fresh)
        if not self._checked:
            self._checked = True
            await self.misplaced()
        return entry.shard if entry else "0"

    async def _read(self, account_id: str,
                    call: Callable[[PostgresSearchIndex], Awaitable[R]]) -> R:
        return await call(self.shards[await self.shard_of(account_id)])

    async def _write(self, account_id: str,
                     call: Callable[[PostgresSearchIndex, bool], Awaitable[None]]) -> None:
        """Run `call(index, hold)` on the account's shard, holding its row there; routed
        again when the row is gone because the account moved. An account with no row where
        the directory puts it (deleted meanwhile) is written as a single index would be."""
        shard = await self.shard_of(account_id)
        for _ in range(3):
            try:
                return await call(self.shards[shard], True)
            except NotFound:
                now = await self.shard_of(account_id, fresh=True)
                if now == shard:
                    break
                shard = now
                self.reroutes += 1
        await call(self.shards[shard], False)

    def close(self) -> None:
        for shard in self.shards.values():
            shard.close()

    async def index(self, documents: Sequence[IndexDocument]) -> None:
        by_account: dict[str, list[IndexDocument]] = {}
        for doc in documents:
            by_account.setdefault(doc.account_id, []).append(doc)
        for account_id, docs in sorted(by_account.items()):
            await self._write(account_id, _indexer(account_id, docs))

    async def query(self, account_id: str, node: Node, *, among: Sequence[str] | None = None,
                    order: Order = "newest", limit: int | None = None, position: int = 0,
                    total: bool = False,
                    received: tuple[int | None, int | None] = (None, None),
                    outside: Iterable[str] = ()) -> Hits:
        left_out = list(outside)  # read once: the call may be made again on another shard
        return await self._read(account_id, lambda s: s.query(
            account_id, node, among=among, order=order, limit=limit, position=position,
            total=total, received=received, outside=left_out))

    async def snippets(self, account_id: str, node: Node,
                       email_ids: Sequence[str]) -> list[Snippet]:
        return await self._read(account_id, lambda s: s.snippets(account_id, node, email_ids))

    async def substring(self, account_id: str, field: str | None,
                        needle: str) -> set[str] | None:
        return await self._read(account_id, lambda s: s.substring(account_id, field, needle))

    async def delete(self, account_id: str, email_ids: Sequence[str]) -> None:
        await self._write(account_id,
                          lambda s, hold: s.delete(account_id, email_ids, hold=hold))

    async def clear(self, account_id: str) -> None:
        """The account's documents on its shard, and on every other one: what an index from
        before sharding (all in shard "0") or an interrupted move left there is dropped, so
        that `mailyard reindex` leaves the account's index whole and in one place."""
        home = await self.shard_of(account_id)
        for name, shard in self.shards.items():
            if name != home:
                await shard.clear(account_id)
        await self._write(account_id, lambda s, hold: s.clear(account_id, hold=hold))

    async def count(self, account_id: str) -> int:
        return await self._read(account_id, lambda s: s.count(account_id))

    async def indexed_ids(self, account_id: str) -> set[str]:
        return await self._read(account_id, lambda s: s.indexed_ids(account_id))

    async def misplaced(self) -> int:
        """Accounts with documents in shard "0" that the directory places on another shard
        (an index built before it was sharded); logged at start: `mailyard reindex` moves
        them."""
        pool = await self.shards["0"]._ready()
        count = int(await pool.fetchval(
            "SELECT count(DISTINCT d.account_id) FROM search_docs d JOIN account_directory a"
            " ON a.account_id = d.account_id WHERE a.shard <> '0'"))
        if count:
            log.warning("search index: %d accounts have documents in shard 0 but live on"
                        " another shard (indexed before the index was sharded); run"
                        " `mailyard reindex` to rebuild them on their own shard", count)
        return count


def _indexer(account_id: str, docs: Sequence[IndexDocument]
             ) -> Callable[[PostgresSearchIndex, bool], Awaitable[None]]:
    async def call(shard: PostgresSearchIndex, hold: bool) -> None:
        await shard.index(docs, hold=account_id if hold else None)
    return call
