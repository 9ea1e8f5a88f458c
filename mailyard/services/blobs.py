"""Blobs as a client sees them (JMAP upload/download, Email/import, attachments of new mail).

A client names three kinds of blob, all scoped to its account:
- an uploaded blob, ``U`` + the SHA-256 of its octets. The octets go to the BlobStore under that
  hash (so an attachment uploaded twice, or later split out of a message, is stored once); the
  account's right to read it is a small Upload object in the MailStore.
- an email, by its email id: the message octets exactly as delivered.
- one body part of an email, ``<email id>_<part id>``: the part's decoded content.
The BlobStore's own keys are content hashes shared by every account, so they are never handed
out: a hash learnt elsewhere must not open another account's attachment.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import dataclass

from mailyard.core import mime
from mailyard.services.mailbox import MailboxService
from mailyard.store.ports import Account, BlobStore, MailStore, NotFound

UPLOAD = "Upload"
UPLOAD_PREFIX = "U"


@dataclass(frozen=True, slots=True)
class Upload:
    blob_id: str
    type: str
    size: int


def _digest(blob_id: str) -> str | None:
    """The SHA-256 an upload blob id names, or None when it is not one."""
    digest = blob_id[len(UPLOAD_PREFIX):]
    if (blob_id.startswith(UPLOAD_PREFIX) and len(digest) == 64
            and all(c in "0123456789abcdef" for c in digest)):
        return digest
    return None


def part_content(raw: bytes, part_id: str) -> bytes:
    """The decoded content of the leaf part numbered `part_id` (IMAP section numbering)."""
    root = mime.parse_message(raw).root
    for section, part in mime.iter_parts(root):
        if section == part_id and not part.is_multipart:
            return mime.decoded_content(raw, part)
    raise NotFound(f"no body part {part_id}")


class BlobService:
    def __init__(self, store: MailStore, blobs: BlobStore, mailbox: MailboxService) -> None:
        self.store = store
        self.blobs = blobs
        self.mailbox = mailbox

    async def upload(self, account: Account, data: bytes, media_type: str) -> Upload:
        """Durable when it returns; uploading the same octets again names the same blob."""
        digest = hashlib.sha256(data).hexdigest()
        if not await self.blobs.exists(digest):
            await self.blobs.put(digest, data)
        upload = Upload(UPLOAD_PREFIX + digest, media_type, len(data))
        await self.store.put_object(account.id, UPLOAD, upload.blob_id, {
            "type": media_type, "size": len(data), "created": time.time()}, log=False)
        return upload

    async def uploaded(self, account: Account, blob_id: str) -> Upload:
        objects = await self.store.get_objects(account.id, UPLOAD, [blob_id])
        if not objects:
            raise NotFound(f"no blob {blob_id}")
        found = objects[0]
        return Upload(blob_id, found.data["type"], found.data["size"])

    async def read(self, account: Account, blob_id: str) -> bytes:
        """The octets of any blob the account may read; NotFound for every other id."""
        digest = _digest(blob_id)
        if digest is not None:
            await self.uploaded(account, blob_id)
            return await self.blobs.get(digest)
        email_id, sep, part_id = blob_id.partition("_")
        if not email_id or (sep and not part_id):
            raise NotFound(f"no blob {blob_id}")
        raw = await self.mailbox.raw(account, email_id)
        if not sep:
            return raw
        return await asyncio.to_thread(part_content, raw, part_id)

    async def exists(self, account: Account, blob_id: str) -> bool:
        try:
            if _digest(blob_id) is not None:
                await self.uploaded(account, blob_id)
            else:
                await self.read(account, blob_id)
        except (NotFound, ValueError):
            return False
        return True
