"""Spam scoring maths: tokens of a message and a trainable classifier over them. Pure, no I/O.

The classifier is Gary Robinson's: each token's spam probability from its counts in spam and ham,
smoothed towards 0.5 while the evidence is thin (f(w) = (s·x + n·p(w)) / (s + n)), and the
most telling tokens combined with Fisher's inverse chi-square method into a spam and a ham
indication (as SpamBayes does). Unlike a plain naive Bayes product it says "unsure" (near 0.5)
when both indications are strong, instead of swinging to an extreme on a mixed message.

Tokens are hashed to signed 64-bit integers (BLAKE2b), so a model stores fixed-size keys and
a message's whole token set is looked up in one query. A user's model and the global one are
combined by adding the user's counts, weighted, to the global counts, so a user's corrections
dominate where they have spoken and the global model answers everywhere else.

Work per message is bounded: header values, body text and HTML are cut before tokenizing, and
at most `MAX_TOKENS` distinct tokens are kept, so a 35 MB mail classifies as fast as a short one.
"""

from __future__ import annotations

import functools
import hashlib
import math
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from mailyard.core.mime import (
    ParsedMessage,
    decode_body,
    decode_bytes,
    header_text,
    iter_parts,
)

GTUBE = b"XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
"""The Generic Test for Unsolicited Bulk Email: always spam, so the path can be checked."""

_GTUBE_TEXT = GTUBE.decode("ascii")
MAX_TOKENS = 2000
MAX_TEXT = 20_000
"""Characters of body text tokenized; spam says what it has to say early."""
MAX_HTML = 200_000
MAX_HEAD = 32_768
MAX_HEADER_VALUE = 1000

# Headers the receiving systems add (and the SpamAssassin corpus' collectors added): they say
# where a message was delivered, not what it is, and would teach the model the test setup.
_TRACE_HEADERS = frozenset({
    "received", "delivered-to", "return-path", "x-original-to", "envelope-to",
    "x-envelope-from", "x-envelope-to", "authentication-results", "arc-seal",
    "arc-message-signature", "arc-authentication-results", "received-spf", "x-spam-status",
    "x-spam-score", "x-spam-flag", "x-spam-level", "x-spam-checker-version", "x-spam-report",
    "x-virus-scanned", "status", "x-status", "x-keywords", "x-uid", "content-length", "lines",
})

_URL = re.compile(r"""(?:https?|ftp)://[^\s<>"'()]{1,500}|www\.[^\s<>"'()]{1,500}""", re.I)
_HEADER_LINE = re.compile(rb"^([!-9;-~]+)[ \t]*:(.*(?:\r?\n[ \t].*)*)", re.M)
_IP_HOST = re.compile(r"^\d{1,3}(?:\.\d{1,3}){3}$|^\[?[0-9a-f:]+\]?$", re.I)
_ANCHOR_OPEN = re.compile(r"<a\b([^<>]*)>", re.I)
_ANCHOR_CLOSE = re.compile(r"</a\s*>", re.I)
_HREF = re.compile(r"""\bhref\s*=\s*["']?([^"'\s<>]+)""", re.I)
MAX_LINKS = 200
_TAG = re.compile(r"<[^<>]*>")


# --------------------------------------------------------------------------------------------
# Message view shared by the tokenizer and the rules


@dataclass(slots=True)
class Content:
    """What the tokenizer and the rules read of a message, decoded once, all of it bounded."""

    headers: list[tuple[str, str]]
    text: str
    html: str
    urls: list[str]
    links: list[tuple[str, str]]  # (href, visible text) of HTML anchors
    content_types: list[str]
    charsets: list[str]
    filenames: list[str]
    gtube: bool

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None


def _headers(head: bytes) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for m in _HEADER_LINE.finditer(head[:MAX_HEAD]):
        name = m.group(1).decode("ascii", "replace").lower()
        value = b" ".join(m.group(2)[: MAX_HEADER_VALUE * 2].split())
        text = header_text(value)[:MAX_HEADER_VALUE]
        found.append((name, text))
    return found


