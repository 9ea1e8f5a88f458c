"""EnhancedSMTP's per-connection set-up (issue 24) gives what aiosmtpd's own SMTP.__init__ gives.

The listener finds commands, AUTH mechanisms and handler hooks once per class and handler
instead of by `inspect.getmembers` on every connection; each protocol class of ours is built
both ways here, with the keyword arguments its listener uses, and every attribute compared.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiosmtpd
import pytest
from aiosmtpd.smtp import SMTP, AuthResult
from hypothesis import given, settings
from hypothesis import strategies as st

from mailyard.protocols.smtp.base import REFLECTED_FOR, EnhancedSMTP
from mailyard.protocols.smtp.inbound import InboundSMTP
from mailyard.protocols.smtp.submission import SubmissionSMTP


class Handler:
    """An aiosmtpd handler (aiosmtpd's interface, duck-typed): hooks and a mechanism."""

    async def handle_EHLO(self, server: Any, session: Any, envelope: Any, hostname: str,
                          responses: list[str]) -> list[str]:
        return responses

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        return "250 OK"

    async def auth_XTOKEN(self, server: Any, args: list[str]) -> AuthResult:
        return AuthResult(success=False)


KWARGS: list[dict[str, Any]] = [
    {"hostname": "mx.example.test", "ident": "Mailyard ESMTP", "data_size_limit": 1000,
     "enable_SMTPUTF8": True, "decode_data": False, "tls_context": None,
     "require_starttls": False, "timeout": 300, "auth_required": False,
     "auth_require_tls": True},
    {"hostname": "mx.example.test", "ident": "Mailyard ESMTP", "data_size_limit": 1000,
     "enable_SMTPUTF8": True, "decode_data": False, "tls_context": None,
     "require_starttls": False, "timeout": 300, "auth_required": True,
     "auth_require_tls": True, "auth_exclude_mechanism": ["CRAM-MD5"],
     "command_call_limit": {"*": 5, "MAIL": 2}},
]

SAME_ATTRIBUTES = [
    "__ident__", "event_handler", "data_size_limit", "enable_SMTPUTF8", "_decode_data",
    "hostname", "tls_context", "require_starttls", "_timeout_duration", "_timeout_handle",
    "_tls_handshake_okay", "_tls_protocol", "_original_transport", "session", "envelope",
    "transport", "_handler_coroutine", "_auth_require_tls", "_proxy_timeout",
    "_authenticator", "_auth_callback", "_auth_required", "_handle_hooks", "_ehlo_hook_ver",
    "_enforce_call_limit", "line_octets",
]


def aiosmtpds_own(cls: type[EnhancedSMTP], handler: Any, **kwargs: Any) -> EnhancedSMTP:
    """`cls` set up by aiosmtpd's SMTP.__init__ itself, with our attributes after it."""
    server = cls.__new__(cls)
    SMTP.__init__(server, handler, **kwargs)
    server.line_octets = 1 << 20
    return server


@pytest.mark.skipif(aiosmtpd.__version__ != REFLECTED_FOR,
                    reason="another aiosmtpd: its own __init__ runs, nothing to compare")
@pytest.mark.parametrize("cls", [EnhancedSMTP, InboundSMTP, SubmissionSMTP])
@pytest.mark.parametrize("kwargs", KWARGS)
async def test_set_up_equals_aiosmtpds_own(cls: type[EnhancedSMTP], kwargs: dict[str, Any]
                                           ) -> None:
    handler = Handler()
    loop = asyncio.get_running_loop()
    ours = cls(handler, line_octets=1 << 20, loop=loop, **kwargs)
    theirs = aiosmtpds_own(cls, handler, loop=loop, **kwargs)
    for name in SAME_ATTRIBUTES:
        assert getattr(ours, name) == getattr(theirs, name), name
    assert ours.loop is theirs.loop is loop
    # Commands: the same verbs, each the class's own method (timed for /metrics), bound to
    # this connection, with its HELP text.
    assert ours._smtp_methods.keys() == theirs._smtp_methods.keys()
    for verb, method in ours._smtp_methods.items():
        own = theirs._smtp_methods[verb]
        assert method.__self__ is ours
        assert method.__wrapped__ is own.__func__, verb
        assert getattr(method, "__smtp_syntax__", None) == getattr(own, "__smtp_syntax__",
                                                                    None)
    assert ours._auth_methods.keys() == theirs._auth_methods.keys()
    for mechanism, impl in ours._auth_methods.items():
        own_impl = theirs._auth_methods[mechanism]
        assert impl.is_builtin == own_impl.is_builtin, mechanism
        assert impl.method.__func__ is own_impl.method.__func__, mechanism
        assert impl.method.__self__ is (ours if impl.is_builtin else handler)
    assert "XTOKEN" in ours._auth_methods and "CRAM-MD5" not in ours._auth_methods
    if kwargs.get("command_call_limit"):
        assert ours._call_limit_base == theirs._call_limit_base
        assert ours._call_limit_default == theirs._call_limit_default


@pytest.mark.parametrize("arg", [
    "<alice@example.test>", "<alice@example.test> SIZE=100", "alice@example.test", "<>", "",
    "<alice@example.test", "<@relay.test:alice@example.test>", "<\"a b\"@example.test>",
    "<" + "a" * 64 + "@example.test>", "<" + "a" * 65 + "@example.test>", "<a(comment)@x.test>",
    "<a@b.c>  SIZE=1", "<a@b.c>\tX", "<a@b.c> (x) S", "<a@b..c>", "<a@[1.2.3.4]>",
    "<a@b.c>BODY=8BITMIME", "<A@B.C>", "<a@b.c.>", "<a@-b>", "<.a@b>", "<a.@b>", "<a@b>(",
    "<a@b> ", "<a@b>\r\n x", "<a!#$%&'*+/=?^_`{|}~-@x.test>", "<ü@x.test>", " <a@b.c>",
])
async def test_getaddr_answers_as_aiosmtpds(arg: str) -> None:
    """MAIL and RCPT addresses are parsed as aiosmtpd parses them, without the class its
    version defines on every call."""
    loop = asyncio.get_running_loop()
    server = EnhancedSMTP(Handler(), loop=loop)
    theirs = aiosmtpds_own(EnhancedSMTP, Handler(), loop=loop)
    assert server._getaddr(arg) == SMTP._getaddr(theirs, arg)
    assert server._getaddr("<alice@example.test> SIZE=100") == ("alice@example.test",
                                                                 "SIZE=100")


PATH_CHARS = st.sampled_from(list("ab.@<>() \t\"\\[]:,;-_+=!~üZ09\r\n"))


@settings(max_examples=2000, deadline=None)
@given(st.lists(PATH_CHARS, max_size=24).map("".join))
def test_getaddr_fast_path_agrees_with_aiosmtpds_parser(arg: str) -> None:
    """Whatever the client writes, the fast path for plain `<a@b>` forms and the standard
    library's parser behind it answer what aiosmtpd's own _getaddr answers, except where
    that raises IndexError out of the parser (an unclosed `<`, `<a@`): malformed, (None,
    None), since 1c678eb (issue 17)."""
    loop = asyncio.new_event_loop()
    try:
        ours = EnhancedSMTP(Handler(), loop=loop)
        theirs = aiosmtpds_own(EnhancedSMTP, Handler(), loop=loop)
        for text in (arg, "<" + arg, "<a@b" + arg, "<a@b>" + arg, "<" + arg + "@x.test>"):
            try:
                expected: object = SMTP._getaddr(theirs, text)
            except IndexError:
                expected = (None, None)
            except Exception as error:
                expected = type(error)
            try:
                got: object = ours._getaddr(text)
            except Exception as error:
                got = type(error)
            assert got == expected, text
    finally:
        loop.close()
