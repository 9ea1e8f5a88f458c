"""JMAP benchmark: a mobile-sync request mix under live delivery, and push latency.

Starts its own `mailyard serve` (tests/e2e/server.Server, temporary data_dir, embedded SQLite +
files) unless --port is given, with one account per client (a phone is one user; JMAP allows
an account only --max-concurrent requests at once), each seeded with --seed messages over SMTP.

Mix: --clients concurrent clients loop for --seconds. Each loop is one POST /jmap/api with the
three calls a phone makes when it wakes up: Email/changes since its last state, Email/get of
the created and updated ids (a back-reference to the /changes result) with the properties a
message list shows, and Mailbox/get for the counts. It then keeps newState. No think time.
Meanwhile one SMTP connection delivers --rate messages per second, round-robin to the
accounts, so the /changes calls find real work. Prints requests/s, p50/p99/max latency, the
number of emails fetched and every error.

Push: one EventSource stream (types=Email) for one account; --deliveries messages, one after
the other, each delivered over SMTP; for each, the time from reading SMTP's 250 after DATA to
reading the `state` event the delivery causes. Prints median, p99 and max. The 250 is sent when
the message is durable in the queue, so the time covers the pipeline (parse, thread, store,
index) and the push path (event bus, SSE).

    .venv/bin/python bench/jmap.py --clients 8 --seconds 30 --rate 20 --deliveries 200

Sort (--mode sort): Email/query of each RFC 8621 §4.4.2 sort (and collapseThreads) on a
mailbox bench/search.py loaded (--data-dir; 100,000 messages of me@bench.example), first page
of 50, over HTTPS against a `mailyard serve` on that data directory; --source runs the server
from another checkout (a `git worktree` of an older commit) for before/after figures. Prints
the wall time of each request (p50 and max of --repeat runs after one warm-up).

    .venv/bin/python bench/search.py --messages 100000 --data-dir /tmp/jmap-100k --only 1
    .venv/bin/python bench/jmap.py --mode sort --data-dir /tmp/jmap-100k --repeat 5

--pg-dsn DSN serves the mail store and the index of a `bench/search.py --engine postgres
--pg-dsn DSN` load instead (its --data-dir holds the blobs).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import os
import smtplib
import statistics
import sys
import tempfile
import threading
import time
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.e2e.server import Server, wait_port  # noqa: E402

HOST = "127.0.0.1"
PASSWORD = "bench-password-123"
USING = ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail"]
LIST_PROPERTIES = ["id", "threadId", "mailboxIds", "keywords", "from", "subject",
                   "receivedAt", "size", "preview", "hasAttachment"]


def user(n: int) -> str:
    return f"bench{n}@example.test"


def message(rcpt: str, n: int) -> bytes:
    m = EmailMessage()
    m["From"], m["To"] = "load@remote.test", rcpt
    m["Subject"] = f"Bench message {n}"
    m["Message-ID"] = f"<bench-{n}-{time.time_ns()}@remote.test>"
    m.set_content(f"Message {n} of the JMAP benchmark.\n" + "Some body text.\n" * 20)
    return m.as_bytes()


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def fmt_ms(values: list[float]) -> str:
    if not values:
        return "no samples"
    return (f"p50 {percentile(values, 50) * 1000:.1f} ms, p99 {percentile(values, 99) * 1000:.1f}"
            f" ms, max {max(values) * 1000:.1f} ms (n={len(values)})")


class Deliverer:
    """One SMTP connection, used from a thread (smtplib blocks)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.smtp = smtplib.SMTP(HOST, port, timeout=60)
        self.sent = 0

    def send(self, rcpt: str) -> float:
        """Deliver one message; returns the monotonic time the 250 was read."""
        self.sent += 1
        self.smtp.sendmail("load@remote.test", [rcpt], message(rcpt, self.sent))
        return time.monotonic()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.smtp.quit()


def base_url(port: int) -> str:
    return f"https://{HOST}:{port}"


async def api(client: httpx.AsyncClient, calls: list[list[Any]]) -> list[list[Any]]:
    r = await client.post("/jmap/api", content=orjson.dumps({"using": USING,
                                                            "methodCalls": calls}),
                          headers={"content-type": "application/json"})
    r.raise_for_status()
    result: list[list[Any]] = orjson.loads(r.content)["methodResponses"]
    return result


