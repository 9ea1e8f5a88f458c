"""SearchIndex on PostgreSQL full text: one row per (account, email), a weighted tsvector under
a GIN index, pg_trgm GIN indexes for IMAP substrings.

Words are cut and normalised here, not by a PostgreSQL text search configuration, and reach
the server as tsvector and tsquery literals (whose input functions apply no parser and no
dictionary). That makes the index behave as the SQLite engine's unicode61 tokenizer does, on
any server and whatever its locale: a token is a run of letters and digits (so
"dave@partner.test" is the words dave, partner, test, and "figures-q3.xlsx" is found by
"figures"), case-folded, with diacritics removed ("café" = "cafe"), and no stop words. The
default parser would keep e-mail addresses, hosts and file names as single tokens, and
unaccent would be one more extension to require.

Weights carry the field a word came from: subject A, from/to/cc/bcc B, body C, attachment
names, attachment text and List-Id D (attachments apart from the body so that `body:` means the
body alone). Words of the subject and of the fields that share a weight are also indexed
tagged ("subject:fes", "from:carol"; a token never contains a colon), so every query tree,
fields included, compiles to one tsquery that the GIN index answers by itself. Fields get
disjoint position ranges, so a phrase never runs from one field into the next.

Every statement filters on account_id. Each document also carries its account as a lexeme
("account:ID", no position) and every word query is `'account:ID' & (...)`, so the GIN index
intersects the words' postings with the account's own: one account's query never walks another
account's documents (the SQLite engine's `acct` column does the same). A GIN index led by
account_id (btree_gin) would say the same, but btree_gin matches even `=` as a partial match,
which the planner prices so high that it never chose the index (measured: a rare word read
every document of the account, 18 ms at 3,000 messages, instead of 0.05 ms).

Plans are made for each query's own words (plan_cache_mode = force_custom_plan): a generic
plan cannot tell a word in every message from one in two, and picks badly for one of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import re
import time
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from html import escape
from typing import Any

import asyncpg

from mailyard.core.indextext import body_substring_text
from mailyard.core.query import And, Node, Not, Or, Text
from mailyard.store.ports import Hits, IndexDocument, NotFound, Order, QueryTimeout, Snippet
from mailyard.store.postgres import schema
from mailyard.store.postgres.pool import LazyPool
from mailyard.store.postgres.writes import clean

log = logging.getLogger(__name__)

COMPONENT = "search"
T = 'text COLLATE "C"'
MIGRATIONS: tuple[str, ...] = (
    f"""
    CREATE EXTENSION IF NOT EXISTS pg_trgm;
    CREATE TABLE search_docs (
        account_id {T} NOT NULL,
        email_id {T} NOT NULL,
        received_at bigint NOT NULL,
        doc tsvector NOT NULL,
        subject text NOT NULL,
        body text NOT NULL,
        subject_fold text NOT NULL,
        addresses_fold text NOT NULL,
        body_fold text NOT NULL,
        PRIMARY KEY (account_id, email_id)
    );
    CREATE INDEX search_docs_newest ON search_docs (account_id, received_at DESC, email_id DESC);
    CREATE INDEX search_docs_words ON search_docs USING gin (doc);
    CREATE INDEX search_docs_subject_grams ON search_docs USING gin (subject_fold gin_trgm_ops);
    CREATE INDEX search_docs_addresses_grams
        ON search_docs USING gin (addresses_fold gin_trgm_ops);
    CREATE INDEX search_docs_body_grams ON search_docs USING gin (body_fold gin_trgm_ops);
    """,
    # 2: body_fold is what IMAP BODY searches (core.indextext.body_substring_text): the body,
    # attachment names and attachment text. The rows written before hold the body alone and
    # only `mailyard reindex` can rebuild them (this table keeps no attachment text): they are
    # marked, and counted when the pool opens.
    """
    ALTER TABLE search_docs ADD COLUMN text_version smallint NOT NULL DEFAULT 1;
    CREATE INDEX search_docs_stale ON search_docs (account_id) WHERE text_version < 2;
    """,
    # 3: the transaction that last wrote each row, so that moving an account between shards
    # (search_shards.py) carries over only the rows written after its bulk copy's snapshot.
    # Rows from before hold 0, which every snapshot sees (they were copied in bulk).
    """
    ALTER TABLE search_docs ADD COLUMN written xid8 NOT NULL DEFAULT '0';
    ALTER TABLE search_docs ALTER COLUMN written SET DEFAULT pg_current_xact_id();
    """,
)
TEXT_VERSION = 2
"""What a row written now holds (see MIGRATIONS); older rows are listed by search_docs_stale."""

MIN_SUBSTRING = 3
"""pg_trgm answers substrings of three characters or more (as the SQLite trigram table)."""
SUBSTRING_COLUMNS = {"subject": "subject_fold", "addresses": "addresses_fold",
                     "body": "body_fold"}

_TOKEN = re.compile(r"[^\W_]+")
"""Letters and digits, as unicode61's token characters."""
_MAX_TOKEN = 255
"""Longer tokens are cut (on both sides) to stay far under PostgreSQL's 2 KB per lexeme."""
_MAX_POSITION = 16383
"""tsvector positions stop here; words beyond share the last ones (phrases there are lost)."""
_MAX_POSITIONS = 256
"""Positions a tsvector keeps per lexeme."""
_DOC_BUDGET = 880_000
"""Bytes of lexemes per document, under tsvector's 1 MB limit; words past it are not indexed.
Each lexeme is counted as its bytes + 16 (entry, length, alignment, up to four positions past
_MAX_POSITION); the positions below it add at most 2 x 16,383 x 2 bytes (a position is shared
by a word and its tagged twin): 880,000 + 65,532 < 1,048,576."""
_GAP = 2
"""Positions left empty between fields, so `<->` never joins the end of one to the next."""

