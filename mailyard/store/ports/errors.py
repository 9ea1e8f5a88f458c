"""Errors a storage port raises on purpose; the protocols map each to their own answer."""

from __future__ import annotations


class StoreError(Exception):
    """Base of the errors a port may raise on purpose."""


class NotFound(StoreError):
    pass


class Conflict(StoreError):
    """A uniqueness rule would be broken (an address or a domain that already exists)."""


class QuotaExceeded(StoreError):
    """Storing this would take the account over its quota."""


class QueryTimeout(StoreError):
    """A read ran past its time budget and was cancelled (a search over a huge mailbox): the
    protocols answer it with their own "too much" error (IMAP NO [LIMIT], JMAP
    serverUnavailable)."""
