"""Accounts, domains and credentials: who may receive mail here and who may log in.

Passwords are hashed with argon2id at one of OWASP's equivalent minimum settings (12 MiB,
3 passes, 1 lane). Measured on the 2-core development VM: a verification takes a median 32 ms
(the 19 MiB x 2 variant took 39 ms), under the 50 ms a login may take, and the memory cost is what
makes offline cracking on GPUs expensive. Hashes made with other parameters still verify, and are
upgraded on the next successful login.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from mailyard.core.addresses import domain_of, normalize
from mailyard.services.loginguard import LoginGuard, Refusal
from mailyard.store.ports import Account, MailStore, NotFound

log = logging.getLogger("mailyard.auth")

if TYPE_CHECKING:
    from argon2 import PasswordHasher


@functools.cache
def hasher() -> PasswordHasher:
    """argon2 is imported at the first password: `domain list` and the other admin commands
    that read accounts never load it."""
    from argon2 import PasswordHasher

    return PasswordHasher(time_cost=3, memory_cost=12_288, parallelism=1)


T = TypeVar("T")

_HASHING = ThreadPoolExecutor(max_workers=2, thread_name_prefix="argon2")
"""Hashing runs on two threads of its own, not the default pool: each thread that has run
argon2 keeps a 12 MiB malloc arena, and the default pool's many threads kept ~70 MiB resident."""


async def _off_loop(fn: Callable[..., T], *args: Any) -> T:
    return await asyncio.get_running_loop().run_in_executor(_HASHING, fn, *args)


class RecipientStatus(enum.Enum):
    OK = "ok"
    UNKNOWN_USER = "unknown user"
    NOT_LOCAL = "not a local domain"
    OVER_QUOTA = "over quota"
    NO_POSTMASTER = "postmaster has no account"
    """postmaster@ a local domain with no account at all and no [addresses] postmaster that
    exists (AccountService.postmaster_default): a temporary refusal (the address must exist,
    RFC 5321 §4.5.1; the admin must say where, and start-up says so)."""
    BOUNCES_ONLY = "takes bounces only"
    """An SRS address of mail we forwarded, given with a sender: only a bounce (the null
    sender) may go back through it, or it would relay anyone's mail (core/routing.py)."""


class Router(Protocol):
    """The routing rules (services/routing.py RoutingService), when the composition root
    gives them: aliases, plus-addressing, domain aliases and catch-alls decide which
    recipients are accepted, at RCPT time, for every protocol that asks `check_recipient`."""

    async def check(self, address: str, size: int = 0,
                    mail_from: str | None = None) -> RecipientStatus: ...


