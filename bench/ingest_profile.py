"""Where the server's CPU goes per ingested mail (issue 24): py-spy on every process of a
`mailyard serve` while smtp-source sends to it.

Starts a fresh server (the bench's loopback DNS, the default checks on), starts `py-spy record
--format raw` on the listener and each worker process, sends `--mails` mails of `--size` octets
with `smtp-source -s 10`, waits until all are visible over IMAP, and prints for each process
its CPU per mail (utime + stime from /proc) and the functions holding the most samples
(self and inclusive). py-spy must be in the venv (`.venv/bin/pip install py-spy`); run as
root (py-spy attaches with ptrace).

    .venv/bin/python bench/ingest_profile.py --size 50000 --mails 1500 --workers 2
"""

from __future__ import annotations

import argparse
import collections
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.smtp_ingest import IMAPCounter, bench_dns, dns_config, smtp_source  # noqa: E402
from tests.e2e.server import Server  # noqa: E402

PY_SPY = str(Path(sys.executable).with_name("py-spy"))


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with open(task / "children") as f:
            found += [int(p) for p in f.read().split()]
    return found


def cpu(pid: int) -> tuple[float, float]:
    """(utime, stime) of one process (not its children), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def command(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:80]


def summary(path: Path, top: int) -> str:
    """The functions with the most samples in one py-spy raw (collapsed) file."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():  # py-spy's own notes ("... has.") between the stacks
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        own[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    out = [f"  {total} samples"]
    out += ["  self:"] + [f"    {n / total:6.1%} {f}" for f, n in own.most_common(top)]
    out += ["  inclusive:"] + [f"    {n / total:6.1%} {f}"
                               for f, n in inclusive.most_common(top * 2)]
    return "\n".join(out)


def perf_summary(path: Path, top: int) -> str:
    """CPU samples by shared object (python, libsqlite3, the kernel, ...), then by symbol."""
    out = []
    for sort in ("dso", "dso,sym"):
        report = subprocess.run(["perf", "report", "-i", str(path), "--stdio", "--sort", sort,
                                 "--percent-limit", "0.7"], capture_output=True, text=True)
        lines = [line for line in report.stdout.splitlines()
                 if line.strip() and not line.startswith("#")]
        out += [f"  perf by {sort}:"] + [f"  {line}" for line in lines[:top]]
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=50_000)
    parser.add_argument("--mails", type=int, default=1500)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rate", type=int, default=100, help="py-spy samples per second")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--out", default="/tmp/ingest-profile")
    parser.add_argument("--gil", action="store_true", help="py-spy --gil (GIL holders only)")
    parser.add_argument("--perf", action="store_true",
                        help="also `perf record` each process (where the CPU goes by library:"
                             " python, SQLite, the kernel, ...; `perf report -i OUT/PID.perf"
                             " --sort dso`)")
    parser.add_argument("--no-spy", dest="spy", action="store_false",
                        help="CPU per mail only (user and system), no py-spy")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="mailyard-prof-") as tmp, bench_dns("loopback") as dns:
        srv = Server(Path(tmp), workers=args.workers, dns=dns_config(dns),
                     limits={"messages_per_ip_per_minute": 0, "connections_per_ip": 0})
        srv.add_user("alice@example.test")
        srv.start()
        try:
            assert srv.process is not None
            listener = srv.process.pid
            pids = [listener, *[p for p in children(listener) if "python" in command(p)
                                or "mailyard" in command(p)]]
            names = {pid: command(pid) for pid in pids}
            spies = []
            for pid in pids if args.spy else []:
                flags = ["--gil"] if args.gil else []
                spies.append(subprocess.Popen(
                    [PY_SPY, "record", "--format", "raw", "--rate", str(args.rate), "--pid",
                     str(pid), "--output", str(out / f"{pid}.txt"), "--nonblocking",
                     *flags], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            for pid in pids if args.perf else []:
                spies.append(subprocess.Popen(
                    ["perf", "record", "-F", "499", "-p", str(pid), "-o",
                     str(out / f"{pid}.perf")], stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL))
            time.sleep(8)  # the worker processes' start-up imports are not the ingest
            counter = IMAPCounter(srv.imap_port, "alice@example.test", "secret-password")
            before = {pid: cpu(pid) for pid in pids}
            load = os.getloadavg()
            start = time.perf_counter()
            smtp_source(srv.smtp_port, 10, args.mails, args.size)
            while counter.count() < args.mails:
                time.sleep(0.05)
            took = time.perf_counter() - start
            after = {pid: cpu(pid) for pid in pids}
            counter.close()
            for spy in spies:
                spy.send_signal(2)
            for spy in spies:
                spy.wait(60)
        finally:
            srv.stop()
    print(f"{args.mails} mails of {args.size} B, workers {args.workers}: {took:.1f} s ="
          f" {args.mails / took:.0f} mails/s; load {' '.join(f'{v:.1f}' for v in load)}")
    for pid in pids:
        name = "listener" if pid == listener else "child"
        user, system = (after[pid][i] - before[pid][i] for i in (0, 1))
        print(f"\n{name} {pid} ({names[pid]}): CPU {(user + system) / args.mails * 1000:.2f}"
              f" ms/mail (user {user / args.mails * 1000:.2f}, system"
              f" {system / args.mails * 1000:.2f})")
        path = out / f"{pid}.txt"
        if path.exists():
            print(summary(path, args.top))
        if (out / f"{pid}.perf").exists():
            print(perf_summary(out / f"{pid}.perf", args.top))


if __name__ == "__main__":
    main()
