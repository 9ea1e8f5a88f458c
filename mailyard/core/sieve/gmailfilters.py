"""Gmail-style filters (criteria -> actions), compiled to one Sieve script, so that the one
Sieve engine (services/sieve.py) runs them with everything else: the webmail edits filters,
the account's active script is what runs (issue 25).

The script carries the filters themselves, as JSON on `# mailyard-filters:` comment lines at
its top, so that `parse_filters` reads them back for editing without parsing Sieve back into
forms. The Sieve below the comment is derived from that list only.

What each part means in our label model (a message may be in several mailboxes at once;
`keep` is "where the spam placement put it": the Inbox, or Junk):
- criteria: `:contains`, case-insensitive (i;ascii-casemap), so `*` and `?` are literal;
  from/to/subject look at the header fields (to: To and Cc), "has words" and "doesn't have"
  at Subject, From, To, Cc and the text body (each word must be there / none may be);
  all criteria given must hold;
- label: `fileinto :copy :create` (the message keeps its Inbox copy and gets the label);
- archive: no Inbox copy: with a label, `fileinto` without :copy (so only the label),
  else `fileinto "Archive"` (as the webmail's Archive button does);
- star, mark read: the IMAP flags \\Flagged and \\Seen (imap4flags `addflag`), in a first
  pass over all filters, so every copy a later filter files carries every filter's flags
  (keywords are per email here anyway);
- forward: `redirect :copy` (the services' redirect limits and SRS apply);
- never spam: `fileinto "INBOX"`; an explicit fileinto "INBOX" takes a message the spam
  placement put in Junk to the Inbox (services/sieve.py), unlike `keep`.

Strings are written as Sieve quoted strings with `\\` and `"` escaped; control characters
are refused by `validate` (a filter is one line of text per field), so no field can end a
string or a comment early.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field, fields

MARK = "# mailyard-filters: "
MAX_FILTERS = 200
MAX_FIELD = 500
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u0080-\u009f\u2028\u2029]")
_ADDRESS = re.compile(r"[^\s@<>\"(),;:\\]+@[^\s@<>\"(),;:\\]+\.[^\s@<>\"(),;:\\]+")
_TEXT_FIELDS = ("from_", "to", "subject", "has_words", "doesnt_have", "label", "forward_to")
_WORD_HEADERS = ("subject", "from", "to", "cc")


class FilterError(ValueError):
    """A filter that cannot be compiled; `field` names the property at fault (JMAP's
    invalidProperties)."""

    def __init__(self, message: str, field_name: str) -> None:
        super().__init__(message)
        self.field = field_name


@dataclass(frozen=True, slots=True)
class Filter:
    from_: str = ""
    to: str = ""
    subject: str = ""
    has_words: str = ""
    doesnt_have: str = ""
    label: str = ""
    archive: bool = False
    star: bool = False
    mark_read: bool = False
    forward_to: str = ""
    never_spam: bool = False
    id: str = field(default="", compare=False)
    """Stable handle for the webmail (JMAP id); not part of what the filter does."""

    def criteria(self) -> bool:
        return any((self.from_, self.to, self.subject, self.has_words, self.doesnt_have))

    def actions(self) -> bool:
        return bool(self.label or self.archive or self.star or self.mark_read
                    or self.forward_to or self.never_spam)

    def to_json(self) -> dict[str, object]:
        out = asdict(self)
        out["from"] = out.pop("from_")
        return out

    @classmethod
    def from_json(cls, obj: object) -> Filter:
        """Raises FilterError for unknown properties or wrong types."""
        if not isinstance(obj, dict):
            raise FilterError("a filter is an object", "")
        data = dict(obj)
        if "from" in data:
            data["from_"] = data.pop("from")
        names = {f.name: f for f in fields(cls)}
        for key, value in data.items():
            if key not in names:
                raise FilterError(f"unknown property {key!r}", key)
            want = bool if names[key].type in ("bool", bool) else str
            if not isinstance(value, want):
                raise FilterError(f"{key} is a {want.__name__}", _public(key))
        return cls(**data)


def _public(name: str) -> str:
    return "from" if name == "from_" else name


def validate(f: Filter) -> None:
    """Raises FilterError when `f` cannot be compiled (a filter that matches everything, does
    nothing, or has a field that is no single line of text)."""
    for name in _TEXT_FIELDS:
        value = getattr(f, name)
        if len(value) > MAX_FIELD:
            raise FilterError(f"{_public(name)} is longer than {MAX_FIELD} characters",
                              _public(name))
        if _CONTROL.search(value):
            raise FilterError(f"{_public(name)} has a control character", _public(name))
    if not f.criteria():
        raise FilterError("a filter needs at least one of from, to, subject, has words,"
                          " doesn't have", "from")
    if not f.actions():
        raise FilterError("a filter needs at least one action", "label")
    if f.label.strip() != f.label or f.label.upper() == "INBOX" or "/" in f.label:
        raise FilterError("label: no leading or trailing space, not INBOX, no '/'", "label")
    if f.forward_to and not _ADDRESS.fullmatch(f.forward_to):
        raise FilterError("forward_to is not an email address", "forward_to")
    for name in ("has_words", "doesnt_have"):
        if getattr(f, name) and not getattr(f, name).split():
            raise FilterError(f"{name} has no words", name)


def quote(text: str) -> str:
    """A Sieve quoted string (RFC 5228 §2.4.2): backslash and double quote escaped."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _strings(items: list[str]) -> str:
    return quote(items[0]) if len(items) == 1 else "[" + ", ".join(map(quote, items)) + "]"


