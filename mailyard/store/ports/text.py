"""Text and keywords as every engine stores them: applied once where text enters the store."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    pass


def stored_text(value: str) -> str:
    """Text as every engine stores it: no NUL (which PostgreSQL's text refuses) and no lone
    surrogate (which is not UTF-8, so no engine can encode it). Parsed mail can carry either
    in an encoded word, a client in a name; a NUL becomes U+FFFD, a surrogate '?'. The mail
    model and NewEmail apply it to what they write, so SQLite and PostgreSQL store the same;
    PostgreSQL's adapter applies it as well to every text it is asked to look up."""
    if "\x00" in value:
        value = value.replace("\x00", "\ufffd")
    if not value.isascii():
        value = value.encode("utf-8", "replace").decode("utf-8")
    return value


def stored_text_opt(value: str | None) -> str | None:
    return None if value is None else stored_text(value)


def stored_values(item: dict[str, Any]) -> dict[str, Any]:
    return {k: stored_text(v) if isinstance(v, str) else v for k, v in item.items()}


def stored_keywords(keywords: Iterable[str]) -> list[str]:
    """Keywords as every engine stores them: lowercase (IMAP and JMAP keywords are
    case-insensitive, RFC 3501 §2.3.2, RFC 8621 §4.1.1), each once, in the order given, as
    stored_text makes them, so that SQLite and PostgreSQL keep the same list for the same
    delivery."""
    return list(dict.fromkeys(stored_text(k.lower()) for k in keywords))
