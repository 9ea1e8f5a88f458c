"""`--workers N`: pipeline processes beside the listener, at a lower CPU priority than it
(`[queue] worker_nice`), still storing every accepted mail."""

from __future__ import annotations

import os
import smtplib
import time
from pathlib import Path

from tests.e2e.server import Server


def _children(pid: int) -> dict[int, tuple[str, int]]:
    """Child pid -> (command line, niceness), read from /proc."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if int(fields[1]) == pid:  # fields[0] is the state (stat field 3): ppid is field 4
            found[int(entry)] = (cmdline, int(fields[16]))  # field 19: nice
    return found


def test_workers_run_niced_and_deliver(tmp_path: Path) -> None:
    srv = Server(tmp_path, workers=2, queue={"worker_nice": 7})
    srv.add_user("alice@example.test")
    srv.start()
    try:
        assert srv.process is not None
        own = int(Path(f"/proc/{srv.process.pid}/stat").read_text().rsplit(")", 1)[1].split()[16])
        deadline = time.monotonic() + 60  # a spawned worker imports before it renices
        while True:
            workers = [nice for cmd, nice in _children(srv.process.pid).values()
                       if "multiprocessing-fork" in cmd]
            if workers == [own + 7] * 2 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert workers == [own + 7] * 2, _children(srv.process.pid)
        with smtplib.SMTP("127.0.0.1", srv.smtp_port, timeout=30) as s:
            s.sendmail("bob@remote.test", ["alice@example.test"],
                       b"From: bob@remote.test\r\nSubject: niced\r\n\r\nhello\r\n")
        srv.wait_queue_empty(timeout=60)
        assert any(b"Subject: niced" in raw for raw in srv.raws("alice@example.test").values())
    finally:
        srv.stop()
