"""Mailbox views shared by the IMAP sessions of this process.

Every session that has a mailbox selected reads the same `MailboxView`: one chain of UID-map
versions (selected.Version), moved on by one store delta per change of the account, however
many sessions watch it. The account's events are watched once per account (`AccountWatch`),
not once per session, and a change wakes the IDLE sessions of a view by writing their updates
straight to their sockets: ten thousand IDLE clients cost one delta query and one loop, not ten
thousand queries and task switches.

A view is refreshed when an event said the account changed after what the view holds (a session
asks before it reports updates; IDLE sessions are pushed to), or when a minute passed without
one, in case an event from a worker process was lost: the change log is the truth either way.
A STORE or EXPUNGE of this process that took the MODSEQ right after the view's moves the view
on by what it wrote (`MailboxView.advance_own`), and its own event then asks for no re-read:
under ten busy clients nearly every write was followed by a delta read that found only it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Protocol

from mailyard.protocols.imap.selected import Selected, Version
from mailyard.services.mailbox import MailboxService
from mailyard.store.ports import (
    Account,
    EventBus,
    Mailbox,
    MailboxDelta,
    MailboxEntry,
    Subscription,
)

log = logging.getLogger("mailyard.imap")

STALE_AFTER = 60.0
"""Seconds after which a view is re-read even without an event (a lost datagram)."""

class Idler(Protocol):
    """A session in IDLE: told to write what changed once the view moved on."""

    def push_updates(self) -> None: ...


class MailboxView:
    """One mailbox's UID map, shared by the sessions of this process that have it selected."""

    __slots__ = (
        "_pending",
        "_service",
        "account",
        "covered",
        "heard",
        "idlers",
        "listeners",
        "mailbox",
        "recent_mark",
        "refreshed",
        "users",
        "version",
    )

    def __init__(self, service: MailboxService, account: Account, mailbox: Mailbox,
                 version: Version, recent_mark: list[int] | None = None,
                 listeners: dict[Callable[[], None], None] | None = None) -> None:
        self._service = service
        self.listeners = {} if listeners is None else listeners
        """The account watch's NOTIFY listeners (AccountWatch.listeners, the same dict)."""
        self.recent_mark = [1] if recent_mark is None else recent_mark
        """The first UID no read-write session of this process has seen (\\Recent, RFC 3501
        §2.3.2): one cell, kept by the ViewHub beyond the view's life."""
        self.account = account
        self.mailbox = mailbox
        self.version = version
        self.heard = 0
        """The highest state (MODSEQ) the account's events announced."""
        self.covered = version.modseq
        """The view holds every change announced by a state up to this one. Published
        states are MODSEQs of committed changes (or later ones), so a read covers every state
        heard before it started, and the view's own MODSEQ covers the states up to it."""
        self.refreshed = time.monotonic()
        self.idlers: dict[Idler, object] = {}
        """Sessions in IDLE on this view: told (synchronously, push_updates) after each
        refresh. The values mean nothing (None: no object per session)."""
        self.users = 0
        self._pending: asyncio.Future[bool] | None = None
        """Settled when the refresh running now ends: True once it brought the view up to
        date, False if it failed or was cancelled."""

    def stale(self) -> bool:
        return self.heard > self.covered or time.monotonic() - self.refreshed > STALE_AFTER

    def hear(self, state: int) -> None:
        """An event announced the account's `state`."""
        if state > self.heard:
            self.heard = state

    async def refresh(self) -> None:
        """Bring the view up to the store. Sessions asking at once share one query.

        The first session to ask runs the query in its own task, and the others wait on a
        future it settles: a task of its own for the query (as this was) cost one more turn
        of the event loop after it, for every command that followed a change, and under ten
        busy clients each turn waits behind the other sessions' work. If the asking
        session is cancelled meanwhile (its client went away), the sessions waiting with it
        ask again themselves."""
        while True:
            pending = self._pending
            if pending is None:
                break
            await asyncio.shield(pending)
            if pending.result():
                return
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._pending = done
        try:
            # With a NOTIFY session on the account, one turn first, as the refresh's own task
            # used to give: the pass that the change kicked (test_rfc5465_notify) runs before
            # the view moves on. Without it, a NOTIFY client missed a FlagChange. Without one,
            # no turn: under ten busy clients each turn waits behind the other sessions' work,
            # and nearly every command meets a view made stale by someone's change.
            if self.listeners:
                await asyncio.sleep(0)
            await self._refresh()
        except BaseException:
            done.set_result(False)  # the others retry (and meet the error, if it lasts)
            raise
        done.set_result(True)
        self._push()

    def refresh_soon(self) -> None:
        """Refresh in the background (for the IDLE sessions, which are told when it is done)."""
        if self._pending is None:
            task = asyncio.ensure_future(self.refresh())
            task.add_done_callback(_log_failure)

    async def _refresh(self) -> None:
        try:
            heard = self.heard  # an event during the query is for the next one
            self.refreshed = time.monotonic()
            delta = await self._service.delta(self.account, self.mailbox, self.version.modseq)
            self.version = self.version.advance(delta)
            self.covered = max(self.covered, heard, self.version.modseq)
        except BaseException:
            self.refreshed = -STALE_AFTER  # stale: the next session asks again
            raise
        finally:
            self._pending = None

    def advance_own(self, modseq: int, *, changed: list[MailboxEntry] | None = None,
                    vanished: list[int] | None = None) -> bool:
        """A write of this process took `modseq` and did exactly this to the mailbox (flags
        set: `changed`, in UID order; UIDs expunged: `vanished`, ascending). When the view
        stands right before it (its MODSEQ is `modseq` - 1: MODSEQs are the account's, one
        per write, so no other change can lie between) and no read is under way, the view
        moves on without a read, and the write's own event asks for none. Otherwise False,
        and the event makes the next session read as before."""
        if self._pending is not None or self.version.modseq != modseq - 1:
            return False
        self.version = self.version.advance(MailboxDelta(
            highest_modseq=modseq, changed=changed or [], vanished=vanished or []))
        self.covered = max(self.covered, modseq)
        self._push()
        return True

    def _push(self) -> None:
        for session in list(self.idlers):
            session.push_updates()


