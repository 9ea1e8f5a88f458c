"""IMAP load benchmark: a command mix from concurrent clients, and many idle (IDLE) connections.

Both modes start their own `mailyard serve` (tests/e2e/server.Server, temporary data_dir,
embedded SQLite + files) unless --port is given, create one user and seed its INBOX with --seed
messages by IMAP APPEND from a few parallel connections. The load generator is raw asyncio
streams (uvloop when installed) and runs on the same machine as the server.

--mode mix (default): --clients concurrent clients each LOGIN, SELECT INBOX, then loop for
--seconds over a weighted mix of what a mail client does (see MIX): FETCH 50 messages' flags,
UID, size and three header fields from a random window; UID FETCH BODY.PEEK[] of a random
message; STORE +FLAGS/-FLAGS \\Seen; SEARCH UNSEEN, SEARCH FROM and SEARCH TEXT
(two words); a small APPEND; NOOP; a brief
IDLE/DONE. Each client sends its next command as soon as the previous one is answered (no think
time). Prints the loop's commands/s, p50/p99/max latency per command type (from sending the
command to reading its tagged response; for IDLE, to the "+" continuation, and DONE to the tagged
OK), and every NO/BAD answer as an error.

--mode imaptest-mix: the mix of issue 16's independent load generator (imaptest-like, clients
that stay logged in). Setup: CREATE the folders of FOLDERS (an existing one is fine), then
--clients clients each LOGIN once and loop for --seconds, every iteration sending in order:
SELECT INBOX; FETCH 1:* (UID FLAGS); FETCH of 5 random messages (UID RFC822.SIZE
BODY.PEEK[HEADER] BODY.PEEK[TEXT]); STORE of a random message +FLAGS or -FLAGS of a random
subset of \\Seen \\Flagged \\Answered; STORE of a random message +FLAGS (\\Deleted); EXPUNGE;
APPEND INBOX of a ~3 KB message (one in, about one out: the INBOX stays near --seed); LIST "" "*";
STATUS of a random folder or INBOX (MESSAGES UIDNEXT UNSEEN). Client i draws from
random.Random(i), so two servers get the same command sequence up to what their answers change
(EXISTS). Prints commands/s and count, p50/p90/p99/max per command, the load average before
and after, and the CPU seconds the server's process tree used during the loop (--pid with
--port; Dovecot: its master's pid); --json writes the same.
Works against any server through --port/--user/--password (bench/dovecot-up.sh starts Dovecot).

    .venv/bin/python bench/imap_load.py --mode imaptest-mix --clients 10 --seconds 20 --seed 500

--mode idle: opens --connections connections, each LOGIN + SELECT INBOX + IDLE, reads the
server's VmRSS from /proc/<pid>/status before and after, and prints the RSS growth in total and
per idle connection, and the VmRSS and RssAnon again --settle-idle seconds later (at rest, once
the listener has trimmed its heap after the logins). Then delivers one message (IMAP APPEND from
another connection, or SMTP with --deliver smtp) and measures, for every idle connection, the
time from sending that message to reading "* n EXISTS" (p50/p99/max wake-up latency). The fd
limit of this process is raised to its hard limit before the server starts, so the server
subprocess inherits it.

    .venv/bin/python bench/imap_load.py --mode mix --clients 10 --seconds 30 --seed 2000
    .venv/bin/python bench/imap_load.py --mode idle --connections 2000 --seed 100
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import resource
import smtplib
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.e2e.server import Server  # noqa: E402

HOST = "127.0.0.1"
USER = "bench@example.test"
PASSWORD = "bench-password-123"
_EXISTS = re.compile(rb"^\* (\d+) EXISTS")
_EXPUNGE = re.compile(rb"^\* \d+ EXPUNGE")
_UIDNEXT = re.compile(rb"\[UIDNEXT (\d+)\]")
_LITERAL = re.compile(rb"\{(\d+)\+?\}\r\n\Z")


class ImapError(Exception):
    """The connection broke or answered something we cannot read."""


# ---------------------------------------------------------------------- a minimal IMAP client

class Client:
    """One IMAP connection: sends tagged commands and reads responses, literals included."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.exists = 0
        self.uidnext = 1
        self._tags = 0

    @classmethod
    async def connect(cls, host: str, port: int) -> Client:
        reader, writer = await asyncio.open_connection(host, port, limit=1 << 20)
        client = cls(reader, writer)
        greeting = await client.read_line()
        if not greeting.startswith(b"* OK"):
            raise ImapError(f"greeting: {greeting[:100]!r}")
        return client

    def next_tag(self) -> str:
        self._tags += 1
        return f"a{self._tags}"

    async def read_line(self) -> bytes:
        """One response line with its literals inline; updates `exists` from EXISTS."""
        parts: list[bytes] = []
        while True:
            try:
                line = await self.reader.readuntil(b"\r\n")
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError) as e:
                raise ImapError(f"connection lost: {e!r}") from None
            parts.append(line)
            mark = _LITERAL.search(line)
            if mark is None:
                break
            parts.append(await self.reader.readexactly(int(mark.group(1))))
        data = b"".join(parts)
        match = _EXISTS.match(data)
        if match:
            self.exists = int(match.group(1))
        elif _EXPUNGE.match(data):
            self.exists -= 1
        return data

    async def read_tagged(self, tag: str) -> tuple[str, list[bytes]]:
        """Read up to the tagged response of `tag`: (its status word, the untagged lines)."""
        prefix = tag.encode() + b" "
        untagged: list[bytes] = []
        while True:
            line = await self.read_line()
            if line.startswith(prefix):
                status = line[len(prefix):].split(b" ", 1)[0].decode(errors="replace")
                if status != "OK":
                    untagged.append(line)
                return status, untagged
            untagged.append(line)

    async def command(self, text: str, literal: bytes | None = None) -> tuple[str, list[bytes]]:
        """Send one command (a non-synchronising LITERAL+ literal at its end, if any)."""
        tag = self.next_tag()
        if literal is None:
            self.writer.write(f"{tag} {text}\r\n".encode())
        else:
            self.writer.write(b"%s %s {%d+}\r\n%s\r\n" % (tag.encode(), text.encode(),
                                                           len(literal), literal))
        return await self.read_tagged(tag)

    async def idle_start(self) -> str:
        """Send IDLE and wait for the continuation; returns the tag (for `idle_done`)."""
        tag = self.next_tag()
        self.writer.write(f"{tag} IDLE\r\n".encode())
        while True:
            line = await self.read_line()
            if line.startswith(b"+"):
                return tag
            if line.startswith(tag.encode() + b" "):
                raise ImapError(f"IDLE refused: {line[:200]!r}")

    async def idle_done(self, tag: str) -> tuple[str, list[bytes]]:
        self.writer.write(b"DONE\r\n")
        return await self.read_tagged(tag)

    async def login_select(self, user: str, password: str) -> None:
        status, lines = await self.command(f'LOGIN "{user}" "{password}"')
        if status != "OK":
            raise ImapError(f"LOGIN {status}: {lines[-1:]!r}")
        status, lines = await self.command("SELECT INBOX")
        if status != "OK":
            raise ImapError(f"SELECT {status}: {lines[-1:]!r}")
        for line in lines:
            match = _UIDNEXT.search(line)
            if match:
                self.uidnext = int(match.group(1))

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()


