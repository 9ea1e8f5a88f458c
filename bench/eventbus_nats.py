"""The NATS event bus's hop between nodes: how long from `publish` on one node's bus to the
state arriving at a subscriber on another node's (issue 21: IDLE on node C hearing node A).

Two NatsEventBus objects, each with its own connection as two nodes have, on a NATS server
(`--nats`, default the machine's 127.0.0.1:4222). `--accounts` subscribers on the receiving
side, one per account; events go out at `--rate` per second, round-robin over the accounts.
Prints p50, p90, p99 and the maximum in milliseconds, and the machine's load average, which
shares the cores with the measurement.

    .venv/bin/python bench/eventbus_nats.py --events 5000 --accounts 1000 --rate 2000
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mailyard.store.nats.connection import NatsConnection
from mailyard.store.nats.eventbus import NatsEventBus


async def run(args: argparse.Namespace) -> None:
    prefix = f"mybench{os.getpid()}"
    sender = NatsEventBus(NatsConnection([args.nats]), prefix=prefix)
    receiver = NatsEventBus(NatsConnection([args.nats]), prefix=prefix)
    accounts = [f"acct-{n}" for n in range(args.accounts)]
    sent: dict[int, float] = {}
    latencies: list[float] = []
    done = asyncio.Event()

    async def listen(account: str) -> None:
        async for state in receiver.subscribe(account):
            latencies.append(time.perf_counter() - sent[state])
            if len(latencies) >= args.events:
                done.set()

    listeners = [asyncio.create_task(listen(a)) for a in accounts]
    await receiver.listen("")
    await sender.listen("")
    await asyncio.sleep(1.0)  # every server-side subscription in place
    gap = 1.0 / args.rate
    start = time.perf_counter()
    for n in range(args.events):
        sent[n] = time.perf_counter()
        await sender.publish(accounts[n % len(accounts)], n)
        ahead = start + (n + 1) * gap - time.perf_counter()
        if ahead > 0:
            await asyncio.sleep(ahead)
    try:
        await asyncio.wait_for(done.wait(), 30)
    except TimeoutError:
        print(f"only {len(latencies)} of {args.events} events arrived", file=sys.stderr)
    for task in listeners:
        task.cancel()
    await sender.aclose()
    await receiver.aclose()
    ms = sorted(x * 1000 for x in latencies)
    q = statistics.quantiles(ms, n=100)
    print(f"{len(ms)} events, {args.accounts} accounts, {args.rate}/s: p50 {q[49]:.2f} ms,"
          f" p90 {q[89]:.2f} ms, p99 {q[98]:.2f} ms, max {ms[-1]:.2f} ms"
          f" (load average {os.getloadavg()[0]:.1f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nats", default="nats://127.0.0.1:4222")
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=2000.0)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
