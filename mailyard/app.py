"""The composition root: the only module that knows which engine backs each port.

`Runtime` builds the adapters from the config; `serve` starts the listeners and the pipeline
workers (in this process, or in `--workers N` processes beside it so both cores work).

Each adapter, service, protocol and pipeline module is imported by the function or Runtime
part that uses it, not here: an admin command imports what it runs and nothing else
(`mailyard search` no listener, no check, no engine it is not configured for), which
tests/e2e/test_cli_imports.py checks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from mailyard.config import Checks, Config, ConfigError

if TYPE_CHECKING:
    import ssl

    from mailyard.core.ratelimit import Ledger
    from mailyard.core.workitems import InboundItem, MessageLoader, Verdict
    from mailyard.dns import Resolver
    from mailyard.mtasts import SeenPolicies
    from mailyard.pipeline.inbound import InboundPipeline, Target
    from mailyard.pipeline.outbound import OutboundWorker
    from mailyard.pipeline.worker import Supervised, Worker
    from mailyard.protocols.imap.session import IMAPServices
    from mailyard.protocols.jmap.http import HTTPServer
    from mailyard.protocols.jmap.webpush import WebPushDeliverer
    from mailyard.services.accounts import AccountService
    from mailyard.services.blobs import BlobService
    from mailyard.services.changes import ChangeService
    from mailyard.services.checks import CheckChain
    from mailyard.services.checks.content import SpamPlacement
    from mailyard.services.checks.policy import PolicyStore
    from mailyard.services.checks.training import SpamTrainer
    from mailyard.services.delivery import DeliveryService
    from mailyard.services.mailbox import MailboxService
    from mailyard.services.objects import ObjectService
    from mailyard.services.routing import RoutingService
    from mailyard.services.search import SearchService
    from mailyard.services.sieve import SieveService
    from mailyard.services.submission import SubmissionService
    from mailyard.services.tokens import TokenService
    from mailyard.services.vacation import VacationResponder
    from mailyard.store.nats.connection import NatsConnection
    from mailyard.store.ports import (
        Account,
        BlobStore,
        Counters,
        MaintainedMailStore,
        NodeEventBus,
        PushSubscriptionStore,
        Queue,
        RoutingStore,
        SearchIndex,
        SieveScriptStore,
        SpamModel,
    )
    from mailyard.store.postgres.policy import PostgresPolicyStore
    from mailyard.store.sqlite.policy import SqlitePolicyStore

log = logging.getLogger("mailyard")


class Runtime:
    """The adapters and services for one config, each built when first used: `Runtime(config)`
    for an admin command (`user list` opens the MailStore only, `search` no queue and no
    checks), `Runtime.open(config)` for the server and its workers, which build every part at
    once so that a store that cannot open stops start-up."""

    PARTS = ("store", "blobs", "queue", "index", "bus", "accounts", "routing", "spam_model",
             "pipeline",
             "mailbox", "submission", "delivery", "search", "resolver", "blob_access",
             "vacation", "tokens", "placement", "spam_trainer", "changes", "objects",
             "sieve_scripts", "sieve")
    """Every part, in the order `open` builds them (the order the server always used)."""

    def __init__(self, config: Config, *, others_enqueue: bool = False,
                 make_data_dir: bool = True) -> None:
        """`others_enqueue`: this process consumes a queue other processes of the node feed
        (a `--workers` process; the listener beside SMTP processes), see `open_queue`.
        `make_data_dir`: False for an admin command that only reads or changes what is
        there (the CLI has checked that the directory exists)."""
        if make_data_dir:
            config.data_dir.mkdir(parents=True, exist_ok=True)
        self.config = config
        self.others_enqueue = others_enqueue

    @classmethod
    def open(cls, config: Config, *, others_enqueue: bool = False) -> Runtime:
        """Build every adapter and service for `config` (no listener, no worker yet)."""
        from mailyard import metrics

        runtime = cls(config, others_enqueue=others_enqueue)
        for part in cls.PARTS:
            getattr(runtime, part)
        runtime.search.timer = metrics.SEARCH.time  # the server's /metrics times searches
        return runtime

    @cached_property
    def store(self) -> MaintainedMailStore:
        return open_mailstore(self.config)

    @cached_property
    def blobs(self) -> BlobStore:
        return open_blobstore(self.config)

    @cached_property
    def queue(self) -> Queue:
        return open_queue(self.config, lambda: self.nats, others_enqueue=self.others_enqueue)

    @cached_property
    def nats(self) -> NatsConnection:
        """This process's one connection to `[cluster] nats`, for the queue and the bus."""
        from mailyard.store.nats.connection import NatsConnection

        return NatsConnection(self.config.cluster.nats, name=f"mailyard {node_name(self.config)}")

    @cached_property
    def index(self) -> SearchIndex:
        return open_search_index(self.config,
                                 self.store if self.config.store.shards else None)

    @cached_property
    def bus(self) -> NodeEventBus:
        return open_event_bus(self.config, lambda: self.nats)

    @cached_property
    def shared_state(self) -> SharedState:
        """The login-failure counters and the limits and locks (open_shared_state)."""
        return open_shared_state(self.config)

    @cached_property
    def accounts(self) -> AccountService:
        from mailyard.services.accounts import AccountService
        from mailyard.services.loginguard import LoginGuard, LoginLimits

        config = self.config
        auth = config.auth
        guard = LoginGuard(self.shared_state.counters, LoginLimits(
            failures_per_network=auth.failures_per_network_per_hour,
            failures_per_account=auth.failures_per_account_per_hour,
            ipv6_prefix=auth.ipv6_prefix))
        return AccountService(self.store, config_domains=config.domains,
                              default_quota=config.limits.default_quota, guard=guard,
                              roles={"postmaster": config.addresses.postmaster,
                                     "abuse": config.addresses.abuse})

    @cached_property
    def spam_model(self) -> SpamModel:
        return open_spam_model(self.config)

    @cached_property
    def pipeline(self) -> InboundPipeline:
        """Its spam placement and its recipients' accounts are asked for per message, and
        built then (`placement`, `accounts`): reading mail needs neither."""
        from mailyard.pipeline.inbound import InboundPipeline

        config = self.config
        return InboundPipeline(self.store, self.blobs,
                               dedup_min_size=config.limits.attachment_dedup_min_size,
                               index_limits=config.search, placement=_Placement(self),
                               recipient_account=self._recipient_account,
                               filters=_Filters(self))

    async def _recipient_account(self, address: str) -> Account:
        return await self.routing.recipient_account(address)

    @cached_property
    def routing_store(self) -> RoutingStore:
        return open_routing_store(self.config)

    @cached_property
    def routing(self) -> RoutingService:
        """The routing rules; once built, they decide AccountService.check_recipient (RCPT
        at the MX, submission's recipients)."""
        from mailyard.core.routing import SRS
        from mailyard.services.routing import RoutingService

        r = self.config.routing
        srs = SRS(srs_secret(self.config), r.srs_domain or self.config.hostname)
        routing = RoutingService(self.accounts, self.routing_store,
                                 delimiter=r.recipient_delimiter, srs=srs,
                                 spam_score=_Placement(self).complete,
                                 hold_spam=r.hold_spam_forwards)
        self.accounts.router = routing
        return routing

    @cached_property
    def placement(self) -> SpamPlacement:
        from mailyard.services.checks.content import SpamPlacement

        return SpamPlacement(self.spam_model, self.config.spam)

    @cached_property
    def mailbox(self) -> MailboxService:
        from mailyard.services.mailbox import MailboxService

        mailbox = MailboxService(self.store, self.blobs, self.index, self.bus,
                                 cast("InboundPipeline", _LazyPipeline(self)))
        mailbox.junk_observers.append(self._junk_changed)
        return mailbox

    def _junk_changed(self, account: Account, email_ids: Sequence[str], is_spam: bool) -> None:
        self.spam_trainer.junk_changed(account, email_ids, is_spam)

    @cached_property
    def spam_trainer(self) -> SpamTrainer:
        """Trains the spam models on what users mark Junk or not (MailboxService's observer)."""
        from mailyard.services.checks.training import SpamTrainer

        return SpamTrainer(self.spam_model, self.mailbox, self.config.spam)

    @cached_property
    def submission(self) -> SubmissionService:
        from mailyard.services.submission import SubmissionPolicy, SubmissionService

        config = self.config
        sub = config.submission
        submission = SubmissionService(self.accounts, self.mailbox, self.blobs, self.queue,
                                 SubmissionPolicy(
                                     hostname=config.hostname,
                                     messages_per_hour=sub.messages_per_hour,
                                     recipients_per_message=sub.recipients_per_message,
                                     undo_seconds=sub.undo_seconds),
                                 ledger=self.shared_state.ledger)
        submission.routing = self.routing
        return submission

    @cached_property
    def delivery(self) -> DeliveryService:
        from mailyard.services.delivery import DeliveryService

        return DeliveryService(self.blobs, self.queue, self.routing,
                               hostname=self.config.hostname,
                               max_received=self.config.routing.max_received)

    @cached_property
    def search(self) -> SearchService:
        from mailyard.services.search import SearchService

        return SearchService(self.store, self.index,
                             query_seconds=self.config.limits.query_seconds)

    @cached_property
    def resolver(self) -> Resolver:
        from mailyard.dns import Resolver

        return Resolver.from_config(self.config.dns)

    @cached_property
    def blob_access(self) -> BlobService:
        from mailyard.services.blobs import BlobService

        return BlobService(self.store, self.blobs, self.mailbox)

    @cached_property
    def sieve_scripts(self) -> SieveScriptStore:
        return open_sieve_store(self.config)

    @cached_property
    def sieve(self) -> SieveService:
        from mailyard.services.sieve import SieveService

        return SieveService(self.sieve_scripts, self.store, self.blobs, self.queue,
                            hostname=self.config.hostname, routing=lambda: self.routing,
                            delivery=lambda: self.delivery, mailbox=lambda: self.mailbox,
                            vacation=lambda: self.vacation)

    @cached_property
    def vacation(self) -> VacationResponder:
        from mailyard.services.vacation import VacationResponder

        return VacationResponder(self.store, self.submission, ledger=self.shared_state.ledger)

    @cached_property
    def changes(self) -> ChangeService:
        from mailyard.services.changes import ChangeService

        return ChangeService(self.store)

    @cached_property
    def objects(self) -> ObjectService:
        from mailyard.services.objects import ObjectService

        return ObjectService(self.store)

    @cached_property
    def tokens(self) -> TokenService:
        from mailyard.services.tokens import TokenService

        return TokenService(self.store)

    def worker(self) -> Worker:
        from mailyard.pipeline.worker import RetryPolicy, Worker

        c = self.config
        return Worker(self.queue, self.pipeline, self.index, self.bus,
                      RetryPolicy(c.queue.max_attempts, c.queue.backoff_base,
                                  c.queue.backoff_max, c.queue.spool_tries),
                      batch_size=c.queue.batch_size, lease_seconds=c.queue.lease_seconds,
                      after_delivery=self.vacation.after_delivery)

    @cached_property
    def mta_sts_seen(self) -> SeenPolicies | None:
        return open_mta_sts_seen(self.config)

    def outbound(self) -> OutboundWorker:
        from mailyard.core.smarthost import parse_relays
        from mailyard.mtasts import MTASTS
        from mailyard.pipeline.outbound import OutboundPolicy, OutboundWorker

        c = self.config
        o = c.outbound
        sts = MTASTS(self.resolver, port=o.mta_sts_port, cafile=o.cafile or None,
                     seen=self.mta_sts_seen) if o.mta_sts else None
        relayhost, relays = parse_relays(o.relayhost, o.relayhost_by_domain)  # checked at load
        return OutboundWorker(self.queue, self.blobs, self.store, self.resolver, self.delivery,
                              OutboundPolicy(
                                  hostname=c.hostname, retry_schedule=tuple(o.retry_schedule),
                                  give_up_after=o.give_up_after,
                                  delay_notice_after=o.delay_notice_after,
                                  per_domain_per_minute=o.per_domain_per_minute,
                                  connect_timeout=o.connect_timeout,
                                  command_timeout=o.command_timeout, port=o.port,
                                  require_tls=o.require_tls, cafile=o.cafile or None,
                                  relayhost=relayhost, relays=relays),
                              mta_sts=sts, ledger=self.shared_state.ledger)

    def loops(self) -> list[Supervised]:
        """The pipeline and outbound loops, each restarted should it ever end early."""
        from mailyard.pipeline.worker import Supervised

        return [Supervised("pipeline worker", lambda: self.worker().run),
                Supervised("outbound worker", lambda: self.outbound().run)]

    def stopped_writers(self) -> list[str]:
        """The SQLite files of this runtime whose writer thread is gone (none, normally)."""
        from mailyard.store.sqlite.db import Database

        built = self.__dict__
        parts = (built.get(name) for name in ("store", "queue", "index", "spam_model",
                                              "sieve_scripts"))
        return [db.path.name for part in parts
                if isinstance(db := getattr(part, "db", None), Database) and not db.alive]

    def close(self) -> None:
        """Close the parts that were built (the others never opened anything)."""
        built = self.__dict__
        if "bus" in built:
            self.bus.close()
        for name in ("queue", "index", "store", "blobs", "spam_model", "routing_store",
                     "sieve_scripts", "mta_sts_seen"):
            if built.get(name) is not None:
                built[name].close()


