"""API tokens: bearer credentials for JMAP (and anything else on HTTP) that a user can revoke
one by one without changing the password.

A token is ``myt1.<account id>.<token id>.<secret>``: the account and token ids say where its
record is, so a check is one keyed read, and only the SHA-256 of the 256-bit secret is stored
(a secret that long needs no slow hash; a leaked database gives no usable token).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

from mailyard.core.ids import new_id
from mailyard.store.ports import Account, MailStore, NotFound

KIND = "Token"
PREFIX = "myt1"


@dataclass(frozen=True, slots=True)
class TokenInfo:
    id: str
    name: str
    created: float
    expires: float | None


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class TokenService:
    def __init__(self, store: MailStore) -> None:
        self.store = store

    async def create(self, account: Account, name: str = "",
                     lifetime: float | None = None) -> tuple[str, TokenInfo]:
        """The token (shown once, never stored) and its record."""
        token_id = new_id("t")
        secret = secrets.token_urlsafe(32)
        now = time.time()
        info = TokenInfo(token_id, name, now, now + lifetime if lifetime else None)
        await self.store.put_object(account.id, KIND, token_id, {
            "hash": _digest(secret), "name": name, "created": now, "expires": info.expires},
            log=False)
        return f"{PREFIX}.{account.id}.{token_id}.{secret}", info

    async def list(self, account: Account) -> list[TokenInfo]:
        return [TokenInfo(o.id, o.data["name"], o.data["created"], o.data["expires"])
                for o in await self.store.get_objects(account.id, KIND)]

    async def revoke(self, account: Account, token_id: str) -> None:
        await self.store.delete_object(account.id, KIND, token_id, log=False)

    async def check(self, token: str) -> Account | None:
        """The account a token belongs to; None for anything else (unknown, expired,
        revoked, malformed), without saying which."""
        prefix, _, rest = token.partition(".")
        account_id, _, rest = rest.partition(".")
        token_id, _, secret = rest.partition(".")
        if prefix != PREFIX or not account_id or not token_id or not secret or len(token) > 512:
            return None
        try:
            found = await self.store.get_objects(account_id, KIND, [token_id])
        except (NotFound, ValueError):
            return None
        if not found or not hmac.compare_digest(found[0].data["hash"], _digest(secret)):
            return None
        expires = found[0].data["expires"]
        if expires is not None and time.time() >= expires:
            return None
        try:
            return await self.store.get_account_by_id(account_id)
        except NotFound:
            return None