def content(raw: bytes, parsed: ParsedMessage) -> Content:
    """Headers, text, HTML source, links and part facts of an already parsed message."""
    html_chunks: list[str] = []
    html_size = 0
    content_types: list[str] = []
    charsets: list[str] = []
    filenames: list[str] = []
    for _section, part in iter_parts(parsed.root):
        content_types.append(part.content_type)
        if charset := part.params.get("charset"):
            charsets.append(charset.lower()[:40])
        if part.filename:
            filenames.append(part.filename[:200])
        if part.content_type == "text/html" and html_size < MAX_HTML and not part.filename:
            data = raw[part.body_start : min(part.body_end, part.body_start + MAX_HTML * 2)]
            chunk = decode_bytes(decode_body(data, part.encoding)[:MAX_HTML],
                                 part.params.get("charset"))
            html_chunks.append(chunk)
            html_size += len(chunk)
        if len(content_types) > 200:
            break
    html = "\n".join(html_chunks)[:MAX_HTML]
    text = parsed.text[:MAX_TEXT]
    links = [(href, _TAG.sub(" ", inner)[:300]) for href, inner in _anchors(html)]
    urls = [href for href, _ in links if href.lower().startswith(("http", "www", "ftp"))]
    urls = list(dict.fromkeys(urls + _urls(text)))
    return Content(
        headers=_headers(raw[: parsed.root.body_start]), text=text, html=html, urls=urls[:200],
        links=links, content_types=content_types, charsets=charsets, filenames=filenames,
        gtube=GTUBE in raw or _GTUBE_TEXT in parsed.text,
    )


def _anchors(html: str) -> list[tuple[str, str]]:
    """(href, inner markup) of the first MAX_LINKS closed anchors, in one pass: a single
    regex with a lazy `(.*?)</a>` rescans the rest of the text from every `<a` that is never
    closed, which is quadratic (seconds on 50 KB of `<a href=x>`)."""
    closers = [(m.start(), m.end()) for m in _ANCHOR_CLOSE.finditer(html)]
    found: list[tuple[str, str]] = []
    taken = 0  # where the last anchor's closer ends: anchors inside it are its text
    at = 0     # the first closer not yet passed
    for m in _ANCHOR_OPEN.finditer(html):
        if m.start() < taken:
            continue
        href = _HREF.search(m.group(1))
        if href is None:
            continue
        while at < len(closers) and closers[at][0] < m.end():
            at += 1
        if at == len(closers):
            break
        start, end = closers[at]
        found.append((href.group(1), html[m.end() : start]))
        taken = end
        if len(found) >= MAX_LINKS:
            break
    return found


# --------------------------------------------------------------------------------------------
# Tokenizer


@functools.lru_cache(maxsize=4096)
def url_host(url: str) -> str:
    """The host of a URL as a browser would go to it ("www.x" without a scheme too)."""
    if not re.match(r"^[a-z][a-z0-9+.-]*://", url, re.I):
        url = "http://" + url
    try:
        host = urlsplit(url).hostname or ""
    except ValueError:
        return ""
    return host.rstrip(".").lower()


def site(host: str) -> str:
    """The last two labels: a cheap stand-in for the registrable domain."""
    labels = host.split(".")
    return ".".join(labels[-2:]) if not _IP_HOST.match(host) else host


_STRIP = ".,;:!?\"'()[]{}<>*`=+#|/\\~^_&"


def _words(text: str, prefix: str) -> Iterator[str]:
    """Whitespace-separated words with their outer punctuation stripped (SpamBayes' choice:
    "free!!" and "free" are worth telling apart less than the split is worth being fast).
    The split and the de-duplication run in C; the loop sees each distinct word once."""
    for raw_word in dict.fromkeys(text.lower().split()):
        word = raw_word.strip(_STRIP)
        n = len(word)
        if n < 3:
            continue
        if n > 14:
            # Long strings (encoded junk, hashes) say little by themselves; their shape does.
            yield f"{prefix}skip:{word[0]}{n // 10 * 10}"
        elif word.isdigit():
            yield f"{prefix}num:{n}"
        else:
            yield prefix + word


