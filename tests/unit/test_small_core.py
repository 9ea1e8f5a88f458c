from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from mailyard.core.addresses import normalize
from mailyard.core.ids import id_time_ms, new_id
from mailyard.core.ratelimit import ConcurrencyLimiter, WindowLimiter
from mailyard.core.threading import thread_keys, wants_subject_fallback
from mailyard.protocols.smtp.replies import enhance


def test_ids_are_url_safe_unique_and_time_ordered() -> None:
    ids = [new_id("e") for _ in range(10_000)]
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)
    assert all(re.fullmatch(r"e[0-9a-z]{26}", i) for i in ids)
    import time
    assert abs(id_time_ms(ids[-1]) - time.time() * 1000) < 5000


def test_address_normalisation() -> None:
    assert normalize(" <Alice@Example.ORG.> ") == "alice@example.org"
    assert normalize("postmaster") == "postmaster"


def test_window_limiter() -> None:
    limiter = WindowLimiter(2, 60.0)
    assert limiter.allow("a", 0) and limiter.allow("a", 1)
    assert not limiter.allow("a", 2)
    assert limiter.allow("b", 2)
    assert limiter.allow("a", 61)
    limiter.forget_idle(1000)
    assert WindowLimiter(0, 60).allow("x", 0)


def test_concurrency_limiter() -> None:
    limiter = ConcurrencyLimiter(1)
    assert limiter.acquire("ip") and not limiter.acquire("ip")
    limiter.release("ip")
    assert limiter.acquire("ip")


def test_thread_keys_and_subject_fallback() -> None:
    assert thread_keys("a", ["b"], ["c", "b", "a"]) == ["a", "b", "c"]
    assert thread_keys(None, [], []) == []
    assert wants_subject_fallback("Re: Hello", "hello", False)
    assert not wants_subject_fallback("Hello", "hello", False)
    assert wants_subject_fallback("Hello", "hello", True)
    assert not wants_subject_fallback("", "", True)


def test_enhanced_status_codes() -> None:
    assert enhance("552 Error: Too much mail data").startswith("552 5.3.4")
    assert enhance("500 Error: bad syntax") == "500 5.5.2 Error: bad syntax"
    assert enhance("250 2.1.0 Sender OK") == "250 2.1.0 Sender OK"
    assert enhance("354 End data with <CR><LF>.<CR><LF>").startswith("354 End")
    assert enhance("250-8BITMIME") == "250-2.0.0 8BITMIME"


@given(st.text())
def test_enhance_never_raises(reply: str) -> None:
    assert isinstance(enhance(reply), str)
