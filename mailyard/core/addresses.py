"""Email addresses as the store and every protocol see them.

Addresses are compared case-insensitively on the domain and, by the convention of nearly every
mail system (RFC 5321 §2.4 allows otherwise, but users expect it), on the local part as well.
"""

from __future__ import annotations

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
    """The canonical form used as a lookup key: no angle brackets, lower case, IDNA-free."""
    address = address.strip().strip("<>").strip()
    local, at, domain = address.rpartition("@")
    if not at:
        return address.lower()
    return f"{local.lower()}@{domain.lower().rstrip('.')}"


def domain_of(address: str) -> str:
    return normalize(address).rpartition("@")[2]