class _LazyPipeline:
    """The MailboxService's pipeline, built at its first use (APPEND, import, fsck): `mail
    list` and `search` read mail and never load the pipeline's parsers and checks."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime

    def __getattr__(self, name: str) -> Any:
        return getattr(self._runtime.pipeline, name)


class _Placement:
    """The pipeline's spam placement (services/checks/content.py SpamPlacement), built on the
    first message placed: a command that reads mail imports no content check (nor httpx)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    async def complete(self, verdict: Verdict, message: MessageLoader
                       ) -> tuple[Verdict, bytes]:
        return await self.runtime.placement.complete(verdict, message)

    async def junk(self, account_id: str, verdict: Verdict, message: MessageLoader) -> bool:
        return await self.runtime.placement.junk(account_id, verdict, message)


class _Filters:
    """The pipeline's per-recipient Sieve run (services/sieve.py), built on first use."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    async def file(self, target: Target, recipient: str, mail_from: str,
                   message: MessageLoader, delivery_key: str, *,
                   item: InboundItem | None = None) -> Target:
        return await self.runtime.sieve.file(target, recipient, mail_from, message,
                                             delivery_key, item=item)


def node_name(config: Config) -> str:
    """`[cluster] node`, else the host's name and data_dir: a restarted node takes back the
    leases of its previous run only, never those of another node on the same host."""
    import socket

    return config.cluster.node or f"{socket.gethostname()}:{config.data_dir.resolve()}"


def start_heartbeat(runtime: Runtime) -> asyncio.Task[None] | None:
    """With `[cluster] nats`, announce this node (its name, pid and listeners) in NATS every
    10 s until cancelled; the entry expires 30 s after the last one."""
    import socket
    from dataclasses import fields

    c = runtime.config.cluster
    if not c.nats:
        return None
    from mailyard.store.nats.membership import NatsMembership, NodeCard

    listen = runtime.config.listen
    card = NodeCard(node=node_name(runtime.config), pid=os.getpid(), host=socket.gethostname(),
                    started_at=time.time(),
                    listeners={f.name: getattr(listen, f.name) for f in fields(listen)
                               if getattr(listen, f.name)})
    membership = NatsMembership(runtime.nats, prefix=c.prefix, replicas=c.replicas)
    return asyncio.create_task(membership.run(card))


@dataclass(frozen=True)
class SharedState:
    counters: Counters
    """Failed logins (services/loginguard.py)."""
    ledger: Ledger
    """Per-IP limits, the POP3 maildrop lock, greylisting, vacation claims."""


def open_shared_state(config: Config) -> SharedState:
    """`[store] counters`: Redis, shared by every node ("redis://host:port/db"; while it is
    away each node decides alone, store/redis/fallback.py), or "": the counters in
    counters.db in data_dir, shared by this node's processes (the listener, IMAP processes,
    workers), the limits and locks in each process. The Redis client is imported only when
    configured."""
    from mailyard.core.ratelimit import LocalLedger
    from mailyard.store.sqlite.counters import SqliteCounters

    url = config.store.counters
    if url and not url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError(f"[store] counters: expected \"redis://host:port/db\" or \"\","
                          f" got {url!r}")
    local = SqliteCounters(config.data_dir / "counters.db")
    if not url:
        return SharedState(local, LocalLedger())
    from mailyard.store.redis.fallback import open_degrading

    counters, ledger = open_degrading(url, local, prefix=f"{config.cluster.prefix}:")
    return SharedState(counters, ledger)


def open_routing_store(config: Config) -> RoutingStore:
    """The routing rules beside the MailStore: routing.db in data_dir, or the (first, the
    directory's) PostgreSQL database of `[store] metadata`."""
    dsn = config.store.shards[0] if config.store.shards else config.store.metadata
    if dsn:
        from mailyard.store.postgres.routing import PostgresRoutingStore

        return PostgresRoutingStore(dsn)
    from mailyard.store.sqlite.routing import SqliteRoutingStore

    return SqliteRoutingStore(config.data_dir / "routing.db")


def srs_secret(config: Config) -> bytes:
    """`[routing] srs_secret`, else one key made on first use: with PostgreSQL metadata in the
    directory database, the same for every node (a bounce to an address one node rewrote is
    reversed by any; store/postgres/secrets.py), else in data_dir/srs.secret. A node that kept
    a data_dir/srs.secret from before offers it as the cluster's key, so that the first such
    node to start keeps its rewritten addresses reversible."""
    if config.routing.srs_secret:
        return config.routing.srs_secret.encode()
    import secrets

    path = config.data_dir / "srs.secret"
    dsn = (config.store.shards or [config.store.metadata])[0]
    if dsn:
        from mailyard.store.postgres.secrets import shared_secret_sync

        try:
            candidate = path.read_bytes().strip()
        except FileNotFoundError:
            candidate = b""
        return shared_secret_sync(dsn, "srs", candidate or secrets.token_urlsafe(32).encode())
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        key = secrets.token_urlsafe(32).encode()
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it first: use theirs
            return path.read_bytes().strip()
        with os.fdopen(fd, "wb") as f:
            f.write(key + b"\n")
            f.flush()
            os.fsync(f.fileno())
        return key


# ------------------------------------------------------------------ one engine per role
# Each role's engine is chosen here from the configuration and nowhere else; the rest of
# the server sees the role's port (store/ports.py) only.


def open_queue(config: Config, nats: Callable[[], NatsConnection], *,
               others_enqueue: bool = False) -> Queue:
    """`[cluster] queue`: JetStream shared by every node, or queue.db in data_dir. On SQLite,
    a process fed by other processes of the node (`others_enqueue`) looks for their commits
    every few milliseconds; one that feeds itself only at `poll_interval` (its own enqueue
    wakes it at once, and a 10 ms watch cost the event loop 7 % of its time under IMAP
    load)."""
    c = config.cluster
    if c.queue == "nats":
        from mailyard.store.nats.queue import NatsQueue

        return NatsQueue(nats(), prefix=c.prefix, replicas=c.replicas,
                         holder=node_name(config), poll_interval=config.queue.poll_interval)
    from mailyard.store.sqlite.queue import WATCH_INTERVAL, SqliteQueue

    return SqliteQueue(config.data_dir / "queue.db", poll_interval=config.queue.poll_interval,
                       watch_interval=WATCH_INTERVAL if others_enqueue else None)


def open_event_bus(config: Config, nats: Callable[[], NatsConnection]) -> NodeEventBus:
    """`[cluster] events`: NATS subjects (every node), or in-process with a relay between
    this node's processes."""
    if config.cluster.events == "nats":
        from mailyard.store.nats.eventbus import NatsEventBus

        return NatsEventBus(nats(), prefix=config.cluster.prefix)
    from mailyard.store.local.eventbus import LocalEventBus

    return LocalEventBus()


def open_spam_model(config: Config) -> SpamModel:
    """What the content classifier learns: spam.db in data_dir, or the (first) PostgreSQL
    database, where every node of a cluster learns and reads the same model."""
    dsn = (config.store.shards or [config.store.metadata])[0]
    if dsn:
        from mailyard.store.postgres.spam import PostgresSpamModel

        return PostgresSpamModel(dsn)
    from mailyard.store.sqlite.spam import SqliteSpamModel

    return SqliteSpamModel(config.data_dir / "spam.db")


def open_sieve_store(config: Config) -> SieveScriptStore:
    """Sieve scripts beside the directory: sieve.db, or the (first) PostgreSQL database."""
    dsn = (config.store.shards or [config.store.metadata])[0]
    if dsn:
        from mailyard.store.postgres.sieve import PostgresSieveStore

        return PostgresSieveStore(dsn)
    from mailyard.store.sqlite.sieve import SqliteSieveStore

    return SqliteSieveStore(config.data_dir / "sieve.db")


def open_push_store(config: Config) -> PushSubscriptionStore:
    """JMAP push subscriptions: push.db in data_dir, or the (first) PostgreSQL database, where
    every node of a cluster sees the subscriptions any node made."""
    dsn = (config.store.shards or [config.store.metadata])[0]
    if dsn:
        from mailyard.store.postgres.pushsubs import PostgresPushSubscriptionStore

        return PostgresPushSubscriptionStore(dsn)
    from mailyard.store.sqlite.pushsubs import SqlitePushSubscriptionStore

    return SqlitePushSubscriptionStore(config.data_dir / "push.db")


def open_mailstore(config: Config) -> MaintainedMailStore:
    """`[store] metadata`: SQLite in data_dir (the default), one PostgreSQL database, or
    shards. The PostgreSQL adapters (and asyncpg) are imported only when configured: a
    listener on SQLite holds megabytes less of modules it never runs."""
    if config.store.shards:
        from mailyard.store.postgres.sharded import ShardedMailStore

        return ShardedMailStore(config.store.shards)
    if config.store.metadata:
        from mailyard.store.postgres.mailstore import PostgresMailStore

        return PostgresMailStore(config.store.metadata)
    from mailyard.store.sqlite.mailstore import SqliteMailStore

    return SqliteMailStore(config.data_dir / "mail.db", query_seconds=config.limits.query_seconds)


def open_search_index(config: Config, store: object = None
                      ) -> SearchIndex:
    """`[store] search`: SQLite FTS in data_dir, or PostgreSQL (imported only then); with
    the MailStore sharded and `search = "postgresql"`, each account's index in its own shard
    (search_shards.py), routed by the directory of `store`."""
    if config.store.shards and config.store.search == "postgresql":
        from mailyard.store.postgres.search_shards import ShardedSearchIndex
        from mailyard.store.postgres.sharded import ShardedMailStore

        if not isinstance(store, ShardedMailStore):
            raise TypeError("the sharded search index needs the sharded MailStore")
        return ShardedSearchIndex(store, query_seconds=config.limits.query_seconds)
    if config.store.search_dsn:
        from mailyard.store.postgres.search import PostgresSearchIndex

        return PostgresSearchIndex(config.store.search_dsn,
                                   query_seconds=config.limits.query_seconds)
    from mailyard.store.sqlite.search import SqliteSearchIndex

    return SqliteSearchIndex(config.data_dir / "search.db",
                             query_seconds=config.limits.query_seconds)


def open_blobstore(config: Config) -> BlobStore:
    """`[store] blobs`: files under data_dir (the default) or an S3 bucket. The S3 adapter
    (and aiobotocore) is imported only when configured: admin commands start faster."""
    if not config.store.blobs:
        from mailyard.store.fs.blobstore import FsBlobStore

        return FsBlobStore(config.blob_dir)
    from mailyard.store.s3.blobstore import S3BlobStore, S3Options

    s3 = config.store.s3
    return S3BlobStore.from_url(config.store.blobs, S3Options(
        endpoint=s3.endpoint, region=s3.region, access_key=s3.access_key,
        secret_key=s3.secret_key, cache_bytes=s3.cache_bytes, max_attempts=s3.max_attempts))


def open_mta_sts_seen(config: Config) -> SeenPolicies | None:
    """The MTA-STS policies every node fetched, in the (first) PostgreSQL database; None with
    SQLite metadata (one node: its memory holds them)."""
    dsn = (config.store.shards or [config.store.metadata])[0]
    if not dsn:
        return None
    from mailyard.store.postgres.mtasts import PostgresSeenPolicies

    return PostgresSeenPolicies(dsn)


def open_policy_store(config: Config) -> SqlitePolicyStore | PostgresPolicyStore:
    """The allow/deny lists and greylist of `[checks]`, shared by the server and the CLI:
    policy.db in data_dir, or the (first, the directory's) PostgreSQL database of `[store]
    metadata`, where `mailyard policy` on any node sets the lists of every node."""
    dsn = (config.store.shards or [config.store.metadata])[0]
    if dsn:
        from mailyard.store.postgres.policy import PostgresPolicyStore

        return PostgresPolicyStore(dsn)
    from mailyard.store.sqlite.policy import SqlitePolicyStore

    config.data_dir.mkdir(parents=True, exist_ok=True)
    return SqlitePolicyStore(config.data_dir / "policy.db")


def inbound_checks(config: Config, policy_store: PolicyStore,
                   spam_model: SpamModel | None = None,
                   ledger: Ledger | None = None) -> CheckChain:
    """The MX's checks, in order: connection policy (layer 1), authentication (layer 2),
    then content (layers 3 and 4). Their lookups get the `[dns]` nameservers with the short
    `[checks] dns_timeout`, since an SMTP client is waiting."""
    from mailyard.dns import Resolver
    from mailyard.services.checks import Check, CheckChain
    from mailyard.services.checks.auth import AuthCheck
    from mailyard.services.checks.content import ContentCheck
    from mailyard.services.checks.policy import PolicyCheck, PolicySettings

    c = config.checks
    resolver = Resolver(config.dns.nameservers, c.dns_timeout)
    checks: list[Check] = [PolicyCheck(policy_store, resolver, PolicySettings(
        dnsbl_zones=tuple(c.dnsbl_zones), greylisting=c.greylisting,
        greylist_delay=c.greylist_delay, greylist_window=c.greylist_window,
        greylist_expire=c.greylist_expire), ledger=ledger)]
    if c.authenticate:
        checks.append(AuthCheck(resolver, authserv_id=config.hostname,
                                enforce_dmarc=c.enforce_dmarc, timeout=c.dns_timeout,
                                spf_cache_seconds=c.spf_cache_seconds))
    if spam_model is not None and config.spam.enabled:
        checks.append(ContentCheck(spam_model, config.spam))
    # Content checks (services/checks/content.py: rules, classifier, rspamd, clamd) go here,
    # after authentication, whose results they may use.
    return CheckChain(checks)


def _hostport(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    return host.strip("[]"), int(port)


def imap_services(config: Config, runtime: Runtime, tls: ssl.SSLContext) -> IMAPServices:
    from mailyard.protocols.imap.rawcache import RawCache
    from mailyard.protocols.imap.session import IMAPPolicy, IMAPServices

    return IMAPServices(
        accounts=runtime.accounts, mailbox=runtime.mailbox, search=runtime.search,
        bus=runtime.bus, tls=tls,
        policy=IMAPPolicy(
            hostname=config.hostname, max_line=config.imap.max_line,
            max_literal=config.limits.message_size, idle_timeout=config.imap.idle_timeout,
            allow_plaintext_loopback=config.auth.plaintext_on_loopback,
            connections_per_ip=config.imap.connections_per_ip,
            connections_per_user=config.imap.connections_per_user),
        ledger=runtime.shared_state.ledger, raw_cache=RawCache(config.imap.fetch_cache))


async def start_imap_listeners(config: Config, runtime: Runtime, tls: ssl.SSLContext,
                               ports: tuple[int, int] = (0, 0)) -> list[asyncio.Server]:
    """The IMAP and IMAPS listeners of this process; `ports` (an IMAP process beyond the
    first) overrides the configured ports with the ones the first process bound."""
    from mailyard.protocols.imap.server import start_imap

    imap = imap_services(config, runtime, tls)
    shared = config.imap.processes > 1
    servers: list[asyncio.Server] = []
    for address, implicit, port in ((config.listen.imap, False, ports[0]),
                                    (config.listen.imaps, True, ports[1])):
        if address:
            host, configured = _hostport(address)
            servers.append(await start_imap(imap, host, port or configured,
                                            implicit_tls=tls if implicit else None,
                                            reuse_port=shared))
            log.info("IMAP%s listening on %s", "S" if implicit else "", address)
    return servers


async def start_mx_listener(config: Config, runtime: Runtime, policy_store: PolicyStore,
                            tls: ssl.SSLContext, port: int = 0) -> asyncio.Server:
    """The MX listener of this process; `port` (an SMTP process beyond the first) overrides
    the configured port with the one the first process bound."""
    from mailyard.protocols.smtp.inbound import InboundHandler, InboundPolicy, start_inbound

    limits = config.limits
    handler = InboundHandler(runtime.accounts, runtime.delivery, InboundPolicy(
        hostname=config.hostname, message_size=limits.message_size,
        recipients_per_message=limits.recipients_per_message,
        connections_per_ip=limits.connections_per_ip,
        messages_per_ip_per_minute=limits.messages_per_ip_per_minute,
        timeout=limits.smtp_timeout, line_octets=limits.smtp_line_octets,
    ), checks=inbound_checks(config, policy_store, runtime.spam_model,
                             runtime.shared_state.ledger),
        ledger=runtime.shared_state.ledger)
    host, configured = _hostport(config.listen.smtp)
    server = await start_inbound(handler, host, port or configured, tls,
                                 reuse_port=config.smtp.processes > 1)
    log.info("SMTP (MX) listening on %s", config.listen.smtp)
    return server


def _bound_ports(config: Config, servers: list[asyncio.Server]) -> tuple[int, int]:
    """The ports the IMAP and IMAPS listeners bound (a configured port 0 picks one)."""
    ports = [int(server.sockets[0].getsockname()[1]) for server in servers]
    imap = ports.pop(0) if config.listen.imap else 0
    return imap, (ports.pop(0) if config.listen.imaps else 0)


def _tls_context(config: Config) -> ssl.SSLContext:
    from mailyard.tls import ensure_self_signed, server_context

    if config.tls.certificate:
        cert, key = Path(config.tls.certificate), Path(config.tls.private_key)
    else:
        cert, key = ensure_self_signed(config.data_dir, config.hostname)
    return server_context(cert, key)


def client_tls_errors(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """The loop's exception handler: a client's broken TLS session that CPython 3.11.7's
    asyncio SSL protocol (aiosmtpd's STARTTLS uses it, under uvloop too) reports as "Fatal
    error on SSL protocol" with an error of its own making is one INFO line, no traceback:
    the TypeError of `_abort()` called with an argument it does not take (CPython #113214,
    fixed in 3.11.8; SSL stacked on SSL) and an AssertionError of its flow-control asserts.
    The connection is closed either way and nothing of the server's is wrong. Everything
    else goes to the loop's default handler, as before."""
    error = context.get("exception")
    protocol = context.get("protocol")
    if (context.get("message") == "Fatal error on SSL protocol"
            and isinstance(protocol, asyncio.sslproto.SSLProtocol)
            and _sslproto_bug(error)):
        peer = None
        with contextlib.suppress(Exception):
            peer = protocol._get_extra_info("peername")  # type: ignore[attr-defined]
        log.info("TLS session from %s ended: the client broke it (asyncio sslproto: %s: %s)",
                 peer[0] if isinstance(peer, tuple) else "?", type(error).__name__, error)
        return
    loop.default_exception_handler(context)


def _sslproto_bug(error: object) -> bool:
    """`error` is one of the known asyncio.sslproto failures, raised inside that module."""
    if isinstance(error, TypeError) and "_abort()" in str(error):
        return True
    if isinstance(error, AssertionError) and error.__traceback__ is not None:
        tb = error.__traceback__
        while tb.tb_next is not None:
            tb = tb.tb_next
        return tb.tb_frame.f_code.co_filename == asyncio.sslproto.__file__
    return False


async def _warn_about_setup(config: Config, runtime: Runtime) -> None:
    """What an admin should fix before real mail arrives, said once at start-up."""
    from mailyard.store.ports import NotFound

    if config.hostname in ("localhost", "localhost.localdomain"):
        log.warning("hostname is still %r: other servers see it in the greeting, Received"
                    " fields and bounces; set `hostname` to this server's public name",
                    config.hostname)
    roles = config.addresses
    for name in ("postmaster", "abuse"):
        target = getattr(roles, name)
        if target:
            try:
                await runtime.store.get_account(target)
            except NotFound:
                log.warning("[addresses] %s = %r is not an account", name, target)
    for domain in sorted(await runtime.accounts.domains()):
        try:
            await runtime.accounts.recipient_account(f"postmaster@{domain}")
        except NotFound:
            log.warning("postmaster@%s has no account and nothing can receive it: %s has no"
                        " account and [addresses] postmaster names none; mail to it is"
                        " refused with 451 until one of them does", domain, domain)


@dataclass
class Served:
    """What `serve` started and must stop again, in the order it stops them."""

    servers: list[asyncio.Server] = field(default_factory=list)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    workers: list[Any] = field(default_factory=list)
    imap_processes: list[Any] = field(default_factory=list)
    smtp_processes: list[Any] = field(default_factory=list)
    pipeline: list[Callable[[], str | None]] = field(default_factory=list)
    """Why a pipeline loop is not running (each says so, or None): /readyz asks them."""
    http: HTTPServer | None = None
    push_store: PushSubscriptionStore | None = None
    push_delivery: WebPushDeliverer | None = None
    heartbeat: asyncio.Task[None] | None = None


async def serve(config: Config, *, workers: int = 0) -> None:
    """Run until SIGTERM or SIGINT: listeners here, pipeline here or in worker processes."""
    limit_malloc_arenas()
    runtime = await _open_listener_runtime(config, workers)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(client_tls_errors)
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    tls = _tls_context(config)
    await _warn_about_setup(config, runtime)
    served = Served()
    policy_store = open_policy_store(config)
    imap_ports: tuple[int, int] = (0, 0)
    if config.listen.imap or config.listen.imaps:
        imap_servers = await start_imap_listeners(config, runtime, tls)
        served.servers += imap_servers
        imap_ports = _bound_ports(config, imap_servers)
    served.servers += await start_pop3_listeners(config, runtime, tls)
    served.servers += await start_managesieve_listener(config, runtime, tls)
    smtp_port = 0
    if config.listen.smtp:
        served.servers.append(await start_mx_listener(config, runtime, policy_store, tls))
        smtp_port = int(served.servers[-1].sockets[0].getsockname()[1])
    served.servers += await start_submission_listeners(config, runtime, tls)
    if config.listen.http:
        await _start_http(config, runtime, tls, served)

    released = await runtime.queue.release_leases()
    if released:
        log.warning("took back %d queue items leased by workers of a previous run", released)
    served.smtp_processes = await _start_smtp_processes(config, smtp_port, stop, served.tasks)
    _start_pipeline(config, runtime, workers, stop, served)
    if config.queue.gc_interval > 0:
        from mailyard.services import gc

        served.tasks.append(asyncio.create_task(gc.periodically(
            runtime.store, runtime.blobs, runtime.queue, interval=config.queue.gc_interval,
            dead_letter_days=config.queue.dead_letter_days, stop=stop)))
        served.tasks.append(asyncio.create_task(_expire_greylist(
            policy_store, config.checks, config.queue.gc_interval, stop)))
    await _start_imap_processes(config, runtime, imap_ports, stop, served)
    served.heartbeat = start_heartbeat(runtime)  # [cluster] nats: `mailyard cluster status`
    print(f"mailyard: serving (data in {config.data_dir})", flush=True)

    await stop.wait()
    log.info("shutting down")
    await _shut_down(runtime, served)
    policy_store.close()


async def _expire_greylist(policy: PolicyStore, checks: Checks, interval: float,
                           stop: asyncio.Event) -> None:
    """Forget, every `interval` seconds (the periodic gc's), the greylist triplets that can no
    longer matter: not retried within the window and not passed within the expiry. Without
    this the table only grew."""
    keep = max(checks.greylist_window, checks.greylist_expire)
    while True:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)
            return
        try:
            gone = await asyncio.to_thread(policy.expire_triplets, time.time() - keep)
        except Exception as e:  # the store is away: next time
            log.warning("greylist: expiring old triplets failed: %s", e)
            continue
        if gone:
            log.info("greylist: %d old triplet(s) forgotten", gone)


async def _open_listener_runtime(config: Config, workers: int) -> Runtime:
    """The listener process's runtime, its event bus the node's hub. Binding the hub's socket
    also proves no other server runs on this data_dir, so the leases left in the queue belong
    to dead workers of a previous run. When SMTP processes feed the queue this process
    consumes (no `--workers`), the queue watches for their commits."""
    from mailyard.store.local.eventbus import socket_address
    from mailyard.store.sqlite.db import SchemaTooNew

    others_enqueue = (workers <= 0 and bool(config.listen.smtp)
                      and config.smtp.processes > 1)
    try:
        runtime = Runtime.open(config, others_enqueue=others_enqueue)
    except SchemaTooNew as e:
        raise SystemExit(f"mailyard: refusing to start: {e}") from None
    try:
        await runtime.bus.listen(socket_address(config.data_dir))
    except OSError as e:
        runtime.close()
        raise SystemExit(f"mailyard: another server is running on {config.data_dir} ({e})")\
            from None
    return runtime


async def start_pop3_listeners(config: Config, runtime: Runtime, tls: ssl.SSLContext
                               ) -> list[asyncio.Server]:
    """The POP3 and POP3S listeners `[listen]` asks for (none, one or both)."""
    if not (config.listen.pop3 or config.listen.pop3s):
        return []
    from mailyard.protocols.pop3.server import start_pop3
    from mailyard.protocols.pop3.session import POP3Policy, POP3Services

    pop3 = POP3Services(
        accounts=runtime.accounts, mailbox=runtime.mailbox, tls=tls,
        ledger=runtime.shared_state.ledger,
        policy=POP3Policy(
            hostname=config.hostname, dele=config.pop3.dele, max_line=config.pop3.max_line,
            idle_timeout=config.pop3.idle_timeout,
            allow_plaintext_loopback=config.auth.plaintext_on_loopback,
            connections_per_ip=config.pop3.connections_per_ip))
    servers = []
    for address, implicit in ((config.listen.pop3, False), (config.listen.pop3s, True)):
        if address:
            host, port = _hostport(address)
            servers.append(await start_pop3(pop3, host, port,
                                            implicit_tls=tls if implicit else None))
            log.info("POP3%s listening on %s", "S" if implicit else "", address)
    return servers


async def start_managesieve_listener(config: Config, runtime: Runtime, tls: ssl.SSLContext
                                     ) -> list[asyncio.Server]:
    """The ManageSieve listener, if `[listen] managesieve` is set."""
    if not config.listen.managesieve:
        return []
    from mailyard.protocols.managesieve.server import ManageSieveServices, start_managesieve

    host, port = _hostport(config.listen.managesieve)
    server = await start_managesieve(
        ManageSieveServices(runtime.accounts, runtime.sieve, tls), host, port)
    log.info("ManageSieve listening on %s", config.listen.managesieve)
    return [server]


async def start_submission_listeners(config: Config, runtime: Runtime, tls: ssl.SSLContext
                                     ) -> list[asyncio.Server]:
    """The submission (STARTTLS) and submissions (implicit TLS) listeners `[listen]` asks
    for."""
    if not (config.listen.submission or config.listen.submissions):
        return []
    from mailyard.protocols.smtp.submission import MSAPolicy, SubmissionHandler, start_submission

    msa = SubmissionHandler(runtime.accounts, runtime.submission, MSAPolicy(
        hostname=config.hostname, message_size=config.limits.message_size,
        allow_plaintext_loopback=config.auth.plaintext_on_loopback,
        timeout=config.limits.smtp_timeout, line_octets=config.limits.smtp_line_octets))
    servers = []
    for address, implicit in ((config.listen.submission, False),
                              (config.listen.submissions, True)):
        if address:
            host, port = _hostport(address)
            servers.append(await start_submission(msa, host, port, tls, implicit_tls=implicit))
            log.info("SMTP submission%s listening on %s", "s" if implicit else "", address)
    return servers


async def _start_http(config: Config, runtime: Runtime, tls: ssl.SSLContext,
                      served: Served) -> None:
    """HTTPS: JMAP, the webmail and the ops endpoints. JMAP push subscriptions (RFC 8620
    §7.2) are delivered from the listener process, where the event bus of every worker
    arrives."""
    from mailyard.protocols.jmap.http import JMAPPolicy, JMAPServices, build_app, start_http
    from mailyard.protocols.jmap.push import routes as push_routes
    from mailyard.protocols.jmap.services import DataServices
    from mailyard.protocols.jmap.sync import routes as sync_routes
    from mailyard.protocols.jmap.webpush import WebPushDeliverer
    from mailyard.protocols.jmap.websocket import routes as websocket_routes
    from mailyard.protocols.ops import OpsRouter
    from mailyard.protocols.web.pages import WebRouter, behind_auth, build_web_app
    from mailyard.protocols.web.services import WebServices
    from mailyard.services.pushsubs import PushSubscriptionService

    served.push_store = open_push_store(config)
    push = PushSubscriptionService(served.push_store,
                                   loopback_http=config.limits.push_loopback_http)
    served.push_delivery = WebPushDeliverer(push, runtime.bus)
    jmap = JMAPServices(runtime.accounts, tokens=runtime.tokens.check, policy=JMAPPolicy(
        allow_plaintext_loopback=config.auth.plaintext_on_loopback,
        allowed_origins=frozenset(config.http.allowed_origins)), data=DataServices(
            mailbox=runtime.mailbox, changes=runtime.changes, objects=runtime.objects,
            search=runtime.search, submission=runtime.submission,
            blobs=runtime.blob_access, vacation=runtime.vacation, push=push,
            push_delivery=served.push_delivery, sieve=runtime.sieve))
    host, port = _hostport(config.listen.http)
    web = WebServices(runtime.accounts, runtime.tokens, runtime.mailbox, jmap.policy,
                      runtime.blob_access, config.hostname)
    served.http = await start_http(OpsRouter(ops_app(runtime, served.pipeline), WebRouter(
        build_web_app(web), build_app(jmap, routes=[
            *push_routes(runtime.bus), *websocket_routes(jmap, runtime.bus),
            *sync_routes(runtime.changes), *behind_auth(web)]))), host, port, ssl=tls)
    log.info("HTTPS (JMAP) listening on %s", config.listen.http)
    await served.push_delivery.start()


def _start_pipeline(config: Config, runtime: Runtime, workers: int, stop: asyncio.Event,
                    served: Served) -> None:
    """The pipeline and outbound loops: in this process (`workers` 0), or in that many
    supervised worker processes."""
    if workers <= 0:
        for loop_ in runtime.loops():
            served.pipeline.append(loop_.problem)
            served.tasks.append(asyncio.create_task(loop_.run(stop)))
        return
    processes = served.workers
    for n in range(workers):
        processes.append(_start_worker(config, n))
    served.pipeline.append(lambda: _dead_workers(processes))
    served.tasks.append(asyncio.create_task(_supervise_workers(config, processes, stop)))
    log.info("pipeline running in %d worker processes", workers)


async def _start_imap_processes(config: Config, runtime: Runtime, imap_ports: tuple[int, int],
                                stop: asyncio.Event, served: Served) -> None:
    """`[imap] processes` - 1 more IMAP processes on the ports this one bound, each a peer of
    this process's event bus, with their own supervisor."""
    import multiprocessing

    from mailyard.store.local.eventbus import socket_address

    if not (config.listen.imap or config.listen.imaps) or config.imap.processes <= 1:
        return
    ctx = multiprocessing.get_context("spawn")
    started = []
    for n in range(1, config.imap.processes):
        runtime.bus.add_peer(socket_address(config.data_dir, f"imap-{n}"))
        listening = ctx.Event()
        proc = ctx.Process(target=imap_process,
                           args=(config, os.getpid(), n, imap_ports, listening),
                           name=f"mailyard-imap-{n}", daemon=True)
        proc.start()
        served.imap_processes.append(proc)
        started.append(listening)
    # "serving" means every process listens: until then a connection could only reach us.
    for n, listening in enumerate(started, 1):
        if not await asyncio.to_thread(listening.wait, 60):
            log.error("IMAP process %d did not start listening within 60 s", n)
    log.info("IMAP served by %d processes", config.imap.processes)

    def restart_imap(n: int) -> Any:
        """IMAP process n + 1 again, on the same ports and event-bus socket; not waited
        for (its Event would be dropped before the child set it)."""
        proc = ctx.Process(target=imap_process,
                           args=(config, os.getpid(), n + 1, imap_ports, None),
                           name=f"mailyard-imap-{n + 1}", daemon=True)
        proc.start()
        return proc

    # Their own supervisor: in the workers' list a dead IMAP process was started again
    # as a pipeline worker (and /readyz called it a dead worker); with no workers it was
    # never started again at all.
    served.tasks.append(asyncio.create_task(_supervise_workers(
        config, served.imap_processes, stop, restart_imap)))


async def _shut_down(runtime: Runtime, served: Served) -> None:
    """Stop accepting, then end each session politely (IMAP BYE, POP3 -ERR, SMTP 421 once a
    DATA in progress has its answer): nothing acknowledged is lost, since a 250 is only said
    once the message is durable. The pipeline finishes its batch; anything leased and
    unfinished is taken back by the next start."""
    from mailyard.protocols.live import LIVE

    if served.heartbeat is not None:
        served.heartbeat.cancel()
    for server in served.servers:
        server.close()
    children = [*served.imap_processes, *served.smtp_processes]
    _terminate(children)  # they say goodbye to their sessions
    await LIVE.goodbye(timeout=15.0)
    if served.http is not None:
        await served.http.close()
    if served.push_delivery is not None and served.push_store is not None:
        await served.push_delivery.close()
        served.push_store.close()
    _terminate(served.workers)
    for task in served.tasks:
        with contextlib.suppress(asyncio.CancelledError, asyncio.TimeoutError):
            await asyncio.wait_for(task, 30)
    for proc in [*served.workers, *children]:
        await asyncio.to_thread(proc.join, 30)
    runtime.close()


def _terminate(processes: Sequence[Any]) -> None:
    for proc in processes:
        if proc.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)


BLOB_USAGE_TTL = 300.0


def _start_worker(config: Config, n: int) -> Any:
    import multiprocessing

    proc = multiprocessing.get_context("spawn").Process(
        target=worker_process, args=(config, os.getpid()), name=f"mailyard-worker-{n}",
        daemon=True)
    proc.start()
    return proc


def _dead_workers(processes: list[Any]) -> str | None:
    dead = [p.name for p in processes if p.exitcode is not None]
    return f"worker process ended: {', '.join(dead)}" if dead else None


WORKER_CHECK = 0.5
"""How often the listener looks for a worker process that ended (seconds)."""


async def _supervise_workers(config: Config, processes: list[Any], stop: asyncio.Event,
                             start: Callable[[int], Any] | None = None) -> None:
    """Start a worker process again when one ends before shutdown (killed, or it left
    because a store of its own failed for good): otherwise the queue only grows while SMTP
    keeps answering 250. `processes` is updated in place, for the shutdown and /readyz.
    `start(n)` starts process n again (default: a worker; SMTP processes pass their own)."""
    from mailyard.pipeline.worker import pause

    loop = asyncio.get_running_loop()
    failures, calm_since = 0, loop.time()
    while not stop.is_set():
        await pause(stop, WORKER_CHECK)
        if stop.is_set():
            return
        ended = [n for n, p in enumerate(processes) if p.exitcode is not None]
        if not ended:
            if loop.time() - calm_since > 300:  # up for five minutes: a fresh start
                failures = 0
            continue
        failures += 1
        for n in ended:
            log.error("process %s ended (exit code %s); starting it again",
                      processes[n].name, processes[n].exitcode)
        await pause(stop, min(30.0, 0.5 * 2 ** (failures - 1)))
        if stop.is_set():
            return
        for n in ended:
            processes[n] = start(n) if start is not None else _start_worker(config, n)
        calm_since = loop.time()


class PipelineStopped(RuntimeError):
    """A pipeline loop or worker process is not running (it is being started again)."""


def ops_app(runtime: Runtime, pipeline: Sequence[Callable[[], str | None]] = ()) -> Any:
    """/metrics, /healthz and /readyz over this runtime's stores. A store is ready when it
    answers and its SQLite writers (if any) run; the queue, when it answers and the loops in
    `pipeline` (each says why it is not running, or None) consume it: a server that would
    say 250 to mail it cannot deliver must not look ready."""
    from mailyard.protocols.ops import OpsServices, build_ops_app
    from mailyard.store.sqlite.db import Database, WriterStopped

    data = runtime.config.data_dir
    blob_usage: list[float] = []  # [valid until (monotonic), octets]

    async def sizes() -> dict[str, int]:
        # Blob usage walks the whole store (a directory tree, or a bucket listing on S3): when
        # that took long, the figure is kept for BLOB_USAGE_TTL instead of redone per scrape.
        now = time.monotonic()
        if not blob_usage or now > blob_usage[0]:
            usage = await runtime.blobs.usage()
            took = time.monotonic() - now
            blob_usage[:] = [now + (BLOB_USAGE_TTL if took > 0.25 else 0.0), float(usage)]
        out = {"blobs": int(blob_usage[1])}
        for name in ("mail", "queue", "search", "spam", "policy", "push"):
            files = [data / f"{name}.db", data / f"{name}.db-wal"]
            out[name] = sum(f.stat().st_size for f in files if f.exists())
        return out

    def writers(*parts: object) -> None:
        for part in parts:
            db = getattr(part, "db", None)
            if isinstance(db, Database) and not db.alive:
                raise WriterStopped(f"the writer of {db.path.name} has stopped")

    async def mailstore() -> object:
        writers(runtime.store, runtime.spam_model)
        return await runtime.store.list_domains()

    async def queue() -> object:
        writers(runtime.queue)
        problems = [p for check in pipeline if (p := check())]
        if problems:
            raise PipelineStopped("; ".join(problems))
        return await runtime.queue.stats()

    async def search() -> object:
        writers(runtime.index)
        return await runtime.index.count("")

    return build_ops_app(OpsServices(
        queue_state=runtime.delivery.queue_state, store_sizes=sizes, ready_checks={
        "mailstore": mailstore,
        "queue": queue,
        "search": search,
        "blobs": lambda: runtime.blobs.exists("readyz-probe"),
    }))


def worker_process(config: Config, parent_pid: int) -> None:
    """Entry point of a `--workers N` process."""
    from mailyard.log import configure as configure_logging

    _die_with_parent()
    limit_malloc_arenas(2)
    if config.queue.worker_nice:
        os.nice(config.queue.worker_nice)
    configure_logging(config.log.format, config.log.level)
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    asyncio.run(_worker_main(config, parent_pid))


async def _worker_main(config: Config, parent_pid: int) -> None:
    from mailyard.store.local.eventbus import socket_address

    runtime = Runtime.open(config, others_enqueue=True)  # the listener enqueues
    runtime.bus.relay_to(socket_address(config.data_dir))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, lambda: None)  # the parent decides when we stop

    watcher = asyncio.create_task(_watch_parent(parent_pid, stop, runtime))
    try:
        await asyncio.gather(*(loop_.run(stop) for loop_ in runtime.loops()))
    finally:
        watcher.cancel()
        runtime.close()


