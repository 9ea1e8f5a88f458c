"""The installation's mail domains and their DKIM signing keys, as stored.

Rules, once for every engine:
- A domain is known by its name in lower case without the root's trailing dot, as
  store.ports.stored_text makes it (`domain_name`): "Example.TEST." and "example.test" are one
  domain, for every write and every look-up.
- A domain is added once (a second add is a Conflict) and removing one that is not there is
  NotFound.
- A DKIM selector is added once per domain (Conflict otherwise), dated now unless the key
  says when it was made; retiring one the domain does not have is NotFound. Keys are never
  deleted: a retired key stays listed, for the DNS records still naming it.
"""

from __future__ import annotations

import dataclasses
import time

from mailyard.store.ports.errors import Conflict, NotFound
from mailyard.store.ports.mailtx import DomainTx
from mailyard.store.ports.records import DKIMKeyRecord
from mailyard.store.ports.text import stored_text


def domain_name(name: str) -> str:
    """The stored form of a domain name, for writes and look-ups alike."""
    return stored_text(name.lower().rstrip("."))


async def add(tx: DomainTx, name: str) -> None:
    name = domain_name(name)
    if not await tx.insert_domain(name, time.time()):
        raise Conflict(f"domain {name} exists")


async def remove(tx: DomainTx, name: str) -> None:
    name = domain_name(name)
    if not await tx.delete_domain(name):
        raise NotFound(f"no domain {name}")


async def add_dkim_key(tx: DomainTx, key: DKIMKeyRecord) -> None:
    key = dataclasses.replace(key, domain=domain_name(key.domain),
                              selector=stored_text(key.selector),
                              created_at=key.created_at or time.time())
    if not await tx.insert_dkim_key(key):
        raise Conflict(f"{key.domain} already has a DKIM selector {key.selector}")


async def retire_dkim_key(tx: DomainTx, domain: str, selector: str) -> None:
    domain = domain_name(domain)
    if not await tx.retire_dkim_key(domain, stored_text(selector)):
        raise NotFound(f"{domain} has no DKIM selector {selector}")
