"""The regex match type (draft-ietf-sieve-regex): POSIX extended regular expressions, run by
Python's `re` after a check that keeps their cost linear enough.

`re` cannot be interrupted, so a pattern that could backtrack exponentially (a repeated group
that itself repeats, "(a+)+", the classic ReDoS shape) is refused when the script is checked,
and so are back-references (not in POSIX ERE anyway) and patterns over `MAX_PATTERN`
characters. What remains costs at most about pattern x subject steps, which the interpreter's
budget charges per search (interp.Budget).
"""

from __future__ import annotations

import re

MAX_PATTERN = 1024
_CLASSES = {"alpha": "a-zA-Z", "digit": "0-9", "alnum": "a-zA-Z0-9", "upper": "A-Z",
            "lower": "a-z", "space": " \\t\\r\\n\\v\\f", "blank": " \\t", "punct":
            "!-/:-@\\[-`{-~", "xdigit": "0-9A-Fa-f", "cntrl": "\\x00-\\x1f\\x7f",
            "print": " -~", "graph": "!-~", "word": "a-zA-Z0-9_"}
_CLASS = re.compile(r"\[:([a-z]+):\]")


class BadRegex(ValueError):
    pass


def _translate(pattern: str) -> str:
    """POSIX bracket classes into Python's ranges; the rest of ERE is `re` syntax."""
    def one(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in _CLASSES:
            raise BadRegex(f"unknown character class [:{name}:]")
        return _CLASSES[name]
    return _CLASS.sub(one, pattern)


def _check_repetition(pattern: str) -> None:
    """Refuse a quantified group that contains a quantifier: "(a+)+", "(a|b*)*", "(x{2,})+"."""
    stack: list[bool] = []
    quantified_inside = False
    i = 0
    n = len(pattern)
    while i < n:
        c = pattern[i]
        if c == "\\":
            if i + 1 < n and pattern[i + 1].isdigit():
                raise BadRegex("back-references are not allowed")
            i += 2
            continue
        if c == "[":
            close = pattern.find("]", i + 2)
            i = n if close < 0 else close + 1
            continue
        if c == "(":
            stack.append(quantified_inside)
            quantified_inside = False
        elif c == ")":
            inner = quantified_inside
            quantified_inside = stack.pop() if stack else False
            if i + 1 < n and pattern[i + 1] in "*+?{" and inner:
                raise BadRegex("a repeated group may not itself contain a repetition"
                               " (it could take exponential time)")
            quantified_inside = quantified_inside or inner
        elif c in "*+{":
            quantified_inside = True
        i += 1


def compile_pattern(pattern: str, *, casefold: bool) -> re.Pattern[str]:
    if len(pattern) > MAX_PATTERN:
        raise BadRegex(f"regular expression longer than {MAX_PATTERN} characters")
    _check_repetition(pattern)
    try:
        return re.compile(_translate(pattern), re.DOTALL | (re.IGNORECASE if casefold else 0))
    except re.error as e:
        raise BadRegex(f"bad regular expression {pattern!r}: {e}") from None


def quote(text: str) -> str:
    """set :quoteregex: every character special to ERE escaped."""
    return re.sub(r"([\\^$.|?*+()\[\]{}])", r"\\\1", text)