# ---------------------------------------------------------------------- messages

_WORDS = ["invoice", "meeting", "report", "holiday", "budget", "release", "review", "draft",
          "offer", "update", "project", "schedule", "travel", "lunch", "contract"]


def seed_message(n: int, rng: random.Random) -> bytes:
    """A plausible ~3 KB text message; senders repeat (sender0..49) so SEARCH FROM matches."""
    subject = " ".join(rng.choice(_WORDS) for _ in range(4))
    head = (f'From: "Sender {n % 50}" <sender{n % 50}@remote.test>\r\n'
            f"To: {USER}\r\nSubject: {subject} #{n}\r\n"
            f"Date: Mon, 01 Dec 2025 {n % 24:02d}:{n % 60:02d}:00 +0000\r\n"
            f"Message-ID: <seed-{n}-{time.time_ns()}@remote.test>\r\n"
            "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n")
    lines = [" ".join(rng.choice(_WORDS) for _ in range(10)) for _ in range(40)]
    return (head + "\r\n".join(lines) + "\r\n").encode()


def small_message(tag: str) -> bytes:
    return (f"From: bench-client@remote.test\r\nTo: {USER}\r\nSubject: appended {tag}\r\n"
            f"Message-ID: <append-{tag}-{time.time_ns()}@remote.test>\r\n\r\n"
            "A short note appended by the benchmark.\r\n").encode()


