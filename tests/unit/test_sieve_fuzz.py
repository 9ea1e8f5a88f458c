"""Any text is either a Script or a SieveSyntaxError, never another exception (the parser
answers ManageSieve's CHECKSCRIPT with what a user typed); any parsed script runs to a Result
or a SieveRuntimeError against any message, within its budget."""

from __future__ import annotations

import contextlib

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailyard.core.sieve import (
    Budget,
    Envelope,
    SieveMessage,
    SieveRuntimeError,
    SieveSyntaxError,
    parse,
    run,
)

WORDS = ["require", "if", "elsif", "else", "stop", "keep", "discard", "fileinto", "redirect",
         "reject", "ereject", "vacation", "set", "addflag", "setflag", "removeflag",
         "addheader", "deleteheader", "header", "address", "envelope", "exists", "size",
         "body", "date", "currentdate", "string", "hasflag", "mailboxexists", "duplicate",
         "allof", "anyof", "not", "true", "false", ":is", ":contains", ":matches", ":regex",
         ":count", ":value", ":comparator", ":over", ":under", ":copy", ":flags", ":create",
         ":days", ":subject", ":last", ":index", ":zone", ":text", ":raw", ":content",
         ":lower", ":length", ":detail", ":user", ":domain", ":localpart", "text:\r\n",
         '"fileinto"', '"variables"', '"regex"', '"relational"', '"imap4flags"',
         '"body"', '"editheader"', '"date"', '"subaddress"', '"envelope"', '"vacation"',
         '"copy"', '"mailbox"', '"duplicate"', '"reject"', '"i;ascii-numeric"',
         '"comparator-i;ascii-numeric"', '"ge"', '"*a?b*"', '"${1}"', '"${x}"', '"([a-z]+)"',
         '"subject"', '"from"', '"to"', '"a@b.c"', '"\\\\Seen"', '"date"', '"year"',
         "[", "]", "{", "}", "(", ")", ",", ";", "10", "1K", "#c\n", "/*c*/", "\n", ".\r\n",
         '"', "\\"]

tokens = st.lists(st.sampled_from(WORDS), max_size=60).map(" ".join)
MESSAGE = (b"From: A <a@b.c>\r\nTo: x+y@d.e\r\nSubject: hello world\r\nDate: Tue, 1 Apr 1997"
           b" 09:06:31 -0800\r\nMessage-ID: <1@b.c>\r\n\r\nbody text\r\n")


def check(text: str) -> None:
    try:
        script = parse(text)
    except SieveSyntaxError as e:
        assert e.line >= 0
        return
    with contextlib.suppress(SieveRuntimeError):
        run(script, SieveMessage.from_bytes(MESSAGE), Envelope("a@b.c", "x+y@d.e"),
            budget=Budget(max_steps=100_000, max_seconds=2.0))


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=300))
def test_any_text(text: str) -> None:
    check(text)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tokens)
def test_sieve_shaped_text(text: str) -> None:
    check(text)


def test_deep_nesting_is_a_syntax_error() -> None:
    for text in ["if " + "not " * 5000 + "true { }", "if true {" * 5000,
                 "if allof(" * 5000, "[" * 5000]:
        check(text)
