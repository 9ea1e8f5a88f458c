"""`mailyard cluster status`: the nodes seen, the queue, the shards and each engine's health.

Every engine is asked with a short timeout, in parallel, so one that is down costs seconds, not
minutes; the exit status is 1 when a required one (NATS when configured, the MailStore, the
blobs) does not answer. Redis is not required: without it the counters are per node.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from mailyard.app import Runtime

TIMEOUT = 5.0


async def _ask(call: Awaitable[Any]) -> tuple[bool, Any]:
    try:
        return True, await asyncio.wait_for(call, TIMEOUT)
    except Exception as e:  # any failure is "down", with its reason
        return False, f"{type(e).__name__}: {e}" if str(e) else type(e).__name__


def _ago(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _where(dsn: str) -> str:
    """A DSN without its password."""
    parts = urlsplit(dsn)
    host = parts.hostname or ""
    return f"{host}:{parts.port or 5432}{parts.path}"


async def _shard(dsn: str) -> str:
    import asyncpg

    conn = await asyncpg.connect(dsn, timeout=TIMEOUT)
    try:
        size = await conn.fetchval("SELECT pg_database_size(current_database())")
        accounts = await conn.fetchval(
            "SELECT CASE WHEN to_regclass('accounts') IS NULL THEN NULL"
            " ELSE (SELECT count(*) FROM accounts) END")
    finally:
        await conn.close()
    return f"{size / 1e6:.1f} MB, {accounts if accounts is not None else '-'} accounts"


async def _redis(url: str) -> str:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url, socket_timeout=TIMEOUT,
                                     socket_connect_timeout=TIMEOUT)
    try:
        await client.ping()
        info = await client.info("server")
        return f"redis {info.get('redis_version', '?')}"
    finally:
        await client.aclose()


async def _nats(rt: Runtime) -> str:
    nc = await rt.nats.client()
    info = await nc.jsm(timeout=TIMEOUT).account_info()
    servers = ", ".join(str(s.netloc) for s in nc.servers) or "?"
    return (f"connected to {nc.connected_url.netloc if nc.connected_url else '?'}"
            f" (known: {servers}); JetStream {info.streams} streams, {info.memory + info.storage}"
            f" bytes")


async def _queue_stream(rt: Runtime) -> str:
    from mailyard.store.nats.queue import NatsQueue

    queue = rt.queue
    assert isinstance(queue, NatsQueue)
    _, jsm = await rt.nats.jetstream(timeout=TIMEOUT)
    out = []
    for name in (queue.items_stream, queue.dead_stream):
        try:
            info = await jsm.stream_info(name)
        except Exception:
            out.append(f"{name}: not made yet")
            continue
        cluster = info.cluster
        leader = cluster.leader if cluster is not None else "-"
        replicas = [str(r.name) for r in (cluster.replicas or [])] if cluster is not None else []
        lagging = [str(r.name) for r in (cluster.replicas or []) if not r.current] \
            if cluster is not None else []
        out.append(f"{name}: {info.state.messages} messages, replicas"
                   f" {info.config.num_replicas} (leader {leader}"
                   + (f", followers {', '.join(replicas)}" if replicas else "")
                   + (f", behind: {', '.join(lagging)}" if lagging else "") + ")")
    return "; ".join(out)


async def cmd_cluster(rt: Runtime, args: argparse.Namespace) -> None:
    config = rt.config
    c = config.cluster
    checks: dict[str, Awaitable[Any]] = {}
    required: set[str] = {"mailstore", "blobs"}
    if c.nats:
        from mailyard.store.nats.membership import NatsMembership

        membership = NatsMembership(rt.nats, prefix=c.prefix, replicas=c.replicas)
        checks["nats"] = _nats(rt)
        checks["nodes"] = membership.nodes()
        required |= {"nats", "nodes"}
    checks["queue"] = rt.queue.stats()
    required.add("queue")
    if c.queue == "nats":
        checks["streams"] = _queue_stream(rt)
    checks["mailstore"] = rt.store.list_domains()
    shards = config.store.shards or ((config.store.metadata,) if config.store.metadata else ())
    for n, dsn in enumerate(shards):
        checks[f"shard {n}"] = _shard(dsn)
        required.add(f"shard {n}")
    checks["blobs"] = rt.blobs.exists("readyz-probe")
    if config.store.counters.startswith(("redis://", "rediss://", "unix://")):
        checks["redis"] = _redis(config.store.counters)

    names = list(checks)
    results = dict(zip(names, await asyncio.gather(*(_ask(checks[n]) for n in names)),
                       strict=True))
    now = time.time()

    ok, nodes = results.pop("nodes", (True, None))
    if nodes is not None:
        print(f"nodes ({len(nodes) if ok else '?'} seen in NATS, heartbeat every 10 s):")
        if not ok:
            print(f"  cannot read them: {nodes}")
        for card in nodes if ok else []:
            listeners = " ".join(f"{k}={v}" for k, v in card.listeners.items())
            print(f"  {card.node}\tpid {card.pid} on {card.host}, up {_ago(now - card.started_at)},"
                  f" seen {_ago(now - card.seen_at)} ago\t{listeners}")
    else:
        print("nodes: this node only ([cluster] nats is not set)")

    ok, stats = results.pop("queue")
    engine = "NATS JetStream" if c.queue == "nats" else "SQLite (this node)"
    if ok:
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(stats.by_kind.items())) or "empty"
        print(f"queue ({engine}): ready {stats.ready}, leased {stats.leased},"
              f" delayed {stats.delayed}, dead {stats.dead} ({kinds})")
    else:
        print(f"queue ({engine}): DOWN {stats}")
    failed = [] if ok else ["queue"]
    if "streams" in results:
        ok, text = results.pop("streams")
        print(f"  {text if ok else 'streams: ' + str(text)}")

    print("engines:")
    for name, (ok, value) in results.items():
        if name.startswith("shard "):
            label = f"{name} ({_where(shards[int(name.split()[1])])})"
        else:
            label = name
        state = "ok" if ok else "DOWN"
        detail = value if isinstance(value, str) else ""
        print(f"  {label}: {state}" + (f" ({detail})" if detail else ""))
        if not ok and name in required:
            failed.append(name)
    if failed:
        print(f"required engines down: {', '.join(failed)}", file=sys.stderr)
        args.exit_code = 1