async def seed(port: int, count: int, conns: int) -> float:
    """APPEND `count` messages to INBOX over `conns` parallel connections; returns seconds."""
    if count <= 0:
        return 0.0
    todo = iter(range(count))
    rng = random.Random(1)

    async def worker() -> None:
        client = await Client.connect(HOST, port)
        status, lines = await client.command(f'LOGIN "{USER}" "{PASSWORD}"')
        if status != "OK":
            raise ImapError(f"seed LOGIN {status}: {lines!r}")
        for n in todo:
            status, lines = await client.command("APPEND INBOX", seed_message(n, rng))
            if status != "OK":
                raise ImapError(f"seed APPEND {status}: {lines[-1:]!r}")
        await client.command("LOGOUT")
        await client.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(conns)))
    return time.perf_counter() - started


# ---------------------------------------------------------------------- stats

@dataclass
class Stats:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: Counter[str] = field(default_factory=Counter)
    samples: list[str] = field(default_factory=list)
    done: int = 0
    loop_end: float = 0.0

    def record(self, name: str, seconds: float, status: str, lines: list[bytes]) -> None:
        self.latencies[name].append(seconds)
        if status != "OK":
            self.errors[f"{name} {status}"] += 1
            if len(self.samples) < 10:
                self.samples.append(f"{name}: {(lines[-1] if lines else b'')[:200]!r}")


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


# ---------------------------------------------------------------------- mode mix

OpFn = Callable[[Client, random.Random, Stats], Coroutine[Any, Any, None]]


async def _timed(client: Client, stats: Stats, name: str, text: str,
                 literal: bytes | None = None) -> None:
    t0 = time.perf_counter()
    status, lines = await client.command(text, literal)
    stats.record(name, time.perf_counter() - t0, status, lines)
    stats.done += 1


async def op_fetch_headers(c: Client, rng: random.Random, st: Stats) -> None:
    first = rng.randint(1, max(1, c.exists - 49))
    last = min(c.exists, first + 49)
    await _timed(c, st, "FETCH 50 headers", f"FETCH {first}:{last} (FLAGS UID RFC822.SIZE "
                 "BODY.PEEK[HEADER.FIELDS (FROM SUBJECT DATE)])")


async def op_fetch_body(c: Client, rng: random.Random, st: Stats) -> None:
    await _timed(c, st, "UID FETCH BODY[]", f"UID FETCH {rng.randint(1, c.uidnext - 1)} "
                 "(UID BODY.PEEK[])")


async def op_store(c: Client, rng: random.Random, st: Stats) -> None:
    sign = rng.choice("+-")
    await _timed(c, st, "STORE \\Seen", f"STORE {rng.randint(1, c.exists)} {sign}FLAGS (\\Seen)")


async def op_search_unseen(c: Client, rng: random.Random, st: Stats) -> None:
    await _timed(c, st, "SEARCH UNSEEN", "SEARCH UNSEEN")


async def op_search_from(c: Client, rng: random.Random, st: Stats) -> None:
    await _timed(c, st, "SEARCH FROM", f'SEARCH FROM "sender{rng.randrange(50)}@"')


async def op_search_text(c: Client, rng: random.Random, st: Stats) -> None:
    await _timed(c, st, "SEARCH TEXT", f'SEARCH TEXT "{rng.choice(_WORDS)} {rng.choice(_WORDS)}"')


async def op_append(c: Client, rng: random.Random, st: Stats) -> None:
    await _timed(c, st, "APPEND", "APPEND INBOX", small_message(f"{rng.getrandbits(40):x}"))
    c.uidnext += 1  # roughly: other clients append too, and a missing UID is still an answer


