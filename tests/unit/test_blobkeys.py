"""Blob ids (core/blobkeys.py): the dated body form, the flat form, and nothing else."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailyard.core import blobkeys

SHA = hashlib.sha256(b"skeleton").hexdigest()


def ms(*when: int) -> int:
    return int(datetime(*when, tzinfo=UTC).timestamp() * 1000)  # type: ignore[misc]


@pytest.mark.parametrize(("received", "day"), [
    (ms(2025, 6, 1, 0, 0, 0), "2025/06/01"),
    (ms(2025, 6, 1, 23, 59, 59) + 999, "2025/06/01"),  # the last millisecond of the UTC day
    (ms(2024, 2, 29, 12), "2024/02/29"),
    (0, "1970/01/01"),
    (-86_400_000 * 400, "1970/01/01"),  # before the epoch (an APPEND date): clamped
    (ms(9999, 12, 31, 23, 59, 59) + 10**12, "9999/12/31"),  # past year 9999: clamped
])
def test_body_id_is_the_utc_day_then_the_hash(received: int, day: str) -> None:
    blob_id = blobkeys.body_id(SHA, received)
    assert blob_id == f"bodies/{day}/{SHA}"
    assert blobkeys.is_body(blob_id) and not blobkeys.is_flat(blob_id)
    assert blobkeys.check(blob_id) == blob_id
    assert blobkeys.content_sha256(blob_id) == SHA


@pytest.mark.parametrize("digest", ["", SHA.upper(), SHA[:-1], SHA + "0", "../" + SHA[3:]])
def test_body_id_needs_a_lower_case_sha256(digest: str) -> None:
    with pytest.raises(ValueError):
        blobkeys.body_id(digest, 0)


def test_content_sha256_of_each_form() -> None:
    assert blobkeys.content_sha256(SHA) == SHA  # attachment, upload, or a body of an old store
    assert blobkeys.content_sha256("s01jabcdefghjkmnpqrstvwxyz0") is None  # a spool copy
    assert blobkeys.content_sha256("bodies/2025/06/01/" + SHA.upper()) is None


@pytest.mark.parametrize("bad", [
    f"bodies/2025/13/01/{SHA}", f"bodies/2025/00/01/{SHA}", f"bodies/2025/06/32/{SHA}",
    f"bodies/2025/06/00/{SHA}", f"bodies/25/06/01/{SHA}", f"bodies/2025/6/1/{SHA}",
    f"bodies/2025/06/01/{SHA}/", f"/bodies/2025/06/01/{SHA}", f"bodies//2025/06/01/{SHA}",
    f"bodies/2025/06/01/{SHA}\n", f"bodies/2025/06/01/../{SHA}", f"Bodies/2025/06/01/{SHA}",
    f"attachments/{SHA}", "bodies/2025/06/01/abcdefgh", f"bodies/2025/06/{SHA}",
])
def test_malformed_body_ids_are_refused(bad: str) -> None:
    assert not blobkeys.is_body(bad)
    with pytest.raises(ValueError):
        blobkeys.check(bad)


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=150)
       | st.from_regex(r"bodies/[0-9]{2,5}/[0-9]{1,3}/[0-9]{1,3}/[0-9a-f./]{60,68}",
                       fullmatch=True))
def test_any_accepted_id_is_a_safe_relative_path(blob_id: str) -> None:
    """What `check` lets through becomes a file path and an object key as it is."""
    try:
        blobkeys.check(blob_id)
    except ValueError:
        return
    segments = blob_id.split("/")
    assert all(s and s not in (".", "..") and not s.startswith(".") for s in segments)
    assert all(c.isascii() and (c.isalnum() or c in "_-/") for c in blob_id)
    assert len(segments) in (1, 5)
    if len(segments) == 5:
        assert blobkeys.content_sha256(blob_id) == segments[-1]