async def account_of(client: httpx.AsyncClient) -> str:
    session = orjson.loads((await client.get("/jmap/session")).content)
    account: str = session["primaryAccounts"][USING[1]]
    return account


# ---------------------------------------------------------------------- mix


async def sync_client(port: int, address: str, deadline: float, latencies: list[float],
                      errors: list[str], fetched: list[str]) -> None:
    async with httpx.AsyncClient(base_url=base_url(port), verify=False,
                                 auth=(address, PASSWORD), timeout=60) as client:
        account = await account_of(client)
        [[_, first, _]] = await api(client, [["Mailbox/get", {"accountId": account,
                                                              "ids": []}, "s"]])
        state = first["state"]
        while time.monotonic() < deadline:
            calls = [
                ["Email/changes", {"accountId": account, "sinceState": state,
                                   "maxChanges": 200}, "c"],
                ["Email/get", {"accountId": account, "properties": LIST_PROPERTIES,
                               "#ids": {"resultOf": "c", "name": "Email/changes",
                                        "path": "/created"}}, "g"],
                ["Mailbox/get", {"accountId": account, "ids": None,
                                 "properties": ["totalEmails", "unreadEmails"]}, "m"],
            ]
            start = time.monotonic()
            try:
                responses = await api(client, calls)
            except (httpx.HTTPError, ValueError) as e:
                errors.append(f"{type(e).__name__}: {e}")
                continue
            latencies.append(time.monotonic() - start)
            for name, result, _ in responses:
                if name == "error":
                    errors.append(str(result))
                elif name == "Email/changes":
                    state = result["newState"]
                elif name == "Email/get":
                    fetched.extend(e["id"] for e in result["list"])


def deliver_loop(port: int, addresses: list[str], rate: float, stop: threading.Event,
                 sent: list[float]) -> None:
    deliverer = Deliverer(port)
    try:
        n = 0
        next_at = time.monotonic()
        while not stop.is_set():
            deliverer.send(addresses[n % len(addresses)])
            sent.append(time.monotonic())
            n += 1
            next_at += 1 / rate
            time.sleep(max(0.0, next_at - time.monotonic()))
    finally:
        deliverer.close()


async def run_mix(port: int, smtp_port: int, clients: int, seconds: float,
                  rate: float) -> None:
    addresses = [user(n) for n in range(clients)]
    latencies: list[float] = []
    errors: list[str] = []
    fetched: list[str] = []
    sent: list[float] = []
    stop = threading.Event()
    delivering = threading.Thread(target=deliver_loop,
                                  args=(smtp_port, addresses, rate, stop, sent), daemon=True)
    delivering.start()
    deadline = time.monotonic() + seconds
    start = time.monotonic()
    await asyncio.gather(*(sync_client(port, a, deadline, latencies, errors, fetched)
                           for a in addresses))
    elapsed = time.monotonic() - start
    stop.set()
    delivering.join()
    print(f"mix: {clients} clients x {seconds:.0f} s, {len(sent)} deliveries over SMTP"
          f" ({len(sent) / elapsed:.1f}/s)")
    print(f"  {len(latencies)} requests (3 calls each), {len(latencies) / elapsed:.1f}"
          f" requests/s; latency {fmt_ms(latencies)}")
    print(f"  emails fetched by Email/get: {len(fetched)} ({len(set(fetched))} distinct: more"
          f" means /changes reported an email as created twice); errors: {len(errors)}")
    for e in errors[:10]:
        print("   ", e[:200])


# ---------------------------------------------------------------------- push


