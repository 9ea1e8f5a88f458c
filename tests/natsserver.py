"""A private NATS server or cluster with JetStream, on free loopback ports, for one test.

`NatsCluster(root, size=3).start()` runs `nats-server` processes routed into one cluster (the
machine's nats-server binary; the config written under `root`), waits until JetStream has a
meta leader and answers, and `stop()` ends them. Each server can be SIGKILLed and started
again, to play a lost NATS node.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.e2e.server import free_port


@dataclass
class NatsNode:
    name: str
    client_port: int
    route_port: int
    config: Path
    log: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.client_port}"

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(["nats-server", "-c", str(self.config)],
                                            stdout=log, stderr=subprocess.STDOUT)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()
        self.process = None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


@dataclass
class NatsCluster:
    root: Path
    size: int = 3
    nodes: list[NatsNode] = field(default_factory=list)

    def __post_init__(self) -> None:
        if shutil.which("nats-server") is None:
            raise RuntimeError("nats-server is not installed")
        self.root.mkdir(parents=True, exist_ok=True)
        routes = [free_port() for _ in range(self.size)]
        for n in range(self.size):
            name = f"n{n + 1}"
            node = NatsNode(name, free_port(), routes[n], self.root / f"{name}.conf",
                            self.root / f"{name}.log")
            lines = [
                f"server_name: {name}",
                f"listen: 127.0.0.1:{node.client_port}",
                f"jetstream {{ store_dir: \"{self.root / name}\", max_memory_store: 256MB,"
                f" max_file_store: 2GB }}",
            ]
            if self.size > 1:
                others = ", ".join(f"nats-route://127.0.0.1:{p}" for p in routes)
                lines += ["cluster {", f"  name: mailyard-test-{routes[0]}",
                          f"  listen: 127.0.0.1:{node.route_port}", f"  routes: [{others}]",
                          "}"]
            node.config.write_text("\n".join(lines) + "\n")
            self.nodes.append(node)

    @property
    def urls(self) -> list[str]:
        return [n.url for n in self.nodes]

    def start(self, timeout: float = 60.0) -> NatsCluster:
        for node in self.nodes:
            node.start()
        asyncio.run(self.wait_ready(timeout))
        return self

    async def wait_ready(self, timeout: float = 60.0) -> None:
        """Until JetStream answers an API call (a meta leader is elected) through each
        running server."""
        import nats

        deadline = time.monotonic() + timeout
        for node in self.nodes:
            if node.process is None:
                continue
            while True:
                try:
                    nc = await nats.connect(node.url, connect_timeout=1,
                                            max_reconnect_attempts=0)
                    try:
                        await nc.jsm(timeout=2).account_info()
                        break
                    finally:
                        await nc.close()
                except Exception:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"NATS {node.name} not ready:\n"
                                           + node.log.read_text()) from None
                    await asyncio.sleep(0.2)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
