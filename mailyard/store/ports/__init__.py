"""The storage ports: what the services need from an engine, and nothing about how.

Each port is a `typing.Protocol`; every adapter (sqlite/, fs/, local/ embedded; postgres/, s3/,
nats/, redis/ scaled out) passes the same contract suite in tests/contract, so the modes cannot
drift apart. Every method is async: engines are I/O, and callers live on an event loop.

One module per role, so that a process loads only the ports it uses (an admin command's
start-up pays for each module it imports):

- `errors`: StoreError, NotFound, Conflict, QuotaExceeded, QueryTimeout
- `blobs`: BlobStore, BlobInfo
- `queue`: QueueItem, NewItem, PendingItem, DeadLetter, QueueStats, Queue
- `text`: stored_text, stored_text_opt, stored_keywords
- `records`: DKIMKeyRecord, Account, Mailbox, NewEmail, DeliveryResult, ImportWrite,
  EmailRecord, EmailHead, MailboxEntry, MailboxSnapshot, MailboxDelta, KeywordUpdate, Expunged,
  Change, StoredObject, MailboxCounters
- `mailstore`: MailStore, Maintenance, MaintainedMailStore
- `mailtx`: EmailFlags, CountChange, RemovedEmail, MailReader, MailTx, DeliveryTx, MailboxTx,
  AccountTx, DomainTx, CounterTx, ObjectTx, StoreTx
- `search`: IndexDocument, Hits, Snippet, Order, SearchIndex
- `events`: EventBus, ChangeFeed, NodeEventBus, Subscription, Counters
- `spam`: SpamModel
- `pushsubs`: PushSubscriptionRecord, PushSubscriptionStore
- `sieve`: SieveScriptRecord, SieveScriptStore
- `routing`: RouteKind, RouteRow, RoutingStore

`from mailyard.store.ports import Name` still works for every name: the module's
`__getattr__` loads the one module that holds it, on first use (PEP 562), so an importer of
this package pays only for what it names. New code imports from the role's module.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mailyard.store.ports.blobs import (
        BlobInfo as BlobInfo,
    )
    from mailyard.store.ports.blobs import (
        BlobStore as BlobStore,
    )
    from mailyard.store.ports.errors import (
        Conflict as Conflict,
    )
    from mailyard.store.ports.errors import (
        NotFound as NotFound,
    )
    from mailyard.store.ports.errors import (
        QueryTimeout as QueryTimeout,
    )
    from mailyard.store.ports.errors import (
        QuotaExceeded as QuotaExceeded,
    )
    from mailyard.store.ports.errors import (
        StoreError as StoreError,
    )
    from mailyard.store.ports.events import (
        ChangeFeed as ChangeFeed,
    )
    from mailyard.store.ports.events import (
        Counters as Counters,
    )
    from mailyard.store.ports.events import (
        EventBus as EventBus,
    )
    from mailyard.store.ports.events import (
        NodeEventBus as NodeEventBus,
    )
    from mailyard.store.ports.events import (
        Subscription as Subscription,
    )
    from mailyard.store.ports.mailstore import (
        MailStore as MailStore,
    )
    from mailyard.store.ports.mailstore import (
        MaintainedMailStore as MaintainedMailStore,
    )
    from mailyard.store.ports.mailstore import (
        Maintenance as Maintenance,
    )
    from mailyard.store.ports.mailtx import (
        AccountTx as AccountTx,
    )
    from mailyard.store.ports.mailtx import (
        CountChange as CountChange,
    )
    from mailyard.store.ports.mailtx import (
        CounterTx as CounterTx,
    )
    from mailyard.store.ports.mailtx import (
        DeliveryTx as DeliveryTx,
    )
    from mailyard.store.ports.mailtx import (
        DomainTx as DomainTx,
    )
    from mailyard.store.ports.mailtx import (
        EmailFlags as EmailFlags,
    )
    from mailyard.store.ports.mailtx import (
        MailboxTx as MailboxTx,
    )
    from mailyard.store.ports.mailtx import (
        MailReader as MailReader,
    )
    from mailyard.store.ports.mailtx import (
        MailTx as MailTx,
    )
    from mailyard.store.ports.mailtx import (
        ObjectTx as ObjectTx,
    )
    from mailyard.store.ports.mailtx import (
        RemovedEmail as RemovedEmail,
    )
    from mailyard.store.ports.mailtx import (
        StoreTx as StoreTx,
    )
    from mailyard.store.ports.pushsubs import (
        PushSubscriptionRecord as PushSubscriptionRecord,
    )
    from mailyard.store.ports.pushsubs import (
        PushSubscriptionStore as PushSubscriptionStore,
    )
    from mailyard.store.ports.queue import (
        DeadLetter as DeadLetter,
    )
    from mailyard.store.ports.queue import (
        NewItem as NewItem,
    )
    from mailyard.store.ports.queue import (
        PendingItem as PendingItem,
    )
    from mailyard.store.ports.queue import (
        Queue as Queue,
    )
    from mailyard.store.ports.queue import (
        QueueItem as QueueItem,
    )
    from mailyard.store.ports.queue import (
        QueueStats as QueueStats,
    )
    from mailyard.store.ports.records import (
        Account as Account,
    )
    from mailyard.store.ports.records import (
        Change as Change,
    )
    from mailyard.store.ports.records import (
        DeliveryResult as DeliveryResult,
    )
    from mailyard.store.ports.records import (
        DKIMKeyRecord as DKIMKeyRecord,
    )
    from mailyard.store.ports.records import (
        EmailHead as EmailHead,
    )
    from mailyard.store.ports.records import (
        EmailRecord as EmailRecord,
    )
    from mailyard.store.ports.records import (
        Expunged as Expunged,
    )
    from mailyard.store.ports.records import (
        ImportWrite as ImportWrite,
    )
    from mailyard.store.ports.records import (
        KeywordUpdate as KeywordUpdate,
    )
    from mailyard.store.ports.records import (
        Mailbox as Mailbox,
    )
    from mailyard.store.ports.records import (
        MailboxCounters as MailboxCounters,
    )
    from mailyard.store.ports.records import (
        MailboxDelta as MailboxDelta,
    )
    from mailyard.store.ports.records import (
        MailboxEntry as MailboxEntry,
    )
    from mailyard.store.ports.records import (
        MailboxSnapshot as MailboxSnapshot,
    )
    from mailyard.store.ports.records import (
        NewEmail as NewEmail,
    )
    from mailyard.store.ports.records import (
        StoredObject as StoredObject,
    )
    from mailyard.store.ports.routing import (
        RouteKind as RouteKind,
    )
    from mailyard.store.ports.routing import (
        RouteRow as RouteRow,
    )
    from mailyard.store.ports.routing import (
        RoutingStore as RoutingStore,
    )
    from mailyard.store.ports.search import (
        Hits as Hits,
    )
    from mailyard.store.ports.search import (
        IndexDocument as IndexDocument,
    )
    from mailyard.store.ports.search import (
        Order as Order,
    )
    from mailyard.store.ports.search import (
        SearchIndex as SearchIndex,
    )
    from mailyard.store.ports.search import (
        Snippet as Snippet,
    )
    from mailyard.store.ports.sieve import (
        SieveScriptRecord as SieveScriptRecord,
    )
    from mailyard.store.ports.sieve import (
        SieveScriptStore as SieveScriptStore,
    )
    from mailyard.store.ports.spam import (
        SpamModel as SpamModel,
    )
    from mailyard.store.ports.text import (
        stored_keywords as stored_keywords,
    )
    from mailyard.store.ports.text import (
        stored_text as stored_text,
    )
    from mailyard.store.ports.text import (
        stored_text_opt as stored_text_opt,
    )

_HOME = {
    "StoreError": "errors",
    "NotFound": "errors",
    "Conflict": "errors",
    "QuotaExceeded": "errors",
    "QueryTimeout": "errors",
    "BlobStore": "blobs",
    "BlobInfo": "blobs",
    "QueueItem": "queue",
    "NewItem": "queue",
    "PendingItem": "queue",
    "DeadLetter": "queue",
    "QueueStats": "queue",
    "Queue": "queue",
    "stored_text": "text",
    "stored_text_opt": "text",
    "stored_keywords": "text",
    "DKIMKeyRecord": "records",
    "Account": "records",
    "Mailbox": "records",
    "NewEmail": "records",
    "DeliveryResult": "records",
    "ImportWrite": "records",
    "EmailRecord": "records",
    "EmailHead": "records",
    "MailboxEntry": "records",
    "MailboxSnapshot": "records",
    "MailboxDelta": "records",
    "KeywordUpdate": "records",
    "Expunged": "records",
    "Change": "records",
    "StoredObject": "records",
    "MailboxCounters": "records",
    "MailStore": "mailstore",
    "Maintenance": "mailstore",
    "MaintainedMailStore": "mailstore",
    "EmailFlags": "mailtx",
    "CountChange": "mailtx",
    "RemovedEmail": "mailtx",
    "MailReader": "mailtx",
    "MailTx": "mailtx",
    "DeliveryTx": "mailtx",
    "MailboxTx": "mailtx",
    "AccountTx": "mailtx",
    "DomainTx": "mailtx",
    "CounterTx": "mailtx",
    "ObjectTx": "mailtx",
    "StoreTx": "mailtx",
    "IndexDocument": "search",
    "Hits": "search",
    "Snippet": "search",
    "Order": "search",
    "SearchIndex": "search",
    "EventBus": "events",
    "ChangeFeed": "events",
    "NodeEventBus": "events",
    "Subscription": "events",
    "Counters": "events",
    "SpamModel": "spam",
    "PushSubscriptionRecord": "pushsubs",
    "PushSubscriptionStore": "pushsubs",
    "SieveScriptRecord": "sieve",
    "SieveScriptStore": "sieve",
    "RouteKind": "routing",
    "RouteRow": "routing",
    "RoutingStore": "routing",
}
"""Each name -> the module of this package that holds it."""


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOME])