_WEIGHTS = {"subject": "A", "from": "B", "to": "B", "cc": "B", "bcc": "B", "body": "C",
            "filename": "D", "attachments": "D", "list": "D"}
_TAGGED = frozenset({"subject", "from", "to", "cc", "bcc", "filename", "list"})
"""Fields also indexed as "field:word": those that share a weight with another field, and the
subject, whose words the GIN index then finds by themselves (a weight is only checked on each
document a word is in: `subject:fes` read 33,780 documents at 100k to find 50)."""
_SNIPPET_TOKENS = 24
_ELLIPSIS = "…"


@functools.lru_cache(maxsize=65536)
def fold(token: str) -> str:
    """The indexed form of a token: case-folded, diacritics removed (unicode61's
    remove_diacritics), cut to _MAX_TOKEN characters. Cached: a mailbox's vocabulary repeats,
    and this is most of the cost of indexing a document."""
    if token.isascii():
        return token.lower()[:_MAX_TOKEN]
    decomposed = unicodedata.normalize("NFD", token)
    bare = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return unicodedata.normalize("NFC", bare.casefold())[:_MAX_TOKEN]


def tokens(text: str) -> list[str]:
    return [fold(m.group()) for m in _TOKEN.finditer(unicodedata.normalize("NFC", text))]


def _quote(lexeme: str) -> str:
    """A quoted lexeme of tsvector/tsquery input (tokens hold no quote or backslash; kept
    safe anyway)."""
    return "'" + lexeme.replace("\\", "\\\\").replace("'", "''") + "'"


