"""The IMAP listener's cache of fetched message octets: bounded in bytes, least recently used
first out, large messages never kept."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from mailyard.protocols.imap.rawcache import RawCache


def test_a_message_put_is_found_by_its_blob_id() -> None:
    cache = RawCache(max_bytes=100, max_message=50)
    cache.put("b1", b"hello")
    assert cache.get("b1") == b"hello"
    assert cache.get("b2") is None


def test_the_least_recently_used_goes_first() -> None:
    cache = RawCache(max_bytes=30, max_message=30)
    cache.put("a", b"x" * 10)
    cache.put("b", b"y" * 10)
    cache.put("c", b"z" * 10)
    assert cache.get("a") == b"x" * 10  # now the most recent
    cache.put("d", b"w" * 10)  # 40 > 30: the least recently used ("b") leaves
    assert cache.get("b") is None
    assert [cache.get(k) is not None for k in "acd"] == [True, True, True]
    assert cache.size == 30


def test_a_large_message_is_not_kept() -> None:
    cache = RawCache(max_bytes=1000, max_message=10)
    cache.put("big", b"x" * 11)
    assert cache.get("big") is None
    assert len(cache) == 0


def test_the_same_id_twice_is_counted_once() -> None:
    cache = RawCache(max_bytes=100, max_message=100)
    cache.put("a", b"x" * 10)
    cache.put("a", b"x" * 10)
    assert cache.size == 10 and len(cache) == 1


@given(st.lists(st.sampled_from("abcdefgh"), max_size=60),
       st.integers(min_value=0, max_value=120))
def test_never_above_its_bound_and_every_entry_is_what_was_put(puts: list[str],
                                                               bound: int) -> None:
    cache = RawCache(max_bytes=bound, max_message=40)
    contents = {key: key.encode() * (i * 7) for i, key in enumerate("abcdefgh")}  # 0..49
    for key in puts:
        cache.put(key, contents[key])
        assert cache.size <= bound
    assert cache.size == sum(len(got) for key in contents if (got := cache.get(key)))
    for key, data in contents.items():
        got = cache.get(key)
        assert got is None or (got == data and len(data) <= 40)


def test_a_size_of_zero_keeps_nothing() -> None:
    """`[imap] fetch_cache = 0`: every FETCH reads the blobs."""
    cache = RawCache(max_bytes=0)
    cache.put("a", b"x")
    assert cache.get("a") is None
    assert len(cache) == 0 and cache.size == 0
