"""IMAP flags <-> the store's keywords (JMAP's model, RFC 8621 §4.1.1).

The store keeps JMAP keywords: lower case, `$seen` for \\Seen. IMAP system flags map one to one;
other IMAP keywords are stored lower-cased, since JMAP keywords are case-insensitive.
"""

from __future__ import annotations

from collections.abc import Iterable

SYSTEM = {
    "\\seen": "$seen", "\\flagged": "$flagged", "\\answered": "$answered",
    "\\draft": "$draft", "\\deleted": "$deleted",
}
_BACK = {v: "\\" + k[1:].capitalize() for k, v in SYSTEM.items()}

SETTABLE_FLAGS = frozenset({"\\Seen", "\\Flagged", "\\Answered", "\\Draft", "\\Deleted"})
"""The system flags a client may set (\\Recent is the server's; others are unknown)."""
FLAGS = "(\\Answered \\Flagged \\Deleted \\Seen \\Draft)"


def to_keyword(flag: str) -> str | None:
    """The keyword for an IMAP flag; None for \\Recent and unknown system flags (ignored)."""
    low = flag.lower()
    if low in SYSTEM:
        return SYSTEM[low]
    if low.startswith("\\"):
        return None
    return low


def to_keywords(flags: Iterable[str]) -> list[str]:
    return [k for k in (to_keyword(f) for f in flags) if k is not None]


def to_flags(keywords: Iterable[str]) -> list[str]:
    return [_BACK.get(k, k) for k in keywords]


SYSTEM_KEYWORDS = frozenset(SYSTEM.values())


def flag_list(names: Iterable[str], *, permanent: bool = False) -> str:
    """The `* FLAGS` (or PERMANENTFLAGS) list: the system flags, then the mailbox's keywords
    (RFC 3501 §7.2.6: a client learns a keyword's existence from here before a FETCH shows
    it), then \\* where clients may make new ones."""
    extra = " ".join(to_flags(sorted(names)))
    system = FLAGS[1:-1] + (" " + extra if extra else "")
    return f"({system} \\*)" if permanent else f"({system})"