def tsvector(doc: IndexDocument) -> str:
    """The tsvector literal of a document: every word with its positions and weights.

    Tokens hold only letters and digits (and tags a colon), so they are quoted without
    escaping; tsvector's input sorts each lexeme's positions."""
    fields = (("subject", doc.subject), ("from", doc.from_), ("to", doc.to), ("cc", doc.cc),
              ("bcc", doc.bcc), ("filename", doc.filenames), ("list", doc.list_id),
              ("body", doc.body), ("attachments", doc.attachment_text))
    lexemes: dict[str, dict[int, str]] = {}
    size = 0
    position = 1
    for field, text in fields:
        weight = _WEIGHTS[field]
        tagged = field in _TAGGED
        for token in tokens(text):
            # Past the last position, each weight keeps one slot of its own, so a word late
            # in a long body is still found by `body:` (only phrases there are lost).
            at = position if position < _MAX_POSITION - 3 else _MAX_POSITION - "DCBA".index(weight)
            position += 1
            for lexeme in (token, f"{field}:{token}") if tagged else (token,):
                slots = lexemes.get(lexeme)
                if slots is None:
                    cost = (len(lexeme) if lexeme.isascii() else len(lexeme.encode())) + 16
                    if size + cost > _DOC_BUDGET:
                        continue
                    size += cost
                    slots = lexemes[lexeme] = {}
                if at not in slots and len(slots) < _MAX_POSITIONS:
                    slots[at] = f"{at}{weight}"
        position += _GAP
    out = [_account_lexeme(doc.account_id)]
    out += [f"'{lexeme}':{','.join(slots.values())}" for lexeme, slots in lexemes.items()]
    return " ".join(out)


def _account_lexeme(account_id: str) -> str:
    """The lexeme every document of the account carries (no position: a phrase never sees it;
    no token has a colon, so no word can equal it)."""
    return _quote("account:" + clean(account_id))


# ------------------------------------------------------------------ query trees to tsquery


class _All:
    """Compiles to "every document of the account" (an empty And, a term with no words)."""


class _None:
    """Compiles to "no document" (the negation of everything, a field the index lacks)."""


ALL, NONE = _All(), _None()
Expr = str | _All | _None


def _term(token: str, field: str | None) -> str:
    if field is None:
        return _quote(token)
    if field in _TAGGED:
        return _quote(f"{field}:{token}")
    return _quote(token) + ":" + _WEIGHTS[field]


def _phrase(words: list[str], field: str | None) -> str:
    return " <-> ".join(_term(w, field) for w in words)


def _text(node: Text) -> Expr:
    if node.field is not None and node.field not in _WEIGHTS:
        return NONE  # a field the index does not hold
    pieces = [node.value] if node.phrase else node.value.split()
    phrases = [words for words in (tokens(p) for p in pieces) if words]
    if not phrases:
        return ALL  # nothing searchable, as Gmail ignores a lone punctuation mark
    parts = [_phrase(words, node.field) for words in phrases]
    return parts[0] if len(parts) == 1 else " & ".join(f"({p})" for p in parts)


def compile_tsquery(node: Node) -> Expr:
    """The tsquery literal for a tree of Text, And, Or and Not (ALL or NONE when the tree
    needs no text condition, or can match nothing)."""
    if isinstance(node, Text):
        return _text(node)
    if isinstance(node, And):
        kept: list[str] = []
        for item in node.items:
            expr = compile_tsquery(item)
            if isinstance(expr, _None):
                return NONE
            if isinstance(expr, str):
                kept.append(expr)
        return " & ".join(f"({e})" for e in kept) if kept else ALL
    if isinstance(node, Or):
        exprs = [compile_tsquery(item) for item in node.items]
        if any(isinstance(e, _All) for e in exprs):
            return ALL
        alternatives = [e for e in exprs if isinstance(e, str)]
        return " | ".join(f"({e})" for e in alternatives) if alternatives else NONE
    if isinstance(node, Not):
        inner = compile_tsquery(node.item)
        if isinstance(inner, _All):
            return NONE
        if isinstance(inner, _None):
            return ALL
        return f"!({inner})"
    raise ValueError(f"the text index cannot answer {type(node).__name__}")


# ------------------------------------------------------------------ snippets


@dataclass(frozen=True, slots=True)
class _Wanted:
    """A phrase (one or more folded tokens) to mark, in a field or (None) anywhere."""

    words: tuple[str, ...]
    field: str | None


def _leaves(node: Node) -> Iterator[Text]:
    if isinstance(node, Text):
        yield node
    elif isinstance(node, And | Or):
        for item in node.items:
            yield from _leaves(item)
    elif isinstance(node, Not):
        yield from _leaves(node.item)


