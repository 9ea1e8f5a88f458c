"""Account objects beside the mail (JMAP Identity, VacationResponse, EmailSubmission, ...):
each write takes the account's next MODSEQ, and unless the caller keeps it out of the change
log (`log=False`: objects with no JMAP state of their own), logs the object "created" (new
id), "updated" (replaced) or "destroyed", under its kind. A kind and an id are stored (and
looked up) as store.ports.stored_text makes them. Once for every engine."""

from __future__ import annotations

from typing import Any

from mailyard.store.ports.errors import NotFound
from mailyard.store.ports.mailtx import ObjectTx
from mailyard.store.ports.text import stored_text


async def put(tx: ObjectTx, kind: str, object_id: str, data: dict[str, Any], *,
              log: bool = True) -> int:
    """Create or replace the object; the MODSEQ it took."""
    kind, object_id = stored_text(kind), stored_text(object_id)
    modseq = await tx.next_modseq()
    existed = await tx.upsert_object(kind, object_id, data, modseq)
    if log:
        tx.log(modseq, kind, object_id, "updated" if existed else "created")
    return modseq


async def delete(tx: ObjectTx, kind: str, object_id: str, *, log: bool = True) -> int:
    """Delete the object (NotFound when there is none); the MODSEQ it took."""
    kind, object_id = stored_text(kind), stored_text(object_id)
    modseq = await tx.next_modseq()
    if not await tx.delete_object(kind, object_id):
        raise NotFound(f"no {kind} {object_id}")
    if log:
        tx.log(modseq, kind, object_id, "destroyed")
    return modseq
