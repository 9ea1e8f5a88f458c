"""An account's small stored objects (JMAP Identity, EmailSubmission): the protocols' door to
them, so that no protocol holds the MailStore.

Each object is JSON data under (kind, id), and each write is a step of the account's change
log, so JMAP states and /changes cover it like mail. The rules of what an identity or a
submission may hold stay with the methods that check a client's object; this service keeps
them, reads them back and drops them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mailyard.store.ports import Account, MailStore, StoredObject


class ObjectService:
    def __init__(self, store: MailStore) -> None:
        self._store = store

    async def get(self, account: Account, kind: str, ids: Sequence[str] | None = None
                  ) -> list[StoredObject]:
        """The objects of `kind` (those of `ids` that exist, or all), in id order."""
        return await self._store.get_objects(account.id, kind, ids)

    async def put(self, account: Account, kind: str, object_id: str, data: dict[str, Any], *,
                  log: bool = True) -> int:
        """Create or replace; the account's new state. log=False leaves it out of the change
        log (an object that existed before it was stored, so clients see no creation)."""
        return await self._store.put_object(account.id, kind, object_id, data, log=log)

    async def delete(self, account: Account, kind: str, object_id: str) -> int:
        """The account's new state; NotFound when there is no such object."""
        return await self._store.delete_object(account.id, kind, object_id)
