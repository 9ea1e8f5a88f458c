"""One gate for every login, whatever the protocol: IMAP, POP3, SMTP AUTH and JMAP/HTTP Basic.

Failed logins are counted per client network and per account, in a `Counters` store that every
process of a node (the SQLite file) or every node of a cluster (Redis) shares, so an attacker
gains nothing by switching protocol, connection or listener process. Two windows:

- per network: an IPv4 address, or an IPv6 /64 (`ipv6_prefix`), because one host holds a whole
  /64 and could otherwise take a fresh address per guess;
- per account: however many networks the guesses come from (a botnet guessing one password).

Once a window is full, logins from that network (or to that account) are refused before the
password is looked at, the right password included, until enough failures age out of the
window; the moment a block begins is logged once, with the key and the protocol. A per-account
block also locks out the owner for that long: that is the price of stopping a distributed
guess, and why its default is higher than the per-network one.
"""

from __future__ import annotations

import enum
import ipaddress
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from mailyard.core.addresses import normalize
from mailyard.store.ports import Counters

log = logging.getLogger("mailyard.auth")

WINDOW = 3600.0
"""The failure windows are an hour long (the limits are "per hour")."""


@dataclass(frozen=True)
class LoginLimits:
    failures_per_network: int = 30
    """Failed logins per hour from one IPv4 address or IPv6 prefix; 0 = no limit."""
    failures_per_account: int = 100
    """Failed logins per hour to one account, from anywhere; 0 = no limit."""
    ipv6_prefix: int = 64
    """IPv6 addresses are grouped by this prefix length."""


class Refusal(enum.Enum):
    """Why a login is refused before its password is checked."""

    NETWORK = "too many failed logins from this network"
    ACCOUNT = "too many failed logins to this account"


def network_of(ip: str, ipv6_prefix: int = 64) -> str:
    """The key of the client's network: the IPv4 address itself, an IPv6 address's prefix
    (an IPv4-mapped IPv6 address counts as its IPv4 address); anything else as given."""
    try:
        addr = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return ip
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return str(addr.ipv4_mapped)
        net = ipaddress.IPv6Network((addr, ipv6_prefix), strict=False)
        return str(net)
    return str(addr)


class LoginGuard:
    """Counts failures and says whether a login may be tried (see the module docstring)."""

    def __init__(self, counters: Counters, limits: LoginLimits | None = None, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.counters = counters
        self.limits = limits or LoginLimits()
        self.clock = clock

    def _keys(self, ip: str, address: str) -> tuple[str, str]:
        return (f"login-fail:net:{network_of(ip, self.limits.ipv6_prefix)}",
                f"login-fail:acct:{_account_key(address)}")

    async def refusal(self, ip: str, address: str) -> Refusal | None:
        """Why a login from `ip` as `address` must be refused now, or None to go on."""
        net_key, acct_key = self._keys(ip, address)
        now = self.clock()
        lim = self.limits
        if lim.failures_per_network and \
                await self.counters.count(net_key, WINDOW, now) >= lim.failures_per_network:
            return Refusal.NETWORK
        if lim.failures_per_account and address and \
                await self.counters.count(acct_key, WINDOW, now) >= lim.failures_per_account:
            return Refusal.ACCOUNT
        return None

    async def failed(self, ip: str, address: str, protocol: str) -> None:
        """Count one failed login; log the failure that starts a block."""
        net_key, acct_key = self._keys(ip, address)
        now = self.clock()
        lim = self.limits
        net = await self.counters.hit(net_key, WINDOW, now)
        if lim.failures_per_network and net == lim.failures_per_network:
            log.warning("login blocked: %d failed logins in an hour from %s (last by %s as %r);"
                        " further logins from there are refused until they age out",
                        net, network_of(ip, lim.ipv6_prefix), protocol, address,
                        extra={"remote_ip": ip})
        if not address:
            return
        acct = await self.counters.hit(acct_key, WINDOW, now)
        if lim.failures_per_account and acct == lim.failures_per_account:
            log.warning("login blocked: %d failed logins in an hour to account %r (last from"
                        " %s by %s); further logins to it are refused until they age out",
                        acct, address, ip, protocol, extra={"remote_ip": ip})


def _account_key(address: str) -> str:
    """Whatever a client typed, as the account lookup would read it, bounded in length."""
    return normalize(address)[:320]
