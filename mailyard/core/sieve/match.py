"""Comparators (RFC 4790 as RFC 5228 §2.7.3 uses them) and match types: :is, :contains,
:matches (RFC 5228 §2.7.1), :regex, and the relational :value / :count (RFC 5231).

Every function charges its work to `spend` (the interpreter's budget), roughly one unit per
character compared, so that a script cannot run for long on a large message.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any

from mailyard.core.sieve import regex

Spend = Callable[[int], None]
_UPPER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


class MatchError(ValueError):
    """A match that cannot be made at run time (a bad regex built from variables)."""


def fold(comparator: str, text: str) -> str:
    """i;ascii-casemap folds ASCII letters only; i;octet compares as is."""
    return text.translate(_UPPER) if comparator == "i;ascii-casemap" else text


def _numeric(text: str) -> float:
    """i;ascii-numeric: the leading digits' value; no digit first: positive infinity."""
    m = re.match(r"[0-9]+", text)
    return float(int(m.group())) if m else float("inf")


def relation(comparator: str, left: str, op: str, right: str) -> bool:
    a: float | str
    b: float | str
    if comparator == "i;ascii-numeric":
        a, b = _numeric(left), _numeric(right)
    else:
        a, b = fold(comparator, left), fold(comparator, right)
    op = op.lower()
    if op == "eq":
        return a == b
    if op == "ne":
        return a != b
    if op == "gt":
        return a > b  # type: ignore[operator]
    if op == "ge":
        return a >= b  # type: ignore[operator]
    if op == "lt":
        return a < b  # type: ignore[operator]
    return a <= b  # type: ignore[operator]


def _glob_tokens(pattern: str) -> list[str]:
    """`*`, `?`, or a literal character (backslash escapes the next one)."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern):
            out.append("\\" + pattern[i + 1])
            i += 2
            continue
        out.append(c)
        i += 1
    return out


def glob(pattern: str, text: str, comparator: str, spend: Spend) -> list[str] | None:
    """:matches: None, or the text each wildcard took (RFC 5229 §3.2: shortest first).

    The classic wildcard algorithm: each `*` first takes nothing, and on a mismatch only the
    last `*` seen takes one more character, which finds a match whenever one exists, in at
    most len(pattern) x len(text) steps, all charged to `spend`."""
    toks = _glob_tokens(fold(comparator, pattern))
    subject = fold(comparator, text)
    n, m = len(subject), len(toks)
    spans: list[tuple[int, int]] = [(0, 0)] * m
    t = p = 0
    star_p = -1
    star_t = 0
    work = 0
    while t < n:
        work += 1
        if work >= 4096:
            spend(work)
            work = 0
        if p < m and toks[p] == "*":
            star_p, star_t = p, t
            spans[p] = (t, t)
            p += 1
        elif p < m and (toks[p] == "?" or _same(toks[p], subject[t])):
            spans[p] = (t, t + 1)
            p += 1
            t += 1
        elif star_p >= 0:
            star_t += 1
            spans[star_p] = (spans[star_p][0], star_t)
            t = star_t
            p = star_p + 1
        else:
            spend(work)
            return None
    spend(work)
    while p < m and toks[p] == "*":
        spans[p] = (n, n)
        p += 1
    if p != m:
        return None
    return [text[s:e] for tok, (s, e) in zip(toks, spans, strict=True) if tok in ("*", "?")]


def _same(tok: str, char: str) -> bool:
    return (tok[1] if tok.startswith("\\") and len(tok) == 2 else tok) == char


@lru_cache(maxsize=256)
def _compiled(pattern: str, casefold: bool) -> Any:
    return regex.compile_pattern(pattern, casefold=casefold)


class TooSlow(Exception):
    """A regex search used up the time it was given."""


def matches(match_type: str, comparator: str, value: str, key: str, spend: Spend,
            relational: str = "", timeout: float = 1.0) -> tuple[bool, list[str] | None]:
    """Whether `value` matches `key`, and the match variables when the type has them."""
    spend(1 + (len(value) + len(key)) // 64)
    if match_type == "is":
        if comparator == "i;ascii-numeric":
            return _numeric(value) == _numeric(key), None
        return fold(comparator, value) == fold(comparator, key), None
    if match_type == "contains":
        spend(len(value) // 16)
        return fold(comparator, key) in fold(comparator, value), None
    if match_type == "matches":
        found = glob(key, value, comparator, spend)
        return (found is not None), None if found is None else [value, *found]
    if match_type == "regex":
        try:
            pattern = _compiled(key, comparator == "i;ascii-casemap")
        except regex.BadRegex as e:
            raise MatchError(str(e)) from None
        spend(len(value) // 16)
        try:
            m = pattern.search(value, timeout=max(timeout, 0.001))
        except TimeoutError:
            raise TooSlow(f"regex {key[:60]!r} ran out of time") from None
        if m is None:
            return False, None
        return True, [m.group(0), *[g or "" for g in m.groups()]]
    if match_type == "value":
        return relation(comparator, value, relational, key), None
    raise MatchError(f"unknown match type {match_type}")


def count(comparator: str, values: Sequence[str], op: str, keys: Sequence[str]) -> bool:
    """:count: the number of values against each key (RFC 5231 §4.2)."""
    return any(relation(comparator, str(len(values)), op, key) for key in keys)
