"""Email addresses as the store and every protocol see them.

Addresses are compared case-insensitively on the domain and, by the convention of nearly every
mail system (RFC 5321 §2.4 allows otherwise, but users expect it), on the local part as well.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Address:
    """A display name and an addr-spec, decoded (RFC 2047 words become text)."""

    name: str
    email: str

    @property
    def local_part(self) -> str:
        return self.email.rpartition("@")[0] if "@" in self.email else self.email

    @property
    def domain(self) -> str:
        return self.email.rpartition("@")[2] if "@" in self.email else ""


def normalize(address: str) -> str:
    """The canonical form used as a lookup key: no angle brackets, lower case, and an
    internationalised domain as its A-label (`anna@bücher.example` and
    `anna@xn--bcher-kva.example` are one account, as `mailyard domain add` stores the
    domain); a domain IDNA refuses stays as written (it names no local domain)."""
    address = address.strip().strip("<>").strip()
    local, at, domain = address.rpartition("@")
    if not at:
        return address.lower()
    domain = domain.lower().rstrip(".")
    if not domain.isascii():
        import idna  # only for the rare non-ASCII domain

        with contextlib.suppress(UnicodeError):  # idna.IDNAError is one
            domain = idna.encode(domain, uts46=True).decode("ascii")
    return f"{local.lower()}@{domain}"


def domain_of(address: str) -> str:
    return normalize(address).rpartition("@")[2]
