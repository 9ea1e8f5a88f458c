"""Wall time of `mailyard` admin commands, start-up included (issues 18 and 19).

Makes a data directory with one account and a few messages, then runs each command --runs
times in a fresh process, alternating the commands and the variants, and prints the median,
min and max wall time of each and its median CPU time, with the load average before and
after. What a command imports is asserted by tests/e2e/test_cli_imports.py; this prints the
figures.

Each command runs in two variants per round: as the environment says (with
PYTHONDONTWRITEBYTECODE=1 and an editable install, every mailyard module is compiled from
source at each start), and with a bytecode cache (PYTHONPYCACHEPREFIX in a temporary
directory, written by a first, untimed run), which is what an installed package has.
With --before DIR (a checkout of an older commit, e.g. `git worktree add DIR COMMIT`), that
tree's code runs too, interleaved, on a data directory of its own: a comparison under the
same load.

    .venv/bin/python bench/cli_startup.py [--runs 10] [--before DIR] [--only search ...]
        [--no-source]

The first row is no command but the floor under them all: the interpreter importing asyncio.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ADDRESS = "alice@example.org"


def mailyard() -> list[str]:
    """The installed console script beside this interpreter, as an admin runs it."""
    script = Path(sys.executable).with_name("mailyard")
    return [str(script)] if script.exists() else [sys.executable, "-m", "mailyard"]


def prepare(data: Path, messages: int, env: dict[str, str]) -> None:
    """One domain, one account, `messages` small messages imported from .eml files."""
    run = [*mailyard(), "--data-dir", str(data)]
    subprocess.run([*run, "domain", "add", "example.org"], check=True, capture_output=True,
                   env=env)
    subprocess.run([*run, "user", "add", ADDRESS, "--password-stdin"], input=b"secret\n",
                   check=True, capture_output=True, env=env)
    with tempfile.TemporaryDirectory() as eml:
        for n in range(messages):
            Path(eml, f"{n}.eml").write_bytes(
                f"From: bob{n}@example.net\r\nTo: {ADDRESS}\r\n"
                f"Subject: invoice {n}\r\nMessage-ID: <bench-{n}@example.net>\r\n"
                f"Date: Mon, 1 Jun 2026 10:00:{n % 60:02d} +0000\r\n\r\n"
                f"The quarterly invoice number {n}.\r\n".encode())
        subprocess.run([*run, "import", ADDRESS, eml], check=True, capture_output=True,
                       env=env)


FLOOR = "python -c 'import asyncio'"
"""Not a command: the interpreter with site and asyncio, which every command that opens a
store needs (and asyncio imports ssl), the floor under the figures of the others."""


def commands(data: Path) -> dict[str, list[str]]:
    d = ["--data-dir", str(data)]
    return {
        FLOOR: ["-c", "import asyncio"],
        "--version": ["--version"],
        "--help": ["--help"],
        "search": [*d, "search", ADDRESS, "invoice"],
        "search in:inbox": [*d, "search", ADDRESS, "in:inbox invoice"],
        "user list": [*d, "user", "list"],
        "domain list": [*d, "domain", "list"],
        "mail list": [*d, "mail", "list", ADDRESS],
        "mail list --label": [*d, "mail", "list", ADDRESS, "--label", "inbox"],
        "queue stats": [*d, "queue", "stats"],
        "config sample": ["config", "sample"],
    }


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall time and CPU time (user + system) of one run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    program = [sys.executable] if argv[:1] == ["-c"] else mailyard()
    subprocess.run(program + argv, check=True, capture_output=True, env=env)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def row(runs: list[tuple[float, float]]) -> str:
    """Median wall (min-max), median CPU."""
    wall = [w for w, _ in runs]
    return (f"{statistics.median(wall) * 1000:.0f} ms ({min(wall) * 1000:.0f}"
            f"-{max(wall) * 1000:.0f}), CPU {statistics.median(c for _, c in runs) * 1000:.0f}")


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--messages", type=int, default=5)
    parser.add_argument("--before", type=Path, default=None,
                        help="an older checkout to compare with")
    parser.add_argument("--only", nargs="+", metavar="NAME", default=None,
                        help="these commands only (as the table names them: search, 'user list')")
    parser.add_argument("--no-source", action="store_true",
                        help="only the bytecode-cache variant (what an installed package runs)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mailyard-cli-bench-"))
    try:
        trees = {"now": None} if args.before is None else {"before": args.before, "now": None}
        variants: dict[str, tuple[dict[str, str], dict[str, list[str]]]] = {}
        for tree, path in trees.items():
            base = dict(os.environ)
            if path is not None:  # its modules first, ahead of the editable install
                base["PYTHONPATH"] = str(path.resolve())
            prepare(work / tree / "data", args.messages, base)
            cached = {**base, "PYTHONPYCACHEPREFIX": str(work / tree / "pyc")}
            cached.pop("PYTHONDONTWRITEBYTECODE", None)
            todo = commands(work / tree / "data")
            for argv in todo.values():  # writes the cache
                timed(argv, cached)
            if not args.no_source:
                variants[f"{tree}, as is"] = (base, todo)
            variants[f"{tree}, bytecode cache"] = (cached, todo)
        names = [n for n in commands(work) if args.only is None or n in args.only or n == FLOOR]
        times: dict[tuple[str, str], list[tuple[float, float]]] = {
            (name, v): [] for name in names for v in variants}
        print(f"load average before: {load()}")
        for _ in range(args.runs):
            for name in names:
                for variant, (env, todo) in variants.items():
                    times[name, variant].append(timed(todo[name], env))
        print(f"load average after:  {load()}")
        print(f"{args.runs} runs each; median wall time (min-max), median CPU (user + system)")
        print("| command | " + " | ".join(variants) + " |")
        print("|---" * (len(variants) + 1) + "|")
        for name in names:
            print(f"| `{name if name == FLOOR else 'mailyard ' + name}` | "
                  + " | ".join(row(times[name, v]) for v in variants) + " |")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