async def op_noop(c: Client, rng: random.Random, st: Stats) -> None:
    await _timed(c, st, "NOOP", "NOOP")


IDLE_DWELL = 0.02
"""Seconds a mix client stays in IDLE: short, since the point is the enter/leave path."""


async def op_idle(c: Client, rng: random.Random, st: Stats) -> None:
    t0 = time.perf_counter()
    try:
        tag = await c.idle_start()
    except ImapError as e:
        st.record("IDLE (to +)", time.perf_counter() - t0, "NO", [str(e).encode()])
        return
    st.record("IDLE (to +)", time.perf_counter() - t0, "OK", [])
    await asyncio.sleep(IDLE_DWELL)
    t1 = time.perf_counter()
    status, lines = await c.idle_done(tag)
    st.record("DONE (to OK)", time.perf_counter() - t1, status, lines)
    st.done += 1


MIX: list[tuple[OpFn, int]] = [
    (op_fetch_headers, 30), (op_fetch_body, 25), (op_store, 15), (op_noop, 15),
    (op_search_unseen, 4), (op_search_from, 4), (op_append, 4), (op_idle, 3),
    (op_search_text, 2),
]
"""What a client does, with weights in percent of loop iterations."""


async def mix_client(port: int, cid: int, ready: asyncio.Event, deadline: list[float],
                     stats: Stats, setup: Stats) -> None:
    rng = random.Random(cid)
    t0 = time.perf_counter()
    client = await Client.connect(HOST, port)
    status, lines = await client.command(f'LOGIN "{USER}" "{PASSWORD}"')
    setup.record("LOGIN", time.perf_counter() - t0, status, lines)
    t0 = time.perf_counter()
    status, lines = await client.command("SELECT INBOX")
    setup.record("SELECT", time.perf_counter() - t0, status, lines)
    for line in lines:
        if m := _UIDNEXT.search(line):
            client.uidnext = int(m.group(1))
    if client.exists == 0:
        raise ImapError("INBOX is empty: seed it (--seed)")
    ops, weights = zip(*MIX, strict=True)
    await ready.wait()
    while time.perf_counter() < deadline[0]:
        await rng.choices(ops, weights)[0](client, rng, stats)
    stats.loop_end = max(stats.loop_end, time.perf_counter())
    t0 = time.perf_counter()
    status, lines = await client.command("LOGOUT")
    setup.record("LOGOUT", time.perf_counter() - t0, status, lines)
    await client.close()


