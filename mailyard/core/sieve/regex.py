"""The regex match type (draft-ietf-sieve-regex): POSIX extended regular expressions, run by
the `regex` package (PyPI) rather than the standard library's `re`, for one reason: its
searches take a timeout. `re` cannot be interrupted, and a pattern such as "(a|aa)*c" or
"a*a*a*a*c" backtracks for hours over a few kilobytes; with `regex` a search gets what is left
of the script's time budget (interp.Budget) and a runaway one ends the run with ScriptTooLong.
Back-references (not in POSIX ERE) and patterns over `MAX_PATTERN` characters are refused
when the script is checked.
"""

from __future__ import annotations

import re

import regex as _regex

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


_BACKREF = re.compile(r"(?<!\\)(?:\\\\)*\\[1-9]")


def compile_pattern(pattern: str, *, casefold: bool) -> _regex.Pattern[str]:
    if len(pattern) > MAX_PATTERN:
        raise BadRegex(f"regular expression longer than {MAX_PATTERN} characters")
    if _BACKREF.search(pattern):
        raise BadRegex("back-references are not allowed")
    try:
        return _regex.compile(_translate(pattern),
                              _regex.DOTALL | (_regex.IGNORECASE if casefold else 0))
    except _regex.error as e:
        raise BadRegex(f"bad regular expression {pattern!r}: {e}") from None


def quote(text: str) -> str:
    """set :quoteregex: every character special to ERE escaped."""
    return re.sub(r"([\\^$.|?*+()\[\]{}])", r"\\\1", text)
