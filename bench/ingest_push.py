"""Push latency over IMAP IDLE (issue 24): SMTP 250 -> `* n EXISTS` in an open IDLE session.

Starts its own `mailyard serve` (tests/e2e/server.Server, temporary data_dir, `--workers N`),
opens one IMAP session (LOGIN, SELECT INBOX, IDLE), then delivers --deliveries messages over
SMTP one after the other. For each: the time from reading the 250 after DATA to reading the
`* n EXISTS` it causes. With --load R, another SMTP connection delivers R mails/s to another
account meanwhile, so the worker processes have other work in their batches (the case where a
delivery waits for others). `--tree NAME=DIR` (repeatable) runs the server from a `git archive`
of a commit (PYTHONPATH=DIR) instead of the working tree; `--rounds R` alternates the trees R
times. Prints median, p99 and max per run, then the medians over the rounds.

    git archive --prefix=before/ HEAD~1 | tar -x -C /tmp/push
    .venv/bin/python bench/ingest_push.py --workers 2 --load 20 \\
        --tree before=/tmp/push/before --tree after=. --rounds 3
"""

from __future__ import annotations

import argparse
import os
import smtplib
import socket
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.e2e.server import Server, wait_port  # noqa: E402

ADDRESS, PASSWORD = "push@example.test", "bench-password-123"
LOAD_ADDRESS = "load@example.test"
WARM_UP = 5
"""Deliveries not counted: the first ones start the worker processes' caches and DNS."""
NO_LIMITS = {"messages_per_ip_per_minute": 0, "connections_per_ip": 0}


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