async def run_mix(args: argparse.Namespace, port: int) -> None:
    stats, setup = Stats(), Stats()
    ready = asyncio.Event()
    deadline = [float("inf")]
    tasks = [asyncio.ensure_future(mix_client(port, i, ready, deadline, stats, setup))
             for i in range(args.clients)]
    while len(setup.latencies["SELECT"]) < args.clients:
        if any(t.done() for t in tasks):
            await asyncio.gather(*tasks)  # raises the setup error
        await asyncio.sleep(0.01)
    started = time.perf_counter()
    deadline[0] = started + args.seconds
    ready.set()
    await asyncio.gather(*tasks)
    loop_s = stats.loop_end - started
    total = stats.done
    print(f"mode=mix clients={args.clients} seconds={args.seconds} seed={args.seed} "
          f"workers={args.workers} imap_processes={args.imap_processes}")
    print(f"commands: {total} in {loop_s:.1f}s = {total / loop_s:.0f} commands/s "
          f"(IDLE counted once; {IDLE_DWELL * 1000:.0f} ms spent in each IDLE)")
    print(f"{'command':<18} {'count':>7} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for name, values in [*stats.latencies.items(), *setup.latencies.items()]:
        print(f"{name:<18} {len(values):>7} {ms(pct(values, 50)):>8} {ms(pct(values, 99)):>8} "
              f"{ms(max(values)):>8}")
    errors = stats.errors + setup.errors
    print(f"errors (NO/BAD): {sum(errors.values())}" +
          "".join(f"\n  {k}: {v}" for k, v in sorted(errors.items())))
    for sample in stats.samples + setup.samples:
        print(f"  e.g. {sample}")


# ---------------------------------------------------------------------- mode imaptest-mix

FOLDERS = ["Archive", "Drafts", "Sent", "Trash", "Junk", "Work", "Work/Projects", "Lists",
           "Lists/announce", "Receipts"]
"""Created before the loop (so LIST has some answer and STATUS other mailboxes to look at)."""

IMAPTEST_FLAGS = ["\\Seen", "\\Flagged", "\\Answered"]


async def imaptest_iteration(c: Client, rng: random.Random, st: Stats, n: list[int]) -> None:
    """One loop of the mix: the nine commands, in the order an imaptest-like client sends them."""
    await _timed(c, st, "SELECT", "SELECT INBOX")
    if c.exists:
        await _timed(c, st, "FETCH 1:* flags", "FETCH 1:* (UID FLAGS)")
        seqs = sorted(rng.sample(range(1, c.exists + 1), min(5, c.exists)))
        await _timed(c, st, "FETCH hdr+body", f"FETCH {','.join(map(str, seqs))} "
                     "(UID RFC822.SIZE BODY.PEEK[HEADER] BODY.PEEK[TEXT])")
        flags = " ".join(rng.sample(IMAPTEST_FLAGS, rng.randint(1, len(IMAPTEST_FLAGS))))
        await _timed(c, st, "STORE flags",
                     f"STORE {rng.randint(1, c.exists)} {rng.choice('+-')}FLAGS ({flags})")
        await _timed(c, st, "STORE \\Deleted", f"STORE {rng.randint(1, c.exists)} "
                     "+FLAGS (\\Deleted)")
        await _timed(c, st, "EXPUNGE", "EXPUNGE")
    n[0] += 1
    await _timed(c, st, "APPEND", "APPEND INBOX", seed_message(n[0], rng))
    await _timed(c, st, "LIST", 'LIST "" "*"')
    box = rng.choice(["INBOX", *FOLDERS])
    await _timed(c, st, "STATUS", f'STATUS "{box}" (MESSAGES UIDNEXT UNSEEN)')


async def imaptest_client(port: int, cid: int, ready: asyncio.Event, deadline: list[float],
                          stats: Stats, setup: Stats) -> None:
    rng = random.Random(cid)
    n = [1_000_000 * (cid + 1)]  # APPENDed messages' numbers, distinct from the seed's
    t0 = time.perf_counter()
    client = await Client.connect(HOST, port)
    status, lines = await client.command(f'LOGIN "{USER}" "{PASSWORD}"')
    setup.record("LOGIN", time.perf_counter() - t0, status, lines)
    if status != "OK":
        raise ImapError(f"LOGIN {status}: {lines[-1:]!r}")
    await ready.wait()
    while time.perf_counter() < deadline[0]:
        await imaptest_iteration(client, rng, stats, n)
    stats.loop_end = max(stats.loop_end, time.perf_counter())
    t0 = time.perf_counter()
    status, lines = await client.command("LOGOUT")
    setup.record("LOGOUT", time.perf_counter() - t0, status, lines)
    await client.close()


async def create_folders(port: int) -> None:
    client = await Client.connect(HOST, port)
    status, lines = await client.command(f'LOGIN "{USER}" "{PASSWORD}"')
    if status != "OK":
        raise ImapError(f"LOGIN {status}: {lines[-1:]!r}")
    for name in FOLDERS:
        status, lines = await client.command(f'CREATE "{name}"')
        if status != "OK" and b"ALREADYEXISTS" not in b"".join(lines):
            raise ImapError(f"CREATE {name} {status}: {lines[-1:]!r}")
    await client.command("LOGOUT")
    await client.close()


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) of `pid` and every live descendant, plus the children it
    has reaped (Dovecot's imap processes end at LOGOUT; their CPU lands in the master's)."""
    tick = os.sysconf("SC_CLK_TCK")
    stats: dict[int, tuple[int, list[str]]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2:].split()
        stats[int(entry.name)] = (int(fields[1]), fields)
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        if p not in stats:
            continue
        fields = stats[p][1]
        total += sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
        todo += [child for child, (ppid, _) in stats.items() if ppid == p]
    return total / tick


def self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def run_imaptest_mix(args: argparse.Namespace, port: int, pid: int | None) -> None:
    await create_folders(port)
    stats, setup = Stats(), Stats()
    ready = asyncio.Event()
    deadline = [float("inf")]
    tasks = [asyncio.ensure_future(imaptest_client(port, i, ready, deadline, stats, setup))
             for i in range(args.clients)]
    while len(setup.latencies["LOGIN"]) < args.clients:
        if any(t.done() for t in tasks):
            await asyncio.gather(*tasks)  # raises the setup error
        await asyncio.sleep(0.01)
    load_before = Path("/proc/loadavg").read_text().split()[:3]
    cpu_before = (tree_cpu(pid) if pid else 0.0), self_cpu()
    started = time.perf_counter()
    deadline[0] = started + args.seconds
    ready.set()
    await asyncio.gather(*tasks)
    cpu_server = (tree_cpu(pid) if pid else 0.0) - cpu_before[0]
    cpu_bench = self_cpu() - cpu_before[1]
    load_after = Path("/proc/loadavg").read_text().split()[:3]
    loop_s = stats.loop_end - started
    total = stats.done
    rate = total / loop_s
    print(f"mode=imaptest-mix clients={args.clients} seconds={args.seconds} seed={args.seed} "
          f"port={port} workers={args.workers} imap_processes={args.imap_processes}")
    print(f"loadavg before {' '.join(load_before)}, after {' '.join(load_after)}")
    print(f"commands: {total} in {loop_s:.1f}s = {rate:.0f} commands/s")
    if pid:
        print(f"server CPU (pid {pid} and its process tree): {cpu_server:.1f}s = "
              f"{100 * cpu_server / loop_s:.0f}% of a core, {total / max(cpu_server, 1e-9):.0f} "
              f"commands per CPU-second; bench CPU {cpu_bench:.1f}s")
    print(f"{'command':<16} {'count':>7} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    table: dict[str, dict[str, float]] = {}
    for name, values in [*stats.latencies.items(), *setup.latencies.items()]:
        row = {"count": len(values), "p50": pct(values, 50), "p90": pct(values, 90),
               "p99": pct(values, 99), "max": max(values)}
        table[name] = row
        print(f"{name:<16} {len(values):>7} {ms(row['p50']):>8} {ms(row['p90']):>8} "
              f"{ms(row['p99']):>8} {ms(row['max']):>8}")
    errors = stats.errors + setup.errors
    print(f"errors (NO/BAD): {sum(errors.values())}" +
          "".join(f"\n  {k}: {v}" for k, v in sorted(errors.items())))
    for sample in stats.samples + setup.samples:
        print(f"  e.g. {sample}")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "mode": "imaptest-mix", "port": port, "clients": args.clients,
            "seconds": args.seconds, "seed": args.seed, "imap_processes": args.imap_processes,
            "commands": total, "loop_seconds": loop_s, "commands_per_s": rate,
            "server_cpu_s": cpu_server if pid else None, "bench_cpu_s": cpu_bench,
            "loadavg_before": load_before, "loadavg_after": load_after,
            "latency_s": table, "errors": dict(errors)}, indent=1))


# ---------------------------------------------------------------------- mode idle

def rss_kib(pid: int, field: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} for {pid}")


def raise_fd_limit(needed: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < needed:
        raise SystemExit(f"fd hard limit {hard} < {needed} needed; raise it (ulimit -Hn)")
    return hard


async def open_idle(port: int, count: int, concurrency: int
                    ) -> tuple[list[tuple[Client, str]], list[str]]:
    """`count` connections in IDLE (LOGIN, SELECT INBOX, IDLE), `concurrency` opening at once."""
    gate = asyncio.Semaphore(concurrency)
    opened: list[tuple[Client, str]] = []
    failures: list[str] = []

    async def one() -> None:
        async with gate:
            try:
                client = await Client.connect(HOST, port)
                await client.login_select(USER, PASSWORD)
                opened.append((client, await client.idle_start()))
            except (OSError, ImapError) as e:
                failures.append(repr(e)[:200])

    await asyncio.gather(*(one() for _ in range(count)))
    return opened, failures


async def wait_exists(client: Client, above: int, t0: list[float], out: list[float]) -> None:
    while True:
        line = await client.read_line()
        match = _EXISTS.match(line)
        if match and int(match.group(1)) > above:
            out.append(time.perf_counter() - t0[0])
            return


def smtp_deliver(smtp_port: int) -> None:
    with smtplib.SMTP(HOST, smtp_port, timeout=60) as smtp:
        smtp.sendmail("waker@remote.test", [USER], small_message("wake"))


async def run_idle(args: argparse.Namespace, port: int, pid: int | None,
                   smtp_port: int | None) -> None:
    await asyncio.sleep(args.settle)  # let the server settle after the seeding
    before = rss_kib(pid) if pid else 0
    t_open = time.perf_counter()
    opened, failures = await open_idle(port, args.connections, args.open_concurrency)
    open_s = time.perf_counter() - t_open
    await asyncio.sleep(2.0)
    after = rss_kib(pid) if pid else 0
    k = len(opened)
    print(f"mode=idle connections={args.connections} opened={k} failed={len(failures)} "
          f"seed={args.seed} workers={args.workers} (opened in {open_s:.1f}s, "
          f"{args.connections / open_s:.0f} connections/s incl. LOGIN+SELECT+IDLE)")
    for failure in failures[:5]:
        print(f"  failure: {failure}")
    if pid:
        print(f"server RSS (pid {pid} VmRSS): before {before / 1024:.1f} MiB, "
              f"with {k} idle {after / 1024:.1f} MiB, growth {(after - before) / 1024:.1f} MiB "
              f"= {(after - before) / max(k, 1):.1f} KiB per idle connection")
    if pid and args.settle_idle > 0:
        # The listener trims its heap once sessions stop coming (the logins' argon2 buffers,
        # the parsing): what 10,000 idle sessions cost at rest, read after that.
        await asyncio.sleep(args.settle_idle)
        settled, anon = rss_kib(pid), rss_kib(pid, "RssAnon")
        print(f"server RSS {args.settle_idle:.0f}s later, at rest with {k} idle: "
              f"VmRSS {settled / 1024:.1f} MiB, RssAnon {anon / 1024:.1f} MiB")
    if not k:
        return
    exists_before = min(c.exists for c, _ in opened)
    t0 = [0.0]
    seen: list[float] = []
    waiters = [asyncio.ensure_future(wait_exists(c, exists_before, t0, seen)) for c, _ in opened]
    await asyncio.sleep(0.5)
    t0[0] = time.perf_counter()
    if args.deliver == "smtp":
        assert smtp_port, "--deliver smtp needs the server's SMTP port"
        await asyncio.to_thread(smtp_deliver, smtp_port)
    else:
        sender = await Client.connect(HOST, port)
        status, lines = await sender.command(f'LOGIN "{USER}" "{PASSWORD}"')
        if status == "OK":
            status, lines = await sender.command("APPEND INBOX", small_message("wake"))
        if status != "OK":
            print(f"wake-up APPEND failed: {status} {lines[-1:]!r}")
        await sender.close()
    accepted = time.perf_counter() - t0[0]
    _done, pending = await asyncio.wait(waiters, timeout=args.wake_timeout)
    for task in pending:
        task.cancel()
    errors = [t.exception() for t in _done if t.exception() is not None]
    print(f"wake-up via {args.deliver} (accepted after {ms(accepted)} ms): "
          f"{len(seen)}/{k} connections saw EXISTS within {args.wake_timeout:.0f}s"
          + (f", {len(errors)} connection errors" if errors else ""))
    if seen:
        print(f"wake-up latency: p50 {ms(pct(seen, 50))} ms, p99 {ms(pct(seen, 99))} ms, "
              f"max {ms(max(seen))} ms")
    await asyncio.gather(*(c.close() for c, _ in opened))


# ---------------------------------------------------------------------- main

async def main_async(args: argparse.Namespace, port: int, pid: int | None,
                     smtp_port: int | None) -> None:
    if args.seed:
        seconds = await seed(port, args.seed, args.seed_connections)
        print(f"seeded {args.seed} messages by APPEND over {args.seed_connections} connections "
              f"in {seconds:.1f}s ({args.seed / max(seconds, 1e-9):.0f} messages/s)")
    if args.mode == "mix":
        await run_mix(args, port)
    elif args.mode == "imaptest-mix":
        await run_imaptest_mix(args, port, pid)
    else:
        await run_idle(args, port, pid, smtp_port)


def run(args: argparse.Namespace, port: int, pid: int | None, smtp_port: int | None) -> None:
    try:
        import uvloop
    except ImportError:
        asyncio.run(main_async(args, port, pid, smtp_port))
    else:
        uvloop.run(main_async(args, port, pid, smtp_port))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=("mix", "imaptest-mix", "idle"), default="mix")
    parser.add_argument("--clients", type=int, default=10, help="mix: concurrent clients")
    parser.add_argument("--json", help="imaptest-mix: also write the figures to this file")
    parser.add_argument("--seconds", type=float, default=30.0, help="mix: duration")
    parser.add_argument("--connections", type=int, default=2000, help="idle: connections")
    parser.add_argument("--open-concurrency", type=int, default=64,
                        help="idle: connections being opened at once")
    parser.add_argument("--deliver", choices=("append", "smtp"), default="append",
                        help="idle: how the waking message arrives")
    parser.add_argument("--wake-timeout", type=float, default=120.0)
    parser.add_argument("--settle", type=float, default=1.0,
                        help="idle: seconds after the seeding before the first RSS reading "
                        "(the IMAP listener trims its heap every 10 s while sessions come "
                        "and go, and once they stop, so 12 reads a trimmed baseline)")
    parser.add_argument("--settle-idle", type=float, default=12.0,
                        help="idle: seconds after the first reading with the connections open "
                        "before a second one (at rest, after the listener's heap trim); 0: none")
    parser.add_argument("--seed", type=int, default=2000, help="messages APPENDed to INBOX first")
    parser.add_argument("--seed-connections", type=int, default=8)
    parser.add_argument("--workers", type=int, default=0, help="server --workers")
    parser.add_argument("--imap-processes", type=int, default=1,
                        help="server [imap] processes (mix mode; idle mode reads the RSS of the"
                             " listener process only)")
    parser.add_argument("--port", type=int, help="use a running server's IMAP port")
    parser.add_argument("--user", help="with --port: an existing user")
    parser.add_argument("--password", help="with --port: that user's password")
    parser.add_argument("--pid", type=int, help="with --port: the server's pid, for RSS (idle) "
                        "and the CPU of its process tree (imaptest-mix)")
    parser.add_argument("--smtp-port", type=int, help="with --port: for --deliver smtp")
    args = parser.parse_args()
    global USER, PASSWORD
    if args.mode == "idle":
        raise_fd_limit(args.connections + 1000)
    if args.port:
        USER, PASSWORD = args.user or USER, args.password or PASSWORD
        run(args, args.port, args.pid, args.smtp_port)
        return
    with tempfile.TemporaryDirectory(prefix="mailyard-bench-") as tmp:
        srv = Server(Path(tmp), workers=args.workers,
                     limits={"messages_per_ip_per_minute": 0, "connections_per_ip": 0},
                     imap={"connections_per_ip": 0, "connections_per_user": 0,
                           "processes": args.imap_processes})
        srv.add_user(USER, PASSWORD)
        srv.start()
        try:
            assert srv.process is not None
            run(args, srv.imap_port, srv.process.pid, srv.smtp_port)
        finally:
            srv.stop()
            log = srv.log_path.read_text(errors="replace")
            tracebacks = log.count("Traceback")
            if tracebacks:
                print(f"server log: {tracebacks} tracebacks; the first:")
                start = log.index("Traceback")
                print(log[max(0, log.rfind("\n", 0, start - 200)):start + 2000])
    print(f"machine: {os.cpu_count()} cores, {os.uname().sysname} {os.uname().release}")


if __name__ == "__main__":
    main()
