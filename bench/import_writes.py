"""Bytes `mailyard import` writes to disk against the size of what it leaves (issue 18: at most
3x the final data), with the share of each file when asked.

The mail is bench/search.py's generated mailbox (deterministic for a --seed), written once as an
mbox. The import runs as its own process (`mailyard import --data-dir D user@... MBOX`) into a
fresh data directory; its `write_bytes` (/proc/PID/io: what it sent towards the disk) is read
after it exits and before it is reaped, then set against the data directory's size at the end
(blobs, mail.db, search.db, with their WALs; spooled bytes count as written).

`--per-file` runs the import under strace (write/pwrite calls with their file names) and sums
the bytes each file received: slower, the same bytes. The search index's share is search.db
and its WAL.

    .venv/bin/python bench/import_writes.py --messages 10000 --work /tmp/iw
    .venv/bin/python bench/import_writes.py --messages 10000 --work /tmp/iw --per-file
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.search import LABELS, Generator, make_corpus

ADDRESS = "bench@example.test"
_CALL = re.compile(r'^\d+\s+(?:write|pwrite64|writev|pwritev)\((\d+)<([^>]*)>.*=\s+(\d+)$')


def write_mbox(path: Path, messages: int, seed: int) -> int:
    """The generated mailbox as an mbox (mboxrd quoting of From lines); its size in bytes."""
    corpus = make_corpus(seed)
    end = int(datetime(2026, 12, 1, tzinfo=UTC).timestamp() * 1000)
    gen = Generator(corpus, seed, messages, end, {name: name for name, _ in LABELS})
    size = 0
    with path.open("wb") as out:
        for m in gen:
            body = re.sub(rb"(?m)^(>*From )", rb">\1", m.raw.replace(b"\r\n", b"\n"))
            stamp = datetime.fromtimestamp(m.received_at / 1000, UTC)
            out.write(f"From bench {stamp:%a %b %d %H:%M:%S %Y}\n".encode() + body + b"\n\n")
            size += len(m.raw)
    return size


def tree_size(path: Path) -> dict[str, int]:
    """Bytes under `path` by top-level entry (blobs/ summed)."""
    out: dict[str, int] = collections.Counter()
    for root, _, files in os.walk(path):
        for name in files:
            rel = Path(root, name).relative_to(path)
            out[rel.parts[0]] += (Path(root) / name).stat().st_size
    return dict(out)


def run_import(tree: Path, data: Path, mbox: Path, batch: int,
               trace: Path | None) -> tuple[int, float]:
    """(write_bytes of the import process, seconds), with the code of `tree`."""
    mailyard = [sys.executable, "-m", "mailyard"]
    env = {**os.environ, "PYTHONPATH": str(tree)}
    for setup in (["domain", "add", ADDRESS.partition("@")[2]],
                  ["user", "add", "--password-stdin", "--quota", "1000G", ADDRESS]):
        subprocess.run([*mailyard, *setup[:2], "--data-dir", str(data), *setup[2:]],
                       input=b"bench-password-1\n", check=True, capture_output=True,
                       env=env, cwd=tree)
    cmd = [*mailyard, "import", "--data-dir", str(data), "--batch-size", str(batch), ADDRESS,
           str(mbox)]
    if trace is not None:
        cmd = ["strace", "-f", "-y", "-qq", "-e", "trace=write,pwrite64,writev,pwritev",
               "-o", str(trace), *cmd]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, env=env, cwd=tree)
    os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)  # exited, not yet reaped
    io = Path(f"/proc/{proc.pid}/io").read_text()
    seconds = time.perf_counter() - t0
    if proc.wait() != 0:
        raise SystemExit(f"import failed ({proc.returncode})")
    written = int(re.search(r"write_bytes: (\d+)", io).group(1))  # type: ignore[union-attr]
    return written, seconds


def per_file(trace: Path, data: Path) -> dict[str, int]:
    """Bytes the traced calls wrote, by file under `data` (blobs/ together)."""
    out: dict[str, int] = collections.Counter()
    root = str(data.resolve())
    for line in trace.read_text(errors="replace").splitlines():
        m = _CALL.match(line)
        if not m or not m.group(2).startswith(root):
            continue
        rel = Path(m.group(2)).relative_to(root)
        out[rel.parts[0]] += int(m.group(3))
    return dict(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--work", type=Path, default=Path("/tmp/mailyard-import-writes"))
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--per-file", action="store_true")
    parser.add_argument("--tree", type=Path, default=Path(__file__).resolve().parent.parent,
                        help="the source tree whose code imports (e.g. a `git archive` of"
                             " another commit); default: this one")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    mbox = args.work / f"mail-{args.messages}-{args.seed}.mbox"
    if not mbox.exists():
        t0 = time.perf_counter()
        raw = write_mbox(mbox, args.messages, args.seed)
        print(f"mbox of {args.messages} messages ({raw / 2**20:.1f} MiB of messages) in"
              f" {time.perf_counter() - t0:.0f} s")
    data = args.work / f"data-{args.tree.resolve().name}"
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir()
    trace = args.work / "strace.log" if args.per_file else None
    load = os.getloadavg()
    written, seconds = run_import(args.tree.resolve(), data, mbox, args.batch_size, trace)
    sizes = tree_size(data)
    final = sum(sizes.values())
    print(f"{datetime.now(UTC):%H:%M} UTC, load {load[0]:.1f} -> {os.getloadavg()[0]:.1f};"
          f" {args.messages} messages imported in {seconds:.0f} s"
          f" ({args.messages / seconds:.0f} msg/s)")
    print(f"written {written / 2**20:,.1f} MiB for {final / 2**20:,.1f} MiB of data:"
          f" {written / final:.2f}x")
    files = per_file(trace, data) if trace else {}
    print("\n| file | size MiB | written MiB (strace) | ratio |\n|---|---|---|---|")
    for name in sorted(set(sizes) | set(files), key=lambda n: -files.get(n, sizes.get(n, 0))):
        size, wrote = sizes.get(name, 0), files.get(name, 0)
        ratio = f"{wrote / size:.2f}" if size and files else "-"
        print(f"| {name} | {size / 2**20:,.1f} | {wrote / 2**20:,.1f} | {ratio} |")


if __name__ == "__main__":
    main()
