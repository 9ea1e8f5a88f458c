"""Bad mail of every kind goes through the real pipeline, in process, and comes back intact.

The runtime is the real one (SQLite, files, FTS5) in a temporary data_dir; hypothesis supplies
the mail: random bytes, broken MIME trees, bare LFs, unknown charsets, deep nesting.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailyard.app import Runtime
from mailyard.config import Config
from mailyard.store.ports import QueueItem

HEADER_NAMES = [b"Subject", b"From", b"To", b"Content-Type", b"Content-Transfer-Encoding",
                b"Message-ID", b"References", b"Date", b"Content-Disposition", b"X-Junk"]
VALUES = [b"text/plain; charset=unknown-8bit", b"multipart/mixed; boundary=zz",
          b"multipart/alternative; boundary=\"a b\"", b"base64", b"quoted-printable",
          b"=?utf-8?b?w6k=?=", b"=?x-bogus?q?=E9?=", b"<a@b> <c@d", b"attachment; filename*=x",
          b"\xff\xfe\x80 garbage", b"message/rfc822", b"", b"Thu, 99 Foo 2026"]


@st.composite
def broken_mail(draw: st.DrawFn) -> bytes:
    eol = draw(st.sampled_from([b"\r\n", b"\n", b"\r"]))
    lines = [name + b": " + draw(st.sampled_from(VALUES))
             for name in draw(st.lists(st.sampled_from(HEADER_NAMES), max_size=8))]
    body_bits = draw(st.lists(st.one_of(
        st.binary(max_size=200),
        st.sampled_from([b"--zz", b"--zz--", b"--a b", b"Content-Type: text/html", b"",
                         b"<p>hi&amp;</p>", b"=E9=", b"aGVsbG8=", b"."]),
    ), max_size=30))
    depth = draw(st.integers(0, 60))
    nested = b"".join(b"Content-Type: multipart/mixed; boundary=n%d" % i + eol + eol
                      + b"--n%d" % i + eol for i in range(depth))
    return eol.join(lines) + eol + eol + nested + eol.join(body_bits)


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


async def deliver_all(runtime: Runtime, mails: list[bytes]) -> list[bytes]:
    account = await runtime.store.get_account("fuzz@example.test")
    for n, raw in enumerate(mails):
        await runtime.delivery.accept(queue_id=f"q{n:026d}", mail_from="x@remote.test",
                                      recipients=["fuzz@example.test"], raw=raw,
                                      trace_length=0, received_at=1_700_000_000_000 + n)
    worker = runtime.worker()
    items: list[QueueItem] = await runtime.queue.lease(["inbound"], 1000, 60)
    await worker.handle(items)
    stats = await runtime.queue.stats()
    assert stats.ready + stats.leased + stats.delayed == 0, stats
    assert stats.dead == 0, await runtime.queue.dead_letters()
    emails = await runtime.mailbox.emails(account, limit=10_000)
    return [await runtime.mailbox.raw(account, e.id) for e in
            sorted(emails, key=lambda e: e.received_at)]


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(st.one_of(broken_mail(), st.binary(min_size=1, max_size=3000)), min_size=1,
                max_size=5, unique=True))
def test_any_mail_is_stored_and_comes_back_byte_exact(mails: list[bytes]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        runtime = Runtime.open(Config(data_dir=Path(tmp), domains=("example.test",)))
        try:
            run(runtime.accounts.add_user("fuzz@example.test", "pw"))
            stored = run(deliver_all(runtime, mails))
        finally:
            runtime.close()
    assert stored == mails
