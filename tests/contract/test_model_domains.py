"""model/domains.py on every engine: a domain is one name whatever its case and trailing
dot, for writes and look-ups alike, and a DKIM key made with no date is dated now."""

from __future__ import annotations

import time
from typing import Any

import pytest

from mailyard.store.ports import Conflict, DKIMKeyRecord, NotFound


async def test_domain_is_one_name_with_or_without_the_root_dot(mailstore: Any) -> None:
    await mailstore.add_domain("Example.TEST.")
    assert await mailstore.list_domains() == ["example.test"]
    with pytest.raises(Conflict):
        await mailstore.add_domain("example.test")
    await mailstore.remove_domain("EXAMPLE.test.")
    assert await mailstore.list_domains() == []
    with pytest.raises(NotFound):
        await mailstore.remove_domain("example.test.")


async def test_dkim_key_found_under_the_stored_domain_and_dated(mailstore: Any) -> None:
    before = time.time()
    await mailstore.add_dkim_key(DKIMKeyRecord("Example.Test.", "sel", "ed25519-sha256", b"k"))
    with pytest.raises(Conflict):
        await mailstore.add_dkim_key(DKIMKeyRecord("example.test", "sel", "rsa-sha256", b"j"))
    [key] = await mailstore.dkim_keys("EXAMPLE.TEST.")
    assert (key.domain, key.selector, key.algorithm, key.active) == (
        "example.test", "sel", "ed25519-sha256", True)
    assert key.created_at >= before
    await mailstore.retire_dkim_key("example.TEST.", "sel")
    assert [k.active for k in await mailstore.dkim_keys("example.test")] == [False]
