"""LIST/LSUB pattern matching (RFC 3501 §6.3.8, RFC 9051 §6.3.9) in time linear in the name.

`*` matches any run of characters and `%` any run without the hierarchy delimiter. Turning
patterns into backtracking regular expressions let `LIST "" "************x"` spend 44 s on one
30-character name (issue 17). Here a pattern is a small NFA whose state set is one integer
used as a bit set: each character of the name costs a few big-integer operations on
len(pattern) bits, so a match is O(len(name) * len(pattern) / word size), with no backtracking.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_PATTERN_OCTETS = 1024
"""Longest reference + pattern a LIST or LSUB accepts (UTF-8 octets); longer is NO [LIMIT]."""


def collapse(pattern: str) -> str:
    """Runs of wildcards as one: `**`, `*%` and `%*` match what `*` does, `%%` what `%` does.
    After this no wildcard follows another, so one shift closes the state set over the empty
    matches of the wildcards."""
    out: list[str] = []
    for ch in pattern:
        if ch in "*%" and out and out[-1] in "*%":
            if ch == "*":
                out[-1] = "*"
            continue
        out.append(ch)
    return "".join(out)


@dataclass(frozen=True, slots=True)
class Matcher:
    """One compiled pattern. Bit i of a state set means "the first i pattern characters have
    matched the name so far"; bit len(pattern) set at the end means a match."""

    pattern: str
    delimiter: str
    _literal: dict[str, int]
    _star: int
    _percent: int
    _accept: int

    @classmethod
    def compile(cls, pattern: str, delimiter: str = "/") -> Matcher:
        pattern = collapse(pattern)
        literal: dict[str, int] = {}
        star = percent = 0
        for i, ch in enumerate(pattern):
            if ch == "*":
                star |= 1 << i
            elif ch == "%":
                percent |= 1 << i
            else:
                literal[ch] = literal.get(ch, 0) | (1 << i)
        return cls(pattern, delimiter, literal, star, percent, 1 << len(pattern))

    def _close(self, states: int) -> int:
        """Add the states reached by letting a wildcard match nothing."""
        return states | ((states & (self._star | self._percent)) << 1)

    def match(self, name: str) -> bool:
        """Whether the whole of `name` matches the whole pattern."""
        if not (self._star | self._percent):
            return name == self.pattern
        states = self._close(1)
        literal, star, percent, delimiter = self._literal, self._star, self._percent, self.delimiter
        for ch in name:
            stay = star if ch == delimiter else star | percent
            states = self._close(((states & literal.get(ch, 0)) << 1) | (states & stay))
            if not states:
                return False
        return bool(states & self._accept)


def combine(reference: str, pattern: str, delimiter: str = "/") -> str:
    """The canonical LIST pattern: the pattern appended to the reference (RFC 3501 §6.3.8),
    one delimiter between them, and a leading INBOX (any case) spelled INBOX."""
    if reference and delimiter and reference.endswith(delimiter) and pattern.startswith(delimiter):
        combined = reference + pattern[len(delimiter):]
    else:
        combined = reference + pattern
    if combined[:5].upper() == "INBOX" and combined[5:6] in (delimiter, ""):
        combined = "INBOX" + combined[5:]
    return combined


class ListPattern:
    """A canonical LIST pattern to test mailbox names against. INBOX is case-insensitive
    (RFC 3501 §5.1): a pattern that starts by spelling part of it in another case ("in%",
    "Inbox") matches INBOX; one that starts with a wildcard is not folded ("*x" does not
    match INBOX because of its X)."""

    __slots__ = ("_inbox", "_matcher")

    def __init__(self, canonical: str, delimiter: str = "/") -> None:
        self._matcher = Matcher.compile(canonical, delimiter)
        prefix = canonical[:min((i for i in (canonical.find("*"), canonical.find("%"))
                                 if i >= 0), default=len(canonical))]
        folds = bool(prefix) and "INBOX".startswith(prefix[:5].upper()) and (
            len(prefix) <= 5 or prefix[5] == delimiter)
        self._inbox = Matcher.compile(canonical.upper(), delimiter) if folds else None

    def match(self, name: str) -> bool:
        if self._matcher.match(name):
            return True
        return name == "INBOX" and self._inbox is not None and self._inbox.match(name)
