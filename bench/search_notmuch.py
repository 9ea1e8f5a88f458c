"""notmuch beside Mailyard in bench/search.py: the same generated mailbox written as a Maildir,
indexed by Debian's notmuch, and queried in the benchmark's own process through libnotmuch.

Why in process: Mailyard's figures are `SearchService.search` calls in the benchmark's process;
timing `notmuch search` as a command would add its start-up (~10 ms) to every notmuch query.
libnotmuch is called through ctypes (no Python binding to install into the venv); each call is
what `notmuch search --output=messages --limit=50` and `notmuch count` do inside: a query with
the configured exclude tags, sorted newest first, and its first 50 messages read (libnotmuch
computes the whole match set before the first message) or its count.

The Maildir mirrors the mailbox Mailyard holds: one folder per role (INBOX, Sent, Spam, Trash,
Archive for "All Mail only"), the maildir flags S (seen) and F (flagged) that notmuch turns into
its `unread` and `flagged` tags, the labels as tags (`work`, `receipts`, `travel`), and Spam and
Trash tagged `spam` and `deleted`, the tags `search.exclude_tags` leaves out unless a query names
them: notmuch's equivalent of Gmail's scope.

Install notmuch for the benchmark only (it is no dependency of Mailyard or of its tests):
`apt-get install -y notmuch`.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import shutil
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

FOLDERS = {"inbox": "INBOX", "sent": "Sent", "junk": "Spam", "trash": "Trash"}
"""Maildir folder of each role a generated message is given; no role: Archive."""
EXCLUDED = ("spam", "deleted")


@dataclass(frozen=True)
class MaildirMessage:
    """One generated message as the Maildir writer needs it."""

    index: int
    raw: bytes
    role: str | None
    seen: bool
    flagged: bool
    labels: tuple[str, ...]
    """Label names, lower case (notmuch tags)."""


def message_id(raw: bytes) -> str:
    """The Message-ID of a generated message (always one line, `<...>`)."""
    start = raw.index(b"\r\nMessage-ID: <") + len(b"\r\nMessage-ID: <")
    return raw[start:raw.index(b">", start)].decode()


def write_maildir(root: Path, messages: Iterable[MaildirMessage]) -> list[str]:
    """The messages as files of `root`'s folders; returns `notmuch tag --batch` lines for the
    labels (the folders and flags become tags by themselves or by one line each)."""
    for folder in (*FOLDERS.values(), "Archive"):
        for sub in ("cur", "new", "tmp"):
            (root / folder / sub).mkdir(parents=True, exist_ok=True)
    lines = [f"+{tag} -- folder:{folder}" for tag, folder in
             (("inbox", "INBOX"), ("sent", "Sent"), ("spam", "Spam"), ("deleted", "Trash"))]
    for m in messages:
        folder = FOLDERS.get(m.role or "", "Archive")
        flags = ("F" if m.flagged else "") + ("S" if m.seen else "")
        (root / folder / "cur" / f"{m.index:07d}.bench:2,{flags}").write_bytes(m.raw)
        if m.labels:
            tags = " ".join(f"+{t}" for t in m.labels)
            lines.append(f'{tags} -- id:"{message_id(m.raw)}"')
    return lines


def configure(home: Path, mail: Path) -> Path:
    """The notmuch configuration file of the benchmark's database."""
    config = home / "notmuch-config"
    config.write_text(
        "[database]\n"
        f"path={mail}\n"
        "[user]\n"
        "name=Morgan Example\n"
        "primary_email=me@bench.example\n"
        "[new]\n"
        "tags=\n"
        "ignore=\n"
        "[search]\n"
        f"exclude_tags={';'.join(EXCLUDED)}\n"
        "[maildir]\n"
        "synchronize_flags=true\n")
    return config


def index(home: Path, tag_lines: list[str]) -> dict[str, float]:
    """`notmuch new` then the label tags; their wall times in seconds."""
    notmuch = shutil.which("notmuch")
    if notmuch is None:
        raise SystemExit("notmuch is not installed (apt-get install -y notmuch)")
    env = {**os.environ, "NOTMUCH_CONFIG": str(home / "notmuch-config")}
    t0 = time.perf_counter()
    subprocess.run([notmuch, "new", "--quiet"], env=env, check=True)
    t1 = time.perf_counter()
    batch = home / "tags.txt"
    batch.write_text("\n".join(tag_lines) + "\n")
    subprocess.run([notmuch, "tag", "--batch", f"--input={batch}"], env=env, check=True)
    t2 = time.perf_counter()
    return {"new_s": t1 - t0, "tag_s": t2 - t1}


