"""Who receives mail to an address: the routing rules, written once for every way in.

The SMTP MX asks `check` at RCPT time, so an address no rule accepts is refused there (550
5.1.1) and never bounced later (no backscatter); `plan` expands an accepted envelope into the
accounts that get a copy (each once) and the remote addresses it is forwarded to, for the
durable hand-off (services/delivery.py) and for submission's local recipients.

The rules, in the order they are tried for an address at a local domain:

1. a domain alias rewrites the domain first (alice@example.net -> alice@example.org), and the
   rest is decided at the target domain;
2. an alias of the exact address (its targets: local, remote, or the address itself, which
   means "its own mailbox too": keep a local copy when forwarding);
3. the account of that address, or a role address (postmaster@, abuse@: AccountService);
4. the same two for the address without its subaddress (alice+news@ -> alice@), the detail
   kept in the address delivered to (Delivered-To, Sieve's subaddress);
5. the domain's catch-all.

Spam is never forwarded (services/routing_delivery.py): a message the spam filter judges
spam reaches a remote alias target neither from the alias nor from a Sieve redirect. The
local copy of an alias that keeps one goes to Junk as any spam does; what would have gone to
remote targets is held in quarantine (the dead-letter queue, `mailyard dlq list`) or, with
`[routing] hold_spam_forwards = false`, dropped with a log line. Gmail and Fastmail do the
same ("spam is not forwarded"): a forwarder that relays spam gets its own address and IP
blocklisted, and a bounce of it goes to a forged sender (backscatter).

An SRS address at the SRS domain that we wrote ourselves (a bounce of mail we forwarded) is
reversed to the original sender, so the bounce reaches them. Alias chains are followed up to
MAX_DEPTH and a cycle ends where it closes.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace

from mailyard.core.addresses import domain_of, normalize
from mailyard.core.routing import SRS, SRSError, split_detail
from mailyard.core.workitems import MessageLoader, Verdict
from mailyard.services.accounts import AccountService, RecipientStatus
from mailyard.store.ports import Account, Conflict, NotFound, RouteKind, RouteRow, RoutingStore

log = logging.getLogger("mailyard.routing")

MAX_DEPTH = 8
"""Alias hops followed from one envelope recipient (Postfix follows as many)."""
MAX_TARGETS = 1000
"""Addresses one envelope recipient may expand to."""


@dataclass(frozen=True, slots=True)
class LocalTarget:
    account: Account
    recipient: str
    """The address the pipeline delivers to: the account's, with the subaddress when one was
    used (alice+news@example.org), so per-recipient rules (Sieve) see the detail."""
    delivered_to: str
    """The envelope recipient as it reached us (alias, plus or domain-alias address);
    recorded as Delivered-To when it is not the account's own address."""
    also: tuple[str, ...] = ()
    """Other envelope recipients of the same message that reached this account (`plan`):
    one copy, a Delivered-To for each."""

    @property
    def addresses(self) -> tuple[str, ...]:
        return (self.delivered_to, *self.also)


@dataclass(frozen=True, slots=True)
class RemoteTarget:
    address: str
    via: str
    """The local address whose rule forwards here (Delivered-To on the forwarded copy, what
    loop detection looks for when the message comes back)."""


@dataclass(slots=True)
class Resolution:
    status: RecipientStatus
    local: list[LocalTarget] = field(default_factory=list)
    remote: list[RemoteTarget] = field(default_factory=list)
    bounce: bool = False
    """The address is an SRS address we wrote: its one remote target is the original
    sender of mail we forwarded."""


@dataclass(slots=True)
class Plan:
    """An envelope's recipients expanded: each account once, each remote address once."""

    local: list[LocalTarget] = field(default_factory=list)
    remote: list[RemoteTarget] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    """Recipients no rule accepts any more (a rule removed since RCPT)."""


SpamScore = Callable[[Verdict, MessageLoader], Awaitable[tuple[Verdict, bytes]]]
"""The spam placement's `complete` (services/checks/content.py SpamPlacement): the verdict
with the score the SMTP-time check left to the pipeline, which a forward cannot wait for."""


class RouteError(ValueError):
    """An admin's rule that cannot be (a loop to itself, a target that is no address)."""


def _address(text: str, what: str) -> str:
    address = normalize(text)
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain:
        raise RouteError(f"{text!r} is not an address (user@domain) for {what}")
    if any(c.isspace() or c in "<>,;\"" for c in address):
        raise RouteError(f"{text!r} is not an address (user@domain) for {what}")
    return address


def _domain(text: str) -> str:
    from mailyard.config import domain_name

    return domain_name(text)


