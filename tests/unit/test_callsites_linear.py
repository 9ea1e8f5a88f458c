"""The call sites that read a message's header outside core's parsers are linear too (issue
17): the inbound authentication check's DKIM and ARC (through `core.dkim`, not dkimpy's own
`arc_verify`, which appends each continuation line to the field so far), the vacation
responder's look at Auto-Submitted/Precedence/List-* (not the standard library's header value
parser), IMAP SEARCH's decoded fields and both engines' header conditions.

Same harness and bound as tests/unit/test_parsers_linear.py: the time at 2n against the time
at n, measured in the same test, under 3.5 (linear gives about 2, quadratic about 4).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from email.parser import BytesHeaderParser
from email.policy import SMTP

import dkim as dkimpy
import pytest

from mailyard.core import dkim, mime
from mailyard.dns import Resolver
from mailyard.protocols.imap.search import field_text, head_text
from mailyard.services.checks.auth import AuthCheck
from mailyard.services.vacation import automatic_fields, is_automatic
from mailyard.store.postgres import filters as pg_filters
from mailyard.store.sqlite import filters as sqlite_filters
from tests.dnsserver import TestDNS
from tests.unit.test_parsers_linear import LINE, RATIO, SHAPES, _msg, _ratio, _scale

SEAL_KEY = dkim.generate("relay.test", "arc1", "rsa-sha256", 1024)


def folded_list_id(n: int) -> bytes:
    return _msg(b"List-Id: start\r\n" + (b"\t" + LINE + b"\r\n") * n)


def encoded_auto_submitted(n: int) -> bytes:
    words = b"\r\n ".join(b"=?iso-8859-1?q?no_Fr\xf6sche_%d?=" % i for i in range(n))
    return _msg(b"Auto-Submitted: " + words + b"\r\n")


CALLSITE_SHAPES: dict[str, Callable[[int], bytes]] = {
    **SHAPES, "folded_list_id": folded_list_id,
    "encoded_auto_submitted": encoded_auto_submitted}


def _seal() -> bytes:
    """ARC set 1 over the shapes' common fields and body: prepended to a shape whose From,
    To, Date, Message-ID and body are those, the chain passes, so the whole verification
    runs (the other shapes fail it after the same parse)."""
    seen = b"Authentication-Results: relay.test; spf=pass\r\n" + _msg(b"")
    return b"".join(dkimpy.arc_sign(
        seen, b"arc1", b"relay.test", SEAL_KEY.private_key, b"relay.test",
        include_headers=[b"from", b"to", b"date", b"message-id"]))


SEAL = _seal()


@pytest.fixture(scope="module")
def check() -> Iterator[AuthCheck]:
    name, value = dkim.dns_record(SEAL_KEY)
    with TestDNS({(name, "TXT"): [value]}) as server:
        yield AuthCheck(Resolver([server.address], 5.0), authserv_id="mx.example.test")


def _head(raw: bytes) -> bytes:
    return raw[: mime.parse_message(raw).root.body_start]


def _auth(check: AuthCheck) -> Callable[[bytes], Callable[[], object]]:
    def entry(raw: bytes) -> Callable[[], object]:
        sealed = SEAL + raw
        end = mime.parse_head(sealed).root.body_start

        async def both() -> object:
            return await asyncio.gather(check._dkim(sealed, end), check._arc(sealed, end))
        return lambda: asyncio.run(both())
    return entry


def e_vacation(raw: bytes) -> Callable[[], object]:
    head = _head(raw)
    return lambda: is_automatic(automatic_fields(head), "friend@remote.test")


def e_imap_search(raw: bytes) -> Callable[[], object]:
    head = _head(raw)
    return lambda: (field_text(head, "subject"), field_text(head, "x-long"),
                    field_text(head, "cc"), head_text(head))


def e_sqlite_filters(raw: bytes) -> Callable[[], object]:
    head = _head(raw)
    return lambda: [sqlite_filters.header_contains(head, name, "frösche")
                    for name in ("subject", "x-long", "list-id", "cc")]


def e_postgres_filters(raw: bytes) -> Callable[[], object]:
    head = _head(raw)
    return lambda: [pg_filters.header_matches(head, name, "frösche")
                    for name in ("subject", "x-long", "list-id", "cc")]


ENTRIES: dict[str, Callable[[bytes], Callable[[], object]]] = {
    name[2:]: f for name, f in dict(globals()).items() if name.startswith("e_")}


def _assert_linear(entry: Callable[[bytes], Callable[[], object]], label: str,
                   shape: Callable[[int], bytes]) -> None:
    n = _scale(shape)
    ratio, small, large = _ratio(entry, shape, n)
    for _ in range(2):  # a busy machine can slow one measurement; quadratic stays quadratic
        if ratio < RATIO:
            break
        ratio, small, large = _ratio(entry, shape, n, rounds=5)
    assert ratio < RATIO, (f"{label} on {shape.__name__}: {small:.4f}s at n={n}, "
                           f"{large:.4f}s at 2n (x{ratio:.2f})")


@pytest.mark.parametrize("shape_name", list(CALLSITE_SHAPES))
@pytest.mark.parametrize("entry_name", list(ENTRIES))
def test_doubling_the_input_at_most_doubles_the_time(entry_name: str, shape_name: str) -> None:
    _assert_linear(ENTRIES[entry_name], entry_name, CALLSITE_SHAPES[shape_name])


@pytest.mark.parametrize("shape_name", list(CALLSITE_SHAPES))
def test_auth_check_dkim_and_arc(check: AuthCheck, shape_name: str) -> None:
    _assert_linear(_auth(check), "auth", CALLSITE_SHAPES[shape_name])


async def test_the_seal_passes_on_the_shapes_that_keep_its_fields(check: AuthCheck) -> None:
    """Otherwise the linear measure of ARC would only time a failing parse."""
    sealed = SEAL + SHAPES["folded"](50)
    end = mime.parse_head(sealed).root.body_start
    assert await check._arc(sealed, end) == "pass"
    assert await check._dkim(sealed, end) == ([], "")


VACATION_HEADS = [
    b"From: a@remote.test\r\nSubject: hi\r\n\r\n",
    b"Auto-Submitted: auto-generated\r\n\r\n",
    b"Auto-Submitted: No\r\n\r\n",
    b"Auto-Submitted: no; owner=x\r\n\r\n",
    b"auto-submitted:\r\n  auto-replied\r\n\r\n",
    b"Precedence: BULK\r\n\r\n",
    b"Precedence: first-class\r\n\r\n",
    b"List-Id: <news.remote.test>\r\n\r\n",
    b"List-Id:   \r\n\r\n",
    b"LIST-UNSUBSCRIBE: <mailto:u@remote.test>\r\n\r\n",
    b"X-Auto-Response-Suppress: All\r\n\r\n",
    b"Auto-Submitted: no\r\nAuto-Submitted: auto-generated\r\n\r\n",
    b"Precedence: =?utf-8?q?bulk?=\r\n\r\n",
    b"Subject: =?iso-8859-1?Q?Fr\xf6sche?=\r\nList-Post: <mailto:l@remote.test>\r\n\r\n",
]


@pytest.mark.parametrize("head", VACATION_HEADS)
def test_vacation_decides_as_the_standard_library_reading_did(head: bytes) -> None:
    """The same reasons as with BytesHeaderParser(policy=SMTP), which `get` answered with the
    first field of a name, unfolded and decoded."""
    parsed = BytesHeaderParser(policy=SMTP).parsebytes(head)
    before = {name.lower(): str(parsed.get(name)) for name in parsed}
    assert is_automatic(automatic_fields(head), "friend@remote.test") == is_automatic(
        before, "friend@remote.test")
