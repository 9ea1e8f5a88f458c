"""The SearchIndex port and the hits every query answers with."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

if TYPE_CHECKING:
    from mailyard.core.query import Node


@dataclass(slots=True)
class IndexDocument:
    """The searchable text of one email in one account (core.indextext.IndexText)."""

    account_id: str
    email_id: str
    received_at: int
    """Milliseconds; the index keeps documents in this order so "newest first" is a scan."""
    subject: str = ""
    from_: str = ""
    to: str = ""
    cc: str = ""
    bcc: str = ""
    body: str = ""
    filenames: str = ""
    attachment_text: str = ""
    list_id: str = ""
    part_headers: str = ""
    """MIME part headers (core.indextext.IndexText.part_headers): for IMAP BODY/TEXT only."""


@dataclass(slots=True)
class Hits:
    """One page of a query's answer: email ids in order, and the total when it was asked for."""

    ids: list[str]
    total: int | None = None


@dataclass(slots=True)
class Snippet:
    """JMAP SearchSnippet: HTML-escaped text with the matched terms in <mark></mark>."""

    email_id: str
    subject: str | None
    preview: str | None


Order = Literal["newest", "oldest", "relevance"]


class SearchIndex(Protocol):
    """Full text of subject, addresses, body text, attachment names and attachment text.

    Queries are trees of core.query nodes made only of Text, And, Or and Not (the text half of
    a search; the mail store answers the rest). Every call is scoped to one account.
    """

    async def index(self, documents: Sequence[IndexDocument]) -> None:
        """Add documents; one already indexed for (account, email) is replaced."""
        ...

    async def query(self, account_id: str, node: Node, *, among: Sequence[str] | None = None,
                    order: Order = "newest", limit: int | None = None, position: int = 0,
                    total: bool = False,
                    received: tuple[int | None, int | None] = (None, None),
                    outside: Iterable[str] = ()) -> Hits:
        """Emails matching `node` (restricted to `among` when given), in `order`; `received`
        narrows to arrival times (ms) in [low, high) when the caller knows such bounds.
        The emails of `outside` are left out of the page and the count: Gmail's Spam and
        Trash, so that a count of a scoped word query is one read of the word's matches."""
        ...

    async def snippets(self, account_id: str, node: Node,
                       email_ids: Sequence[str]) -> list[Snippet]: ...

    async def substring(self, account_id: str, field: str | None,
                        needle: str) -> set[str] | None:
        """Emails whose field ("subject", "addresses", "body"; None for all) contains `needle`,
        case-insensitively (IMAP's SEARCH semantics); None when the index cannot answer (too
        short a needle), and the caller must look at the messages themselves."""
        ...

    async def delete(self, account_id: str, email_ids: Sequence[str]) -> None: ...

    async def clear(self, account_id: str) -> None:
        """Forget every document of the account (before a reindex)."""
        ...

    async def count(self, account_id: str) -> int: ...

    async def indexed_ids(self, account_id: str) -> set[str]:
        """The email ids the account has documents for (`mailyard fsck` compares them with
        the stored emails: a missing document is a message search cannot find)."""
        ...

    def close(self) -> None: ...
