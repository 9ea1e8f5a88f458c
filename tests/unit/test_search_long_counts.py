"""A count the SQLite index knows to be long (its last read of the same words took
_LONG_COUNT or more, in any generation) is read on a long-read pool thread at once, instead
of first running on the event loop's thread for Database.read_long's 20 ms and then again
from the start on the pool (issue 18: a common word's count under load paid those 20 ms for
nothing). The answer is the same either way."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from mailyard.core import query as q
from mailyard.store.ports import IndexDocument
from mailyard.store.sqlite import search
from mailyard.store.sqlite.search import SqliteSearchIndex

T0 = 1_700_000_000_000


def readers_off_this_thread(index: SqliteSearchIndex) -> int:
    """Reader connections the index's database opened on threads other than this one (the
    event loop's): each thread that reads opens its own, so a read on the long-read pool
    shows as one more."""
    mine = getattr(index.db._local, "conn", None)
    return sum(1 for conn in index.db._readers if conn is not mine)


async def test_a_count_known_long_reads_on_the_pool_at_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    index = SqliteSearchIndex(tmp_path / "search.db")
    try:
        await index.index([IndexDocument("a1", f"e{n}", T0 + n, body="omni common")
                           for n in range(30)])
        outside = {"e0", "e7"}
        first = await index.query("a1", q.Text("omni"), limit=5, total=True, outside=outside)
        assert first.total == 28
        assert readers_off_this_thread(index) == 0  # a short first count: on the loop
        # Every count now counts as long: the next one (a write in between, so not the
        # remembered answer) goes to the pool without a first try on the loop.
        monkeypatch.setattr(search, "_LONG_COUNT", 0.0)
        await index.index([IndexDocument("a1", "e30", T0 + 30, body="omni")])
        again = await index.query("a1", q.Text("omni"), limit=5, total=True, outside=outside)
        assert again.total == 29 and again.ids == [f"e{n}" for n in range(30, 25, -1)]
        assert readers_off_this_thread(index) == 1
        assert threading.current_thread() is threading.main_thread()
        # Words never counted before are not known long: on the loop.
        other = await index.query("a1", q.Text("common"), limit=0, total=True)
        assert other.total == 30 and readers_off_this_thread(index) == 1
    finally:
        index.close()
