"""Prometheus metrics of a Mailyard process (served at GET /metrics by protocols/ops.py).

One registry, defined here, incremented at one place per protocol (the session's command
dispatch) and per pipeline outcome. An observation is a dict lookup and an add under a lock:
cheap enough for every IMAP command (see docs/BENCHMARKS.md). The figures that describe stored
state (queue depth and age, store sizes) are read when scraped, in protocols/ops.py.

With `serve --workers N` the pipeline counters of the worker processes stay in those
processes; the queue gauges, read from the shared queue, cover every process.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from mailyard.core import mime

REGISTRY = CollectorRegistry(auto_describe=True)

_LATENCY = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            10.0, 30.0)

CONNECTIONS = Counter("mailyard_connections", "Connections accepted", ["protocol"],
                      registry=REGISTRY)
OPEN_CONNECTIONS = Gauge("mailyard_open_connections", "Connections open now", ["protocol"],
                         registry=REGISTRY)
COMMANDS = Histogram("mailyard_command_seconds", "Time to answer a command (SMTP, IMAP, POP3"
                     " commands; JMAP method calls)", ["protocol", "command"],
                     buckets=_LATENCY, registry=REGISTRY)
MAILS = Counter("mailyard_mails", "Messages by outcome: accepted (queued after SMTP DATA or"
                " submission), delivered (to a local mailbox or a remote MX), deferred (to be"
                " retried), bounced (a DSN to the sender), dead_lettered", ["outcome"],
                registry=REGISTRY)
SEARCH = Histogram("mailyard_search_seconds", "Time to answer a search query", buckets=_LATENCY,
                   registry=REGISTRY)
QUEUE_DEPTH = Gauge("mailyard_queue_items", "Queue items by state (ready, leased, delayed,"
                    " dead)", ["state"], registry=REGISTRY)
QUEUE_OLDEST = Gauge("mailyard_queue_oldest_age_seconds", "Age of the oldest item waiting in"
                     " the queue (0 when empty)", registry=REGISTRY)
MIME_PARSE_FAILURES = Gauge("mailyard_mime_parse_failures", "Messages the MIME parser failed on"
                            " since start-up (each stored and shown as one text body; a bug"
                            " to report)", registry=REGISTRY)
MIME_PARSE_FAILURES.set_function(lambda: mime.PARSE_FAILURES.count)
STORE_BYTES = Gauge("mailyard_store_bytes", "Bytes on disk by store", ["store"],
                    registry=REGISTRY)

OUTCOMES = ("accepted", "delivered", "deferred", "bounced", "dead_lettered")
for _outcome in OUTCOMES:
    MAILS.labels(_outcome)  # every outcome is exported, at 0 until it happens

_command_children: dict[tuple[str, str], Histogram] = {}


def command(protocol: str, name: str, seconds: float) -> None:
    """One command answered. The children are cached: `labels()` takes a lock and builds a
    tuple on each call, this is one dict lookup."""
    child = _command_children.get((protocol, name))
    if child is None:
        child = _command_children[(protocol, name)] = COMMANDS.labels(protocol, name)
    child.observe(seconds)


def mail(outcome: str, n: int = 1) -> None:
    MAILS.labels(outcome).inc(n)