class _Lib:
    """The libnotmuch functions the benchmark calls, with their C signatures."""

    def __init__(self) -> None:
        name = ctypes.util.find_library("notmuch") or "libnotmuch.so.5"
        lib = ctypes.CDLL(name)
        p, c, i = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int
        signatures: dict[str, tuple[object, list[object]]] = {
            "notmuch_database_open_with_config": (i, [c, i, c, c, ctypes.POINTER(p),
                                                      ctypes.POINTER(c)]),
            "notmuch_database_destroy": (i, [p]),
            "notmuch_query_create": (p, [p, c]),
            "notmuch_query_set_sort": (None, [p, i]),
            "notmuch_query_set_omit_excluded": (None, [p, i]),
            "notmuch_query_add_tag_exclude": (i, [p, c]),
            "notmuch_query_search_messages": (i, [p, ctypes.POINTER(p)]),
            "notmuch_query_count_messages": (i, [p, ctypes.POINTER(ctypes.c_uint)]),
            "notmuch_query_destroy": (None, [p]),
            "notmuch_messages_valid": (i, [p]),
            "notmuch_messages_get": (p, [p]),
            "notmuch_messages_move_to_next": (None, [p]),
            "notmuch_message_get_message_id": (c, [p]),
            "notmuch_message_destroy": (None, [p]),
        }
        for fn, (restype, argtypes) in signatures.items():
            f = getattr(lib, fn)
            f.restype = restype
            f.argtypes = argtypes
            setattr(self, fn, f)


NEWEST_FIRST = 1
"""notmuch_sort_t NOTMUCH_SORT_NEWEST_FIRST."""
OMIT_EXCLUDED = 1
"""notmuch_exclude_t NOTMUCH_EXCLUDE_TRUE: excluded messages are left out of the results."""
IGNORED = 20
"""notmuch_status_t NOTMUCH_STATUS_IGNORED: the query names the tag, so it is not excluded."""


class Notmuch:
    """A read-only libnotmuch database, queried as `notmuch search`/`count` would."""

    def __init__(self, home: Path) -> None:
        self.lib = _Lib()
        db = ctypes.c_void_p()
        error = ctypes.c_char_p()
        status = self.lib.notmuch_database_open_with_config(  # type: ignore[attr-defined]
            None, 0, str(home / "notmuch-config").encode(), None, ctypes.byref(db),
            ctypes.byref(error))
        if status != 0:
            raise RuntimeError(f"notmuch database: status {status}: {error.value!r}")
        self.db = db

    def close(self) -> None:
        self.lib.notmuch_database_destroy(self.db)  # type: ignore[attr-defined]

    def _query(self, text: str) -> ctypes.c_void_p:
        lib = self.lib
        query = lib.notmuch_query_create(self.db, text.encode())  # type: ignore[attr-defined]
        lib.notmuch_query_set_sort(query, NEWEST_FIRST)  # type: ignore[attr-defined]
        lib.notmuch_query_set_omit_excluded(query, OMIT_EXCLUDED)  # type: ignore[attr-defined]
        for tag in EXCLUDED:
            status = lib.notmuch_query_add_tag_exclude(query, tag.encode())  # type: ignore[attr-defined]
            if status not in (0, IGNORED):
                raise RuntimeError(f"notmuch query {text!r}: status {status}")
        return query  # type: ignore[no-any-return]

    def search(self, text: str, limit: int | None = 50) -> list[str]:
        """Message-IDs of the first `limit` matches, newest first (all: limit None)."""
        lib = self.lib
        query = self._query(text)
        try:
            messages = ctypes.c_void_p()
            status = lib.notmuch_query_search_messages(  # type: ignore[attr-defined]
                query, ctypes.byref(messages))
            if status != 0:
                raise RuntimeError(f"notmuch query {text!r}: status {status}")
            out: list[str] = []
            while (limit is None or len(out) < limit) and \
                    lib.notmuch_messages_valid(messages):  # type: ignore[attr-defined]
                message = lib.notmuch_messages_get(messages)  # type: ignore[attr-defined]
                out.append(lib.notmuch_message_get_message_id(  # type: ignore[attr-defined]
                    message).decode())
                lib.notmuch_message_destroy(message)  # type: ignore[attr-defined]
                lib.notmuch_messages_move_to_next(messages)  # type: ignore[attr-defined]
            return out
        finally:
            lib.notmuch_query_destroy(query)  # type: ignore[attr-defined]

    def count(self, text: str) -> int:
        """Every match, as `notmuch count` (exclude tags applied)."""
        query = self._query(text)
        try:
            n = ctypes.c_uint()
            status = self.lib.notmuch_query_count_messages(  # type: ignore[attr-defined]
                query, ctypes.byref(n))
            if status != 0:
                raise RuntimeError(f"notmuch count {text!r}: status {status}")
            return n.value
        finally:
            self.lib.notmuch_query_destroy(query)  # type: ignore[attr-defined]


def index_size(mail: Path) -> int:
    """Bytes of notmuch's database (the Xapian files under .notmuch)."""
    total = 0
    for dirpath, _, files in os.walk(mail / ".notmuch"):
        total += sum((Path(dirpath) / f).stat().st_size for f in files)
    return total
