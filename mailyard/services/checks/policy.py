"""Layer 1: who may talk to us at all. Local allow/deny lists, DNS blocklists, greylisting.

Per-IP connection and message rates live in the SMTP listener itself (protocols/smtp/inbound.py,
`[limits]`), since they must act before any check runs; this layer adds the decisions that
depend on data: the admin's lists (`mailyard policy allow|deny|remove|list`), the blocklist
zones of `[checks] dnsbl_zones` (none by default) and, when `[checks] greylisting` is on,
RFC 6647 greylisting of the (client /24 or /64, sender, recipient) triplet, kept in the data
dir's policy store or, in a cluster, in the `Ledger` (Redis) so that a client's retry to any
node counts; while Redis is away, each node greylists on its own.

An allow-listed client IP, network or sender domain skips the blocklists and greylisting (not
authentication: a DMARC reject still applies). Deny-listed and blocklisted clients get
554 5.7.1 at MAIL FROM (RFC 5321 §3.1 lets a server refuse at the greeting, but clients report
a refused transaction far more clearly than a refused connection); greylisted ones 451 4.7.1.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import dns.reversename

from mailyard.core.mime import ParsedMessage
from mailyard.core.ratelimit import Ledger
from mailyard.dns import DNSError, Resolver
from mailyard.services.checks import Action, SMTPEnvelope, Verdict

log = logging.getLogger("mailyard.checks.policy")

ALLOWED = "policy_allowed"
"""Key in the connection's and transaction's state: the client or sender is allow-listed."""

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class PolicyStore(Protocol):
    """Where the lists and greylist triplets persist (store/sqlite/policy.py in the data dir)."""

    def data_version(self) -> int: ...
    def entries(self) -> list[tuple[str, str, str, float]]: ...
    def put(self, entry: str, kind: str, reason: str = "") -> None: ...
    def remove(self, entry: str) -> bool: ...
    def triplet(self, key: str) -> tuple[float, float | None] | None: ...
    def put_triplet(self, key: str, first_seen: float, passed: float | None) -> None: ...
    def expire_triplets(self, before: float) -> int:
        """Forget triplets neither seen nor passed since `before`; how many."""
        ...


@dataclass(frozen=True)
class PolicyEntry:
    entry: str
    kind: str           # allow, deny
    reason: str
    added: float


def parse_entry(text: str) -> str:
    """The canonical form of a list entry: a network in CIDR form (an IP is a /32 or /128)
    or a lower-case domain name; ValueError for anything else."""
    text = text.strip().lower().rstrip(".")
    try:
        return str(ipaddress.ip_network(text, strict=False))
    except ValueError:
        pass
    labels = text.split(".")
    if len(labels) < 2 or not all(labels) or any(len(x) > 63 for x in labels) \
            or not all(c.isalnum() or c in "-_" for x in labels for c in x):
        raise ValueError(f"{text!r} is neither an IP address, a network nor a domain")
    return text


@dataclass(frozen=True)
class Lists:
    """A snapshot of the admin's entries, split for fast matching."""

    networks: tuple[tuple[Network, PolicyEntry], ...]
    domains: dict[str, PolicyEntry]

    @classmethod
    def build(cls, rows: Sequence[tuple[str, str, str, float]]) -> Lists:
        networks: list[tuple[Network, PolicyEntry]] = []
        domains: dict[str, PolicyEntry] = {}
        for e in (PolicyEntry(*row) for row in rows):
            try:
                networks.append((ipaddress.ip_network(e.entry), e))
            except ValueError:
                domains[e.entry] = e
        # Most specific network first, so "deny 10.0.0.0/8, allow 10.1.2.3" allows 10.1.2.3.
        networks.sort(key=lambda item: -item[0].prefixlen)
        return cls(tuple(networks), domains)

    def for_ip(self, ip: str) -> PolicyEntry | None:
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return None
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        for network, entry in self.networks:
            if address.version == network.version and address in network:
                return entry
        return None

    def for_domain(self, domain: str) -> PolicyEntry | None:
        """The entry of the domain or of its nearest listed parent."""
        labels = domain.lower().rstrip(".").split(".")
        for n in range(len(labels) - 1):
            entry = self.domains.get(".".join(labels[n:]))
            if entry is not None:
                return entry
        return None


@dataclass(frozen=True)
class PolicySettings:
    dnsbl_zones: tuple[str, ...] = ()
    greylisting: bool = False
    greylist_delay: float = 300.0
    """Seconds a new triplet must wait before a retry is accepted."""
    greylist_window: float = 4 * 3600.0
    """Seconds after the first attempt within which a retry counts."""
    greylist_expire: float = 36 * 86400.0
    """Seconds a passed triplet is remembered (and let through at once)."""


def triplet_key(ip: str, sender: str, recipient: str) -> str:
    """RFC 6647 §4.2: the client's /24 (IPv4) or /64 (IPv6), so that a sender's pool of
    outbound hosts retrying from a neighbouring address is not greylisted again."""
    address = ipaddress.ip_address(ip)
    prefix = 24 if address.version == 4 else 64
    network = ipaddress.ip_network(f"{address}/{prefix}", strict=False)
    return f"{network}|{sender.lower()}|{recipient.lower()}"


