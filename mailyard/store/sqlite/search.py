"""SearchIndex on SQLite FTS5, in its own database file.

Kept apart from the mail store's file so that indexing, which writes a lot, never holds the lock
that delivery and flag changes need. Three FTS5 tables:

- `docs` (unicode61, diacritics removed) answers the query language's words and phrases. Its
  rowid is the email's arrival time in milliseconds times 1024 plus a tie-breaker, so "newest
  first" is FTS5's own descending rowid scan and a first page stops after `limit` hits instead
  of sorting every match. Each document carries its account as a token in the `acct` column and
  every query is `acct AND (...)`: FTS5 intersects the doclists, so one account's query never
  walks another account's postings and can never return them. It keeps the text (snippets).
- `grams` (trigram) narrows IMAP SEARCH's case-insensitive substrings of three characters or
  more (RFC 3501 §6.4.4) in what IMAP BODY searches (core.indextext's body_substring_text):
  the body text, the MIME part headers, the attachments' names and text. One column,
  contentless, `detail=none` (schema 7): which documents hold each trigram, not where nor in
  which column, and no copy of the text. A needle of three characters is one trigram and its
  answer is exact; a longer one finds the documents holding all its trigrams, and each is
  checked against its text, which `docs` already keeps (the part headers, the one piece it
  does not, are in `part_headers`). Positions and the second copy of the text were 60 % of
  the file at 20k messages (297 of 415 MiB for the trigram table alone, 139 without them);
  schema 5-6's subject and address columns (which `heads` holds too) and the column of each
  trigram were another half of what was left (668 MiB at 100k messages, 48 % of the file).
- `heads` (trigram, contentless, positions kept: schema 6) holds the short texts: the
  subject, the addresses, and the part headers and attachment names of the body (`meta`). It
  answers IMAP SUBJECT and the address keys alone. An ASCII needle found there by a phrase
  query needs no check of the text (_heads_hits), so a common one (`.pdf`, a sender's domain)
  costs a query, not a read of thousands of documents: 27 MiB at 20k messages, where
  checking 1,846 candidates of `graisbe.net` cost 90 ms. Documents whose short texts hold a
  character that folds to ASCII differently in FTS5 and in str.casefold (ß, the
  ligatures...) are listed in `unfolded` and still checked.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import sqlite3
import threading
import time
import unicodedata
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from html import escape
from pathlib import Path
from typing import TypeVar

from mailyard.core.indextext import body_substring_text
from mailyard.core.query import And, Node, Not, Or, Text
from mailyard.store.ports import Hits, IndexDocument, Order, Snippet
from mailyard.store.sqlite.db import Database

log = logging.getLogger(__name__)

SCHEMA = """
CREATE VIRTUAL TABLE IF NOT EXISTS docs USING fts5 (
    acct, email_id UNINDEXED, subject, from_, to_, cc, bcc, body, filenames, attachments,
    list_id, tokenize = 'unicode61 remove_diacritics 2'
);
CREATE VIRTUAL TABLE IF NOT EXISTS grams USING fts5 (
    body, tokenize = 'trigram', detail = none, content = ''
);
CREATE VIRTUAL TABLE IF NOT EXISTS heads USING fts5 (
    subject, addresses, meta, tokenize = 'trigram', detail = full, content = ''
);
CREATE TABLE IF NOT EXISTS unfolded (rowid_ INTEGER PRIMARY KEY);
CREATE TABLE IF NOT EXISTS part_headers (
    rowid_ INTEGER PRIMARY KEY, text TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS doc_ids (
    account_id TEXT NOT NULL, email_id TEXT NOT NULL, rowid_ INTEGER NOT NULL,
    PRIMARY KEY (account_id, email_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS doc_ids_rowid ON doc_ids (rowid_);
CREATE TABLE IF NOT EXISTS generations (
    account_id TEXT PRIMARY KEY, n INTEGER NOT NULL
) WITHOUT ROWID;
"""
SCHEMA_VERSION = 7
"""2: doc_ids_rowid (made by SCHEMA's CREATE INDEX IF NOT EXISTS on an older file).
3: grams.body holds attachment names and text too (rebuilt from `docs` by _migrate).
4: generations, counted up by every write to an account's documents (made by SCHEMA; the
version keeps a build that does not count them from writing to the file).
5: grams contentless with detail=column, part_headers beside it (grams rebuilt by _migrate
from its old content and `docs`).
6: heads (the short texts' trigrams with positions) and unfolded, filled by _migrate from
`docs` and `part_headers`.
7: grams holds the body column alone, detail=none (rebuilt by _migrate from `docs` and
`part_headers`)."""

MIN_SUBSTRING = 3
"""A trigram index answers substrings of three characters or more."""
SUBSTRING_FIELDS = ("subject", "addresses", "body")

_FIELD_COLUMNS = {
    None: "subject from_ to_ cc bcc body filenames attachments list_id",
    "from": "from_", "to": "to_", "cc": "cc", "bcc": "bcc", "subject": "subject",
    "body": "body", "filename": "filenames", "list": "list_id",
}
_SUBJECT_COLUMN, _BODY_COLUMN = 2, 7
_OPEN, _CLOSE = "\x02", "\x03"
"""Snippet markers that cannot occur in indexed text; turned into <mark> after escaping."""
_TIES = 1024
_PIECES, _PIECE = 8, 250
"""A MATCH against many candidates reads their rowid range in up to _PIECES pieces of at
least _PIECE candidates (SqliteSearchIndex._many)."""
_FEW_HITS = 1250
"""More candidates than four times this, and a MATCH with under a quarter as many hits as
there are candidates: the hits are looked up, not the candidates (SqliteSearchIndex._many)."""
_REMEMBERED = 256
"""Counts and candidate intersections kept per index (see _Answers)."""
_LONG_COUNT = 0.008
"""Seconds a count's read took last time (of the same words, whatever the generation) from
which the next one goes to the long-read pool at once (Database.read_long's on_loop=False):
a read on the loop's thread is interrupted after 20 ms and run again from the start on a
pool thread, so a count of ~100k postings under load paid 20 ms for nothing. Under this, the
read stays on the loop, where a short one is fastest."""
_AMONG_IN = 500
"""Candidates up to this many are named in the query (rowid IN); more: the MATCH runs alone
and its hits are intersected with them, one query whatever the mailbox's size. Also SQLite's
limit on the ids one statement may carry, kept well under its 32,766 variables."""
"""Documents per millisecond of arrival time the rowid scheme can tell apart."""


class _All:
    """Compiles to "every document of the account" (an empty And, a term with no words)."""


class _None:
    """Compiles to "no document" (the negation of everything)."""


ALL, NONE = _All(), _None()
Expr = str | _All | _None


def _string(text: str) -> str:
    """An FTS5 string: user text never reaches the FTS5 grammar."""
    text = "".join(ch if ch.isprintable() else " " for ch in text)
    return '"' + text.replace('"', '""') + '"'


def _has_token(text: str) -> bool:
    return any(ch.isalnum() for ch in text)


def _pieces(node: Text) -> list[str]:
    """The FTS5 strings of a Text: its phrase, or each of its words."""
    if node.phrase:
        return [node.value] if _has_token(node.value) else []
    return [w for w in node.value.split() if _has_token(w)]


def _text(node: Text, any_column: bool = False) -> Expr:
    columns = _FIELD_COLUMNS.get(node.field)
    if columns is None:
        return NONE  # a field the index does not hold
    pieces = _pieces(node)
    if not pieces:
        return ALL  # nothing searchable, as Gmail ignores a lone punctuation mark
    if any_column and node.field is None:
        return " AND ".join(_string(p) for p in pieces)
    return " AND ".join(f"{{{columns}}} : {_string(p)}" for p in pieces)


def _texts(node: Node) -> list[Text]:
    if isinstance(node, Text):
        return [node]
    if isinstance(node, And | Or):
        return [t for item in node.items for t in _texts(item)]
    if isinstance(node, Not):
        return _texts(node.item)
    return []


def _names_account(node: Node, account_id: str) -> bool:
    """Whether a word of `node` could be a token of the account's id, i.e. match the `acct`
    column. When it cannot (always, in practice: an id is one random token), a word of no
    field may be asked of every column instead of "every column but acct" (the same
    documents where `acct` holds this account's id alone): a column filter makes FTS5 read
    each match's positions to check the column, about twice the cost of a count (the common
    word 13 against 18 ms, the phrase of two common words 64 against 118, 100k messages).
    Judged on text folded further than unicode61 folds (NFKD, marks dropped, casefold): a
    word left with a character past ASCII, where the two foldings could part, counts as
    naming it."""
    own = set(re.findall(r"[a-z0-9]+", account_id.lower())) if account_id.isascii() else None
    for text in _texts(node):
        if text.field is not None:
            continue
        for piece in _pieces(text):
            folded = "".join(ch for ch in unicodedata.normalize("NFKD", piece)
                             if not unicodedata.combining(ch)).casefold()
            if own is None or not folded.isascii() or \
                    own & set(re.findall(r"[a-z0-9]+", folded)):
                return True
    return False


def _absorbed_words(node: Node) -> list[str]:
    """The words of an alternative that compile_match dropped because another alternative of
    the same OR matches everything (`alpha OR "."`): the OR still matched through them
    where they occur, so a snippet marks them (as the PostgreSQL engine's does). Single
    words only, and never under a NOT."""
    if isinstance(node, And):
        return [w for item in node.items if not isinstance(item, Not)
                for w in _absorbed_words(item)]
    if not isinstance(node, Or):
        return []
    found = [w for item in node.items for w in _absorbed_words(item)]
    texts = [item for item in node.items if isinstance(item, Text)]
    compiled = [_text(item) for item in texts]
    if any(isinstance(e, _All) for e in compiled):
        found += [e for e in compiled if isinstance(e, str)]
    return found


def compile_match(node: Node, acct: str, any_column: bool = False) -> Expr:
    """The FTS5 expression for a tree of Text, And, Or and Not. `any_column`: words of no
    field are asked of every column, `acct` too (see _names_account)."""
    if isinstance(node, Text):
        return _text(node, any_column)
    if isinstance(node, And):
        positives: list[str] = []
        negatives: list[str] = []
        for item in node.items:
            if isinstance(item, Not):
                inner = compile_match(item.item, acct, any_column)
                if isinstance(inner, _All):
                    return NONE
                if isinstance(inner, str):
                    negatives.append(inner)
                continue
            expr = compile_match(item, acct, any_column)
            if isinstance(expr, _None):
                return NONE
            if isinstance(expr, str):
                positives.append(expr)
        if not positives and not negatives:
            return ALL
        if not positives:
            positives = [acct]
        out = " AND ".join(f"({p})" for p in positives)
        return out + "".join(f" NOT ({n})" for n in negatives)
    if isinstance(node, Or):
        exprs = [compile_match(item, acct, any_column) for item in node.items]
        if any(isinstance(e, _All) for e in exprs):
            return ALL
        kept = [e for e in exprs if isinstance(e, str)]
        return " OR ".join(f"({e})" for e in kept) if kept else NONE
    if isinstance(node, Not):
        inner = compile_match(node.item, acct, any_column)
        if isinstance(inner, _All):
            return NONE
        if isinstance(inner, _None):
            return ALL
        return f"{acct} NOT ({inner})"
    raise ValueError(f"the text index cannot answer {type(node).__name__}")


def _account_token(account_id: str) -> str:
    return "acct : " + _string(account_id.lower())


def _marked(text: str | None) -> str | None:
    if not text or _OPEN not in text:
        return None
    return escape(text).replace(_OPEN, "<mark>").replace(_CLOSE, "</mark>")


def _migrate(conn: sqlite3.Connection, found: int) -> None:
    """The index is derived data: an index file of an older layout is dropped and rebuilt
    empty (`mailyard reindex` fills it again from the stored mail). A version 2-4 file keeps
    its documents: its trigram table is rebuilt in the new layout (_rebuild_grams)."""
    columns = {r[1] for r in conn.execute("PRAGMA table_info(docs)")}
    if columns and "acct" not in columns:
        log.warning("search index has an old layout: dropped; run `mailyard reindex`")
        for table in ("docs", "grams", "doc_ids", "part_headers"):
            conn.execute(f"DROP TABLE IF EXISTS {table}")
        for statement in SCHEMA.split(";"):
            if statement.strip():
                conn.execute(statement)
        return
    grams = {r[1] for r in conn.execute("PRAGMA table_info(grams)")}
    if "account_id" in grams:
        _rebuild_grams(conn, found)
    elif "subject" in grams:
        _regram(conn)
    if found < 6:
        _fill_heads(conn)
    if found < 5:
        conn.execute("INSERT INTO docs (docs, rank) VALUES ('automerge', ?)", (_AUTOMERGE,))
    if found < 7:
        conn.execute("INSERT INTO grams (grams, rank) VALUES ('automerge', ?)", (_AUTOMERGE,))


_AUTOMERGE = 8
"""FTS5 merges a level's segments when this many are there (its default: 4). Every commit
of the writer (a batch of delivered mail) leaves a segment; with 4, the trigram table of 20k
messages indexed 50 at a time wrote 2,030 MiB for a 140 MiB table, with 8 1,310 MiB (16:
1,254), and took half the time. Queries read up to twice as many segments per level."""


_GRAMS_TABLE = "body, tokenize = 'trigram', detail = none, content = ''"


def _rebuild_grams(conn: sqlite3.Connection, found: int) -> None:
    """Schema 5 (now 7): the trigram table of a version 2-4 file (positions, a copy of the
    text) made again in the layout of _GRAMS_TABLE. Its old text gives each document's part
    headers (the piece `docs` does not keep); before version 3 it held the body alone, and
    the new one also holds the attachments' names and text. Tokenizes every document once: minutes
    at 100k messages, once."""
    count = int(conn.execute("SELECT count(*) FROM docs").fetchone()[0])
    log.warning("search index: rebuilding the substring (trigram) table of %d documents in"
                " the smaller layout of schema 7", count)
    conn.execute(f"CREATE VIRTUAL TABLE grams_new USING fts5 ({_GRAMS_TABLE})")
    rows = conn.execute(
        "SELECT d.rowid, d.body, d.filenames, d.attachments, g.body FROM docs d"
        " LEFT JOIN grams g ON g.rowid = d.rowid")
    lost = 0
    for row in rows:
        rowid, body, filenames, attachments, old = tuple(row)
        headers = "" if found < 3 or old is None else _part_headers_in(
            old, body or "", filenames or "", attachments or "")
        if headers is None:
            lost += 1
            headers = ""
        if headers:
            conn.execute("INSERT INTO part_headers VALUES (?, ?)", (rowid, headers))
        conn.execute("INSERT INTO grams_new (rowid, body) VALUES (?, ?)", (
            rowid, _grams_value(body, filenames, attachments, headers)))
    conn.execute("DROP TABLE grams")
    conn.execute("ALTER TABLE grams_new RENAME TO grams")
    if lost:
        log.warning("search index: %d documents' part headers could not be told apart from"
                    " their text; IMAP BODY/TEXT will not find those headers until"
                    " `mailyard reindex`", lost)


def _regram(conn: sqlite3.Connection) -> None:
    """Schema 7: the trigram table of a version 5-6 file (subject, addresses and body columns,
    detail=column) made again with the body alone, detail=none, from `docs` and
    `part_headers` (`heads` already holds the subject and the addresses). Tokenizes every
    body once: 313 s for 100k messages at load 17-19, once. The old table's pages are left
    free (17 % of that file), reused as mail arrives (compacted on open only when over a
    third: _compact_if_mostly_free)."""
    count = int(conn.execute("SELECT count(*) FROM docs").fetchone()[0])
    log.warning("search index: rebuilding the substring (trigram) table of %d documents in"
                " the smaller layout of schema 7", count)
    conn.execute("DROP TABLE grams")
    conn.execute(f"CREATE VIRTUAL TABLE grams USING fts5 ({_GRAMS_TABLE})")
    conn.create_function("grams_value", 4, _grams_value, deterministic=True)
    conn.execute(
        "INSERT INTO grams (rowid, body) SELECT c.id, grams_value(c.c7, c.c8, c.c9, p.text)"
        " FROM docs_content c LEFT JOIN part_headers p ON p.rowid_ = c.id")


def _part_headers_in(old: str, body: str, filenames: str, attachments: str) -> str | None:
    """The part headers a version 3-4 trigram body held (body_substring_text's second
    piece), or None when `old` is not of that form."""
    if body_substring_text(body, filenames, attachments) == old:
        return ""
    head = body + "\n" if body else ""
    tail = "\n".join(t for t in (filenames, attachments) if t)
    tail = "\n" + tail if tail else ""
    if not (old.startswith(head) and old.endswith(tail)) or len(old) < len(head) + len(tail):
        return None
    headers = old[len(head):len(old) - len(tail)]
    same = body_substring_text(body, filenames, attachments, headers) == old
    return headers if headers and same else None


def _grams_value(body: str | None, filenames: str | None, attachments: str | None,
                 part_headers: str | None) -> str:
    """The body column of a document's trigram row. The table keeps no copy of it: deleting a
    row tokenizes this value again, so it is computed here from what `docs` and
    `part_headers` keep, the same way every time."""
    return body_substring_text(body or "", filenames or "", attachments or "",
                               part_headers or "")


def _addresses(from_: str | None, to: str | None, cc: str | None, bcc: str | None) -> str:
    """What IMAP's address keys search, as `heads` holds it: the fields joined by spaces."""
    return " ".join(filter(None, (from_, to, cc, bcc)))


_ASCII_FOLDED = frozenset(
    "\u00df\u0130\u0149\u017f\u01f0\u1e96\u1e97\u1e98\u1e99\u1e9a\u1e9e\u212a"
    "\ufb00\ufb01\ufb02\ufb03\ufb04\ufb05\ufb06")
"""The characters past ASCII whose case folding (Python's, or the simple one FTS5's trigram
tokenizer applies) gives ASCII characters: sharp s, dotted capital I, long s, the Kelvin
sign, the ligatures, letters whose folding leaves a combining mark (U+01F0, U+1E96...).
Every character whose str.casefold() or str.lower() holds an ASCII one (a test derives it
again from Python's Unicode tables)."""


def _unfolded(*texts: str) -> bool:
    """Whether a document's short texts hold a character of _ASCII_FOLDED. Where they hold
    none, an ASCII needle is found by FTS5's folding (the phrase query of `heads`) exactly
    where it is found by str.casefold (the check of _substring_hits): ASCII characters fold
    alike in both, and every other character folds to characters past ASCII in both, which no
    ASCII needle holds."""
    return any(not text.isascii() and not _ASCII_FOLDED.isdisjoint(text) for text in texts)


def _heads_values(subject: str | None, from_: str | None, to: str | None, cc: str | None,
                  bcc: str | None, filenames: str | None,
                  part_headers: str | None) -> tuple[str, str, str]:
    """The subject, addresses and meta columns of a document's `heads` row: the short pieces
    of what IMAP SUBJECT, the address keys and BODY search (meta: the part headers and the
    attachments' names, as body_substring_text joins them). Like `grams`, the table keeps no
    copy: deleting a row needs these values again, computed the same way every time."""
    meta = "\n".join(t for t in (part_headers, filenames) if t)
    return subject or "", _addresses(from_, to, cc, bcc), meta


def _put_heads(conn: sqlite3.Connection, rowid: int, values: tuple[str, str, str]) -> None:
    conn.execute("INSERT INTO heads (rowid, subject, addresses, meta) VALUES (?, ?, ?, ?)",
                 (rowid, *values))
    if _unfolded(*values):
        conn.execute("INSERT INTO unfolded VALUES (?)", (rowid,))


def _fill_heads(conn: sqlite3.Connection) -> None:
    """Schema 6: `heads` and `unfolded` made from what `docs` and `part_headers` keep (the
    short texts only: seconds at 20k messages)."""
    conn.execute("INSERT INTO heads (heads) VALUES ('delete-all')")
    conn.execute("DELETE FROM unfolded")
    for row in conn.execute(
            "SELECT c.id, c.c2, c.c3, c.c4, c.c5, c.c6, c.c8, p.text FROM docs_content c"
            " LEFT JOIN part_headers p ON p.rowid_ = c.id").fetchall():
        rowid, subject, from_, to, cc, bcc, filenames, headers = tuple(row)
        _put_heads(conn, rowid, _heads_values(subject, from_, to, cc, bcc, filenames, headers))


def _stored_grams(conn: sqlite3.Connection, rowids: Sequence[int]) -> dict[int, str]:
    """_grams_value of these documents, from `docs` and `part_headers`. Read from docs'
    content table (FTS5's `docs_content`: id, then c0... in the order of docs' columns) by
    its primary key: `docs` itself answers `rowid IN (...)` by scanning every row (3.7 s
    for the 20k candidates of a common substring at 20k messages)."""
    return {r[0]: _grams_value(*tuple(r)[1:]) for r in conn.execute(
        "SELECT c.id, c.c7, c.c8, c.c9, p.text FROM docs_content c"
        " LEFT JOIN part_headers p ON p.rowid_ = c.id"
        " WHERE c.id IN (SELECT value FROM json_each(?))", (json.dumps(list(rowids)),))}


def _stored_heads(conn: sqlite3.Connection,
                  rowids: Sequence[int]) -> dict[int, tuple[str, str, str]]:
    """_heads_values of these documents, from `docs` and `part_headers` (as _stored_grams)."""
    return {row[0]: _heads_values(*tuple(row)[1:]) for row in conn.execute(
        "SELECT c.id, c.c2, c.c3, c.c4, c.c5, c.c6, c.c8, p.text FROM docs_content c"
        " LEFT JOIN part_headers p ON p.rowid_ = c.id"
        " WHERE c.id IN (SELECT value FROM json_each(?))", (json.dumps(list(rowids)),))}


class _Answers:
    """The answers of recent counts and candidate intersections, keyed by the account's
    generation: any write to the account's documents, by any process, counts the generation
    up in the same transaction, and a reader sees the generation of its own snapshot, so an
    answer is reused only while the documents it was read from are the ones there. A JMAP
    client asks for the same total with every page; a count of a common word reads ~100k
    postings (13 ms on an idle machine, 60-200 ms on a loaded one) and Gmail's scope adds a
    second read of them."""

    def __init__(self, size: int = _REMEMBERED) -> None:
        self._items: OrderedDict[tuple[object, ...], object] = OrderedDict()
        self._lock = threading.Lock()
        self._size = size

    def get(self, key: tuple[object, ...]) -> object | None:
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
            return found

    def put(self, key: tuple[object, ...], value: object) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self._size:
                self._items.popitem(last=False)


def _generation(conn: sqlite3.Connection, account_id: str) -> int:
    row = conn.execute("SELECT n FROM generations WHERE account_id = ?",
                       (account_id,)).fetchone()
    return 0 if row is None else int(row[0])


def _bump(conn: sqlite3.Connection, account_ids: set[str]) -> None:
    """A write to these accounts' documents: their remembered answers no longer hold."""
    for account_id in account_ids:
        conn.execute("INSERT INTO generations VALUES (?, 1)"
                     " ON CONFLICT (account_id) DO UPDATE SET n = n + 1", (account_id,))


def _alone(conn: sqlite3.Connection, account_id: str) -> bool:
    """The index holds documents of this account only (two seeks of doc_ids' key)."""
    return bool(conn.execute(
        "SELECT NOT EXISTS (SELECT 1 FROM doc_ids WHERE account_id < ?)"
        " AND NOT EXISTS (SELECT 1 FROM doc_ids WHERE account_id > ?)",
        (account_id, account_id)).fetchone()[0] == 1)


def _digest(email_ids: Sequence[str]) -> bytes:
    return hashlib.blake2b("\0".join(email_ids).encode(), digest_size=16).digest()


def _compact_if_mostly_free(path: Path) -> None:
    """VACUUM the file when over a third of its pages are free: after the schema 5 rebuild
    of the trigram table (a 20k-message file went from 420 to 558 MiB, 258 once compacted).
    SQLite reuses free pages but never gives them back; VACUUM cannot run inside the
    migration's transaction, so it runs here, once (afterwards few pages are free)."""
    conn = sqlite3.connect(path, timeout=30.0, isolation_level=None)
    try:
        free = int(conn.execute("PRAGMA freelist_count").fetchone()[0])
        pages = int(conn.execute("PRAGMA page_count").fetchone()[0])
        if free * 3 > pages and free > 256:
            log.warning("search index: %d of %d pages free, compacting (VACUUM)", free, pages)
            conn.execute("VACUUM")
    finally:
        conn.close()


_MMAP = 0x7FFF0000
"""Bytes of the file each connection reads through a memory map instead of read() calls
(SQLite's own limit, about 2 GiB: the whole index up to ~150k messages). The check of a
common substring reads most documents' text (60 MiB of `docs_content` at 20k messages):
through SQLite's 2 MiB page cache every page was a read() into it, 157-300 ms for the 17k
candidates of `fi cel`; mapped, 56-123 ms (same process, alternated, load 14-18). The pages
are the OS's page cache, shared by every connection, not a copy per connection."""


def _setup(conn: sqlite3.Connection) -> None:
    conn.execute(f"PRAGMA mmap_size = {_MMAP}")


class SqliteSearchIndex:
    def __init__(self, path: Path, *, query_seconds: float = 10.0) -> None:
        self.db = Database(path, SCHEMA, setup=_setup, version=SCHEMA_VERSION,
                           migrate=_migrate)
        _compact_if_mostly_free(path)
        self.query_seconds = query_seconds
        """The budget of one query, snippets or substring read (Database.read_long)."""
        self.answers = _Answers()
        self.costs = _Answers()
        """Seconds the last count of each (account, words, range) took to read, kept across
        generations (a write changes a count's answer, hardly its cost): a count known to be
        long goes to the long-read pool at once (_LONG_COUNT)."""

    def close(self) -> None:
        self.db.close()

    async def index(self, documents: Sequence[IndexDocument]) -> None:
        def write(conn: sqlite3.Connection) -> None:
            _bump(conn, {doc.account_id for doc in documents})
            for doc in documents:
                _remove(conn, doc.account_id, doc.email_id)
                rowid = _free_rowid(conn, max(doc.received_at, 0) * _TIES)
                conn.execute(
                    "INSERT INTO docs (rowid, acct, email_id, subject, from_, to_, cc, bcc, body,"
                    " filenames, attachments, list_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (rowid, doc.account_id.lower(), doc.email_id, doc.subject, doc.from_, doc.to,
                     doc.cc, doc.bcc, doc.body, doc.filenames, doc.attachment_text, doc.list_id))
                conn.execute("INSERT INTO grams (rowid, body) VALUES (?, ?)", (
                    rowid, _grams_value(doc.body, doc.filenames, doc.attachment_text,
                                        doc.part_headers)))
                _put_heads(conn, rowid, _heads_values(
                    doc.subject, doc.from_, doc.to, doc.cc, doc.bcc, doc.filenames,
                    doc.part_headers))
                if doc.part_headers:
                    conn.execute("INSERT INTO part_headers VALUES (?, ?)",
                                 (rowid, doc.part_headers))
                conn.execute("INSERT INTO doc_ids VALUES (?, ?, ?)",
                             (doc.account_id, doc.email_id, rowid))

        await self.db.write(write)

    async def query(self, account_id: str, node: Node, *, among: Sequence[str] | None = None,
                    order: Order = "newest", limit: int | None = None, position: int = 0,
                    total: bool = False,
                    received: tuple[int | None, int | None] = (None, None),
                    outside: Iterable[str] = ()) -> Hits:
        left_out = set(outside)
        if left_out and among is not None:  # the candidates less those left out: the same
            among = [e for e in among if e not in left_out]
            left_out = set()
        acct = _account_token(account_id)
        expr = compile_match(node, acct)
        if isinstance(expr, _None) or (among is not None and not among):
            return Hits([], 0 if total else None)
        scoped = match = acct if isinstance(expr, _All) else f"{acct} AND ({expr})"
        bare = None if isinstance(expr, _All) else expr
        loose = bare if bare is None or _names_account(node, account_id) else \
            str(compile_match(node, acct, any_column=True))
        sort = {"newest": "rowid DESC", "oldest": "rowid ASC", "relevance": "rank"}[order]

        low, high = received
        span = (" AND rowid >= ? AND rowid < ?", (
            -(1 << 62) if low is None else low * _TIES,
            (1 << 62) if high is None else high * _TIES))

        def read(conn: sqlite3.Connection) -> Hits:
            generation = _generation(conn, account_id)
            # The account's token intersects every word with the account's own documents;
            # when the index holds no other account's, it is left out (the same rows: a
            # count of a common word reads one doclist of 100k entries instead of two).
            match = loose if loose and _alone(conn, account_id) else scoped
            if among is None and left_out and order != "relevance":
                few = _few_hits(conn, account_id, match, span, len(left_out) // 2 + 1)
                if few is not None:  # a rare word: its hits are looked up, not the hidden
                    kept = [e for _, e in sorted(few, reverse=order == "newest")
                            if e not in left_out]
                    page = kept[position:] if limit is None else \
                        kept[position:position + limit]
                    return Hits(page, len(kept) if total else None)
            if among is None:
                hidden = self._hidden(conn, (account_id, generation), left_out)
                skip = " AND +rowid NOT IN (SELECT value FROM json_each(?))" if hidden else ""
                ids = [r[0] for r in conn.execute(
                    f"SELECT email_id FROM docs WHERE docs MATCH ?{span[0]}{skip}"
                    f" ORDER BY {sort} LIMIT ? OFFSET ?",
                    (match, *span[1], *([json.dumps(hidden)] if hidden else []),
                     -1 if limit is None else limit, position))]
                count = self._count(conn, (account_id, generation), match, span,
                                    hidden) if total else None
                return Hits(ids, count)
            found: list[tuple[float, str]] = []
            key = "rank" if order == "relevance" else "rowid"
            # Ranks depend on every account's documents (BM25's statistics): not remembered.
            remembered_among = None if order == "relevance" else (
                "among", account_id, generation, match, *span[1], _digest(among))
            if remembered_among and (known := self.answers.get(remembered_among)) is not None:
                found = list(known)  # type: ignore[call-overload]
            elif len(among) > _AMONG_IN:
                found = _intersect(conn, match, key, _within(
                    _rowid_map(conn, account_id, among), span[1]))
            else:
                rowids = list(_within(dict.fromkeys(_rowids(conn, account_id, among)),
                                      span[1]))
                found = [(r[0], r[1]) for r in conn.execute(
                    f"SELECT {key}, email_id FROM docs"
                    f" WHERE docs MATCH ? AND rowid IN ({','.join('?' * len(rowids))})",
                    (match, *rowids))] if rowids else []
            if remembered_among:
                self.answers.put(remembered_among, tuple(found))
            found.sort(reverse=order == "newest")
            ids = [e for _, e in found]
            page = ids[position:] if limit is None else ids[position:position + limit]
            return Hits(page, len(ids) if total else None)

        try:
            if among is not None and len(among) > _AMONG_IN and order != "relevance":
                return await self._many(account_id, among, scoped, loose, order, limit,
                                        position, total, span)
            long = total and among is None and any(
                self._known_long(account_id, m, span) for m in {scoped, loose} if m)
            return await self.db.read_long(read, self.query_seconds, on_loop=not long)
        except sqlite3.OperationalError as e:  # a query FTS5 cannot evaluate
            log.warning("full-text query failed (%s): %s", e, match)
            return Hits([], 0 if total else None)

    def _hidden(self, conn: sqlite3.Connection, state: tuple[str, int],
                left_out: set[str]) -> list[int]:
        """The rowids of the documents of `left_out` (email ids), sorted, remembered for the
        account's generation (`state`): 1,412 look-ups took 3-15 ms at 100k messages."""
        if not left_out:
            return []
        ids = sorted(left_out)
        key = ("hidden", *state, _digest(ids))
        known = self.answers.get(key)
        if isinstance(known, tuple):
            return list(known)
        rowids = sorted(_rowid_map(conn, state[0], ids))
        self.answers.put(key, tuple(rowids))
        return rowids

    def _known_long(self, account_id: str, match: str,
                    span: tuple[str, tuple[int, int]]) -> bool:
        """Whether the last count of `match` over `span` read for this account (in any
        generation) took _LONG_COUNT or more."""
        cost = self.costs.get(("cost", account_id, match, *span[1]))
        return isinstance(cost, float) and cost >= _LONG_COUNT

    def _count(self, conn: sqlite3.Connection, state: tuple[str, int], match: str,
               span: tuple[str, tuple[int, int]], hidden: list[int]) -> int:
        """The count of `match` over a rowid range (`span`: its SQL and bounds) less its
        documents among `hidden` (rowids), remembered for the account's generation (`state`).
        The count and the hidden ones among its matches are read in one walk of the words'
        postings: Gmail's scope asked a second MATCH about the Spam and Trash candidates,
        which read a common word's ~100k postings again (139 of 233 ms at 100k messages, 364
        of 641 for a phrase of two common words, load 8); the check of each match against
        the hidden rowids costs ~0.15 us. Tried: the count in 8 pieces of the rowid range,
        each its own read short enough to stay on the loop's thread (Database.read_long runs
        a read past 20 ms again on a pool thread): slower in every one of 3 alternating runs
        at load 12-19 (common word p50 66-226 against 78-96 ms, phrase 174-707 against
        142-222)."""
        every_key = ("count", *state, match, *span[1])
        kept_key = (*every_key, _digest([str(r) for r in hidden])) if hidden else every_key
        known = self.answers.get(kept_key)
        if known is not None:
            return known  # type: ignore[return-value]
        started = time.perf_counter()
        if not hidden:
            every = int(conn.execute(f"SELECT count(*) FROM docs WHERE docs MATCH ?{span[0]}",
                                     (match, *span[1])).fetchone()[0])
            shown = 0
        else:
            every, shown = conn.execute(
                "SELECT count(*), count(*) FILTER (WHERE +rowid IN"
                f" (SELECT value FROM json_each(?))) FROM docs WHERE docs MATCH ?{span[0]}",
                (json.dumps(hidden), match, *span[1])).fetchone()
        self.costs.put(("cost", state[0], match, *span[1]), time.perf_counter() - started)
        self.answers.put(every_key, int(every))
        self.answers.put(kept_key, int(every) - int(shown))
        return int(every) - int(shown)

    async def _many(self, account_id: str, among: Sequence[str], scoped: str,
                    bare: str | None, order: Order, limit: int | None, position: int,
                    total: bool, span: tuple[str, tuple[int, int]]) -> Hits:
        """`query` with more candidates than one statement names (Gmail's Spam and Trash
        asked about a common word, IMAP SEARCH over a big mailbox): one MATCH filtered by the
        candidates' rowids, in pieces of the rowid range, each its own short read. One long
        read that outlasts Database.read_long's time on the loop's thread is run again from
        the start on a pool thread (20 ms wasted at 100k); pieces never are. Every piece
        checks that the account's generation is the one the candidates were mapped in, so
        together they read one state of the documents; if a write came between, the whole
        intersection is read again in one read. `span` (query's arrival-time range) holds
        as it does without candidates."""
        def prepare(conn: sqlite3.Connection) -> tuple[int, str, dict[int, str] | None]:
            match = bare if bare and _alone(conn, account_id) else scoped
            generation = _generation(conn, account_id)
            if len(among) > _FEW_HITS * 4 and _count(conn, match) * 4 < len(among):
                return generation, match, None  # few hits: look the hits up, not the candidates
            return generation, match, _within(_rowid_map(conn, account_id, among), span[1])

        generation, match, named = await self.db.read_long(prepare, self.query_seconds)
        remembered = ("among", account_id, generation, match, *span[1], _digest(among))
        known = self.answers.get(remembered)
        found: list[tuple[float, str]] | None = None if known is None else list(
            known)  # type: ignore[call-overload]
        if found is None and named is None:
            # An IMAP SEARCH of a rare word over a 100k mailbox: mapping 100k candidates to
            # rowids cost 0.5-1 s; the hits' ids come from doc_ids' covering rowid index.
            wanted = set(among)

            def hits(conn: sqlite3.Connection) -> tuple[bool, list[tuple[float, str]]]:
                return _generation(conn, account_id) == generation, [
                    (r[0], r[1]) for r in conn.execute(
                        "SELECT docs.rowid, d.email_id FROM docs CROSS JOIN doc_ids d"
                        " ON d.rowid_ = docs.rowid WHERE docs MATCH ? AND d.account_id = ?"
                        " AND docs.rowid >= ? AND docs.rowid < ?",
                        (match, account_id, *span[1])) if r[1] in wanted]

            same, got = await self.db.read_long(hits, self.query_seconds)
            if same:
                self.answers.put(remembered, tuple(got))
            found = got
        if found is None:
            assert named is not None
            rowids = sorted(named)
            size = max(_PIECE, -(-len(rowids) // _PIECES))
            found = []
            for start in range(0, len(rowids), size):
                piece = rowids[start:start + size]

                def scan(conn: sqlite3.Connection, piece: list[int] = piece
                         ) -> list[tuple[float, str]] | None:
                    if _generation(conn, account_id) != generation:
                        return None
                    return _intersect(conn, match, "rowid", {r: named[r] for r in piece})

                part = await self.db.read_long(scan, self.query_seconds)
                if part is None:
                    found = None
                    break
                found += part
            if found is None:  # a write came between two pieces: once, in one read
                def whole(conn: sqlite3.Connection) -> list[tuple[float, str]]:
                    m = bare if bare and _alone(conn, account_id) else scoped
                    return _intersect(conn, m, "rowid", _within(
                        _rowid_map(conn, account_id, among), span[1]))

                found = await self.db.read_long(whole, self.query_seconds)
            else:
                self.answers.put(remembered, tuple(found))
        found.sort(reverse=order == "newest")
        ids = [e for _, e in found]
        page = ids[position:] if limit is None else ids[position:position + limit]
        return Hits(page, len(ids) if total else None)

    async def snippets(self, account_id: str, node: Node,
                       email_ids: Sequence[str]) -> list[Snippet]:
        acct = _account_token(account_id)
        expr = compile_match(node, acct)
        if not isinstance(expr, str):
            return [Snippet(e, None, None) for e in email_ids]
        match = f"{acct} AND ({expr})"
        extras = _absorbed_words(node)
        if extras:  # in the expression, so highlight() marks them; the rows stay the same
            match += f" AND ({acct} OR " + " OR ".join(f"({e})" for e in extras) + ")"

        def read(conn: sqlite3.Connection) -> dict[str, Snippet]:
            out: dict[str, Snippet] = {}
            for rowids in _chunks(_rowids(conn, account_id, email_ids), 500):
                for email_id, subject, preview in conn.execute(
                        f"SELECT email_id, highlight(docs, {_SUBJECT_COLUMN}, ?, ?),"
                        f" snippet(docs, {_BODY_COLUMN}, ?, ?, '…', 24) FROM docs"
                        f" WHERE docs MATCH ? AND rowid IN ({','.join('?' * len(rowids))})",
                        (_OPEN, _CLOSE, _OPEN, _CLOSE, match, *rowids)):
                    out[email_id] = Snippet(email_id, _marked(subject), _marked(preview))
            return out

        found = await self.db.read_long(read, self.query_seconds)
        return [found.get(e, Snippet(e, None, None)) for e in email_ids]

    async def substring(self, account_id: str, field: str | None,
                        needle: str) -> set[str] | None:
        if len(needle) < MIN_SUBSTRING or field not in (None, *SUBSTRING_FIELDS):
            return None
        # What the trigram phrase of schema 4 looked for: control characters as spaces.
        needle = "".join(ch if ch.isprintable() else " " for ch in needle)
        grams = _needle_grams(needle)
        exact = len(needle) == MIN_SUBSTRING

        def find(conn: sqlite3.Connection) -> set[str]:
            headers_only = field in ("subject", "addresses")
            known: dict[int, str] = {}
            long_only = False  # heads answered the short texts of every candidate
            if not exact and needle.isascii():
                known = _heads_hits(conn, account_id, field, needle)
                if not _any_unfolded(conn):
                    long_only = True
                    if headers_only:
                        return set(known.values())  # the phrase's answer is the answer
            # The ids come with the rows when the index holds other accounts (or the answer
            # is the rows, exact); else the candidates' rowids alone (mapping the 17k
            # candidates of `fi cel` to their ids was a seek each), the hits' ids below.
            joined = exact or not _alone(conn, account_id)
            found: dict[int, str | None] = {}
            for table, match in _trigram_queries(field, grams, long_only):
                found.update(_trigram_rows(conn, table, match, account_id, joined))
            if exact:  # one trigram: the index's answer is the answer
                return {e for e in found.values() if e is not None}
            candidates = [r for r in found if r not in known]
            if headers_only and needle.isascii():  # the phrase answered all but these
                candidates = _unfolded_of(conn, candidates)
            named, hits = _substring_hits(conn, candidates, field, needle,
                                          long_only=long_only)
            return {*known.values(), *named.values(), *_email_ids(conn, account_id, hits)}

        return await self.db.read_long(find, self.query_seconds)

    async def delete(self, account_id: str, email_ids: Sequence[str]) -> None:
        def remove(conn: sqlite3.Connection) -> None:
            _bump(conn, {account_id})
            for email_id in email_ids:
                _remove(conn, account_id, email_id)

        await self.db.write(remove)

    async def clear(self, account_id: str) -> None:
        def remove(conn: sqlite3.Connection) -> None:
            _bump(conn, {account_id})
            if _alone(conn, account_id):
                # The whole index (a reindex of a one-account server): emptied at once, not
                # document by document (each delete tokenizes the document again).
                conn.execute("DELETE FROM doc_ids")
                conn.execute("DELETE FROM part_headers")
                conn.execute("DELETE FROM unfolded")
                conn.execute("INSERT INTO grams (grams) VALUES ('delete-all')")
                conn.execute("INSERT INTO heads (heads) VALUES ('delete-all')")
                conn.execute("DROP TABLE docs")
                conn.execute(SCHEMA[SCHEMA.index("CREATE VIRTUAL TABLE IF NOT EXISTS docs"):
                                    SCHEMA.index(";")])
                conn.execute("INSERT INTO docs (docs, rank) VALUES ('automerge', ?)",
                             (_AUTOMERGE,))
                return
            rowids = [r[0] for r in conn.execute(
                "SELECT rowid_ FROM doc_ids WHERE account_id = ?", (account_id,))]
            for chunk in _chunks(rowids, 500):
                _remove_rows(conn, chunk)
            conn.execute("DELETE FROM doc_ids WHERE account_id = ?", (account_id,))

        await self.db.write(remove)

    async def count(self, account_id: str) -> int:
        return await self.db.read(lambda c: int(c.execute(
            "SELECT count(*) FROM doc_ids WHERE account_id = ?", (account_id,)).fetchone()[0]))


    async def indexed_ids(self, account_id: str) -> set[str]:
        return await self.db.read(lambda c: {r[0] for r in c.execute(
            "SELECT email_id FROM doc_ids WHERE account_id = ?", (account_id,))})


def _remove(conn: sqlite3.Connection, account_id: str, email_id: str) -> None:
    row = conn.execute(
        "DELETE FROM doc_ids WHERE account_id = ? AND email_id = ? RETURNING rowid_",
        (account_id, email_id)).fetchone()
    if row:
        _remove_rows(conn, [row[0]])


def _remove_rows(conn: sqlite3.Connection, rowids: Sequence[int]) -> None:
    """Delete these documents from docs, grams and part_headers. grams keeps no text: it is
    told the values it indexed (FTS5's 'delete' command), read from docs first."""
    for rowid, value in _stored_grams(conn, rowids).items():
        conn.execute("INSERT INTO grams (grams, rowid, body) VALUES ('delete', ?, ?)",
                     (rowid, value))
    for rowid, heads in _stored_heads(conn, rowids).items():
        conn.execute("INSERT INTO heads (heads, rowid, subject, addresses, meta)"
                     " VALUES ('delete', ?, ?, ?, ?)", (rowid, *heads))
    marks = ",".join("?" * len(rowids))
    conn.execute(f"DELETE FROM unfolded WHERE rowid_ IN ({marks})", list(rowids))
    conn.execute(f"DELETE FROM docs WHERE rowid IN ({marks})", list(rowids))
    conn.execute(f"DELETE FROM part_headers WHERE rowid_ IN ({marks})", list(rowids))


_HEADS_COLUMNS = {None: "", "subject": "subject : ", "addresses": "addresses : ",
                  "body": "meta : "}


def _heads_hits(conn: sqlite3.Connection, account_id: str, field: str | None,
                needle: str) -> dict[int, str]:
    """The account's documents (rowid -> email id) whose short texts hold the ASCII `needle`,
    found by `heads`' phrase query alone, without reading their text: all of its hits but
    those listed in `unfolded` (see _unfolded), which are left to _substring_hits' check. The
    answer for IMAP SUBJECT, FROM/TO/CC/BCC and the attachment names of BODY (`.pdf`) when
    the needle is common: the check of thousands of candidates cost 90-400 ms at 20k
    messages."""
    return {r[0]: r[1] for r in conn.execute(
        "SELECT d.rowid_, d.email_id FROM heads h CROSS JOIN doc_ids d ON d.rowid_ = h.rowid"
        " WHERE heads MATCH ? AND d.account_id = ?"
        " AND NOT EXISTS (SELECT 1 FROM unfolded WHERE rowid_ = h.rowid)",
        (_HEADS_COLUMNS[field] + _string(needle), account_id))}


def _trigram_queries(field: str | None, grams: list[str],
                     long_only: bool) -> list[tuple[str, str]]:
    """(table, MATCH) whose rows hold every trigram of a needle in `field`'s texts: `heads`
    for the subject and the addresses, `grams` for what BODY searches, both for TEXT (the
    body's alone when `heads` answered the short texts: `long_only`)."""
    out: list[tuple[str, str]] = []
    if field in ("subject", "addresses") or (field is None and not long_only):
        columns = field or "{subject addresses}"
        out.append(("heads", " AND ".join(f"{columns} : {_string(g)}" for g in grams)))
    if field in (None, "body"):
        out.append(("grams", " AND ".join(_string(g) for g in grams)))
    return out


def _trigram_rows(conn: sqlite3.Connection, table: str, match: str, account_id: str,
                  joined: bool) -> list[tuple[int, str | None]]:
    """(rowid, email id or None) of a trigram table's rows that `match` finds; `joined`: of
    the account's documents only, with their ids (from doc_ids' covering index; CROSS JOIN
    keeps the FTS5 scan outside, or SQLite ran the MATCH once per doc_ids row)."""
    if joined:
        return [(r[0], r[1]) for r in conn.execute(
            f"SELECT d.rowid_, d.email_id FROM {table} g CROSS JOIN doc_ids d"
            f" ON d.rowid_ = g.rowid WHERE {table} MATCH ? AND d.account_id = ?",
            (match, account_id))]
    return [(r[0], None) for r in conn.execute(
        f"SELECT rowid FROM {table} WHERE {table} MATCH ?", (match,))]


def _any_unfolded(conn: sqlite3.Connection) -> bool:
    return conn.execute("SELECT 1 FROM unfolded LIMIT 1").fetchone() is not None


def _unfolded_of(conn: sqlite3.Connection, rowids: list[int]) -> list[int]:
    """Those of these documents listed in `unfolded`."""
    return [r[0] for r in conn.execute(
        "SELECT rowid_ FROM unfolded WHERE rowid_ IN (SELECT value FROM json_each(?))",
        (json.dumps(rowids),))]


def _substring_hits(conn: sqlite3.Connection, rowids: list[int], field: str | None,
                    needle: str, *, long_only: bool = False) -> tuple[dict[int, str], set[int]]:
    """The candidates (rowids) whose text holds `needle`, case folded (str.casefold on both
    sides: two strings equal under FTS5's simple folding are equal under full folding): those
    found inside SQLite with their email ids, and the others. `long_only`: only the body text
    and the attachments' text can hold it (`heads` answered the short texts of every
    candidate). An ASCII needle is looked for inside SQLite first (_like_hits): no text
    reaches Python but that of the few documents it cannot decide."""
    if needle.isascii() and len(needle) <= _LIKE_MAX and rowids:
        sure, unsure = _like_hits(conn, rowids, field, needle, long_only)
        return sure, _checked_hits(conn, unsure, field, needle)
    return {}, _checked_hits(conn, rowids, field, needle)


_LIKE_MAX = 1000
"""Needles longer than this are checked in Python (SQLite refuses LIKE patterns over
SQLITE_MAX_LIKE_PATTERN_LENGTH, 50,000 by default)."""


def _sql_addresses(prefix: str) -> str:
    """_addresses in SQL: the non-empty address fields joined by spaces."""
    parts = "||".join(f"iif({prefix}c{i} <> '', ' ' || {prefix}c{i}, '')" for i in (3, 4, 5, 6))
    return f"substr({parts}, 2)"


def _sql_ascii(column: str) -> str:
    return f"({column} IS NULL OR length({column}) = length(CAST({column} AS BLOB)))"


def _like_hits(conn: sqlite3.Connection, rowids: list[int], field: str | None,
               needle: str, long_only: bool) -> tuple[dict[int, str], list[int]]:
    """The candidates whose text holds the ASCII `needle` by SQLite's LIKE, and those it
    cannot decide. LIKE folds ASCII letters only: a text it finds the needle in holds it
    under str.casefold too (an ASCII run of the text folds to the same run). One it does not
    find the needle in can still hold it under casefold only if the text holds a character
    past ASCII (one of _ASCII_FOLDED: "Maße" holds "asse"), so an all-ASCII text is a miss
    and any other is left to the check in Python. Reading 17k candidates' text into Python
    strings and folding them cost 200-400 ms for `fi cel` at 20k messages; the same LIKE
    inside SQLite reads them without making a string of any."""
    pattern = "%" + re.sub(r"([\\%_])", r"\\\1", needle) + "%"
    columns: list[str] = []
    if not long_only and field in (None, "subject"):
        columns.append("c.c2")
    if not long_only and field in (None, "addresses"):
        columns.append(_sql_addresses("c."))
    if field in (None, "body"):
        columns += ["c.c7", "c.c9"]
        if not long_only:
            columns += ["c.c8", "p.text"]
    found = " OR ".join(f"{c} LIKE :p ESCAPE '\\'" for c in columns)
    plain = " AND ".join(_sql_ascii(c) for c in columns)
    join = " LEFT JOIN part_headers p ON p.rowid_ = c.id" if "p.text" in columns else ""
    sure: dict[int, str] = {}
    unsure: list[int] = []
    # A hit comes back with its email id (c1, in the row already read: no look-up in
    # doc_ids). Tried: a MATERIALIZED CTE sending back only hits and undecided, no faster.
    for rowid, verdict, email_id in conn.execute(
            f"SELECT c.id, CASE WHEN {found} THEN 1 WHEN {plain} THEN 0 END, c.c1"
            f" FROM docs_content c{join} WHERE c.id IN (SELECT value FROM json_each(:ids))",
            {"p": pattern, "ids": json.dumps(rowids)}):
        if verdict == 1:
            sure[rowid] = email_id
        elif verdict is None:
            unsure.append(rowid)
    return sure, unsure


def _checked_hits(conn: sqlite3.Connection, rowids: list[int], field: str | None,
                  needle: str) -> set[int]:
    """_substring_hits in Python: each column's pieces are read from docs' content table by
    primary key (`docs` itself answers `rowid IN (...)` by scanning every row) and checked
    one by one: the body's pieces are joined by line breaks, which a needle never holds
    (control characters are spaces)."""
    if not rowids:
        return set()
    folded = needle.casefold()

    def holds(text: str) -> bool:
        return folded in text.casefold()

    hits: set[int] = set()
    if field != "body":
        for rowid, subject, from_, to, cc, bcc in conn.execute(
                "SELECT id, c2, c3, c4, c5, c6 FROM docs_content"
                " WHERE id IN (SELECT value FROM json_each(?))", (json.dumps(rowids),)):
            text, addresses = subject or "", _addresses(from_, to, cc, bcc)
            if ((field != "addresses" and holds(text))
                    or (field != "subject" and holds(addresses))):
                hits.add(rowid)
    if field in (None, "body"):
        rest = [r for r in rowids if r not in hits]
        for row in conn.execute(
                "SELECT c.id, c.c7, c.c8, c.c9, p.text FROM docs_content c"
                " LEFT JOIN part_headers p ON p.rowid_ = c.id"
                " WHERE c.id IN (SELECT value FROM json_each(?))", (json.dumps(rest),)):
            if any(text and holds(text) for text in tuple(row)[1:]):
                hits.add(row[0])
    return hits


_MAX_GRAMS = 24
"""Trigrams of a long needle asked of the index: spread over it, first and last included.
Their documents are a superset of the answer either way (each is checked against its text);
more of them narrow it further but each is a doclist read."""


def _needle_grams(needle: str) -> list[str]:
    """The distinct trigrams of a needle (three characters or more), at most _MAX_GRAMS of
    them; the tokenizer folds their case."""
    grams = list(dict.fromkeys(needle[i:i + 3] for i in range(len(needle) - 2)))
    if len(grams) <= _MAX_GRAMS:
        return grams
    step = (len(grams) - 1) / (_MAX_GRAMS - 1)
    return [grams[round(i * step)] for i in range(_MAX_GRAMS)]


def _free_rowid(conn: sqlite3.Connection, base: int) -> int:
    """The rowid for a document received at millisecond base / _TIES: after every document of
    that millisecond (rowid order is received order). More than _TIES documents in one
    millisecond (an mbox import whose messages share one date) spill into the following
    slots, after whatever is there: the window grows by a slot until its top is free. (It
    used to look in the first slot only, so the 1,026th such document reused a rowid.)"""
    span = _TIES
    while True:
        top = conn.execute("SELECT max(rowid) FROM docs WHERE rowid BETWEEN ? AND ?",
                           (base, base + span - 1)).fetchone()[0]
        if top is None:
            return base
        if top < base + span - 1:
            return int(top) + 1
        span += _TIES


def _count(conn: sqlite3.Connection, match: str) -> int:
    return int(conn.execute("SELECT count(*) FROM docs WHERE docs MATCH ?",
                            (match,)).fetchone()[0])


def _intersect(conn: sqlite3.Connection, match: str, key: str,
               named: dict[int, str]) -> list[tuple[float, str]]:
    """(key, email id) of the documents of `named` (rowid -> email id) that `match` finds:
    one MATCH over the rowid range they span, filtered by their rowids inside SQLite
    ("+rowid": a filter on the scan, not a constraint FTS5 would answer by running the MATCH
    again per rowid, as "rowid IN (500 ids)" did 200 times for a 100k mailbox). No document
    row is read: an email_id per hit was a docs_content read, 1.3 s for the 95k hits of a
    common word against 20 ms for the rowids alone."""
    if not named:
        return []
    return [(r[0], named[r[1]]) for r in conn.execute(
        f"SELECT {key}, rowid FROM docs WHERE docs MATCH ? AND rowid >= ? AND rowid <= ?"
        " AND +rowid IN (SELECT value FROM json_each(?))",
        (match, min(named), max(named), json.dumps(list(named))))]


V = TypeVar("V")


def _within(named: dict[int, V], bounds: tuple[int, int]) -> dict[int, V]:
    """The entries of `named` (by rowid) inside an arrival-time range of rowids [low, high):
    candidates given with `received` bounds are held to them, as a query without
    candidates is (the range was ignored for them)."""
    low, high = bounds
    return {r: v for r, v in named.items() if low <= r < high}


def _rowid_map(conn: sqlite3.Connection, account_id: str,
               email_ids: Sequence[str]) -> dict[int, str]:
    """rowid -> email id of those of `email_ids` the index holds, in one statement (the ids
    as one JSON array: no limit on how many)."""
    return {r[0]: r[1] for r in conn.execute(
        "SELECT rowid_, email_id FROM doc_ids WHERE account_id = ?"
        " AND email_id IN (SELECT value FROM json_each(?))",
        (account_id, json.dumps(list(email_ids))))}


def _few_hits(conn: sqlite3.Connection, account_id: str, match: str,
              span: tuple[str, tuple[int, int]], under: int) -> list[tuple[int, str]] | None:
    """(rowid, email id) of every hit of `match` over a rowid range when there are fewer
    than `under`, else None (having read `under` rowids). When a word has fewer hits than
    Gmail's hidden mailboxes hold emails, its hits are mapped to email ids (doc_ids' rowid
    index), not the hidden emails to rowids."""
    rowids = [r[0] for r in conn.execute(
        f"SELECT rowid FROM docs WHERE docs MATCH ?{span[0]} LIMIT ?",
        (match, *span[1], under))]
    if len(rowids) >= under:
        return None
    if not rowids:
        return []
    return [(r[0], r[1]) for r in conn.execute(
        "SELECT rowid_, email_id FROM doc_ids WHERE rowid_ IN (SELECT value FROM json_each(?))"
        " AND account_id = ?", (json.dumps(rowids), account_id))]


def _email_ids(conn: sqlite3.Connection, account_id: str, rowids: set[int]) -> list[str]:
    """The account's email ids of these documents (doc_ids' covering rowid index)."""
    if not rowids:
        return []
    return [r[0] for r in conn.execute(
        "SELECT email_id FROM doc_ids WHERE rowid_ IN (SELECT value FROM json_each(?))"
        " AND account_id = ?", (json.dumps(sorted(rowids)), account_id))]


def _rowids(conn: sqlite3.Connection, account_id: str, email_ids: Sequence[str]) -> list[int]:
    out: list[int] = []
    for chunk in _chunks(list(email_ids), 500):
        out += [r[0] for r in conn.execute(
            f"SELECT rowid_ FROM doc_ids WHERE account_id = ? AND email_id IN"
            f" ({','.join('?' * len(chunk))})", (account_id, *chunk))]
    return out


T = TypeVar("T")


def _chunks(items: Sequence[T], size: int) -> list[Sequence[T]]:
    return [items[i:i + size] for i in range(0, len(items), size)]
