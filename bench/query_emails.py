"""MailStore.query_emails microbenchmark: the store-side half of JMAP Email/query and of IMAP
SEARCH/SORT's metadata conditions, at N emails of one account, on SQLite or PostgreSQL.

The account is loaded once through `deliver` (threads of 1-4 emails, 40 senders, subjects
with and without "Re:", ~30 % flagged, a third archived out of the inbox) and kept in
--data-dir (SQLite) or the --pg-dsn database, so a later run with --skip-load times the same
rows. Each query runs once to warm up, then --repeat times, the queries alternating; prints the
median and p90 in ms of each (first page of 50 with its total, as Email/query asks), and the
median CPU of this process (on PostgreSQL: the Python side alone, steadier than wall time on a
shared machine).

    .venv/bin/python bench/query_emails.py --messages 10000 --data-dir /tmp/qe-10k
    .venv/bin/python bench/query_emails.py --data-dir /tmp/qe-10k --skip-load --repeat 30
    .venv/bin/python bench/query_emails.py --engine postgres \\
        --pg-dsn postgresql://postgres@127.0.0.1:5432/qe10k --messages 10000
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import random
import statistics
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from mailyard.core import query as q
from mailyard.core.emailsort import SortKey
from mailyard.core.ids import new_id
from mailyard.store.ports import NewEmail

ADDRESS = "bench@example.test"


def _email(account_id: str, n: int, rng: random.Random, thread_of: dict[int, str]) -> NewEmail:
    email_id = new_id("e")
    topic = n // rng.randint(1, 4)
    reply = topic in thread_of
    subject = ("Re: " if reply else "") + f"Topic {topic % 997} about things {topic}"
    message_id = f"<{email_id}@bench.test>"
    in_reply_to = [thread_of[topic]] if reply else []
    thread_of[topic] = message_id.strip("<>")
    sender = rng.randrange(40)
    content = f"Message-ID: {message_id}\r\nSubject: {subject}\r\n\r\nbody {n}\r\n".encode()
    received = 1_700_000_000_000 + n * 60_000
    return NewEmail(
        account_id=account_id, email_id=email_id, delivery_key=new_id("q"),
        content_sha256=hashlib.sha256(content).hexdigest(),
        blob_id=hashlib.sha256(content).hexdigest(), size=rng.randint(500, 200_000),
        received_at=received, sent_at=None if n % 50 == 0 else received - rng.randint(0, 10**7),
        message_id=message_id, in_reply_to=in_reply_to, references=list(in_reply_to),
        subject=subject, thread_subject=subject.removeprefix("Re: ").casefold(),
        from_=[{"name": f"Sender {sender:02}" if sender % 3 else "",
                "email": f"s{sender}@example.test"}],
        to=[{"name": "", "email": ADDRESS}], cc=[], bcc=[], reply_to=[], sender=[],
        preview=f"body {n}", has_attachment=n % 10 == 0, attachments=[],
        envelope=b"NIL", bodystructure=b"NIL", body=b"", parts={},
        mailbox_roles=["inbox"] if n % 3 else ["archive"],
        keywords=["$seen"] + (["$flagged"] if rng.random() < 0.3 else []),
    )


async def _open(args: argparse.Namespace) -> Any:
    if args.engine == "sqlite":
        from mailyard.store.sqlite.mailstore import SqliteMailStore
        Path(args.data_dir).mkdir(parents=True, exist_ok=True)
        return SqliteMailStore(Path(args.data_dir) / "mail.db")
    from mailyard.store.postgres.mailstore import PostgresMailStore
    return await PostgresMailStore.connect(args.pg_dsn)


async def _load(store: Any, messages: int) -> str:
    await store.add_domain("example.test")
    account = await store.create_account(ADDRESS, "x", 1 << 40)
    rng = random.Random(7)
    thread_of: dict[int, str] = {}
    batch = [_email(account.id, n, rng, thread_of) for n in range(messages)]
    started = time.perf_counter()
    for start in range(0, len(batch), 200):
        await asyncio.gather(*(store.deliver(e) for e in batch[start:start + 200]))
    print(f"loaded {messages} in {time.perf_counter() - started:.1f} s")
    return str(account.id)


def _queries(store: Any, account_id: str, inbox: str, among: list[str]
             ) -> dict[str, Callable[[], Awaitable[Any]]]:
    def run(node: q.Node, **kw: Any) -> Callable[[], Awaitable[Any]]:
        return lambda: store.query_emails(account_id, node, limit=50, total=True, **kw)

    every: q.Node = q.And(())
    in_inbox = q.Mailbox(inbox, by_id=True)
    flagged = q.Keyword("$flagged")
    return {
        "newest": run(every),
        "in:inbox": run(in_inbox),
        "is:flagged oldest": run(flagged, order="oldest"),
        "among 2000": run(every, among=among),
        "sort size asc": run(every, sort=[SortKey("size")]),
        "inbox sort sentAt": run(in_inbox, sort=[SortKey("sentAt", ascending=False)]),
        "sort subject": run(every, sort=[SortKey("subject")]),
        "inbox sort from desc": run(in_inbox, sort=[SortKey("from", ascending=False)]),
        "collapse newest": run(every, sort=[SortKey("receivedAt", ascending=False)],
                               collapse_threads=True),
        "inbox collapse newest": run(in_inbox, sort=[SortKey("receivedAt", ascending=False)],
                                     collapse_threads=True),
        "collapse subject": run(every, sort=[SortKey("subject")], collapse_threads=True),
        "among sort size": run(every, among=among, sort=[SortKey("size")]),
        "hasKeyword sort": run(in_inbox, sort=[SortKey("hasKeyword", keyword="$flagged"),
                                               SortKey("receivedAt", ascending=False)]),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--engine", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--data-dir", default="/tmp/mailyard-bench-query")
    parser.add_argument("--pg-dsn", default="")
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--skip-load", action="store_true")
    args = parser.parse_args()
    store = await _open(args)
    try:
        if args.skip_load:
            account_id = (await store.get_account(ADDRESS)).id
        else:
            account_id = await _load(store, args.messages)
        boxes = {b.role: b.id for b in await store.list_mailboxes(account_id)}
        ids = (await store.query_emails(account_id, q.And(()))).ids
        among = random.Random(3).sample(ids, min(2000, len(ids)))
        queries = _queries(store, account_id, boxes["inbox"], among)
        times: dict[str, list[float]] = {name: [] for name in queries}
        cpu: dict[str, list[float]] = {name: [] for name in queries}
        for query in queries.values():
            await query()
        for _ in range(args.repeat):
            for name, query in queries.items():
                started, used = time.perf_counter(), time.process_time()
                await query()
                times[name].append((time.perf_counter() - started) * 1000)
                cpu[name].append((time.process_time() - used) * 1000)
        print(f"| query ({args.engine}, {len(ids)} emails) | median ms | p90 ms |"
              " this process's CPU ms (median) |")
        print("|---|---:|---:|---:|")
        for name, runs in times.items():
            runs.sort()
            print(f"| {name} | {statistics.median(runs):.2f} |"
                  f" {runs[int(len(runs) * 0.9) - 1]:.2f} | {statistics.median(cpu[name]):.2f} |")
    finally:
        store.close()


if __name__ == "__main__":
    asyncio.run(main())
