"""The operator's endpoints on the HTTP listener: GET /metrics (Prometheus text), /healthz
(liveness: the event loop answers) and /readyz (every store and the queue answer).

They carry no mail and no account data, so they sit in front of the JMAP app's authentication:
`OpsRouter` sends these three paths to the ops app and everything else to the JMAP app. A
Prometheus scraper or a load balancer's health check needs no credentials (bind the HTTP
listener to an internal address, or filter these paths at the proxy, to keep them private).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from mailyard import metrics
from mailyard.protocols.live import LIVE
from mailyard.services.delivery import QueueState

PATHS = frozenset({"/metrics", "/healthz", "/readyz"})
READY_TIMEOUT = 2.0


@dataclass
class OpsServices:
    queue_state: Callable[[], Awaitable[QueueState]]
    """The queue's depth and age (`DeliveryService.queue_state`)."""
    ready_checks: dict[str, Callable[[], Awaitable[object]]]
    """Name -> a cheap call on that store; ready when every one returns within 2 s."""
    store_sizes: Callable[[], Awaitable[dict[str, int]]]
    """Store name -> bytes on disk. The blob store's figure walks its files, so it is read
    again only after `sizes_spacing` times as long as the last reading took: a small store is
    always current, a huge one costs the scrapes at most 2 % of a core."""
    sizes_spacing: float = 50.0
    _sizes_at: float = field(default=-1e9, init=False)
    _sizes_took: float = field(default=0.0, init=False)


class OpsRouter:
    """ASGI: the ops paths to `ops`, everything else to `app` (with its middleware)."""

    def __init__(self, ops: ASGIApp, app: ASGIApp) -> None:
        self.ops = ops
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("path") in PATHS:
            await self.ops(scope, receive, send)
        else:
            await self.app(scope, receive, send)


def build_ops_app(services: OpsServices) -> Starlette:
    async def healthz(_request: Request) -> Response:
        return Response(b"ok\n", media_type="text/plain")

    async def readyz(_request: Request) -> Response:
        async def probe(check: Callable[[], Awaitable[object]]) -> str:
            try:
                await asyncio.wait_for(check(), READY_TIMEOUT)
            except Exception as e:  # any failure is "not ready", with its reason
                return f"{type(e).__name__}: {e}"[:200] or "failed"
            return "ok"

        names = list(services.ready_checks)
        results = await asyncio.gather(*(probe(services.ready_checks[n]) for n in names))
        body = dict(zip(names, results, strict=True))
        ready = all(r == "ok" for r in results) and not LIVE.closing
        if LIVE.closing:
            body["server"] = "shutting down"
        return Response(orjson.dumps(body) + b"\n", status_code=200 if ready else 503,
                        media_type="application/json")

    async def metrics_endpoint(_request: Request) -> Response:
        await refresh(services)
        return Response(generate_latest(metrics.REGISTRY), media_type=CONTENT_TYPE_LATEST)

    return Starlette(routes=[Route("/healthz", healthz), Route("/readyz", readyz),
                             Route("/metrics", metrics_endpoint)])


async def refresh(services: OpsServices) -> None:
    """Read the state gauges (queue, store sizes) at scrape time."""
    queue = await services.queue_state()
    for state in ("ready", "leased", "delayed", "dead"):
        metrics.QUEUE_DEPTH.labels(state).set(getattr(queue.stats, state))
    metrics.QUEUE_OLDEST.set(queue.oldest_age)
    now = time.monotonic()
    if now - services._sizes_at >= services._sizes_took * services.sizes_spacing:
        sizes = await services.store_sizes()
        services._sizes_at, services._sizes_took = now, time.monotonic() - now
        for store, size in sizes.items():
            metrics.STORE_BYTES.labels(store).set(size)