class Idle:
    """One IMAP session in IDLE on INBOX, read line by line."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.file = self.sock.makefile("rb")
        self.line()  # greeting
        self.command(b"a LOGIN " + ADDRESS.encode() + b" " + PASSWORD.encode())
        self.command(b"b SELECT INBOX")
        self.sock.sendall(b"c IDLE\r\n")
        while not self.line().startswith(b"+"):
            pass

    def line(self) -> bytes:
        data = self.file.readline()
        if not data:
            raise ConnectionError("IMAP server closed the connection")
        return data

    def command(self, text: bytes) -> None:
        tag = text.split(b" ", 1)[0]
        self.sock.sendall(text + b"\r\n")
        while not (reply := self.line()).startswith(tag + b" "):
            pass
        if not reply.startswith(tag + b" OK"):
            raise RuntimeError(reply.decode(errors="replace"))

    def exists(self, count: int) -> None:
        """Until `* count EXISTS` (or a later count)."""
        while True:
            fields = self.line().split()
            if len(fields) == 3 and fields[2] == b"EXISTS" and int(fields[1]) >= count:
                return

    def close(self) -> None:
        self.sock.close()


def message(n: int, to: str) -> str:
    return (f"From: sender@remote.test\r\nTo: {to}\r\nSubject: push {n}\r\n"
            f"Message-ID: <push-{n}-{time.time_ns()}@remote.test>\r\n\r\n" + "body\r\n" * 40)


def load(port: int, rate: float, stop: threading.Event) -> None:
    """Deliver to another account at `rate` mails/s (below what the server sustains, so the
    queue does not grow without end and the sample measures push, not a backlog)."""
    with smtplib.SMTP("127.0.0.1", port, timeout=60) as smtp:
        n = 0
        started = time.monotonic()
        while not stop.is_set():
            smtp.sendmail("sender@remote.test", [LOAD_ADDRESS], message(n, LOAD_ADDRESS))
            n += 1
            stop.wait(max(0.0, started + n / rate - time.monotonic()))


@dataclass
class Run:
    name: str
    samples: list[float]
    loads: tuple[str, str]

    def line(self) -> str:
        s = self.samples
        return (f"{self.name}: {len(s)} deliveries, 250 -> EXISTS median "
                f"{statistics.median(s):.1f} ms, p99 {percentile(s, 99):.1f} ms, max "
                f"{max(s):.1f} ms, slowest {[round(x) for x in sorted(s)[-5:]]} (load average "
                f"{self.loads[0]} -> {self.loads[1]})")


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def run(name: str, tree: Path | None, workers: int, deliveries: int, rate: float,
        queue: dict[str, object]) -> Run:
    if tree is not None:
        os.environ["PYTHONPATH"] = str(tree.resolve())
    else:
        os.environ.pop("PYTHONPATH", None)
    with tempfile.TemporaryDirectory() as tmp:
        server = Server(Path(tmp), workers=workers, limits=NO_LIMITS, queue=queue)
        server.add_user(ADDRESS, PASSWORD)
        server.add_user(LOAD_ADDRESS, PASSWORD)
        server.start()
        stop = threading.Event()
        threads = [threading.Thread(target=load, args=(server.smtp_port, rate, stop),
                                    daemon=True) for _ in range(1 if rate else 0)]
        samples: list[float] = []
        before = loadavg()
        try:
            wait_port(server.imap_port)
            idle = Idle(server.imap_port)
            for t in threads:
                t.start()
            with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=60) as smtp:
                for n in range(1, deliveries + WARM_UP + 1):
                    smtp.sendmail("sender@remote.test", [ADDRESS], message(n, ADDRESS))
                    accepted = time.perf_counter()
                    idle.exists(n)
                    if n > WARM_UP:
                        samples.append((time.perf_counter() - accepted) * 1000)
                    time.sleep(0.02)  # a quiet gap: each sample starts on its own
            idle.close()
        except Exception:
            # The data directory goes with the run: keep the server's log to see why.
            kept = Path(tempfile.gettempdir()) / f"ingest_push-{name}-{os.getpid()}.log"
            kept.write_bytes(server.log_path.read_bytes())
            print(f"{name}: failed at delivery {len(samples) + WARM_UP + 1}; server log in"
                  f" {kept}", flush=True)
            raise
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=30)
            server.stop()
            # An item that failed waits for its retry (30 s and more): say so, it is a tail.
            retried = [line for line in server.log_path.read_text(errors="replace").splitlines()
                       if "retry in" in line or "to the dead-letter queue" in line]
            for line in retried[:5]:
                print(f"{name}: server: {line[:300]}", flush=True)
    return Run(name, samples, (before, loadavg()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--deliveries", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--load", type=float, default=0.0,
                        help="mails/s delivered to another account meanwhile (one connection)")
    parser.add_argument("--tree", action="append", default=[],
                        help="NAME=DIR: a mailyard tree to run (repeatable); default: this one")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--worker-nice", action="append", default=[],
                        help="NAME=N: [queue] worker_nice for tree NAME's server (repeatable;"
                             " default: the server's own default); one tree may be named twice")
    args = parser.parse_args()
    trees: list[tuple[str, Path | None]] = [
        (t.split("=", 1)[0], Path(t.split("=", 1)[1])) for t in args.tree] or [("here", None)]
    runs: dict[str, list[Run]] = {name: [] for name, _ in trees}
    nice = {n.split("=", 1)[0]: int(n.split("=", 1)[1]) for n in args.worker_nice}
    for r in range(args.rounds):
        order = trees if r % 2 == 0 else trees[::-1]
        for name, tree in order:
            queue = {"worker_nice": nice[name]} if name in nice else {}
            result = run(name, tree, args.workers, args.deliveries, args.load, queue)
            runs[name].append(result)
            print(result.line(), flush=True)
    for name, results in runs.items():
        medians = [statistics.median(x.samples) for x in results]
        p99s = [percentile(x.samples, 99) for x in results]
        print(f"{name}: workers={args.workers} load={args.load}, over {len(results)} runs: "
              f"median of medians {statistics.median(medians):.1f} ms, median p99 "
              f"{statistics.median(p99s):.1f} ms, worst p99 {max(p99s):.1f} ms")


if __name__ == "__main__":
    main()
