"""Search benchmark: a realistic generated mailbox, loaded through the store path, then a fixed
set of 20 typical queries timed as a client would run them (first page of 50, newest first).

The mailbox (deterministic for a --seed): ~2,000 senders over ~300 domains whose activity follows
Zipf's law, Date/received times spread over 3 years in increasing order, ~30 % replies (In-Reply-To,
References, "Re: "), subjects and bodies drawn from a synthetic vocabulary of 30,000 words with
Zipf frequencies (s = 1.1, so the top word is in nearly every message and the tail in a handful),
log-normal body lengths (median ~1.5 KB), ~10 % with an attachment (pdf/docx/xlsx names, a few KB
of random bytes; 1 in 50 of those over 1 MiB), ~5 % from mailing lists (List-Id), ~3 % HTML
alternatives, ~5 % sent by the user. Flags and labels are given at delivery (Target.keywords and
mailbox_ids, the same rows MailboxService.set_keywords / copy write): ~70 % read (recent mail
less so), ~3 % starred, labels Work 12 %, Receipts 7 %, Travel 5 %; 20 % stay in the inbox (the
rest archived: All Mail only), 1 % Spam, 0.5 % Trash.

Loading: in chunks of 5,000 messages: generate (timed apart), ingest them through
`InboundPipeline.ingest` with --concurrency tasks (the mail store's writer group-commits), then
index the chunk's documents in batches of 500 like the pipeline worker. Store-ingest and
indexing rates are printed separately (each over its own wall time), and kept in
DATA_DIR/bench-meta.json so a later `--skip-load` run prints them beside its query figures.

Queries: each of QUERIES runs once to warm up, then --repeat times; the wall time of
`SearchService.search(account, q, limit=50)` is recorded. Prints p50/p95/p99 per query and over
all runs, the first page's hit count, index and mail-store sizes on disk. `--total` also times
each query with total=True (counting every match, the SQLite index's remembered counts dropped
before each run, and with --cold-scope the service's Spam and Trash ids; --total-repeat runs,
default 3) and prints the match counts.

    .venv/bin/python bench/search.py --messages 100000 --data-dir /tmp/mailyard-bench-100k
    .venv/bin/python bench/search.py --messages 100000 --data-dir /tmp/mailyard-bench-100k \\
        --skip-load --repeat 20 --total

`--notmuch [DIR]` compares with notmuch on the same mailbox (bench/search_notmuch.py: written
as a Maildir and indexed by notmuch on first use): each query's first page and count on both
engines, alternating, a Markdown table per query, and both engines' hit sets compared by
Message-ID (equal where their rules agree; the rules' differences are printed).

    .venv/bin/python bench/search.py --data-dir /tmp/mailyard-bench-100k --skip-load --notmuch

`--engine postgres` keeps the mail store and the index in PostgreSQL (--pg-dsn); `--blobs s3`
stores the loaded messages' blobs in S3: the gateway of MAILYARD_TEST_S3_ENDPOINT/_KEY/_SECRET,
else a private Ceph radosgw (scripts/ceph-rgw-up.sh) stopped at the end of the run, with its
blobs (the queries read no blob, so a later --skip-load run works without them).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import dataclasses
import itertools
import json
import logging
import math
import os
import random
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import search_notmuch as nm  # noqa: E402

from mailyard.app import Runtime  # noqa: E402
from mailyard.config import Config, Store  # noqa: E402
from mailyard.pipeline.inbound import Target  # noqa: E402
from mailyard.store.ports import Account, IndexDocument  # noqa: E402

DOMAIN = "bench.example"
USER = f"me@{DOMAIN}"
USER_NAME = "Morgan Example"
PASSWORD = "bench-password-123"
META = "bench-meta.json"
VOCABULARY = 30_000
ZIPF_S = 1.1
SENDERS = 2_000
DOMAINS = 300
YEARS = 3
CHUNK = 5_000
INDEX_BATCH = 500
LABELS = (("Work", 0.12), ("Receipts", 0.07), ("Travel", 0.05))

_ONSETS = ("b", "c", "d", "f", "g", "h", "j", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w",
           "z", "br", "cr", "dr", "fl", "gr", "pl", "pr", "sh", "st", "th", "tr", "ch", "qu", "")
_VOWELS = ("a", "e", "i", "o", "u", "ai", "ea", "ou", "io", "y")
_CODAS = ("", "", "", "n", "r", "s", "l", "m", "t", "nd", "st", "ck", "x")


# ---------------------------------------------------------------------------------- corpus


def _syllable(rng: random.Random) -> str:
    return rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS)


def make_vocabulary(rng: random.Random, size: int) -> list[str]:
    """`size` distinct synthetic words, ordered by frequency rank: short words first, as in
    natural languages (rank 1 is the most frequent)."""
    seen: set[str] = set()
    words: list[str] = []
    syllables = 1
    while len(words) < size:
        # a growing share of longer words as the short ones run out
        for _ in range(size * 4):
            if len(words) >= size:
                break
            n = syllables + (1 if rng.random() < 0.5 else 0)
            word = "".join(_syllable(rng) for _ in range(n))
            if 2 <= len(word) <= 14 and word.isalpha() and word not in seen:
                seen.add(word)
                words.append(word)
        syllables += 1
    # Mostly by length, with noise so a few long words are frequent and short ones rare.
    keyed = sorted(words, key=lambda w: len(w) + rng.gauss(0, 1.5))
    return keyed


def zipf_cumulative(n: int, s: float) -> list[float]:
    return list(itertools.accumulate(1.0 / (k ** s) for k in range(1, n + 1)))


@dataclasses.dataclass(frozen=True)
class Person:
    name: str
    email: str


@dataclasses.dataclass
class Corpus:
    words: list[str]
    word_cum: list[float]
    people: list[Person]
    people_cum: list[float]
    domains: list[str]
    lists: list[tuple[str, str]]
    """(List-Id, list address) of the mailing lists."""


def make_corpus(seed: int) -> Corpus:
    rng = random.Random(f"mailyard-bench-corpus-{seed}")
    words = make_vocabulary(rng, VOCABULARY)
    tlds = ("com", "com", "com", "org", "net", "io", "de", "co.uk", "fr")
    domains: list[str] = []
    while len(domains) < DOMAINS:
        d = f"{_syllable(rng)}{_syllable(rng)}.{rng.choice(tlds)}"
        if d not in domains and d != DOMAIN:
            domains.append(d)
    first = sorted({(_syllable(rng) + _syllable(rng)).capitalize() for _ in range(400)})
    last = sorted({(_syllable(rng) + _syllable(rng) + _syllable(rng)).capitalize()
                   for _ in range(900)})
    people: list[Person] = []
    emails: set[str] = set()
    domain_cum = zipf_cumulative(len(domains), 1.0)
    while len(people) < SENDERS:
        f, la = rng.choice(first), rng.choice(last)
        domain = rng.choices(domains, cum_weights=domain_cum)[0]
        local = rng.choice((f"{f}.{la}", f"{f[0]}{la}", f"{f}", f"{la}{rng.randint(1, 99)}"))
        email = f"{local.lower()}@{domain}"
        if email not in emails:
            emails.add(email)
            people.append(Person(f"{f} {la}", email))
    lists = []
    for _ in range(12):
        name = words[rng.randint(200, 3000)]
        domain = rng.choice(domains)
        lists.append((f"{name}.lists.{domain}", f"{name}@lists.{domain}"))
    return Corpus(words, zipf_cumulative(len(words), ZIPF_S), people,
                  zipf_cumulative(len(people), 1.0), domains, lists)


@dataclasses.dataclass
class Generated:
    index: int
    raw: bytes
    received_at: int
    target: Target


class Generator:
    """The mailbox's messages in arrival order, as RFC 5322 bytes."""

    def __init__(self, corpus: Corpus, seed: int, count: int, end_ms: int,
                 label_ids: dict[str, str]) -> None:
        self.c = corpus
        self.rng = random.Random(f"mailyard-bench-messages-{seed}")
        self.count = count
        self.end_ms = end_ms
        self.start_ms = end_ms - YEARS * 365 * 86_400_000
        self.label_ids = label_ids
        self.recent: list[tuple[str, str, list[str], Person]] = []
        """(Message-ID, base subject, References, sender) of recent messages, to reply to."""

    def words(self, n: int) -> list[str]:
        return self.rng.choices(self.c.words, cum_weights=self.c.word_cum, k=n)

    def sentence(self, n: int) -> str:
        w = self.words(n)
        return " ".join(w).capitalize() + self.rng.choice((".", ".", ".", "?", "!"))

    def body(self, size: int) -> str:
        paragraphs, length = [], 0
        while length < size:
            para = " ".join(self.sentence(self.rng.randint(4, 18))
                            for _ in range(self.rng.randint(1, 6)))
            paragraphs.append(para)
            length += len(para) + 2
        return "\n\n".join(_wrap(p) for p in paragraphs)

    def person(self) -> Person:
        return self.rng.choices(self.c.people, cum_weights=self.c.people_cum)[0]

    def __iter__(self) -> Iterator[Generated]:
        for i in range(self.count):
            yield self.message(i)

    def message(self, i: int) -> Generated:
        rng = self.rng
        span = self.end_ms - self.start_ms
        received = self.start_ms + int((i + rng.random()) * span / self.count)
        sent_at = received - rng.randint(1_000, 600_000)
        me = Person(USER_NAME, USER)
        outgoing = rng.random() < 0.05
        listed = None if outgoing or rng.random() >= 0.05 else rng.choice(self.c.lists)
        sender = me if outgoing else self.person()
        reply_to = None
        if self.recent and rng.random() < 0.30:
            reply_to = self.recent[-1 - min(int(rng.expovariate(1 / 40)), len(self.recent) - 1)]
        if reply_to:
            base = reply_to[1]
            subject, refs = "Re: " + base, [*reply_to[2][-9:], reply_to[0]]
        else:
            base = " ".join(self.words(rng.randint(2, 8))).capitalize()
            subject, refs = base, []
        to = [me] if not outgoing else [reply_to[3] if reply_to else self.person()]
        cc = [self.person() for _ in range(rng.choice((0, 0, 0, 0, 1, 1, 2, 3)))]
        domain = sender.email.partition("@")[2]
        msgid = f"{rng.getrandbits(64):016x}.{i}@{domain}"
        size = int(min(60_000, max(80, rng.lognormvariate(math.log(1500), 0.8))))
        text = self.body(size)
        if reply_to:
            text += (f"\n\nOn {format_datetime(_dt(sent_at - 3_600_000))}, {reply_to[3].name}"
                     f" wrote:\n> " + self.sentence(12))
        headers = [
            f"From: {_addr(sender)}",
            f"To: {', '.join(_addr(p) for p in to)}",
            *([f"Cc: {', '.join(_addr(p) for p in cc)}"] if cc else []),
            f"Subject: {subject}",
            f"Date: {format_datetime(_dt(sent_at))}",
            f"Message-ID: <{msgid}>",
        ]
        if refs:
            headers += [f"In-Reply-To: <{refs[-1]}>",
                        "References: " + "\r\n ".join(f"<{r}>" for r in refs)]
        if listed:
            headers += [f"List-Id: <{listed[0]}>", f"List-Post: <mailto:{listed[1]}>"]
        headers.append("MIME-Version: 1.0")
        attachment = None
        if rng.random() < 0.10:
            kind = rng.choice(("pdf", "pdf", "pdf", "docx", "xlsx", "png"))
            big = rng.random() < 0.02
            n = rng.randint(1_100_000, 2_500_000) if big else int(rng.lognormvariate(8.3, 0.7))
            stem = rng.choice(("invoice", "report", "scan", "minutes", "budget", "itinerary",
                               "contract", "photo", "statement", self.words(1)[0]))
            attachment = (f"{stem}-{rng.randint(1, 9999)}.{kind}", rng.randbytes(n))
        html = rng.random() < 0.03
        parts = _mime(rng, text, html, attachment)
        raw = ("\r\n".join(headers) + "\r\n" + parts).encode()
        self.recent.append((msgid, base, refs, sender))
        if len(self.recent) > 400:
            del self.recent[:100]
        return Generated(i, raw, received, self.target(rng, received, outgoing))

    def target(self, rng: random.Random, received: int, outgoing: bool) -> Target:
        from_end = self.end_ms - received
        roles: list[str]
        keywords: list[str] = []
        if outgoing:
            roles, keywords = ["sent"], ["$seen"]
        else:
            r = rng.random()
            roles = ["junk"] if r < 0.01 else ["trash"] if r < 0.015 else \
                ["inbox"] if r < 0.215 else []
            if rng.random() < (0.40 if from_end < 30 * 86_400_000 else 0.72):
                keywords.append("$seen")
        if rng.random() < 0.03:
            keywords.append("$flagged")
        labels = [self.label_ids[name] for name, share in LABELS if rng.random() < share]
        return Target(account_id="", mailbox_roles=roles, mailbox_ids=labels, keywords=keywords)


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def _addr(p: Person) -> str:
    return f'"{p.name}" <{p.email}>'


