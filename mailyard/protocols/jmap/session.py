"""The Session resource (RFC 8620 §2): what the server can do and where to ask for it.

Capabilities register here, each with up to two hooks: its server-wide value (in
`capabilities`) and, for capabilities that apply to data, its value for one account (in
`accountCapabilities`, which also makes the account the primary one for that capability).
A module adding methods under a new capability registers both at import time.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from mailyard.protocols.jmap.core import CORE
from mailyard.protocols.jmap.services import JMAPServices
from mailyard.store.ports import Account

SessionHook = Callable[[JMAPServices, str], dict[str, Any]]
"""(services, base URL such as "https://mail.example.com") -> `capabilities[uri]`."""
AccountHook = Callable[[JMAPServices, Account], dict[str, Any]]
"""(services, account) -> `accounts[id].accountCapabilities[uri]`."""


@dataclass(frozen=True)
class Capability:
    uri: str
    session: SessionHook
    account: AccountHook | None


CAPABILITIES: dict[str, Capability] = {}


def _empty(*_: Any) -> dict[str, Any]:
    return {}


def capability(uri: str, *, session: SessionHook = _empty,
               account: AccountHook | None = None) -> Capability:
    """Advertise `uri`; with `account`, also per account (a capability for data)."""
    if uri in CAPABILITIES:
        raise ValueError(f"JMAP capability {uri} registered twice")
    CAPABILITIES[uri] = cap = Capability(uri, session, account)
    return cap


capability(CORE, session=lambda services, _: services.policy.limits.to_json(), account=_empty)

API_PATH = "/jmap/api"
DOWNLOAD_PATH = "/jmap/download/{accountId}/{blobId}/{name}?type={type}"
UPLOAD_PATH = "/jmap/upload/{accountId}/"
EVENT_SOURCE_PATH = "/jmap/eventsource?types={types}&closeafter={closeafter}&ping={ping}"


def session_resource(services: JMAPServices, account: Account, base_url: str
                     ) -> dict[str, Any]:
    """The Session object for `account`, its URLs absolute under `base_url`."""
    caps = CAPABILITIES.values()
    account_caps = {c.uri: c.account(services, account) for c in caps if c.account is not None}
    session: dict[str, Any] = {
        "capabilities": {c.uri: c.session(services, base_url) for c in caps},
        "accounts": {account.id: {
            "name": account.address,
            "isPersonal": True,
            "isReadOnly": False,
            "accountCapabilities": account_caps,
        }},
        "primaryAccounts": {uri: account.id for uri in account_caps},
        "username": account.address,
        "apiUrl": base_url + API_PATH,
        "downloadUrl": base_url + DOWNLOAD_PATH,
        "uploadUrl": base_url + UPLOAD_PATH,
        "eventSourceUrl": base_url + EVENT_SOURCE_PATH,
    }
    session["state"] = session_state(session)
    return session


def session_state(session: dict[str, Any]) -> str:
    """A digest of everything else in the session: it changes exactly when a client holding
    an older copy should fetch the session again (§2 `state`, §3.4 `sessionState`)."""
    body = orjson.dumps({k: v for k, v in session.items() if k != "state"},
                        option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(body).hexdigest()[:16]