async def run_push(port: int, smtp_port: int, deliveries: int) -> None:
    address = user(0)
    events: list[tuple[float, int]] = []
    arrived = asyncio.Event()
    opened = asyncio.Event()

    async def listen() -> None:
        async with httpx.AsyncClient(base_url=base_url(port), verify=False,
                                     auth=(address, PASSWORD), timeout=None) as client, \
                client.stream("GET", "/jmap/eventsource?types=Email&closeafter=no&ping=0"
                              ) as response:
            opened.set()
            event = ""
            async for line in response.aiter_lines():
                if line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:") and event == "state":
                    data = orjson.loads(line[5:])
                    [changed] = data["changed"].values()
                    events.append((time.monotonic(), int(changed["Email"])))
                    arrived.set()

    listener = asyncio.create_task(listen())
    await asyncio.wait_for(opened.wait(), 30)
    await asyncio.sleep(0.5)
    deliverer = await asyncio.to_thread(Deliverer, smtp_port)
    latencies: list[float] = []
    missed = 0
    try:
        for _ in range(deliveries):
            seen = len(events)
            arrived.clear()
            t250 = await asyncio.to_thread(deliverer.send, address)
            try:
                while len(events) == seen:
                    await asyncio.wait_for(arrived.wait(), 10)
                    arrived.clear()
            except TimeoutError:
                missed += 1
                continue
            latencies.append(events[seen][0] - t250)
            await asyncio.sleep(0.02)  # let any second event of this delivery come first
    finally:
        await asyncio.to_thread(deliverer.close)
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError, httpx.HTTPError):
            await listener
    negative = sum(1 for x in latencies if x < 0)
    print(f"push: {deliveries} deliveries, SMTP 250 -> EventSource state event:"
          f" median {statistics.median(latencies) * 1000:.1f} ms, {fmt_ms(latencies)};"
          f" missed {missed}; {negative} events read before the 250 itself")


# ---------------------------------------------------------------------- sort

SORT_USER = "me@bench.example"
SORTS: list[tuple[str, list[dict[str, Any]], dict[str, Any]]] = [
    ("receivedAt desc (the store's own order)", [{"property": "receivedAt",
                                                  "isAscending": False}], {}),
    ("size asc", [{"property": "size"}], {}),
    ("size desc", [{"property": "size", "isAscending": False}], {}),
    ("sentAt desc", [{"property": "sentAt", "isAscending": False}], {}),
    ("subject asc", [{"property": "subject"}], {}),
    ("from asc", [{"property": "from"}], {}),
    ("to desc", [{"property": "to", "isAscending": False}], {}),
    ("hasKeyword $flagged desc", [{"property": "hasKeyword", "keyword": "$flagged",
                                   "isAscending": False}], {}),
    ("someInThreadHaveKeyword $flagged desc", [{"property": "someInThreadHaveKeyword",
                                                "keyword": "$flagged", "isAscending": False}],
     {}),
    ("allInThreadHaveKeyword $seen asc", [{"property": "allInThreadHaveKeyword",
                                           "keyword": "$seen"}], {}),
    ("hasKeyword $seen asc, size desc", [{"property": "hasKeyword", "keyword": "$seen"},
                                         {"property": "size", "isAscending": False}], {}),
    ("receivedAt desc, collapseThreads", [{"property": "receivedAt", "isAscending": False}],
     {"collapseThreads": True}),
    ("size desc, collapseThreads", [{"property": "size", "isAscending": False}],
     {"collapseThreads": True}),
    ("from asc, inMailbox Inbox", [{"property": "from"}], {"inbox": True}),
    ("size asc, text (a word of the newest subject)", [{"property": "size"}], {"text": True}),
]


def run_sort(port: int, repeat: int) -> None:
    with httpx.Client(base_url=f"https://{HOST}:{port}", verify=False, timeout=600,
                      auth=(SORT_USER, PASSWORD)) as client:
        session = client.get("/jmap/session").json()
        account = session["primaryAccounts"]["urn:ietf:params:jmap:mail"]

        def call(name: str, args: dict[str, Any]) -> dict[str, Any]:
            r = client.post("/jmap/api", headers={"Content-Type": "application/json"},
                            content=orjson.dumps({"using": USING, "methodCalls": [
                [name, {"accountId": account, **args}, "0"]]}))
            [[answer, result, _]] = r.json()["methodResponses"]
            assert answer == name, result
            return result  # type: ignore[no-any-return]

        boxes = call("Mailbox/get", {"ids": None})["list"]
        inbox = next(b["id"] for b in boxes if b["role"] == "inbox")
        newest = call("Email/query", {"limit": 1})["ids"]
        subject = call("Email/get", {"ids": newest, "properties": ["subject"]}
                       )["list"][0]["subject"]
        word = max(subject.split(), key=len)
        print(f"text filter: {word!r}")
        print(f"{'sort':<46} {'ids':>4} {'page':>8} {'p50':>9} {'max':>9}  ms ({repeat} runs"
              " after a warm-up; page: a digest of the ids, equal when two runs agree)")
        for label, sort, extra in SORTS:
            args: dict[str, Any] = {"sort": sort, "limit": 50}
            if extra.get("collapseThreads"):
                args["collapseThreads"] = True
            if extra.get("inbox"):
                args["filter"] = {"inMailbox": inbox}
            if extra.get("text"):
                args["filter"] = {"text": word}
            first = call("Email/query", args)["ids"]
            times = []
            for _ in range(repeat):
                t0 = time.perf_counter()
                assert call("Email/query", args)["ids"] == first
                times.append(time.perf_counter() - t0)
            digest = hashlib.sha1(" ".join(first).encode()).hexdigest()[:8]
            print(f"{label:<46} {len(first):>4} {digest:>8}"
                  f" {statistics.median(times) * 1000:9.1f}"
                  f" {max(times) * 1000:9.1f}", flush=True)