class RoutingService:
    def __init__(self, accounts: AccountService, store: RoutingStore, *,
                 delimiter: str = "+", srs: SRS | None = None,
                 spam_score: SpamScore | None = None, hold_spam: bool = True) -> None:
        self.accounts = accounts
        self.store = store
        self.delimiter = delimiter
        self.srs = srs
        self.spam_score = spam_score
        """Scores a message to forward whose score the MX left to the pipeline; None: the
        verdict as the MX gave it decides."""
        self.hold_spam = hold_spam
        """Spam for remote targets: held in quarantine (True) or dropped."""

    # ------------------------------------------------------------------ resolving

    async def check(self, address: str, size: int = 0,
                    mail_from: str | None = None) -> RecipientStatus:
        """RCPT time: may mail to `address` be accepted from `mail_from`, and if not, why."""
        resolution = await self.resolve(address)
        if resolution.status is not RecipientStatus.OK:
            return resolution.status
        if resolution.bounce and mail_from:
            log.info("refused mail from %s to SRS address %s: bounces only", mail_from,
                     address)
            return RecipientStatus.BOUNCES_ONLY
        for target in resolution.local:
            used, quota = target.account.used, target.account.quota
            if used >= quota or used + size > quota:
                return RecipientStatus.OVER_QUOTA
        return RecipientStatus.OK

    async def resolve(self, address: str) -> Resolution:
        """Where mail to `address` goes (status NOT_LOCAL: not ours at all)."""
        address = normalize(address)
        if "@" not in address or not address.rpartition("@")[0]:
            return Resolution(RecipientStatus.UNKNOWN_USER)
        if self.srs is not None and self.srs.is_srs(address) \
                and domain_of(address) == self.srs.domain.lower():
            try:
                original = self.srs.reverse(address)
            except SRSError as e:
                log.info("refused SRS address %s: %s", address, e)
                return Resolution(RecipientStatus.UNKNOWN_USER)
            if not await self._is_ours(domain_of(original)):
                return Resolution(RecipientStatus.OK,
                                  remote=[RemoteTarget(normalize(original), address)],
                                  bounce=True)
            address = normalize(original)
        if not await self._is_ours(domain_of(address)):
            return Resolution(RecipientStatus.NOT_LOCAL)
        out = Resolution(RecipientStatus.OK)
        status = await self._expand(address, address, out, depth=0, seen=set())
        if not out.local and not out.remote:
            out.status = status if status is not RecipientStatus.OK \
                else RecipientStatus.UNKNOWN_USER
        return out

    async def _is_ours(self, domain: str) -> bool:
        return await self.accounts.is_local_domain(domain) \
            or bool(await self.store.targets("domain", domain))

    async def _expand(self, address: str, via: str, out: Resolution, *, depth: int,
                      seen: set[str]) -> RecipientStatus:
        """Add where mail to `address` goes to `out`; the refusal when it goes nowhere."""
        if address in seen or depth > MAX_DEPTH:
            return RecipientStatus.OK  # a cycle or a chain too long: it ends here
        seen.add(address)
        local, _, domain = address.rpartition("@")
        if not await self.accounts.is_local_domain(domain):
            canonical = await self.store.targets("domain", domain)
            if not canonical:
                self._remote(out, address, via)
                return RecipientStatus.OK
            address = f"{local}@{canonical[0]}"
            domain = canonical[0]
            if address in seen:
                return RecipientStatus.OK
            seen.add(address)
        base = split_detail(address, self.delimiter)[0]
        for key in dict.fromkeys([address, base]):
            targets = await self.store.targets("alias", key)
            if targets:
                for target in targets:
                    if target == key:  # the address itself: its own mailbox as well
                        await self._account(target, address, via, out)
                    else:
                        await self._expand(target, via, out, depth=depth + 1, seen=seen)
                return RecipientStatus.OK
            if await self._account(key, address, via, out):
                return RecipientStatus.OK
        catchall = await self.store.targets("catchall", domain)
        if catchall and depth == 0:
            for target in catchall:
                await self._expand(target, via, out, depth=depth + 1, seen=seen)
            return RecipientStatus.OK
        if local == "postmaster" or base.rpartition("@")[0] == "postmaster":
            return RecipientStatus.NO_POSTMASTER
        return RecipientStatus.UNKNOWN_USER

    async def _account(self, key: str, address: str, via: str, out: Resolution) -> bool:
        try:
            account = await self.accounts.recipient_account(key)
        except NotFound:
            return False
        if len(out.local) + len(out.remote) < MAX_TARGETS:
            # `address` maps back to this account alone (recipient_account): it is `key`,
            # or `key` with a subaddress.
            out.local.append(LocalTarget(account, address, via))
        return True

    def _remote(self, out: Resolution, address: str, via: str) -> None:
        if len(out.local) + len(out.remote) < MAX_TARGETS:
            out.remote.append(RemoteTarget(address, via))

    async def plan(self, recipients: Sequence[str]) -> Plan:
        """The envelope's recipients expanded, each account and remote address once (the
        first recipient that reaches it names it)."""
        plan = Plan()
        accounts: dict[str, int] = {}
        remote: set[str] = set()
        for rcpt in dict.fromkeys(normalize(r) for r in recipients):
            resolution = await self.resolve(rcpt)
            if resolution.status is RecipientStatus.NOT_LOCAL:
                if rcpt not in remote:
                    remote.add(rcpt)
                    plan.remote.append(RemoteTarget(rcpt, ""))
                continue
            if not resolution.local and not resolution.remote:
                plan.unknown.append(rcpt)
            for target in resolution.local:
                at = accounts.get(target.account.id)
                if at is None:
                    accounts[target.account.id] = len(plan.local)
                    plan.local.append(target)
                elif target.delivered_to not in plan.local[at].addresses:
                    first = plan.local[at]
                    plan.local[at] = replace(first, also=(*first.also, target.delivered_to))
            for r in resolution.remote:
                if r.address not in remote:
                    remote.add(r.address)
                    plan.remote.append(r)
        return plan

    async def recipient_account(self, address: str) -> Account:
        """The one account mail queued for `address` goes to (an address `plan` gave:
        the account's own, with or without its subaddress). Raises NotFound."""
        try:
            return await self.accounts.recipient_account(address)
        except NotFound:
            base, detail = split_detail(normalize(address), self.delimiter)
            if not detail:
                raise
            return await self.accounts.recipient_account(base)

    async def forward_sender(self, mail_from: str) -> str:
        """The envelope sender of a copy forwarded to another domain: SRS-rewritten unless
        the sender is at a local domain (whose SPF names us already) or null."""
        if self.srs is None or not mail_from or "@" not in mail_from:
            return mail_from
        if await self.accounts.is_local_domain(domain_of(mail_from)):
            return mail_from
        return self.srs.forward(mail_from)

    # ------------------------------------------------------------------ the rules (admin)

    async def add_alias(self, source: str, targets: Sequence[str], *,
                        keep_copy: bool = False) -> list[str]:
        """Add targets to an alias (made if new); the targets it has now."""
        address = _address(source, "the alias")
        if not await self.accounts.is_local_domain(domain_of(address)):
            raise RouteError(f"{domain_of(address)} is not a local domain; add it first"
                             f" (mailyard domain add {domain_of(address)})")
        wanted = [_address(t, "a target") for t in targets]
        if keep_copy:
            try:
                await self.accounts.recipient_account(address)
            except NotFound:
                raise RouteError(f"--keep-copy: {address} has no mailbox to keep a copy in")\
                    from None
            wanted.append(address)
        if not wanted:
            raise RouteError("an alias needs at least one target (or --keep-copy)")
        have = await self.store.targets("alias", address)
        for target in wanted:
            if target in have:
                continue
            with contextlib.suppress(Conflict):  # added meanwhile: the same result
                await self.store.add_route(RouteRow("alias", address, target))
            have.append(target)
        return await self.store.targets("alias", address)

    async def remove_alias(self, source: str, targets: Sequence[str] = ()) -> int:
        address = _address(source, "the alias")
        if not targets:
            removed = await self.store.remove_routes("alias", address)
        else:
            removed = 0
            for target in targets:
                removed += await self.store.remove_routes("alias", address,
                                                          _address(target, "a target"))
        if not removed:
            raise NotFound(f"no alias {address}" + (f" to {', '.join(targets)}"
                                                     if targets else ""))
        return removed

    async def routes(self, kind: RouteKind | None = None) -> list[RouteRow]:
        return await self.store.routes(kind)

    async def add_domain_alias(self, alias: str, target: str) -> None:
        name, to = _domain(alias), _domain(target)
        if name == to:
            raise RouteError(f"{name} cannot be an alias of itself")
        if await self.accounts.is_local_domain(name):
            raise RouteError(f"{name} is a local domain: an alias domain has no mailboxes of"
                             f" its own (mailyard domain remove {name} first)")
        if not await self.accounts.is_local_domain(to):
            raise RouteError(f"{to} is not a local domain; add it first"
                             f" (mailyard domain add {to})")
        existing = await self.store.targets("domain", name)
        if existing:
            raise RouteError(f"{name} is already an alias of {existing[0]}")
        await self.store.add_route(RouteRow("domain", name, to))

    async def remove_domain_alias(self, alias: str) -> None:
        name = _domain(alias)
        if not await self.store.remove_routes("domain", name):
            raise NotFound(f"{name} is no alias domain")

    async def set_catchall(self, domain: str, target: str | None) -> bool:
        """Set (or with None remove) the domain's catch-all; whether there was one."""
        name = _domain(domain)
        if not await self._is_ours(name):
            raise RouteError(f"{name} is not a local domain; add it first"
                             f" (mailyard domain add {name})")
        had = await self.store.remove_routes("catchall", name) > 0
        if target is not None:
            address = _address(target, "the catch-all")
            if domain_of(address) == name:
                local = address.rpartition("@")[0]
                if not local:
                    raise RouteError(f"{target!r} is not an address")
            await self.store.add_route(RouteRow("catchall", name, address))
        return had

