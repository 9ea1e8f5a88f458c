"""Wall time of `mailyard` admin commands, start-up included (issues 18 and 19).

Makes a data directory with one account and a few messages (or uses --data-dir), then runs
each command --runs times in a fresh process, alternating the commands, and prints the
median, min and max wall time of each, with the load average before and after. What a
command imports is asserted by tests/e2e/test_cli_imports.py; this prints the figures.

Each command runs twice per round: as the environment says (with PYTHONDONTWRITEBYTECODE=1
and an editable install, every mailyard module is compiled from source at each start), and
with a bytecode cache (PYTHONPYCACHEPREFIX in a temporary directory, written by a first,
untimed run), which is what an installed package has.

    .venv/bin/python bench/cli_startup.py [--runs 10] [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import os
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


def prepare(data: Path, messages: int) -> None:
    """One domain, one account, `messages` small messages imported from .eml files."""
    run = [*mailyard(), "--data-dir", str(data)]
    subprocess.run([*run, "domain", "add", "example.org"], check=True, capture_output=True)
    subprocess.run([*run, "user", "add", ADDRESS, "--password-stdin"], input=b"secret\n",
                   check=True, capture_output=True)
    with tempfile.TemporaryDirectory() as eml:
        for n in range(messages):
            Path(eml, f"{n}.eml").write_bytes(
                f"From: bob{n}@example.net\r\nTo: {ADDRESS}\r\n"
                f"Subject: invoice {n}\r\nMessage-ID: <bench-{n}@example.net>\r\n"
                f"Date: Mon, 1 Jun 2026 10:00:{n % 60:02d} +0000\r\n\r\n"
                f"The quarterly invoice number {n}.\r\n".encode())
        subprocess.run([*run, "import", ADDRESS, eml], check=True, capture_output=True)


def commands(data: Path) -> dict[str, list[str]]:
    d = ["--data-dir", str(data)]
    return {
        "--version": ["--version"],
        "--help": ["--help"],
        "search": [*d, "search", ADDRESS, "invoice"],
        "user list": [*d, "user", "list"],
        "domain list": [*d, "domain", "list"],
        "mail list": [*d, "mail", "list", ADDRESS],
        "queue stats": [*d, "queue", "stats"],
        "config sample": ["config", "sample"],
    }


def timed(argv: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(mailyard() + argv, check=True, capture_output=True, env=env)
    return time.perf_counter() - started


def row(seconds: list[float]) -> str:
    return (f"{statistics.median(seconds) * 1000:.0f} ms ({min(seconds) * 1000:.0f}"
            f"-{max(seconds) * 1000:.0f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--messages", type=int, default=5)
    args = parser.parse_args()
    own = args.data_dir is None
    data = args.data_dir or Path(tempfile.mkdtemp(prefix="mailyard-cli-bench-")) / "data"
    try:
        if own:
            prepare(data, args.messages)
        todo = commands(data)
        cache = Path(tempfile.mkdtemp(prefix="mailyard-pyc-"))
        as_is = dict(os.environ)
        cached = {**os.environ, "PYTHONPYCACHEPREFIX": str(cache)}
        cached.pop("PYTHONDONTWRITEBYTECODE", None)
        for argv in todo.values():  # writes the cache
            timed(argv, cached)
        times: dict[str, tuple[list[float], list[float]]] = {n: ([], []) for n in todo}
        print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        for _ in range(args.runs):
            for name, argv in todo.items():
                times[name][0].append(timed(argv, as_is))
                times[name][1].append(timed(argv, cached))
        print(f"load average after:  {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        shutil.rmtree(cache, ignore_errors=True)
        print(f"{args.runs} runs each; median (min-max) wall time")
        print("| command | environment as is | with bytecode cache |")
        print("|---|---|---|")
        for name, (plain, warm) in times.items():
            print(f"| `mailyard {name}` | {row(plain)} | {row(warm)} |")
    finally:
        if own:
            shutil.rmtree(data.parent, ignore_errors=True)


if __name__ == "__main__":
    main()
