"""Accounts as stored: create, delete, password, quota.

Rules, once for every engine:
- An account is known by its address as core.addresses.normalize and then
  store.ports.stored_text make it (the domain in lower case, no NUL): `stored_address`, for
  writes and look-ups alike, on every engine and in the sharded directory. A second account
  of the same address is a Conflict, and an address with no account is NotFound for every
  change.
- A new account starts empty (nothing used, MODSEQ 0) and with the DEFAULT_MAILBOXES
  (model/mailboxes.py), made in the same transaction: no one ever sees an account without
  its INBOX and All Mail.
- Deleting an account deletes everything stored under it but its blobs (shared,
  content-addressed: `mailyard gc` collects them).
"""

from __future__ import annotations

import time

from mailyard.core.addresses import normalize
from mailyard.core.ids import new_id
from mailyard.model import mailboxes
from mailyard.store.ports.errors import Conflict, NotFound
from mailyard.store.ports.mailtx import AccountTx
from mailyard.store.ports.records import Account
from mailyard.store.ports.text import stored_text


def stored_address(address: str) -> str:
    """The address an account is stored and looked up under, on every engine and in the
    sharded store's directory."""
    return stored_text(normalize(address))


async def create(tx: AccountTx, account_id: str, address: str, password_hash: str,
                 quota: int) -> Account:
    address = stored_address(address)
    if not await tx.insert_account(account_id, address, password_hash, quota, time.time()):
        raise Conflict(f"account {address} exists")
    await mailboxes.create_defaults(tx.mail(account_id),
                                    [new_id("m") for _ in mailboxes.DEFAULT_MAILBOXES])
    return await tx.account(account_id)


async def account_id(tx: AccountTx, address: str) -> str:
    found = await tx.account_id(stored_address(address))
    if found is None:
        raise NotFound(f"no account {address}")
    return found


async def delete(tx: AccountTx, address: str) -> None:
    await tx.delete_account(await account_id(tx, address))


async def set_password(tx: AccountTx, address: str, password_hash: str) -> None:
    await tx.update_account(await account_id(tx, address), password_hash=password_hash)


async def set_quota(tx: AccountTx, address: str, quota: int) -> None:
    await tx.update_account(await account_id(tx, address), quota=quota)