def imap_process(config: Config, parent_pid: int, index: int, ports: tuple[int, int],
                 listening: Any) -> None:
    """Entry point of IMAP process `index` (1 .. `[imap] processes` - 1; the listener process
    is the first). It serves IMAP only, on the listener's ports (SO_REUSEPORT: the kernel
    spreads new connections), and exchanges account events with the listener, the bus's hub.
    `listening` (a multiprocessing Event) is set once its listeners are up."""
    from mailyard.log import configure as configure_logging

    _die_with_parent()
    limit_malloc_arenas()
    configure_logging(config.log.format, config.log.level)
    with contextlib.suppress(ImportError):
        import uvloop
        uvloop.install()
    asyncio.run(_imap_main(config, parent_pid, index, ports, listening))


async def _imap_main(config: Config, parent_pid: int, index: int,
                     ports: tuple[int, int], listening: Any) -> None:
    from mailyard.protocols.live import LIVE
    from mailyard.store.local.eventbus import socket_address

    runtime = Runtime.open(config)
    await runtime.bus.listen(socket_address(config.data_dir, f"imap-{index}"))
    runtime.bus.relay_to(socket_address(config.data_dir))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(client_tls_errors)
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, lambda: None)  # the parent decides when we stop
    servers = await start_imap_listeners(config, runtime, _tls_context(config), ports)
    if listening is not None:  # None when the supervisor started it again
        listening.set()
    watcher = asyncio.create_task(_watch_parent(parent_pid, stop))
    try:
        await stop.wait()
    finally:
        watcher.cancel()
        for server in servers:
            server.close()
        await LIVE.goodbye(timeout=15.0)
        runtime.close()


