"""Push latency over JMAP WebSocket (RFC 8887): SMTP 250 -> StateChange on an open socket.

Starts its own `mailyard serve` (tests/e2e/server.Server, temporary data_dir) unless --port is
given, opens one WebSocket (subprotocol "jmap", Basic credentials), sends WebSocketPushEnable
for Email, then delivers --deliveries messages over SMTP one after the other. For each: the
time from reading the 250 after DATA to reading the first StateChange frame. Frames that follow
within 50 ms (a delivery may move the state more than once) are read and not counted, so every
sample starts from a quiet socket. Prints median, p99 and max.

    .venv/bin/python bench/jmap_push.py --deliveries 200
"""

from __future__ import annotations

import argparse
import base64
import json
import smtplib
import ssl
import statistics
import sys
import tempfile
import time
from pathlib import Path

from websockets.sync.client import ClientConnection, connect
from websockets.typing import Subprotocol

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.e2e.server import Server, wait_port  # noqa: E402

ADDRESS, PASSWORD = "push@example.test", "bench-password-123"


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def open_socket(port: int) -> ClientConnection:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the server's self-signed certificate
    credentials = base64.b64encode(f"{ADDRESS}:{PASSWORD}".encode()).decode()
    return connect(f"wss://127.0.0.1:{port}/jmap/ws", ssl=ctx,
                   subprotocols=[Subprotocol("jmap")],
                   additional_headers={"Authorization": f"Basic {credentials}"})


def measure(http_port: int, smtp_port: int, deliveries: int) -> list[float]:
    samples: list[float] = []
    with open_socket(http_port) as ws, smtplib.SMTP("127.0.0.1", smtp_port) as smtp:
        ws.send(json.dumps({"@type": "WebSocketPushEnable", "dataTypes": ["Email"]}))
        time.sleep(0.2)
        for n in range(deliveries):
            smtp.sendmail("load@remote.test", [ADDRESS],
                          f"From: load@remote.test\r\nTo: {ADDRESS}\r\nSubject: push {n}\r\n"
                          f"\r\nbody {n}\r\n")
            accepted = time.perf_counter()
            frame = json.loads(ws.recv(timeout=30))
            samples.append((time.perf_counter() - accepted) * 1000)
            assert frame["@type"] == "StateChange", frame
            while True:
                try:
                    ws.recv(timeout=0.05)
                except TimeoutError:
                    break
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--deliveries", type=int, default=200)
    parser.add_argument("--workers", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = Server(Path(tmp), workers=args.workers)
        server.add_user(ADDRESS, PASSWORD)
        server.start()
        try:
            wait_port(server.http_port)
            samples = measure(server.http_port, server.smtp_port, args.deliveries)
        finally:
            server.stop()
    print(f"push over WebSocket: {len(samples)} deliveries, SMTP 250 -> StateChange: "
          f"median {statistics.median(samples):.1f} ms, p99 {percentile(samples, 99):.1f} ms,"
          f" max {max(samples):.1f} ms (workers={args.workers})")


if __name__ == "__main__":
    main()