def _wrap(text: str, width: int = 76) -> str:
    lines, line = [], ""
    for word in text.split(" "):
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    lines.append(line)
    return "\r\n".join(lines)


_TYPES = {"pdf": "application/pdf", "png": "image/png",
          "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
          "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"}


def _mime(rng: random.Random, text: str, html: bool,
          attachment: tuple[str, bytes] | None) -> str:
    """Content headers and body (after the message's other headers)."""
    text = text.replace("\r\n", "\n").replace("\n", "\r\n")
    plain = ("Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 7bit\r\n"
             "\r\n" + text + "\r\n")
    body = plain
    if html:
        paras = "".join(f"<p>{p}</p>" for p in text.split("\r\n\r\n"))
        b = f"alt-{rng.getrandbits(48):012x}"
        body = (f"Content-Type: multipart/alternative; boundary=\"{b}\"\r\n\r\n"
                f"--{b}\r\n{plain}--{b}\r\nContent-Type: text/html; charset=utf-8\r\n"
                f"Content-Transfer-Encoding: 7bit\r\n\r\n<html><body>{paras}</body></html>\r\n"
                f"--{b}--\r\n")
    if attachment is None:
        return body
    name, data = attachment
    encoded = base64.encodebytes(data).decode().replace("\n", "\r\n")
    b = f"mix-{rng.getrandbits(48):012x}"
    return (f"Content-Type: multipart/mixed; boundary=\"{b}\"\r\n\r\n--{b}\r\n{body}"
            f"--{b}\r\nContent-Type: {_TYPES[name.rpartition('.')[2]]}; name=\"{name}\"\r\n"
            f"Content-Disposition: attachment; filename=\"{name}\"\r\n"
            f"Content-Transfer-Encoding: base64\r\n\r\n{encoded}--{b}--\r\n")


