"""The MailStore's write path through the mail model (issue 20), per engine: deliveries (runs
of five replies threading together), keyword updates of 50 emails at a time ($seen on, then
off), and MOVEs of 50 from INBOX to Archive, through the MailStore port; wall-clock means.

To compare with an earlier version, extract it (`git archive <commit> mailyard | tar -x -C
/tmp/old`) and run this file with `--code /tmp/old`; alternate the runs, the machine is shared.

    .venv/bin/python bench/mailmodel_writes.py sqlite 1500
    .venv/bin/python bench/mailmodel_writes.py postgres 600 --code /tmp/old
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PG = "postgresql://postgres@127.0.0.1:5432"


async def run(engine: str, n: int) -> dict[str, float]:
    from tests.contract.conftest import make_new_email

    name = ""
    store: Any
    if engine == "sqlite":
        from mailyard.store.sqlite.mailstore import SqliteMailStore

        store = SqliteMailStore(Path(tempfile.mkdtemp()) / "mail.db")
    else:
        import asyncpg

        from mailyard.store.postgres.mailstore import PostgresMailStore

        name = "mailmodel_bench_" + uuid.uuid4().hex[:8]
        admin = await asyncpg.connect(f"{PG}/postgres")
        await admin.execute(f"CREATE DATABASE {name}")
        await admin.close()
        store = PostgresMailStore(f"{PG}/{name}")
    account = await store.create_account(f"b{uuid.uuid4().hex[:6]}@example.test", "x", 10**12)
    out = {}
    started, ids, previous = time.perf_counter(), [], None
    for i in range(n):
        email = make_new_email(account.id, subject=f"Re: topic {i // 5}",
                               in_reply_to=[previous] if previous and i % 5 else None)
        previous = email.message_id
        await store.deliver(email)
        ids.append(email.email_id)
    out["deliver_ms"] = (time.perf_counter() - started) * 1000 / n
    started = time.perf_counter()
    for change in ({"add": ["$seen"]}, {"remove": ["$seen"]}):
        for k in range(0, n, 50):
            await store.set_keywords(account.id, ids[k:k + 50], **change)
    out["keywords_ms_per_50"] = (time.perf_counter() - started) * 1000 / (2 * n / 50)
    boxes = {b.role: b.id for b in await store.list_mailboxes(account.id)}
    started = time.perf_counter()
    for k in range(0, n, 50):
        await store.move(account.id, ids[k:k + 50], boxes["inbox"], boxes["archive"])
    out["move_ms_per_50"] = (time.perf_counter() - started) * 1000 / (n / 50)
    store.close()
    if name:
        admin = await asyncpg.connect(f"{PG}/postgres")
        await admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
        await admin.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("engine", choices=["sqlite", "postgres"])
    parser.add_argument("messages", type=int)
    parser.add_argument("--code", default=str(ROOT), help="the mailyard package's parent")
    args = parser.parse_args()
    sys.path[:0] = [args.code, str(ROOT)]  # the code measured, then the tests' factory
    import mailyard

    figures = asyncio.run(run(args.engine, args.messages))
    print(Path(mailyard.__file__).parent.parent, args.engine,
          " ".join(f"{k}={v:.2f}" for k, v in figures.items()))


if __name__ == "__main__":
    main()
