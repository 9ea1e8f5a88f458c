"""IMAP flags <-> the store's keywords (JMAP's model, RFC 8621 §4.1.1).

The store keeps JMAP keywords: lower case, `$seen` for \\Seen. IMAP system flags map one to one;
other IMAP keywords are stored lower-cased, since JMAP keywords are case-insensitive, and the
registered ones are shown in their registered spelling (REGISTERED).
"""

from __future__ import annotations

from collections.abc import Iterable

SYSTEM = {
    "\\seen": "$seen", "\\flagged": "$flagged", "\\answered": "$answered",
    "\\draft": "$draft", "\\deleted": "$deleted",
}
_BACK = {v: "\\" + k[1:].capitalize() for k, v in SYSTEM.items()}
REGISTERED = ("$Forwarded", "$MDNSent", "$SubmitPending", "$Submitted", "$Junk", "$NotJunk",
              "$Phishing", "$Important", "$MailFlagBit0", "$MailFlagBit1", "$MailFlagBit2",
              "$Muted", "$Followed", "$Memo", "$HasMemo", "$HasAttachment", "$HasNoAttachment",
              "$AutoSent", "$Unsubscribed", "$CanUnsubscribe", "$Imported", "$IsTrusted",
              "$Notify")
"""Keywords of IANA's IMAP/JMAP keyword registry in their registered spelling. The store keeps
keywords lower case (JMAP's rule); IMAP shows these as registered, as a server that keeps the
client's spelling does (Dovecot answers `$Important` to `STORE +FLAGS ($Important)`), since
some clients compare keywords case-sensitively. Other keywords are shown lower case."""
_BACK.update({k.lower(): k for k in REGISTERED})

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


_TEXTS: dict[tuple[str, ...], str] = {}


def flags_text(keywords: tuple[str, ...]) -> str:
    """The IMAP flags of a keyword set, space separated: made once per distinct set (views
    share one tuple per set, see selected.shared_keywords), since `FETCH 1:* (FLAGS)`, the
    sync every client runs after each SELECT, writes one per message of the mailbox."""
    text = _TEXTS.get(keywords)
    if text is None:
        if len(_TEXTS) > 10_000:  # a flood of distinct custom keywords: no unbounded growth
            _TEXTS.clear()
        text = _TEXTS[keywords] = " ".join(to_flags(keywords))
    return text


SYSTEM_KEYWORDS = frozenset(SYSTEM.values())


def flag_list(names: Iterable[str], *, permanent: bool = False) -> str:
    """The `* FLAGS` (or PERMANENTFLAGS) list: the system flags, then the mailbox's keywords
    (RFC 3501 §7.2.6: a client learns a keyword's existence from here before a FETCH shows
    it), then \\* where clients may make new ones."""
    extra = " ".join(to_flags(sorted(names)))
    system = FLAGS[1:-1] + (" " + extra if extra else "")
    return f"({system} \\*)" if permanent else f"({system})"