# ---------------------------------------------------------------------------------- loading


async def open_account(runtime: Runtime) -> Account:
    try:
        return await runtime.store.get_account(USER)
    except Exception:
        return await runtime.accounts.add_user(USER, PASSWORD, quota=1 << 50)


async def load(runtime: Runtime, args: argparse.Namespace, corpus: Corpus,
               meta: dict[str, Any]) -> None:
    account = await open_account(runtime)
    boxes = {b.name: b.id for b in await runtime.store.list_mailboxes(account.id)}
    for name, _ in LABELS:
        if name not in boxes:
            boxes[name] = (await runtime.mailbox.create_mailbox(account, name)).id
    gen = Generator(corpus, args.seed, args.messages, meta["end_ms"],
                    {name: boxes[name] for name, _ in LABELS})
    messages = iter(gen)
    t_gen = t_store = t_index = 0.0
    done = raw_bytes = 0
    started = time.perf_counter()
    while done < args.messages:
        t0 = time.perf_counter()
        chunk = list(itertools.islice(messages, CHUNK))
        t1 = time.perf_counter()
        t_gen += t1 - t0
        documents: list[IndexDocument] = []

        async def ingest_some(pending: Iterator[Generated], documents: list[IndexDocument]
                              ) -> None:
            for m in pending:
                m.target.account_id = account.id
                outcome = await runtime.pipeline.ingest(
                    m.raw, [m.target], delivery_key=f"bench-{args.seed}-{m.index}",
                    received_at=m.received_at)
                documents.extend(outcome.documents)

        pending = iter(chunk)
        await asyncio.gather(*(ingest_some(pending, documents)
                               for _ in range(args.concurrency)))
        t2 = time.perf_counter()
        t_store += t2 - t1
        documents.sort(key=lambda d: d.received_at)
        for start in range(0, len(documents), INDEX_BATCH):
            await runtime.index.index(documents[start:start + INDEX_BATCH])
        t3 = time.perf_counter()
        t_index += t3 - t2
        done += len(chunk)
        raw_bytes += sum(len(m.raw) for m in chunk)
        elapsed = time.perf_counter() - started
        print(f"  {done:>8} loaded  this chunk: store {len(chunk) / (t2 - t1):5.0f} msg/s,"
              f" index {len(chunk) / (t3 - t2):5.0f} doc/s;  so far: store"
              f" {done / t_store:5.0f} msg/s, index {done / t_index:5.0f} doc/s;"
              f"  elapsed {elapsed:6.0f} s", flush=True)
        # Kept after every chunk, so an interrupted load still says how far it got.
        meta.update(loaded=done, raw_bytes=raw_bytes, generate_s=t_gen, store_s=t_store,
                    index_s=t_index, total_s=elapsed, concurrency=args.concurrency,
                    complete=done >= args.messages)
        meta.setdefault("chunks", []).append([done, round(t2 - t1, 2), round(t3 - t2, 2)])
        (Path(args.data_dir) / META).write_text(json.dumps(meta, indent=1))