class PolicyCheck:
    """The connection policy as a `Check` (connect, mail_from and rcpt_to hooks)."""

    name = "policy"

    def __init__(self, store: PolicyStore, resolver: Resolver,
                 settings: PolicySettings, ledger: Ledger | None = None) -> None:
        self.store = store
        self.ledger = ledger
        self.resolver = resolver
        self.settings = settings
        self._version = -1
        self._lists = Lists((), {})

    def lists(self) -> Lists:
        """The entries as last committed, by the CLI too (re-read only after a change)."""
        version = self.store.data_version()
        if version != self._version:
            self._lists = Lists.build(self.store.entries())
            self._version = version
        return self._lists

    async def connect(self, peer: str, verdict: Verdict) -> None:
        entry = self.lists().for_ip(peer)
        if entry is not None and entry.kind == "allow":
            verdict.data[ALLOWED] = True
            verdict.add("POLICY_ALLOW_IP")
            return
        if entry is not None:
            text = f"Access denied for [{peer}]" + (f": {entry.reason}" if entry.reason else "")
            verdict.add("POLICY_DENY_IP")
            verdict.ask(Action.REJECT, text, f"554 5.7.1 {text}")
            return
        if self.settings.dnsbl_zones:
            await self._blocklists(peer, verdict)

    async def _blocklists(self, peer: str, verdict: Verdict) -> None:
        """Query every zone at once; a zone that cannot answer is skipped (fail open)."""
        try:
            reverse = dns.reversename.from_address(peer).to_text(omit_final_dot=True)
        except Exception:
            return
        reverse = reverse.removesuffix(".in-addr.arpa").removesuffix(".ip6.arpa")
        zones = self.settings.dnsbl_zones
        answers = await asyncio.gather(*(self.resolver.addresses(f"{reverse}.{zone}")
                                         for zone in zones), return_exceptions=True)
        for zone, answer in zip(zones, answers, strict=True):
            if isinstance(answer, DNSError) and answer.temporary:
                log.warning("blocklist %s did not answer for %s: %s", zone, peer, answer)
            # RFC 5782 §2.1: a listing is an A record in 127.0.0.0/8 (others are errors).
            if isinstance(answer, list) and any(a.startswith("127.") for a in answer):
                text = f"Service unavailable; client [{peer}] blocked using {zone}"
                verdict.add(f"DNSBL_{zone.upper()}")
                verdict.ask(Action.REJECT, text, f"554 5.7.1 {text}")
                return

    async def check(self, envelope: SMTPEnvelope, raw: bytes, parsed: ParsedMessage,
                    verdict: Verdict) -> None:
        """Nothing left to decide at DATA: every policy decision was made before it."""

    async def mail_from(self, envelope: SMTPEnvelope, verdict: Verdict) -> None:
        domain = envelope.mail_from.rpartition("@")[2] if "@" in envelope.mail_from else ""
        entry = self.lists().for_domain(domain) if domain else None
        if entry is None:
            return
        if entry.kind == "allow":
            envelope.state[ALLOWED] = True
            verdict.add("POLICY_ALLOW_DOMAIN")
            return
        text = f"Sender domain {domain} denied" + (f": {entry.reason}" if entry.reason else "")
        verdict.add("POLICY_DENY_DOMAIN")
        verdict.ask(Action.REJECT, text, f"554 5.7.1 {text}")

    async def rcpt_to(self, envelope: SMTPEnvelope, recipient: str, verdict: Verdict) -> None:
        if not self.settings.greylisting or envelope.state.get(ALLOWED):
            return
        try:
            key = triplet_key(envelope.peer, envelope.mail_from, recipient)
        except ValueError:
            return
        s = self.settings
        wait = None if self.ledger is None else await self.ledger.greylist(
            key, s.greylist_delay, s.greylist_window, s.greylist_expire)
        if wait is None:
            wait = await asyncio.to_thread(self._greylist, key, time.time())
        if wait > 0:
            text = f"Greylisted, please try again in {wait:.0f} seconds"
            verdict.add("GREYLIST")
            verdict.ask(Action.TEMPFAIL, text, f"451 4.7.1 {text}")

    def _greylist(self, key: str, now: float) -> float:
        """Seconds the client must still wait; 0 lets the recipient through."""
        s = self.settings
        seen = self.store.triplet(key)
        if seen is not None and seen[1] is not None and now - seen[1] < s.greylist_expire:
            self.store.put_triplet(key, seen[0], now)
            return 0.0
        if seen is None or now - seen[0] > s.greylist_window:
            self.store.put_triplet(key, now, None)
            return max(s.greylist_delay, 1.0)
        waited = now - seen[0]
        if waited < s.greylist_delay:
            return max(s.greylist_delay - waited, 1.0)
        self.store.put_triplet(key, seen[0], now)
        return 0.0