class LoginRefused(Exception):
    """A login refused before its password was looked at (LoginGuard): the client's network or
    the account is blocked after too many failures. Protocols answer it as a temporary
    refusal, not as wrong credentials."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.value)
        self.refusal = refusal


class AccountService:
    def __init__(self, store: MailStore, *, config_domains: tuple[str, ...] = (),
                 default_quota: int = 10 * 1024**3, guard: LoginGuard | None = None,
                 roles: dict[str, str] | None = None) -> None:
        self.store = store
        self.roles = {k.lower(): normalize(v) for k, v in (roles or {}).items() if v}
        """Role local parts (postmaster, abuse) of every local domain -> the account that
        receives them when the domain has no account of that name."""
        self.config_domains = frozenset(config_domains)
        self.default_quota = default_quota
        self.guard = guard
        """Failed-login limits shared by every protocol; None: no limits (the CLI)."""
        self.router: Router | None = None
        """The routing rules, when set: they decide `check_recipient` (accounts alone
        otherwise)."""

    # ------------------------------------------------------------------ domains

    async def domains(self) -> set[str]:
        return set(self.config_domains) | set(await self.store.list_domains())

    async def is_local_domain(self, domain: str) -> bool:
        domain = domain_of(f"x@{domain}")  # lower case, an IDN as its A-label
        return domain in self.config_domains or domain in await self.store.list_domains()

    # ------------------------------------------------------------------ users

    async def add_user(self, address: str, password: str, quota: int | None = None) -> Account:
        address = normalize(address)
        if "@" not in address or not address.partition("@")[0]:
            raise ValueError(f"{address!r} is not an address (user@domain)")
        if not await self.is_local_domain(domain_of(address)):
            raise ValueError(f"{domain_of(address)} is not a local domain; add it first "
                             f"(mailyard domain add {domain_of(address)})")
        if not password:
            raise ValueError("the password must not be empty")
        hashed = await _off_loop(hasher().hash, password)
        return await self.store.create_account(address, hashed, quota or self.default_quota)

    async def set_password(self, address: str, password: str) -> None:
        if not password:
            raise ValueError("the password must not be empty")
        await self.store.set_password(address, await _off_loop(hasher().hash, password))

    async def login(self, address: str, password: str, *, ip: str,
                    protocol: str) -> Account | None:
        """A client's login, by any protocol: the account when the password is right, None when
        not (counted as a failure); LoginRefused when `ip`'s network or the account is blocked,
        the right password included."""
        if self.guard is not None:
            refusal = await self.guard.refusal(ip, address)
            if refusal is not None:
                log.warning("authentication refused: protocol=%s user=%r reason=%s ip=%s",
                            protocol, address[:320], refusal.name.lower(), ip)
                raise LoginRefused(refusal)
        account = await self.authenticate(address, password)
        if account is None:
            await self.failed(ip, address, protocol)
        return account

    async def failed(self, ip: str, address: str, protocol: str) -> None:
        """A login that failed some other way than a wrong password (an authorization
        identity not the user's, credentials that name no one, a bad token): logged and
        counted as one. One line per failure, whatever the protocol, in the form
        docs/fail2ban.md's filter matches: the address as repr (a client's bytes cannot
        forge a line), the IP last."""
        log.warning("authentication failed: protocol=%s user=%r ip=%s", protocol,
                    address[:320], ip)
        if self.guard is not None:
            await self.guard.failed(ip, address, protocol)

    async def refused(self, ip: str, address: str = "") -> bool:
        """Whether a login from `ip` (as `address`, if known) would be refused now
        (LoginGuard), for a protocol that checks before it has the credentials."""
        return self.guard is not None and await self.guard.refusal(ip, address) is not None

    async def authenticate(self, address: str, password: str) -> Account | None:
        """The account when the password is right, else None (never says which part was wrong)."""
        try:
            account = await self.store.get_account(address)
        except NotFound:
            await _off_loop(_burn_equal_time, password)
            return None
        ok = await _off_loop(_verify, account.password_hash, password)
        if not ok:
            return None
        if hasher().check_needs_rehash(account.password_hash):
            await self.set_password(address, password)
        return account

    async def still_valid(self, account: Account) -> Account | None:
        """The account as stored now if it still has the password `account` was read with
        (a remembered login), else None: a changed password or a removed account ends a
        remembered login at once, through whichever node it was changed. One read by id,
        no password hashing."""
        try:
            current = await self.store.get_account_by_id(account.id)
        except NotFound:
            return None
        if current.password_hash != account.password_hash or current.address != account.address:
            return None
        return current

    async def fresh(self, account: Account) -> Account:
        """The account as stored now (its counters, quota and state): a session holds the
        copy read at its login, which every later change leaves behind."""
        return await self.store.get_account_by_id(account.id)

    async def recipient_account(self, address: str) -> Account:
        """The account mail to `address` is delivered to: its own, or for a role address
        (postmaster@, abuse@ any local domain) the configured one; for postmaster@ with none
        configured (or the configured one gone), `postmaster_default`. Raises NotFound."""
        address = normalize(address)
        try:
            return await self.store.get_account(address)
        except NotFound:
            local, _, domain = address.rpartition("@")
            if (local not in self.roles and local != "postmaster") \
                    or not await self.is_local_domain(domain):
                raise
            if local in self.roles:
                try:
                    return await self.store.get_account(self.roles[local])
                except NotFound:
                    if local != "postmaster":
                        raise
            found = await self.postmaster_default(domain)
            if found is None:
                raise
            return found

    async def postmaster_default(self, domain: str) -> Account | None:
        """Who gets postmaster@`domain` when neither that account nor [addresses] postmaster
        exists: the domain's first account (the oldest: ids sort by creation), which on a
        new server is the admin's own, the first `user add`. RFC 5321 §4.5.1 wants the
        address accepted, and a 451 until someone set the config kept other servers'
        reports retrying, then bouncing. None when the domain has no account at all (start-up
        warns). Reads the account list: postmaster mail is rare."""
        domain = domain_of(f"x@{domain}")
        own = [a for a in await self.store.list_accounts() if domain_of(a.address) == domain]
        return min(own, key=lambda a: a.id) if own else None

    async def check_recipient(self, address: str, size: int = 0,
                              mail_from: str | None = None) -> RecipientStatus:
        """May mail to `address` be accepted here; `mail_from` is the envelope sender where
        one was given (None: not known, as for a submission's own check)."""
        if self.router is not None:
            return await self.router.check(address, size, mail_from)
        address = normalize(address)
        if not await self.is_local_domain(domain_of(address)):
            return RecipientStatus.NOT_LOCAL
        try:
            account = await self.recipient_account(address)
        except NotFound:
            if address.rpartition("@")[0] == "postmaster":
                return RecipientStatus.NO_POSTMASTER
            return RecipientStatus.UNKNOWN_USER
        if account.used >= account.quota or account.used + size > account.quota:
            return RecipientStatus.OVER_QUOTA
        return RecipientStatus.OK


@functools.cache
def _dummy_hash() -> str:
    """Made on first use, not at import: a hash costs ~30 ms, which every CLI command paid."""
    return hasher().hash("mailyard-timing-equaliser")


def _verify(hashed: str, password: str) -> bool:
    from argon2.exceptions import InvalidHashError, VerificationError

    try:
        return hasher().verify(hashed, password)
    except (VerificationError, InvalidHashError):
        return False


def _burn_equal_time(password: str) -> None:
    """Spend a verification's time on unknown users so timing does not reveal who exists."""
    _verify(_dummy_hash(), password)