# ---------------------------------------------------------------------------------- queries


@dataclasses.dataclass(frozen=True)
class BenchQuery:
    label: str
    """What the query stands for."""
    text: str
    """Mailyard's query (Gmail's language)."""
    notmuch: str | None
    """The same question in notmuch's language; None: notmuch cannot ask it."""
    rules: str = ""
    """Where the two engines' rules differ for this query ("": they agree, so the hit sets
    must be equal)."""
    number: int = 0
    """Its place among the 20 (1-based), as --only names it."""


_WORDS = ("Mailyard words also match Cc/Bcc names, List-Id and attachment names; notmuch"
          " words also match To/Cc addresses split at dots")


def queries(corpus: Corpus, end_ms: int, now: datetime | None = None) -> list[BenchQuery]:
    """The 20 queries: words picked by frequency rank. notmuch's words are capitalised: Xapian
    then looks the word up as written instead of its English stem (Mailyard does not stem)."""
    w = corpus.words
    frequent = corpus.people[0].email
    rare = corpus.people[1900].email
    now = now or datetime.now(UTC)
    before_day = (_dt(end_ms) - timedelta(days=730)).date()
    before = before_day.strftime("%Y/%m/%d")
    midnight = int(datetime.combine(before_day, datetime.min.time(), UTC).timestamp())
    year_ago = int((now - timedelta(days=365)).timestamp())
    month_ago = int((now - timedelta(days=30)).timestamp())
    dates = "Mailyard dates are arrival times; notmuch's the Date header (a few minutes earlier)"

    def c(word: str) -> str:
        return word.capitalize()

    return [dataclasses.replace(bq, number=n) for n, bq in enumerate([
        BenchQuery("rare word (rank 25000)", w[24999], c(w[24999]), _WORDS),
        BenchQuery("common word (rank 3)", w[2], c(w[2]), _WORDS),
        BenchQuery("phrase of two common words", f'"{w[1]} {w[3]}"', f'"{w[1]} {w[3]}"',
                   _WORDS),
        BenchQuery("from: frequent sender + word", f"from:{frequent} {w[199]}",
                   f"from:{frequent} and {c(w[199])}", _WORDS),
        BenchQuery("has:attachment before:", f"has:attachment before:{before}",
                   f"tag:attachment and date:..@{midnight - 1}", dates),
        BenchQuery("label:work is:unread", "label:work is:unread", "tag:work and tag:unread"),
        BenchQuery("OR-group {a b c}", f"{{{w[999]} {w[1499]} {w[1999]}}}",
                   f"({c(w[999])} or {c(w[1499])} or {c(w[1999])})", _WORDS),
        BenchQuery("a OR b", f"{w[499]} OR {w[799]}", f"{c(w[499])} or {c(w[799])}", _WORDS),
        BenchQuery("negation word -other", f"{w[99]} -{w[49]}",
                   f"{c(w[99])} and not {c(w[49])}", _WORDS),
        BenchQuery("subject:word", f"subject:{w[299]}", f"subject:{c(w[299])}"),
        BenchQuery("filename:pdf", "filename:pdf", "attachment:pdf"),
        BenchQuery("larger:1M", "larger:1M", None),
        BenchQuery("is:starred", "is:starred", "tag:flagged"),
        BenchQuery("older_than:1y + word", f"older_than:1y {w[399]}",
                   f"date:..@{year_ago} and {c(w[399])}", f"{dates}; {_WORDS}"),
        BenchQuery("in:inbox", "in:inbox", "tag:inbox"),
        BenchQuery("from: rare sender", f"from:{rare}", f"from:{rare}"),
        BenchQuery("matches nothing", "qzxjvwk", "Qzxjvwk"),
        BenchQuery("newer_than:30d", "newer_than:30d", f"date:@{month_ago}..", dates),
        BenchQuery("-is:read label:receipts", "-is:read label:receipts",
                   "tag:unread and tag:receipts"),
        BenchQuery("two rare words", f"{w[14999]} {w[15999]}", f"{c(w[14999])} and {c(w[15999])}",
                   _WORDS),
    ], 1)]