def _log_failure(task: asyncio.Future[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("refreshing a mailbox view failed", exc_info=task.exception())


class AccountWatch:
    """The account's events, watched once for every session of the account in this process."""

    __slots__ = ("_subscription", "_task", "account", "events", "listeners", "sessions",
                 "views")

    def __init__(self, account: Account, subscription: Subscription) -> None:
        self.account = account
        self.views: dict[str, MailboxView] = {}
        self.sessions = 0
        self.listeners: dict[Callable[[], None], None] = {}
        """Told of every change after the views (NOTIFY sessions: cmd_notify.Notifier)."""
        self.events = 0
        """How many times events were taken: a view made from a read during which some were
        taken (by other sessions) may have missed them (ViewHub.select)."""
        self._subscription = subscription
        self._task = asyncio.ensure_future(self._run())

    def poll(self) -> None:
        """Take the events waiting (without yielding to the loop, so a session sees its own
        change at once) and tell the views."""
        state = self._subscription.take()
        if state is not None:
            self._changed(state)

    def _changed(self, state: int) -> None:
        """`state`: the highest announced."""
        self.events += 1
        for view in self.views.values():
            view.hear(state)
            if view.idlers and view.stale():
                view.refresh_soon()
        for listener in list(self.listeners):
            listener()

    async def _run(self) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            async for state in self._subscription:
                self._changed(max(state, self._subscription.take() or 0))

    def close(self) -> None:
        self._task.cancel()
        self._subscription.cancel()


class ViewHub:
    """The AccountWatches and MailboxViews of this process's IMAP sessions."""

    def __init__(self, service: MailboxService, bus: EventBus) -> None:
        self.service = service
        self.bus = bus
        self._accounts: dict[str, AccountWatch] = {}
        self.recent_marks: dict[str, list[int]] = {}
        """Mailbox id -> its \\Recent mark (MailboxView.recent_mark). Kept in this process
        only, as the RFC allows a server's idea of "recent" to be per server instance: after a
        restart the first session to select a mailbox finds all of it \\Recent."""

    def attach(self, account: Account) -> AccountWatch:
        """At login: watch the account's events (before any SELECT reads, so no change
        between that read and the first event can be missed)."""
        watch = self._accounts.get(account.id)
        if watch is None:
            watch = AccountWatch(account, self.bus.subscribe(account.id))
            self._accounts[account.id] = watch
        watch.sessions += 1
        return watch

    def detach(self, watch: AccountWatch) -> None:
        watch.sessions -= 1
        if watch.sessions <= 0 and self._accounts.get(watch.account.id) is watch:
            del self._accounts[watch.account.id]
            watch.close()

    async def select(self, watch: AccountWatch, mailbox: Mailbox, read_only: bool) -> Selected:
        """A session's Selected on the shared view of `mailbox` (read from the store only when
        no other session of this process has it selected)."""
        view = watch.views.get(mailbox.id)
        if view is None:
            events = watch.events
            snapshot = await self.service.snapshot(watch.account, mailbox)
            view = watch.views.get(mailbox.id)  # another session may have made it meanwhile
            if view is None:
                view = MailboxView(self.service, watch.account, snapshot.mailbox,
                                   Version.from_snapshot(snapshot),
                                   self.recent_marks.setdefault(mailbox.id, [1]),
                                   watch.listeners)
                watch.views[mailbox.id] = view
                if watch.events != events:  # taken while the read ran: maybe after it
                    view.hear(view.covered + 1)
        view.users += 1
        try:
            watch.poll()
            if view.stale():
                await view.refresh()
        except BaseException:
            self.release(watch, view)
            raise
        return Selected(_shared(view, mailbox), read_only, view.version, view)

    def release(self, watch: AccountWatch, view: MailboxView) -> None:
        view.users -= 1
        if view.users <= 0 and watch.views.get(view.mailbox.id) is view:
            del watch.views[view.mailbox.id]


def _shared(view: MailboxView, mailbox: Mailbox) -> Mailbox:
    """The Mailbox a session keeps while it has `mailbox` selected: the view's when it names
    the same mailbox the same way (commands use its id, name and role; its counts are those of
    the SELECT, long past), so ten thousand sessions on one INBOX hold one, not one each."""
    mine = view.mailbox
    if (mine.id, mine.name, mine.role, mine.uidvalidity, mine.account_id) == (
            mailbox.id, mailbox.name, mailbox.role, mailbox.uidvalidity, mailbox.account_id):
        return mine
    return mailbox
