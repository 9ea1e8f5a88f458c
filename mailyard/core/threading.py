"""Conversation threading keys (Message-ID, In-Reply-To, References).

An email belongs to the thread of any email that shares one of its keys: its own Message-ID and
every id it refers to. Storing all keys of a thread is what lets a parent that arrives after its
child find the child's thread, and lets two threads merge when a missing link arrives.
"""

from __future__ import annotations

REPLY_WINDOW_MS = 30 * 24 * 3600 * 1000
"""How far back a subject-only match may reach; older same-subject mail is a new conversation."""


def thread_keys(message_id: str | None, in_reply_to: list[str], references: list[str]) -> list[str]:
    """Each key once, in order (a dict, not a list search: References can hold thousands)."""
    return list(dict.fromkeys(k for k in (message_id, *in_reply_to, *references) if k))


def wants_subject_fallback(subject: str, thread_subject: str, has_references: bool) -> bool:
    """Join by subject only for what looks like a reply: a Re:/Fwd: prefix or dangling refs."""
    return bool(thread_subject) and (has_references or subject.strip().casefold() != thread_subject)