def _word(word: str) -> str:
    headers = _strings(list(_WORD_HEADERS))
    return f"anyof(header :contains {headers} {quote(word)}, body :text :contains {quote(word)})"


def _test(f: Filter) -> str:
    tests: list[str] = []
    if f.from_.strip():
        tests.append(f"header :contains \"from\" {quote(f.from_.strip())}")
    if f.to.strip():
        tests.append(f"header :contains [\"to\", \"cc\"] {quote(f.to.strip())}")
    if f.subject.strip():
        tests.append(f"header :contains \"subject\" {quote(f.subject.strip())}")
    tests += [_word(w) for w in f.has_words.split()]
    tests += [f"not {_word(w)}" for w in f.doesnt_have.split()]
    return tests[0] if len(tests) == 1 else "allof(" + ",\n      ".join(tests) + ")"


def compile_filters(filters: list[Filter]) -> str:
    """The Sieve script that runs `filters` in order, with the list as JSON on top. Raises
    FilterError (validate) for a filter that cannot be compiled."""
    if len(filters) > MAX_FILTERS:
        raise FilterError(f"at most {MAX_FILTERS} filters", "")
    for f in filters:
        validate(f)
    body = json.dumps([f.to_json() for f in filters], ensure_ascii=True,
                      separators=(",", ":"))
    lines = ["# Written by the Mailyard webmail from the filters below; edited there, it is",
             "# compiled again (a hand edit of the Sieve part is lost).",
             MARK + body,
             'require ["fileinto", "imap4flags", "copy", "body", "mailbox"];']
    for n, f in enumerate(filters, 1):
        flags = [flag for flag, on in (("\\Seen", f.mark_read), ("\\Flagged", f.star)) if on]
        if flags:
            lines += [f"# filter {n}: flags", f"if {_test(f)} {{",
                      f"  addflag {_strings(flags)};", "}"]
    for n, f in enumerate(filters, 1):
        actions: list[str] = []
        if f.never_spam and not f.archive:  # archiving takes it out of Junk already
            actions.append('fileinto "INBOX";')
        if f.label:
            copy = "" if f.archive else ":copy "
            actions.append(f"fileinto {copy}:create {quote(f.label)};")
        elif f.archive:
            actions.append('fileinto :create "Archive";')
        if f.forward_to:
            actions.append(f"redirect :copy {quote(f.forward_to)};")
        if actions:
            lines += [f"# filter {n}", f"if {_test(f)} {{",
                      *("  " + a for a in actions), "}"]
    return "\n".join(lines) + "\n"


def parse_filters(script: str) -> list[Filter]:
    """The filters a script compiled here carries; [] for a script with none (written by
    hand, or by another client). Raises FilterError if the comment is damaged."""
    for line in script.splitlines():
        if line.startswith(MARK):
            try:
                data = json.loads(line[len(MARK):])
            except ValueError:
                raise FilterError("the filters comment is not JSON", "") from None
            if not isinstance(data, list):
                raise FilterError("the filters comment is not a list", "")
            return [Filter.from_json(item) for item in data]
        if line and not line.startswith("#"):
            break
    return []