def _urls(text: str) -> list[str]:
    """URLs in plain text; the regex runs only over the lines that can hold one."""
    if "://" not in text and "www." not in text:
        return []
    lines = [line for line in text.splitlines() if "://" in line or "www." in line]
    return _URL.findall("\n".join(lines))[:300]


def _address_tokens(name: str, value: str) -> Iterator[str]:
    for m in re.finditer(r"[\w.+%'-]+@([\w-]+(?:\.[\w-]+)+)", value):
        address = m.group().lower()
        yield f"{name}:addr:{address}"
        yield f"{name}:dom:{m.group(1).lower()}"
    display = re.sub(r"<[^>]*>|[\w.+%'-]+@[\w.-]+", " ", value)
    yield from _words(display, f"{name}:name:")


def tokens(c: Content) -> list[str]:
    """Distinct tokens of a message, at most `MAX_TOKENS`, header tokens first."""
    seen: dict[str, None] = {}

    def add(items: Iterable[str]) -> None:
        for t in items:
            if len(seen) >= MAX_TOKENS:
                return
            seen.setdefault(t, None)

    names: set[str] = set()
    for name, value in c.headers:
        if name in _TRACE_HEADERS:
            continue
        names.add(name)
        if name == "subject":
            add(_words(value, "s:"))
            add([f"s:bang:{min(value.count('!'), 3)}"])
            letters = [ch for ch in value if ch.isalpha()]
            if len(letters) >= 8 and all(ch.isupper() for ch in letters):
                add(["s:allcaps"])
        elif name in ("from", "reply-to", "sender"):
            add(_address_tokens(name, value))
        elif name in ("to", "cc"):
            add([f"{name}:count:{min(value.count('@'), 10)}"])
            add(_address_tokens(name, value) if value.count("@") <= 3 else ())
        elif name in ("x-mailer", "user-agent"):
            add([f"mailer:{' '.join(value.lower().split()[:2])[:60]}"])
        elif name == "message-id":
            host = value.rpartition("@")[2].strip("<> ").lower()
            add([f"mid:dom:{host[:80]}" if host else "mid:none"])
        elif name == "content-type":
            add([f"ct:{value.split(';')[0].strip().lower()[:60]}"])
    add(f"hdr:{n}" for n in sorted(names))
    add(f"part:{t}" for t in c.content_types[:50])
    add(f"charset:{cs}" for cs in c.charsets[:20])
    for filename in c.filenames[:20]:
        ext = filename.lower().rpartition(".")[2] if "." in filename else "none"
        add([f"att:ext:{ext[:10]}"])
    for url in c.urls:
        host = url_host(url)
        if host:
            add([f"url:host:{host[:100]}", f"url:site:{site(host)[:100]}"])
            if _IP_HOST.match(host):
                add(["url:ip"])
        add(_words(url.split("?")[0].rpartition("/")[2], "url:path:"))
    add(_words(c.text, ""))
    if c.html:
        add(["html"])
    return list(seen)