def pct(values: list[float], p: float) -> float:
    """Percentile by linear interpolation between closest ranks."""
    s = sorted(values)
    if len(s) == 1:
        return s[0]
    k = (len(s) - 1) * p / 100
    lo = math.floor(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


async def run_queries(runtime: Runtime, account: Account, qs: list[BenchQuery],
                      repeat: int, total: bool, now: datetime) -> list[float]:
    everything: list[float] = []
    print(f"\n{'query':<62} {'hits':>5} {'total' if total else '':>7} {'p50':>8} {'p95':>8}"
          f" {'p99':>8}  ms")
    for bq in qs:
        hits = await runtime.search.search(account, bq.text, limit=50, total=total, now=now)
        times = []
        for _ in range(repeat):
            if total:
                forget(runtime)  # a first count, not the warm-up's remembered one
            t0 = time.perf_counter()
            hits = await runtime.search.search(account, bq.text, limit=50, total=total,
                                               now=now)
            times.append((time.perf_counter() - t0) * 1000)
        everything += times
        shown = f"{bq.label}: {bq.text}"
        if len(shown) > 62:
            shown = shown[:59] + "..."
        count = f"{hits.total}" if total else ""
        print(f"{shown:<62} {len(hits.ids):>5} {count:>7} {pct(times, 50):8.1f}"
              f" {pct(times, 95):8.1f} {pct(times, 99):8.1f}", flush=True)
    print(f"{'ALL QUERIES (' + str(len(everything)) + ' runs)':<62} {'':>5} {'':>7}"
          f" {pct(everything, 50):8.1f} {pct(everything, 95):8.1f} {pct(everything, 99):8.1f}")
    return everything


# ---------------------------------------------------------------------------------- notmuch


def maildir_messages(corpus: Corpus, meta: dict[str, Any]) -> Iterator[nm.MaildirMessage]:
    """The loaded mailbox again, from the same seed: the Generator is deterministic, so these
    are the bytes, flags and labels the load delivered."""
    names = {name: name.lower() for name, _ in LABELS}
    gen = Generator(corpus, meta["seed"], meta["messages"], meta["end_ms"], names)
    for m in itertools.islice(gen, meta["loaded"]):
        t = m.target
        yield nm.MaildirMessage(m.index, m.raw, t.mailbox_roles[0] if t.mailbox_roles else None,
                                "$seen" in t.keywords, "$flagged" in t.keywords,
                                tuple(t.mailbox_ids))


def build_notmuch(home: Path, corpus: Corpus, meta: dict[str, Any]) -> None:
    """Write the Maildir and index it with notmuch, once per --notmuch directory."""
    mail = home / "mail"
    mail.mkdir(parents=True, exist_ok=True)
    nm.configure(home, mail)
    print(f"writing {meta['loaded']} messages as a Maildir under {mail} ...", flush=True)
    t0 = time.perf_counter()
    lines = nm.write_maildir(mail, maildir_messages(corpus, meta))
    written = time.perf_counter() - t0
    print(f"  written in {written:.0f} s; notmuch new + tag ...", flush=True)
    times = nm.index(home, lines)
    size = nm.index_size(mail)
    info = {"messages": meta["loaded"], "write_s": written, **times, "index_bytes": size}
    (home / "bench-notmuch.json").write_text(json.dumps(info, indent=1))
    print(f"  notmuch new {times['new_s']:.0f} s ({meta['loaded'] / times['new_s']:.0f} msg/s),"
          f" tags {times['tag_s']:.0f} s; its database {mib(size)}", flush=True)


async def message_ids(runtime: Runtime, account: Account) -> dict[str, str]:
    """Mailyard email id -> Message-ID, for comparing hit sets with notmuch's."""
    out: dict[str, str] = {}
    after = ""
    while ids := await runtime.store.email_ids(account.id, after=after, limit=1000):
        after = ids[-1]
        for r in await runtime.store.get_emails(account.id, ids, brief=True):
            out[r.id] = (r.message_id or "").strip("<>")
    return out


@dataclasses.dataclass
class Versus:
    """One query's figures for both engines (ms)."""

    bq: BenchQuery
    mine: list[float]
    theirs: list[float]
    mine_count: list[float]
    theirs_count: list[float]
    mine_total: int
    theirs_total: int
    agreement: str = ""
    mine_again: list[float] = dataclasses.field(default_factory=list)
    """The count asked again at once: the index's remembered answers (see forget)."""


COLD_SCOPE = False
"""--cold-scope: forget also drops the search service's Spam and Trash email ids."""


def forget(runtime: Runtime) -> None:
    """Drop the SQLite index's remembered counts, so a timed count is a first count (as after
    any write to the account's documents), not a repeat of the warm-up's. The search
    service's Spam and Trash email ids and the ones of them each metadata query matches
    (kept for the state of those mailboxes, which a delivery to the Inbox does not change)
    are dropped too with --cold-scope: a first count after Spam or Trash changed. The
    index's read times of earlier counts (SqliteSearchIndex.costs, which only say whether a
    count is long) are kept, as a write keeps them."""
    index = runtime.search.index
    answers = getattr(index, "answers", None)
    if answers is not None:
        index.answers = type(answers)()  # type: ignore[attr-defined]
    if COLD_SCOPE:
        runtime.search.held.clear()
        runtime.search.hidden_matches.clear()


async def run_versus(runtime: Runtime, account: Account, notmuch: nm.Notmuch,
                     qs: list[BenchQuery], repeat: int, now: datetime) -> list[Versus]:
    """Each query's first page of 50 and its count on both engines, alternating run by run
    (Mailyard, notmuch, Mailyard, ...), so both see the same machine load."""
    out = []
    search = runtime.search.search
    for bq in qs:
        mine_total = (await search(account, bq.text, limit=0, total=True, now=now)).total or 0
        await search(account, bq.text, limit=50, now=now)
        theirs_total = notmuch.count(bq.notmuch) if bq.notmuch else 0
        if bq.notmuch:
            notmuch.search(bq.notmuch)
        v = Versus(bq, [], [], [], [], mine_total, theirs_total)
        for _ in range(repeat):
            t0 = time.perf_counter()
            await search(account, bq.text, limit=50, now=now)
            t1 = time.perf_counter()
            if bq.notmuch:
                notmuch.search(bq.notmuch)
            forget(runtime)
            t2 = time.perf_counter()
            await search(account, bq.text, limit=0, total=True, now=now)
            t3 = time.perf_counter()
            if bq.notmuch:
                notmuch.count(bq.notmuch)
            t4 = time.perf_counter()
            await search(account, bq.text, limit=0, total=True, now=now)
            t5 = time.perf_counter()
            v.mine.append((t1 - t0) * 1000)
            v.mine_count.append((t3 - t2) * 1000)
            v.mine_again.append((t5 - t4) * 1000)
            if bq.notmuch:
                v.theirs.append((t2 - t1) * 1000)
                v.theirs_count.append((t4 - t3) * 1000)
        print(f"  {bq.label}: Mailyard {pct(v.mine, 50):.1f} ms, notmuch"
              f" {pct(v.theirs, 50) if v.theirs else float('nan'):.1f} ms", flush=True)
        out.append(v)
    return out


async def check_agreement(runtime: Runtime, account: Account, notmuch: nm.Notmuch,
                          rows: list[Versus], now: datetime) -> None:
    """Both engines' whole hit sets, by Message-ID: equal where the rules agree, and how far
    apart where they differ. Also checks that Mailyard's count is the length of its list."""
    ids = await message_ids(runtime, account)
    for v in rows:
        hits = await runtime.search.search(account, v.bq.text, limit=None, now=now)
        if len(hits.ids) != v.mine_total:
            raise SystemExit(f"{v.bq.text}: count {v.mine_total} but {len(hits.ids)} listed")
        if v.bq.notmuch is None:
            v.agreement = "n/a"
            continue
        mine = {ids[e] for e in hits.ids}
        theirs = set(notmuch.search(v.bq.notmuch, limit=None))
        if len(theirs) != v.theirs_total:
            raise SystemExit(f"notmuch {v.bq.notmuch}: count {v.theirs_total} but"
                             f" {len(theirs)} listed")
        if mine == theirs:
            v.agreement = "same"
        else:
            v.agreement = f"+{len(mine - theirs)} / -{len(theirs - mine)}"
            if not v.bq.rules:
                print(f"  DISAGREE where the rules agree: {v.bq.text!r} vs {v.bq.notmuch!r}:"
                      f" only Mailyard {sorted(mine - theirs)[:5]}, only notmuch"
                      f" {sorted(theirs - mine)[:5]}", flush=True)


def print_versus(rows: list[Versus]) -> None:
    """The per-query table (Markdown, as docs/BENCHMARKS.md keeps it)."""
    def f(values: list[float], p: float) -> str:
        return f"{pct(values, p):.1f}" if values else "-"

    def ratio(a: list[float], b: list[float]) -> str:
        return f"{pct(a, 50) / pct(b, 50):.2f}" if a and b and pct(b, 50) > 0 else "-"

    print("\n| # | query | Mailyard page p50 / p99 | notmuch page p50 / p99 | page ratio"
          " | Mailyard count p50 / p99 | notmuch count p50 / p99 | count ratio"
          " | Mailyard count again p50 / p99"
          " | matches Mailyard / notmuch | hit sets (+only Mailyard / -only notmuch) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for v in rows:
        print(f"| {v.bq.number} | `{v.bq.text}` | {f(v.mine, 50)} / {f(v.mine, 99)}"
              f" | {f(v.theirs, 50)} / {f(v.theirs, 99)} | {ratio(v.mine, v.theirs)}"
              f" | {f(v.mine_count, 50)} / {f(v.mine_count, 99)}"
              f" | {f(v.theirs_count, 50)} / {f(v.theirs_count, 99)}"
              f" | {ratio(v.mine_count, v.theirs_count)}"
              f" | {f(v.mine_again, 50)} / {f(v.mine_again, 99)}"
              f" | {v.mine_total:,} / {v.theirs_total:,} | {v.agreement} |")
    compared = [v for v in rows if v.theirs]
    mine = [t for v in compared for t in v.mine]
    theirs = [t for v in compared for t in v.theirs]
    mine_c = [t for v in rows for t in v.mine_count]
    theirs_c = [t for v in compared for t in v.theirs_count]
    again = [t for v in rows for t in v.mine_again]
    print(f"| | all runs (pages: the {len(compared)} queries notmuch can ask; Mailyard's counts:"
          f" all {len(rows)}) | {f(mine, 50)} / {f(mine, 99)} | {f(theirs, 50)} / {f(theirs, 99)}"
          f" | {ratio(mine, theirs)} | {f(mine_c, 50)} / {f(mine_c, 99)}"
          f" | {f(theirs_c, 50)} / {f(theirs_c, 99)} | {ratio(mine_c, theirs_c)}"
          f" | {f(again, 50)} / {f(again, 99)} | | |")
    print("\nWhere the rules differ:")
    for v in rows:
        if v.bq.notmuch is None:
            print(f"  {v.bq.number}. `{v.bq.text}`: notmuch has no such search")
        elif v.bq.rules:
            print(f"  {v.bq.number}. `{v.bq.text}` / `{v.bq.notmuch}`: {v.bq.rules}")
    print(f"Load averages at the end: {os.getloadavg()}")


def size_of(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def tree_size(path: Path) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            total += size_of(Path(root) / f)
    return total


def mib(n: float) -> str:
    return f"{n / 2**20:,.1f} MiB"


def report_sizes(data: Path, meta: dict[str, Any]) -> None:
    index = size_of(data / "search.db") + size_of(data / "search.db-wal")
    mail = size_of(data / "mail.db") + size_of(data / "mail.db-wal")
    blobs = tree_size(data / "blobs")
    n = meta.get("loaded") or 1
    print(f"\nindex on disk (search.db + -wal): {mib(index)}  ({index / n:,.0f} B/message;"
          f" search.db {mib(size_of(data / 'search.db'))}, -wal"
          f" {mib(size_of(data / 'search.db-wal'))})")
    print(f"mail store (mail.db + -wal): {mib(mail)}  ({mail / n:,.0f} B/message)")
    print(f"blobs: {mib(blobs)}; raw messages generated: {mib(meta.get('raw_bytes', 0))}")
    if "store_s" in meta:
        print(f"load of {meta['loaded']} messages (concurrency {meta['concurrency']}):"
              f" generate {meta['generate_s']:.0f} s, store ingest {meta['store_s']:.0f} s"
              f" = {meta['loaded'] / meta['store_s']:.0f} msg/s, indexing {meta['index_s']:.0f} s"
              f" = {meta['loaded'] / meta['index_s']:.0f} doc/s, total"
              f" {meta['total_s']:.0f} s ({meta['loaded'] / meta['total_s']:.0f} msg/s end to"
              f" end)")


async def ensure_database(dsn: str) -> None:
    """Create the database `dsn` names when the server lacks it (a load starts empty)."""
    from urllib.parse import urlsplit, urlunsplit

    import asyncpg

    parts = urlsplit(dsn)
    name = parts.path.lstrip("/")
    conn = await asyncpg.connect(urlunsplit(parts._replace(path="/postgres")))
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def report_pg_sizes(dsn: str, meta: dict[str, Any]) -> None:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        index = await conn.fetchval("SELECT pg_total_relation_size('search_docs')")
        parts = await conn.fetch(
            "SELECT c.relname, pg_relation_size(c.oid) FROM pg_index i"
            " JOIN pg_class c ON c.oid = i.indexrelid"
            " WHERE i.indrelid = 'search_docs'::regclass ORDER BY 2 DESC")
        database = await conn.fetchval("SELECT pg_database_size(current_database())")
        analysed = await conn.fetchval(
            "SELECT greatest(last_analyze, last_autoanalyze) IS NOT NULL FROM pg_stat_user_tables"
            " WHERE relname = 'search_docs'")
    finally:
        await conn.close()
    n = meta.get("loaded") or 1
    print(f"\nsearch_docs (table, TOAST, indexes): {mib(index)} ({index / n:,.0f} B/message;"
          f" {', '.join(f'{name} {mib(size)}' for name, size in parts)})")
    print(f"whole database: {mib(database)}; search_docs analysed (statistics for the"
          f" planner): {analysed}")
    if "store_s" in meta:
        print(f"load of {meta['loaded']} messages (concurrency {meta['concurrency']}):"
              f" store ingest {meta['store_s']:.0f} s = {meta['loaded'] / meta['store_s']:.0f}"
              f" msg/s, indexing {meta['index_s']:.0f} s"
              f" = {meta['loaded'] / meta['index_s']:.0f} doc/s")


async def s3_store(store: Store) -> Store:
    """`store` with its blobs under a fresh prefix of the test harness's S3 gateway (started
    now, and stopped at exit, when MAILYARD_TEST_S3_ENDPOINT names none)."""
    from tests import s3

    gateway = s3.gateway()
    await s3.warm_up()
    return dataclasses.replace(
        store, blobs=gateway.url(f"bench-search-{s3.new_prefix()}"),
        s3=dataclasses.replace(store.s3, endpoint=gateway.endpoint,
                               access_key=gateway.access_key, secret_key=gateway.secret_key))


SUBSTRINGS: list[tuple[str | None, str]] = [
    ("body", "fyn"), ("body", "fi cel"), ("body", "zendproul"), ("body", ".pdf"),
    (None, "procktexros@brackstex"), ("subject", "Re: fes"), ("addresses", "graisbe.net"),
    (None, "graisbe.net"), (None, "application/pdf"), ("subject", "fyn"), (None, "fi cel"),
    ("body", "the quick brown fox jumps"), ("body", "Fyn fi"), (None, "o xa"),
]
"""IMAP SEARCH substrings (`SqliteSearchIndex.substring`: BODY, SUBJECT, FROM/TO/CC/BCC,
TEXT) of the seed-1 mailbox: common and rare body needles, a sender's address and domain, an
attachment type, a needle found nowhere."""


async def run_substrings(data: Path, repeat: int) -> None:
    """--substrings: each needle once to warm up, then `repeat` times; median and min ms,
    hit count and a digest of the hit set (to compare two builds' answers)."""
    import hashlib
    import sqlite3

    from mailyard.store.sqlite.search import SqliteSearchIndex

    with sqlite3.connect(data / "search.db") as conn:
        account_id = conn.execute("SELECT account_id FROM doc_ids LIMIT 1").fetchone()[0]
    conn.close()
    index = SqliteSearchIndex(data / "search.db")

    async def go() -> None:
        print(f"substrings: {repeat} runs each after one warm-up; load averages"
              f" {os.getloadavg()}")
        print(f"{'field':<10} {'needle':<28} {'hits':>7} {'p50 ms':>8} {'min ms':>8}  digest")
        everything: list[float] = []
        for field, needle in SUBSTRINGS:
            found = await index.substring(account_id, field, needle)
            times = []
            for _ in range(repeat):
                t0 = time.perf_counter()
                found = await index.substring(account_id, field, needle)
                times.append((time.perf_counter() - t0) * 1000)
            everything += times
            digest = hashlib.blake2b("\0".join(sorted(found or ())).encode(),
                                     digest_size=6).hexdigest()
            print(f"{field or 'any':<10} {needle:<28} {len(found or ()):>7}"
                  f" {pct(times, 50):>8.1f} {min(times):>8.1f}  {digest}", flush=True)
        print(f"{'all':<10} {'':<28} {'':>7} {pct(everything, 50):>8.1f}"
              f" {min(everything):>8.1f}   p99 {pct(everything, 99):.1f}; load averages"
              f" {os.getloadavg()}")

    try:
        await go()
    finally:
        index.close()


async def main_async(args: argparse.Namespace) -> None:
    global COLD_SCOPE
    COLD_SCOPE = args.cold_scope
    data = Path(args.data_dir)
    meta_path = data / META
    meta: dict[str, Any] = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    if args.skip_load:
        if not meta.get("loaded"):
            raise SystemExit(f"{data} holds no loaded mailbox ({META} missing); run without"
                             " --skip-load first")
        if not meta.get("complete", True):
            print(f"note: the load into {data} was interrupted after {meta['loaded']} of"
                  f" {meta['messages']} messages (the newest months are missing)",
                  file=sys.stderr)
        if meta["messages"] != args.messages or meta["seed"] != args.seed:
            print(f"note: {data} holds {meta['messages']} messages of seed {meta['seed']};"
                  " using those", file=sys.stderr)
            args.messages, args.seed = meta["messages"], meta["seed"]
    elif meta.get("loaded"):
        raise SystemExit(f"{data} already holds a loaded mailbox; use --skip-load or another"
                         " --data-dir")
    if args.substrings:
        if not meta.get("loaded"):
            raise SystemExit(f"{data} holds no loaded mailbox")
        await run_substrings(data, args.repeat)
        return
    t0 = time.perf_counter()
    corpus = make_corpus(args.seed)
    print(f"corpus: {len(corpus.words)} words, {len(corpus.people)} senders,"
          f" {len(corpus.domains)} domains ({time.perf_counter() - t0:.1f} s)", flush=True)
    config = dataclasses.replace(Config(), data_dir=data, domains=(DOMAIN,))
    if args.engine != "sqlite":
        # postgres: the mail store and the search index in one PostgreSQL database (blobs
        # stay files: no query reads them); postgres-search: only the search index there.
        await ensure_database(args.pg_dsn)
        config = dataclasses.replace(config, store=dataclasses.replace(
            config.store, metadata=args.pg_dsn if args.engine == "postgres" else "",
            search=args.pg_dsn))
    if args.blobs == "s3":
        config = dataclasses.replace(config, store=await s3_store(config.store))
    runtime = Runtime.open(config)
    try:
        if not args.skip_load:
            end = datetime.now(UTC).replace(second=0, microsecond=0)
            meta = {"messages": args.messages, "seed": args.seed,
                    "end_ms": int(end.timestamp() * 1000), "engine": args.engine,
                    "blobs": args.blobs}
            print(f"loading {args.messages} messages into {data} ...", flush=True)
            await load(runtime, args, corpus, meta)
        account = await open_account(runtime)
        now = datetime.now(UTC)
        qs = queries(corpus, meta["end_ms"], now)
        if args.only:
            qs = [qs[i - 1] for i in args.only]
        if args.notmuch is not None:
            home = Path(args.notmuch or data / "notmuch")
            if not (home / "bench-notmuch.json").exists():
                build_notmuch(home, corpus, meta)
            notmuch = nm.Notmuch(home)
            try:
                print(f"\n{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {meta['loaded']} messages,"
                      f" load averages {os.getloadavg()}; {args.repeat} alternating runs of each"
                      " query after one warm-up", flush=True)
                rows = await run_versus(runtime, account, notmuch, qs, args.repeat, now)
                await check_agreement(runtime, account, notmuch, rows, now)
            finally:
                notmuch.close()
            print_versus(rows)
        else:
            print(f"\nqueries: {args.repeat} runs each after one warm-up; limit=50 (first page)")
            await run_queries(runtime, account, qs, args.repeat, False, now)
        if args.total:
            print("\nwith total=True (every match counted):")
            await run_queries(runtime, account, qs, args.total_repeat, True, now)
        if args.engine != "sqlite":
            await report_pg_sizes(args.pg_dsn, meta)
        if args.engine != "postgres":
            report_sizes(data, meta)
        if args.blobs == "s3" and not args.skip_load:
            print(f"blobs in S3: {mib(await runtime.blobs.usage())}")
    finally:
        runtime.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--data-dir", default="/tmp/mailyard-bench-100k",
                        help="kept after the run; --skip-load reuses it")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=20, help="timed runs of each query")
    parser.add_argument("--concurrency", type=int, default=8, help="concurrent ingest tasks")
    parser.add_argument("--skip-load", action="store_true",
                        help="only run the queries on the mailbox already in --data-dir")
    parser.add_argument("--total", action="store_true",
                        help="also time every query with total=True (count every match)")
    parser.add_argument("--cold-scope", action="store_true",
                        help="with --total: also forget the Spam and Trash ids the search"
                             " service keeps, before each timed count")
    parser.add_argument("--total-repeat", type=int, default=3,
                        help="timed runs of each query with --total (they can take seconds)")
    parser.add_argument("--engine", choices=["sqlite", "postgres", "postgres-search"],
                        default="sqlite",
                        help="postgres: mail store and search index in PostgreSQL (--pg-dsn);"
                             " postgres-search: only the search index there")
    parser.add_argument("--pg-dsn", default="postgresql://postgres@127.0.0.1:5432/mailyard_bench",
                        help="the database of --engine postgres (created when missing)")
    parser.add_argument("--blobs", choices=["files", "s3"], default="files",
                        help="where the load stores the messages' blobs: files in --data-dir or"
                             " S3 (a private Ceph radosgw unless MAILYARD_TEST_S3_ENDPOINT"
                             " names one)")
    parser.add_argument("--notmuch", nargs="?", const="", default=None, metavar="DIR",
                        help="compare with notmuch: the same mailbox as a Maildir indexed by"
                             " notmuch in DIR (default DATA_DIR/notmuch; written and indexed"
                             " on first use), each query's first page and count on both,"
                             " alternating, and their hit sets compared")
    parser.add_argument("--substrings", action="store_true",
                        help="time only IMAP SEARCH's substrings (SUBSTRINGS) on the loaded"
                             " mailbox's SQLite index, --repeat runs each")
    parser.add_argument("--only", type=int, nargs="*",
                        help="run only these queries (1-based numbers, as printed)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    try:
        import uvloop
    except ImportError:
        asyncio.run(main_async(args))
    else:
        uvloop.run(main_async(args))


if __name__ == "__main__":
    main()
