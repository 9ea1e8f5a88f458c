"""Sieve (RFC 5228): the mail filtering language, parsed, checked and run here, as pure code.

Why our own interpreter: the one well-kept Python Sieve package (sievelib, on PyPI) is a
client-side library: it parses scripts and speaks ManageSieve, but has no interpreter, so it
cannot run a script against a message; its parser also knows a fixed set of extensions
without the ones we run (duplicate, editheader, regex, mailbox) and reports no line numbers.
A Sieve interpreter is small (the language has no loops), and the RFCs define it tightly, so
it is written here after the RFCs' grammar and semantics, and tested with their examples
(tests/unit/test_sieve_*.py). sievelib's ManageSieve client is used by the tests, as a
second client beside `sieve-connect`.

- `parse(text)` -> `Script` (syntax per RFC 5228 §8 and the checks of §2.10.5, the
  extensions' arguments, `require` of each extension used), or `SieveSyntaxError` with the
  line number.
- `run(script, message, envelope, ...)` -> `Result`: the typed actions (actions.py) and the
  implicit keep, within a `Budget` of steps and seconds (`ScriptTooLong` otherwise).
"""

from mailyard.core.sieve.actions import (
    AddHeader,
    DeleteHeader,
    Discard,
    FileInto,
    Keep,
    Redirect,
    Reject,
    Result,
    Vacation,
)
from mailyard.core.sieve.grammar import Script, SieveSyntaxError, parse
from mailyard.core.sieve.interp import (
    Budget,
    Environment,
    ScriptTooLong,
    SieveRuntimeError,
    run,
)
from mailyard.core.sieve.message import Envelope, SieveMessage
from mailyard.core.sieve.spec import EXTENSIONS

__all__ = [
    "EXTENSIONS", "AddHeader", "Budget", "DeleteHeader", "Discard", "Envelope", "Environment",
    "FileInto", "Keep", "Redirect", "Reject", "Result", "Script", "ScriptTooLong",
    "SieveMessage", "SieveRuntimeError", "SieveSyntaxError", "Vacation", "parse", "run",
]