def sort_mode(args: argparse.Namespace) -> None:
    """A server on the loaded data directory (from --source's code when given)."""
    with tempfile.TemporaryDirectory(prefix="bench-jmap-sort-") as tmp:
        root = Path(tmp)
        (root / "data").symlink_to(Path(args.data_dir).resolve())
        server = Server(root, domains=("bench.example",),
                        limits={"messages_per_ip_per_minute": 0, "connections_per_ip": 0},
                        store={"metadata": args.pg_dsn, "search": args.pg_dsn}
                        if args.pg_dsn else {})
        if args.source:
            os.environ["PYTHONPATH"] = str(Path(args.source).resolve())
        server.start()
        wait_port(server.http_port)
        try:
            print(f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC, code from"
                  f" {args.source or ROOT}, {'PostgreSQL' if args.pg_dsn else 'SQLite'},"
                  f" load averages {os.getloadavg()}", flush=True)
            run_sort(server.http_port, args.repeat)
        finally:
            server.stop()


# ---------------------------------------------------------------------- main


def seed(smtp_port: int, addresses: list[str], count: int) -> None:
    deliverer = Deliverer(smtp_port)
    try:
        for _ in range(count):
            for a in addresses:
                deliverer.send(a)
    finally:
        deliverer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--rate", type=float, default=20, help="SMTP deliveries per second")
    parser.add_argument("--seed", type=int, default=50, help="messages per account first")
    parser.add_argument("--deliveries", type=int, default=200, help="push samples")
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--mode", choices=("both", "mix", "push", "sort"), default="both")
    parser.add_argument("--data-dir", help="sort: a mailbox loaded by bench/search.py")
    parser.add_argument("--source", help="sort: run the server from this checkout")
    parser.add_argument("--pg-dsn", help="sort: the mail store and index bench/search.py"
                        " --engine postgres loaded there")
    parser.add_argument("--repeat", type=int, default=5, help="sort: timed runs each")
    args = parser.parse_args()
    if args.mode == "sort":
        sort_mode(args)
        return
    with tempfile.TemporaryDirectory(prefix="bench-jmap-") as tmp:
        server = Server(Path(tmp), workers=args.workers,
                        limits={"messages_per_ip_per_minute": 0, "connections_per_ip": 0})
        accounts = max(args.clients, 1)
        for n in range(accounts):
            server.add_user(user(n), PASSWORD)
        server.start()
        wait_port(server.http_port)
        try:
            t0 = time.monotonic()
            seed(server.smtp_port, [user(n) for n in range(accounts)], args.seed)
            server.wait_queue_empty(600)
            print(f"seeded {args.seed} messages x {accounts} accounts in"
                  f" {time.monotonic() - t0:.1f} s")
            if args.mode in ("both", "mix"):
                asyncio.run(run_mix(server.http_port, server.smtp_port, args.clients,
                                    args.seconds, args.rate))
                server.wait_queue_empty(600)
            if args.mode in ("both", "push"):
                asyncio.run(run_push(server.http_port, server.smtp_port, args.deliveries))
        finally:
            server.stop()


if __name__ == "__main__":
    main()