def _matched(node: Node, leaf: dict[int, bool]) -> tuple[bool, list[_Wanted]]:
    """Whether `node` matches a document whose Text leaves matched as `leaf` says (by id of
    the node), and the phrases of the branches that made it match: a snippet marks those
    only, never words under a Not nor of an alternative that did not match (FTS5's
    highlight() marks the same)."""
    if isinstance(node, Text):
        if not leaf[id(node)]:
            return False, []
        pieces = [node.value] if node.phrase else node.value.split()
        return True, [_Wanted(words, node.field) for words in map(tuple, map(tokens, pieces))
                      if words]
    if isinstance(node, And):
        wanted: list[_Wanted] = []
        for item in node.items:
            hit, found = _matched(item, leaf)
            if not hit:
                return False, []
            wanted += found
        return True, wanted
    if isinstance(node, Or):
        results = [_matched(item, leaf) for item in node.items]
        return any(hit for hit, _ in results), [w for hit, found in results if hit
                                                 for w in found]
    if isinstance(node, Not):
        return not _matched(node.item, leaf)[0], []
    raise ValueError(f"the text index cannot answer {type(node).__name__}")


Instance = tuple[int, int, int]
"""A phrase found in a text: its first token, its token count, which phrase."""


def _trunc_half(value: int) -> int:
    return -(-value // 2) if value < 0 else value // 2


def _score(instances: list[Instance], start: int, window: int) -> tuple[int, int, int]:
    """(score, first, end) of the instances starting inside [start, start + window): 1000 per
    distinct phrase and 1 per repetition, as FTS5 counts them."""
    seen: set[int] = set()
    score, first, end = 0, -1, 0
    for at, size, phrase in instances:
        if start <= at < start + window:
            score += 1 if phrase in seen else 1000
            seen.add(phrase)
            first = at if first < 0 else first
            end = at + size
    return score, first, end


def _sentences(text: str, found: list[tuple[int, int, str]]) -> list[int]:
    """Tokens that open a sentence: the first, and any after a '.' or ':' and white space."""
    out = [0] if found else []
    for n in range(1, len(found)):
        before = text[:found[n][0]]
        stripped = before.rstrip(" \t\r\n")
        if len(stripped) < len(before) and stripped[-1:] in (".", ":"):
            out.append(n)
    return out


def _window(text: str, found: list[tuple[int, int, str]], instances: list[Instance],
            window: int) -> int:
    """The first token of the `window` tokens a snippet shows, chosen as FTS5's snippet()
    chooses (so both engines show the same excerpt): the window starting at a match that
    holds the most distinct phrases, then the most matches, moved back to centre them; or
    the start of that match's sentence, which earns a bonus."""
    length = len(found)
    sentences = _sentences(text, found)
    best, chosen = 0, 0
    for at, _, _ in instances:
        score, first, end = _score(instances, at, window)
        if score > best:
            adjusted = first - _trunc_half(window - (end - first))
            best, chosen = score, max(0, min(adjusted, length - window))
        opening = max((s for s in sentences if s <= at), default=at)
        if opening < at:
            score = _score(instances, opening, window)[0] + (120 if opening == 0 else 100)
            if score > best:
                best, chosen = score, opening
    return chosen


def highlight(text: str, phrases: Sequence[tuple[str, ...]], window: int | None = None
              ) -> str | None:
    """`text` HTML-escaped with each occurrence of `phrases` in <mark></mark> (overlapping
    occurrences make one mark); None when nothing matched. With `window`, only that many
    tokens around the best matches, with an ellipsis where text was left out (FTS5's
    snippet()).

    Done here rather than by ts_headline, whose parser cuts words unlike the index (an address
    or a URL is one token, so "partner" is not marked in "dave@partner.test"), drops HTML
    tags from fragments, and does not fold diacritics."""
    found = [(m.start(), m.end(), fold(m.group())) for m in _TOKEN.finditer(text)]
    words = [w for _, _, w in found]
    instances: list[Instance] = [
        (i, len(phrase), n) for i in range(len(words)) for n, phrase in enumerate(phrases)
        if tuple(words[i:i + len(phrase)]) == phrase]
    if not instances:
        return None
    first, stop = 0, len(found)
    if window is not None and len(found) > window:
        first = _window(text, found, instances, window)
        stop = first + window
    marks: list[list[int]] = []  # [first token, last token], overlapping instances merged
    for at, size, _ in instances:
        if marks and at <= marks[-1][1]:
            marks[-1][1] = max(marks[-1][1], at + size - 1)
        else:
            marks.append([at, at + size - 1])
    out: list[str] = [_ELLIPSIS if first > 0 else escape(text[:found[0][0]])]
    cursor = found[first][0]
    for a, b in marks:
        if a < first or a >= stop:
            continue
        b = min(b, stop - 1)
        out += [escape(text[cursor:found[a][0]]), "<mark>",
                escape(text[found[a][0]:found[b][1]]), "</mark>"]
        cursor = found[b][1]
    end = found[stop - 1][1]
    out.append(escape(text[cursor:end]))
    out.append(_ELLIPSIS if stop < len(found) else escape(text[end:]))
    return "".join(out)


# ------------------------------------------------------------------ the adapter


class PostgresSearchIndex:
    """The SearchIndex port over one PostgreSQL database, through a pool of connections."""

    def __init__(self, dsn: str, *, min_size: int = 1, max_size: int = 10,
                 query_seconds: float = 10.0) -> None:
        """Nothing is opened yet: the pool belongs to the event loop that first uses it (its
        sessions plan each query for its own words: see the module's docstring).
        `query_seconds`: the budget of one query, snippets or substring statement; past it
        asyncpg cancels the statement on the server and QueryTimeout is raised."""
        self.dsn = dsn
        self.query_seconds = query_seconds
        self._pool = LazyPool(
            dsn, _migrate, min_size=min_size,
            max_size=max_size, server_settings={"plan_cache_mode": "force_custom_plan"})

    @classmethod
    async def connect(cls, dsn: str, *, min_size: int = 1, max_size: int = 10
                      ) -> PostgresSearchIndex:
        """Open a pool on `dsn` now and bring the schema up to date."""
        index = cls(dsn, min_size=min_size, max_size=max_size)
        await index._ready()
        return index

    async def _ready(self) -> asyncpg.Pool:
        return await self._pool.get()

    def close(self) -> None:
        """Synchronous, as the composition root closes every adapter."""
        self._pool.close()

    async def index(self, documents: Sequence[IndexDocument], *, hold: str | None = None
                    ) -> None:
        """`hold`: the one account the documents belong to, whose row in this database's
        accounts table is locked (see _held) for the write."""
        latest: dict[tuple[str, str], IndexDocument] = {}
        for doc in documents:  # one row per key: the last document given wins
            latest[(doc.account_id, doc.email_id)] = doc
        # In key order, so two batches writing the same keys wait for each other instead of
        # deadlocking.
        rows = [_row(latest[key]) for key in sorted(latest)]
        if not rows:
            return
        pool = await self._ready()
        async with pool.acquire() as conn, conn.transaction():
            await _held(conn, hold)
            await conn.executemany(
                "INSERT INTO search_docs (account_id, email_id, received_at, doc, subject, body,"
                " subject_fold, addresses_fold, body_fold, text_version)"
                f" VALUES ($1, $2, $3, $4::text::tsvector, $5, $6, $7, $8, $9, {TEXT_VERSION})"
                " ON CONFLICT (account_id, email_id) DO UPDATE SET"
                " received_at = EXCLUDED.received_at, doc = EXCLUDED.doc,"
                " subject = EXCLUDED.subject, body = EXCLUDED.body,"
                " subject_fold = EXCLUDED.subject_fold,"
                " addresses_fold = EXCLUDED.addresses_fold, body_fold = EXCLUDED.body_fold,"
                " text_version = EXCLUDED.text_version, written = pg_current_xact_id()",
                rows)

    async def query(self, account_id: str, node: Node, *, among: Sequence[str] | None = None,
                    order: Order = "newest", limit: int | None = None, position: int = 0,
                    total: bool = False,
                    received: tuple[int | None, int | None] = (None, None),
                    outside: Iterable[str] = ()) -> Hits:
        left_out = {clean(e) for e in outside}
        expr = compile_tsquery(node)
        if isinstance(expr, _None) or (among is not None and not among):
            return Hits([], 0 if total else None)
        where = ["account_id = $1"]
        args: list[Any] = [clean(account_id)]

        def arg(value: Any, cast: str = "") -> str:
            args.append(value)
            return f"${len(args)}{cast}"

        if isinstance(expr, str):
            scoped = f"{_account_lexeme(account_id)} & ({expr})"
            where.append(f"doc @@ {arg(scoped, '::text::tsquery')}")
        if among is not None:
            where.append(f"email_id = ANY({arg([clean(e) for e in among], '::text[]')})")
        if left_out:
            where.append(f"NOT (email_id = ANY({arg(sorted(left_out), '::text[]')}))")
        low, high = received
        if low is not None:
            where.append(f"received_at >= {arg(low)}")
        if high is not None:
            where.append(f"received_at < {arg(high)}")
        condition = " AND ".join(where)
        newest = "received_at DESC, email_id DESC"
        sort = {"newest": newest, "oldest": "received_at, email_id",
                "relevance": (f"ts_rank(doc, $2::text::tsquery) DESC, {newest}"
                              if isinstance(expr, str) else newest)}[order]
        page = f" LIMIT {int(limit)}" if limit is not None else ""
        page += f" OFFSET {int(position)}" if position else ""
        pool = await self._ready()
        budget = self.query_seconds
        with _budgeted(budget):
            async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read",
                                                                readonly=True):
                ids = [r[0] for r in await conn.fetch(
                    f"SELECT email_id FROM search_docs WHERE {condition} ORDER BY {sort}{page}",
                    *args, timeout=budget)]
                count = (await conn.fetchval(
                    f"SELECT count(*) FROM search_docs WHERE {condition}", *args,
                    timeout=budget)) if total else None
        return Hits(ids, count)

    async def snippets(self, account_id: str, node: Node,
                       email_ids: Sequence[str]) -> list[Snippet]:
        expr = compile_tsquery(node)
        if not isinstance(expr, str) or not email_ids:
            return [Snippet(e, None, None) for e in email_ids]
        leaves = list(_leaves(node))
        queries = [compile_tsquery(leaf) for leaf in leaves]
        asked = [q for q in queries if isinstance(q, str)]
        tests = ", ".join(f"doc @@ ${4 + n}::text::tsquery" for n in range(len(asked)))
        deadline = time.monotonic() + self.query_seconds
        with _budgeted(self.query_seconds):
            rows = await (await self._ready()).fetch(
                f"SELECT email_id, subject, body, ARRAY[{tests}]::boolean[] FROM search_docs"
                " WHERE account_id = $1 AND email_id = ANY($2::text[])"
                " AND doc @@ $3::text::tsquery",
                clean(account_id), [clean(e) for e in email_ids],
                f"{_account_lexeme(account_id)} & ({expr})", *asked,
                timeout=self.query_seconds)

        def mark() -> dict[str, Snippet]:
            """Highlighting is Python's work, seconds for many words over many emails: on a
            thread (the loop serves others meanwhile) and within what is left of the budget."""
            found: dict[str, Snippet] = {}
            for email_id, subject, body, answers in rows:
                if time.monotonic() > deadline:
                    raise QueryTimeout("the snippets ran past the query's time budget"
                                       f" ({self.query_seconds:g} s)")
                answer = iter(answers)
                leaf = {id(t): next(answer) if isinstance(q, str) else isinstance(q, _All)
                        for t, q in zip(leaves, queries, strict=True)}
                wanted = _matched(node, leaf)[1]
                found[email_id] = Snippet(
                    email_id,
                    highlight(subject,
                              [w.words for w in wanted if w.field in (None, "subject")]),
                    highlight(body, [w.words for w in wanted if w.field in (None, "body")],
                              _SNIPPET_TOKENS))
            return found

        found = await asyncio.to_thread(mark)
        return [found.get(e, Snippet(e, None, None)) for e in email_ids]

    async def substring(self, account_id: str, field: str | None,
                        needle: str) -> set[str] | None:
        if len(needle) < MIN_SUBSTRING or field not in (None, *SUBSTRING_COLUMNS):
            return None
        pattern = "%" + re.sub(r"([\\%_])", r"\\\1", clean(needle).casefold()) + "%"
        columns = [SUBSTRING_COLUMNS[field]] if field else list(SUBSTRING_COLUMNS.values())
        match = " OR ".join(f"{c} LIKE $2" for c in columns)
        with _budgeted(self.query_seconds):
            rows = await (await self._ready()).fetch(
                f"SELECT email_id FROM search_docs WHERE account_id = $1 AND ({match})",
                clean(account_id), pattern, timeout=self.query_seconds)
        return {r[0] for r in rows}

    async def delete(self, account_id: str, email_ids: Sequence[str], *,
                     hold: bool = False) -> None:
        """`hold`: lock the account's row in this database for the write (see _held)."""
        if email_ids:
            async with (await self._ready()).acquire() as conn, conn.transaction():
                await _held(conn, account_id if hold else None)
                await conn.execute(
                    "DELETE FROM search_docs WHERE account_id = $1"
                    " AND email_id = ANY($2::text[])",
                    clean(account_id), [clean(e) for e in email_ids])

    async def clear(self, account_id: str, *, hold: bool = False) -> None:
        async with (await self._ready()).acquire() as conn, conn.transaction():
            await _held(conn, account_id if hold else None)
            await conn.execute("DELETE FROM search_docs WHERE account_id = $1",
                               clean(account_id))

    async def count(self, account_id: str) -> int:
        return int(await (await self._ready()).fetchval(
            "SELECT count(*) FROM search_docs WHERE account_id = $1", clean(account_id)))

    async def indexed_ids(self, account_id: str) -> set[str]:
        rows = await (await self._ready()).fetch(
            "SELECT email_id FROM search_docs WHERE account_id = $1", clean(account_id))
        return {r[0] for r in rows}