def token_id(token: str) -> int:
    """A stable signed 64-bit key for a token (SQLite's INTEGER range)."""
    digest = hashlib.blake2b(token.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def token_ids(c: Content) -> list[int]:
    return [token_id(t) for t in tokens(c)]


def fingerprint(c: Content) -> str:
    """A content key that survives small changes (case, spacing, numbers): what collaborative
    reports of "the same content" are counted by."""
    subject = c.header("subject") or ""
    words = (w.strip(_STRIP) for w in (subject + " " + c.text)[:4000].lower().split())
    body = " ".join(w for w in words if w and not w.isdigit())
    return hashlib.blake2b(body[:2000].encode("utf-8", "surrogatepass"),
                           digest_size=12).hexdigest()


# --------------------------------------------------------------------------------------------
# Classifier


@dataclass(slots=True)
class Counts:
    """A model, or the part of one a message's tokens touch: per token (spam, ham) counts
    and how many messages of each kind were learnt. Counts are floats: training is weighted."""

    nspam: float = 0.0
    nham: float = 0.0
    tokens: dict[int, tuple[float, float]] = field(default_factory=dict)

    def learn(self, ids: Iterable[int], is_spam: bool, weight: float = 1.0) -> None:
        """Add (or with a negative weight, take back) one message."""
        for t in ids:
            spam, ham = self.tokens.get(t, (0.0, 0.0))
            if is_spam:
                spam = max(spam + weight, 0.0)
            else:
                ham = max(ham + weight, 0.0)
            if spam or ham:
                self.tokens[t] = (spam, ham)
            else:
                self.tokens.pop(t, None)
        if is_spam:
            self.nspam = max(self.nspam + weight, 0.0)
        else:
            self.nham = max(self.nham + weight, 0.0)


def combine(global_: Counts, user: Counts | None, user_weight: float) -> Counts:
    """A user's model over the global one: the user's counts added, weighted."""
    if user is None or (not user.nspam and not user.nham):
        return global_
    merged = dict(global_.tokens)
    for t, (spam, ham) in user.tokens.items():
        g_spam, g_ham = merged.get(t, (0.0, 0.0))
        merged[t] = (g_spam + user_weight * spam, g_ham + user_weight * ham)
    return Counts(global_.nspam + user_weight * user.nspam,
                  global_.nham + user_weight * user.nham, merged)


@dataclass(frozen=True, slots=True)
class Options:
    """Robinson's parameters, as SpamBayes tuned them on real mail."""

    strength: float = 0.45        # s: how much weight the 0.5 prior has against the counts
    prior: float = 0.5            # x: a never-seen token's probability
    min_distance: float = 0.1     # tokens with |f - 0.5| under this are ignored
    max_discriminators: int = 150


DEFAULT_OPTIONS = Options()


def _chi2q(x2: float, v: int) -> float:
    """P(chi-square with v (even) degrees of freedom >= x2)."""
    m = x2 / 2.0
    term = total = math.exp(-m)
    for i in range(1, v // 2):
        term *= m / i
        total += term
    return min(total, 1.0)


def token_probability(spam: float, ham: float, nspam: float, nham: float,
                      options: Options = DEFAULT_OPTIONS) -> float:
    spam_ratio = spam / max(nspam, 1.0)
    ham_ratio = ham / max(nham, 1.0)
    p = spam_ratio / (spam_ratio + ham_ratio) if spam_ratio + ham_ratio else options.prior
    n = spam + ham
    return (options.strength * options.prior + n * p) / (options.strength + n)


def spam_probability(ids: Iterable[int], model: Counts,
                     options: Options = DEFAULT_OPTIONS) -> float:
    """0.0 (ham) .. 1.0 (spam); 0.5 when the model knows nothing of these tokens."""
    clues: list[tuple[float, float]] = []
    for t in ids:
        counts = model.tokens.get(t)
        if counts is None:
            continue
        f = token_probability(counts[0], counts[1], model.nspam, model.nham, options)
        distance = abs(f - 0.5)
        if distance >= options.min_distance:
            clues.append((distance, f))
    if not clues:
        return 0.5
    clues.sort(reverse=True)
    chosen = [min(max(f, 1e-6), 1 - 1e-6) for _, f in clues[: options.max_discriminators]]
    n = len(chosen)
    s_log = sum(math.log(1.0 - f) for f in chosen)
    h_log = sum(math.log(f) for f in chosen)
    spam = 1.0 - _chi2q(-2.0 * s_log, 2 * n)
    ham = 1.0 - _chi2q(-2.0 * h_log, 2 * n)
    return (spam - ham + 1.0) / 2.0


def lookup(model: Mapping[int, tuple[float, float]], ids: Iterable[int]) -> dict[
        int, tuple[float, float]]:
    """The part of an in-memory model a message touches (what a store query returns)."""
    return {t: model[t] for t in ids if t in model}