async def _start_smtp_processes(config: Config, port: int, stop: asyncio.Event,
                                tasks: list[asyncio.Task[None]]) -> list[Any]:
    """`[smtp] processes` - 1 more MX listeners on `port` (the listener's own is the first),
    supervised (a dead one is started again) by a task added to `tasks`. Their mail reaches
    the same queue file; when this process runs the pipeline itself, its queue watches for
    other processes' commits, as a `--workers` process does (`_open_listener_runtime`)."""
    if not config.listen.smtp or config.smtp.processes <= 1:
        return []
    started = [_start_smtp_process(config, n, port, True)
               for n in range(1, config.smtp.processes)]
    for n, (_, listening) in enumerate(started, 1):
        if listening is not None and not await asyncio.to_thread(listening.wait, 60):
            log.error("SMTP process %d did not start listening within 60 s", n)
    processes = [proc for proc, _ in started]
    tasks.append(asyncio.create_task(_supervise_workers(
        config, processes, stop, lambda n: _start_smtp_process(config, n + 1, port)[0])))
    log.info("SMTP (MX) served by %d processes", config.smtp.processes)
    return processes


def _start_smtp_process(config: Config, index: int, port: int, wait: bool = False
                        ) -> tuple[Any, Any]:
    """The process and, if `wait`, the Event it sets once listening (which the caller must
    hold until then: one dropped before the child unpickled it is gone, and so is the child).
    A process started again by the supervisor is not waited for."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    listening = ctx.Event() if wait else None
    proc = ctx.Process(target=smtp_process, args=(config, os.getpid(), index, port, listening),
                       name=f"mailyard-smtp-{index}", daemon=True)
    proc.start()
    return proc, listening


def smtp_process(config: Config, parent_pid: int, index: int, port: int,
                 listening: Any) -> None:
    """Entry point of SMTP process `index` (1 .. `[smtp] processes` - 1; the listener process
    is the first). It serves the MX port only, on the listener's port (SO_REUSEPORT: the
    kernel spreads new connections), and makes each message durable in the same blob store
    and queue file as the listener before its 250 (SQLite's write lock orders the processes'
    group commits). `listening` (a multiprocessing Event, or None) is set once its listener
    is up."""
    from mailyard.log import configure as configure_logging

    _die_with_parent()
    limit_malloc_arenas()
    configure_logging(config.log.format, config.log.level)
    with contextlib.suppress(ImportError):
        import uvloop
        uvloop.install()
    asyncio.run(_smtp_main(config, parent_pid, port, listening))


async def _smtp_main(config: Config, parent_pid: int, port: int, listening: Any) -> None:
    from mailyard.protocols.live import LIVE
    from mailyard.store.local.eventbus import socket_address

    runtime = Runtime.open(config)
    runtime.bus.relay_to(socket_address(config.data_dir))
    policy_store = open_policy_store(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(client_tls_errors)
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, lambda: None)  # the parent decides when we stop
    server = await start_mx_listener(config, runtime, policy_store, _tls_context(config), port)
    if listening is not None:
        listening.set()
    watcher = asyncio.create_task(_watch_parent(parent_pid, stop, runtime))
    try:
        await stop.wait()
    finally:
        watcher.cancel()
        server.close()
        await LIVE.goodbye(timeout=15.0)  # a DATA in progress gets its 250 first
        runtime.close()
        policy_store.close()


async def _watch_parent(parent_pid: int, stop: asyncio.Event,
                        runtime: Runtime | None = None) -> None:
    """Stop when the listener is gone; a worker process (`runtime`) also stops when one of
    its SQLite writers has, so that the listener starts a healthy one in its place."""
    from mailyard.pipeline.worker import parent_alive

    while not stop.is_set():
        if not parent_alive(parent_pid):
            stop.set()
        if runtime is not None and (dead := runtime.stopped_writers()):
            log.error("the writer of %s has stopped: this worker process ends, to be started"
                      " again", ", ".join(dead))
            stop.set()
        await asyncio.sleep(1.0)


def limit_malloc_arenas(arenas: int = 1) -> None:
    """glibc gives each thread that allocates its own arena (up to 8 per core) and keeps them
    resident; with SQLite writer threads, blob I/O threads and hashing threads that is tens of
    MiB of a long-running server's memory for nothing.

    The listener process uses one arena (the main one): malloc_trim gives back the top of the
    main heap but never the top of another arena's, where each argon2 hash (12 MiB) on a
    hashing thread otherwise stays resident; measured with 3,000 IDLE sessions after their
    logins and a trim, 87 MiB with one arena against 99 MiB with two. Its threads mostly wait
    (the event loop holds the GIL), so sharing one arena's lock costs little. Worker processes
    (parsing on threads) keep two."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        m_arena_max = -8
        ctypes.CDLL(None).mallopt(m_arena_max, arenas)


def _die_with_parent() -> None:
    """Linux: have the kernel SIGKILL this worker when the listener process dies."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL)