async def _migrate(conn: asyncpg.Connection) -> None:
    """The schema, then a warning while documents from before TEXT_VERSION remain: IMAP BODY
    and TEXT do not find their attachments' names and text until `mailyard reindex`."""
    await schema.migrate(conn, COMPONENT, MIGRATIONS)
    stale = await conn.fetchval("SELECT count(DISTINCT account_id) FROM search_docs"
                                f" WHERE text_version < {TEXT_VERSION}")
    if stale:
        log.warning("search index: %d accounts have documents indexed before IMAP BODY/TEXT"
                    " searched attachment names and text; run `mailyard reindex`", stale)


async def _held(conn: asyncpg.Connection, account_id: str | None) -> None:
    """With the index in the MailStore's shard databases: lock the account's row (KEY SHARE,
    which deliveries' modseq updates do not wait for, but a shard move's FOR UPDATE does) so
    that this write lands before the move's final phase or fails after it with NotFound (the
    account's row is gone from this shard) and is routed again, to the new shard."""
    if account_id is not None and await conn.fetchval(
            "SELECT 1 FROM accounts WHERE id = $1 FOR KEY SHARE", clean(account_id)) is None:
        raise NotFound(f"no account {account_id} in this shard")


def _row(doc: IndexDocument) -> tuple[Any, ...]:
    addresses = " ".join(filter(None, (doc.from_, doc.to, doc.cc, doc.bcc)))
    body = body_substring_text(doc.body, doc.filenames, doc.attachment_text, doc.part_headers)
    return (clean(doc.account_id), clean(doc.email_id), doc.received_at, tsvector(doc),
            clean(doc.subject), clean(doc.body), clean(doc.subject).casefold(),
            clean(addresses).casefold(), clean(body).casefold())


@contextlib.contextmanager
def _budgeted(budget: float) -> Iterator[None]:
    """asyncpg's statement timeout (it cancels the statement on the server) as QueryTimeout."""
    try:
        yield
    except (TimeoutError, asyncpg.QueryCanceledError):
        raise QueryTimeout(f"the query ran past its time budget ({budget:g} s)") from None
