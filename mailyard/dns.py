"""The one DNS resolver of the server: MX for delivery, A/AAAA, TXT (DKIM, SPF, DMARC), PTR.

Every lookup goes through here so that `[dns] nameservers` (a local validating resolver in
production, the loopback test server in tests) and `[dns] timeout` apply to all of them, and
so that callers see two kinds of failure only: temporary (SERVFAIL, timeout, no answer from
any nameserver: retry later, 4xx) and permanent (the name or the record does not exist: 5xx).

Answers are cached by dnspython within their TTLs (negative answers by their SOA), bounded,
so that a queue run delivering to one domain many times asks once.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import random
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import dns.asyncresolver
import dns.exception
import dns.name
import dns.nameserver
import dns.rdatatype
import dns.resolver
import dns.reversename

if TYPE_CHECKING:
    import mailyard.config

log = logging.getLogger(__name__)

CACHE_SIZE = 4096
"""Cached answers (RRsets and negative answers); least recently used ones go first."""

_T = TypeVar("_T")


class DNSError(Exception):
    """A lookup without a usable answer; `temporary` tells whether asking later may help."""

    temporary: bool = True


class TemporaryDNSError(DNSError):
    """SERVFAIL, REFUSED, timeout, unreachable nameservers: the answer may exist, ask later."""

    temporary = True


class PermanentDNSError(DNSError):
    """The name or the record does not exist (or the name cannot exist): asking again won't help."""

    temporary = False


class NXDomain(PermanentDNSError):
    """The name does not exist at all, as opposed to existing without the records asked for."""


class NullMX(PermanentDNSError):
    """RFC 7505: the domain publishes "MX 0 ." and accepts no mail; a sender must not try A."""


@dataclass(frozen=True)
class MXHost:
    preference: int
    host: str
    """Lower case, no trailing dot; an IP address for an address literal ("[192.0.2.1]")."""


def parse_nameserver(entry: str) -> tuple[str, int]:
    """Config's nameserver syntax: "host", "host:port", "[v6]", "[v6]:port" or a bare v6.

    Only IP addresses: a resolver's address cannot itself need resolving.
    """
    text = entry.strip()
    port = 53
    if text.startswith("["):
        host, closed, rest = text[1:].partition("]")
        if not closed or (rest and not rest.startswith(":")):
            raise ValueError(f"nameserver {entry!r}: expected [address]:port")
        if rest:
            port = _port(entry, rest[1:])
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
        port = _port(entry, port_text)
    else:
        host = text
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"nameserver {entry!r}: not an IP address") from None
    return str(address), port


def _port(entry: str, text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"nameserver {entry!r}: bad port {text!r}")
    return int(text)


def address_literal(domain: str) -> str | None:
    """The IP of an RFC 5321 §4.1.3 address literal ("[192.0.2.1]", "[IPv6:2001:db8::1]").

    None when `domain` is not bracketed (a domain name); PermanentDNSError when it is bracketed
    but holds no valid address, since no lookup could ever make it deliverable.
    """
    text = domain.strip()
    if not (text.startswith("[") and text.endswith("]")):
        return None
    inner = text[1:-1]
    if inner[:5].lower() == "ipv6:":
        inner = inner[5:]
        version = 6
    else:
        version = 4
    try:
        address = ipaddress.ip_address(inner)
    except ValueError:
        raise PermanentDNSError(f"invalid address literal {domain}") from None
    if address.version != version:
        raise PermanentDNSError(f"invalid address literal {domain}")
    return str(address)


def _ip(text: str) -> str | None:
    """A bare or bracketed IP address, canonical; None for a host name."""
    literal = address_literal(text)
    if literal is not None:
        return literal
    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        return None


def _name(domain: str) -> dns.name.Name:
    """Absolute, so that no search list or ndots rule ever turns it into another name."""
    text = domain.strip().rstrip(".")
    if not text:
        raise PermanentDNSError("empty domain name")
    try:
        return dns.name.from_text(text)
    except (dns.exception.DNSException, UnicodeError, ValueError) as e:
        raise PermanentDNSError(f"invalid domain name {domain!r}: {e}") from None


def _text(name: dns.name.Name) -> str:
    return str(name.to_text(omit_final_dot=True)).lower()


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


async def _outcome(lookup: Awaitable[_T]) -> _T | DNSError:
    """Lets concurrent lookups each finish with an answer or an error, without cancelling."""
    try:
        return await lookup
    except DNSError as e:
        return e


class Resolver:
    """Lookups with mail semantics (implicit MX, null MX, address literals) over dnspython."""

    def __init__(self, nameservers: Sequence[str] = (), timeout: float = 5.0) -> None:
        if timeout <= 0:
            raise ValueError(f"DNS timeout must be positive, not {timeout}")
        self.timeout = timeout
        resolver: dns.asyncresolver.Resolver
        if nameservers:
            resolver = dns.asyncresolver.Resolver(configure=False)
            resolver.nameservers = [dns.nameserver.Do53Nameserver(*parse_nameserver(entry))
                                    for entry in nameservers]
            # A dead first nameserver must not use up the whole lookup: each gets its share.
            resolver.timeout = timeout / len(nameservers)
        else:
            try:
                resolver = dns.asyncresolver.Resolver()
            except dns.resolver.NoResolverConfiguration as e:
                # Start anyway: mail for local domains does not need DNS; every remote lookup
                # fails temporarily (and is retried) until the system is configured.
                log.warning("no system DNS resolver (%s); set [dns] nameservers", e)
                resolver = dns.asyncresolver.Resolver(configure=False)
        resolver.lifetime = timeout
        resolver.cache = dns.resolver.LRUCache(CACHE_SIZE)
        self.resolver = resolver
        self._sync: dns.resolver.Resolver | None = None

    def sync(self, timeout: float | None = None) -> dns.resolver.Resolver:
        """A blocking twin on the same nameservers (and ports) for libraries that ask DNS
        synchronously (pyspf, dkimpy), to be used from a worker thread, never the event loop.

        Built here so that `[dns]` stays the one place that says where lookups go; `timeout`
        may be shorter than the async resolver's (checks in the SMTP DATA path).
        """
        if self._sync is None:
            twin = dns.resolver.Resolver(configure=False)
            twin.nameservers = list(self.resolver.nameservers)
            twin.timeout = self.resolver.timeout
            twin.lifetime = self.resolver.lifetime
            twin.cache = dns.resolver.LRUCache(CACHE_SIZE)
            self._sync = twin
        if timeout is not None and timeout != self._sync.lifetime:
            twin = dns.resolver.Resolver(configure=False)
            twin.nameservers = list(self._sync.nameservers)
            twin.lifetime = timeout
            twin.timeout = min(self._sync.timeout, timeout)
            twin.cache = self._sync.cache
            return twin
        return self._sync

    @classmethod
    def from_config(cls, config: mailyard.config.DNS) -> Resolver:
        return cls(config.nameservers, config.timeout)

    async def _lookup(self, name: dns.name.Name, rtype: str) -> list[Any]:
        """The answer's rdatas, [] for NODATA; NXDomain, or the error kind of anything else."""
        label = f"{_text(name)} {rtype}"
        try:
            answer = await self.resolver.resolve(name, dns.rdatatype.from_text(rtype),
                                                 raise_on_no_answer=False, search=False)
        except dns.resolver.NXDOMAIN:
            raise NXDomain(f"{label}: no such domain (NXDOMAIN)") from None
        except dns.resolver.YXDOMAIN:
            raise PermanentDNSError(f"{label}: name too long after DNAME (YXDOMAIN)") from None
        except dns.resolver.LifetimeTimeout:
            raise TemporaryDNSError(f"{label}: timed out after {self.timeout:g}s") from None
        except dns.resolver.NoNameservers as e:
            raise TemporaryDNSError(f"{label}: {e}") from None
        except (dns.exception.DNSException, OSError) as e:
            raise TemporaryDNSError(f"{label}: {type(e).__name__}: {e}") from None
        return list(answer.rrset) if answer.rrset is not None else []

    async def mx(self, domain: str) -> list[MXHost]:
        """Where mail for `domain` goes, in the order to try them (RFC 5321 §5.1).

        Equal preferences are shuffled on every call to spread load as §5.1 asks. A domain
        without MX records but with an address is its own implicit MX. A null MX alongside
        other MX records (which RFC 7505 forbids) is ignored in favour of the real hosts.
        """
        literal = address_literal(domain)
        if literal is not None:
            return [MXHost(0, literal)]
        name = _name(domain)
        try:
            records = await self._lookup(name, "MX")
        except NXDomain:
            raise NXDomain(f"{_text(name)}: no such domain (NXDOMAIN)") from None
        if not records:
            try:
                await self.addresses(_text(name))
            except NXDomain:
                raise NXDomain(f"{_text(name)}: no such domain (NXDOMAIN)") from None
            except PermanentDNSError:
                raise PermanentDNSError(f"{_text(name)}: no MX, A or AAAA record") from None
            return [MXHost(0, _text(name))]
        real = [r for r in records if r.exchange != dns.name.root]
        if not real:
            raise NullMX(f"{_text(name)} accepts no mail (null MX, RFC 7505)")
        best: dict[str, int] = {}
        for r in real:
            host = _text(r.exchange)
            best[host] = min(int(r.preference), best.get(host, int(r.preference)))
        hosts = [MXHost(pref, host) for host, pref in best.items()]
        random.shuffle(hosts)
        hosts.sort(key=lambda h: h.preference)  # stable: the shuffle survives within a level
        return hosts

    async def addresses(self, host: str) -> list[str]:
        """IPv4 then IPv6 addresses of a host, asked concurrently; an IP literal is its answer.

        One family failing temporarily while the other answers still gives the addresses
        found: a usable partial answer beats a retry. With none found, a temporary failure of
        either family makes the whole lookup temporary, since the missing one may exist.
        """
        ip = _ip(host)
        if ip is not None:
            return [ip]
        name = _name(host)
        v4, v6 = await asyncio.gather(_outcome(self._lookup(name, "A")),
                                      _outcome(self._lookup(name, "AAAA")))
        found = [r.address for rs in (v4, v6) if isinstance(rs, list) for r in rs]
        if found:
            return _unique([str(a) for a in found])
        errors = [e for e in (v4, v6) if isinstance(e, DNSError)]
        for error in errors:
            if error.temporary:
                raise error
        if len(errors) == 2:
            raise errors[0]
        raise PermanentDNSError(f"{_text(name)}: no A or AAAA record")

    async def txt(self, name: str) -> list[str]:
        """Each TXT record as one string, its character-strings joined (RFC 7208 §3.3,
        RFC 6376 §3.6.2.2): a 2048-bit DKIM key never fits in one 255-byte string.

        A missing name is simply no records, and so is a name that cannot exist (a malformed
        DKIM selector in a hostile signature): SPF, DKIM and DMARC all treat it as "none".
        """
        try:
            qname = _name(name)
            records = await self._lookup(qname, "TXT")
        except PermanentDNSError:
            return []
        return [b"".join(r.strings).decode("utf-8", "replace") for r in records]

    async def ptr(self, ip: str) -> list[str]:
        """Reverse names of an address; an IPv4-mapped IPv6 peer is looked up as IPv4."""
        text = _ip(ip)
        if text is None:
            raise PermanentDNSError(f"not an IP address: {ip!r}")
        address = ipaddress.ip_address(text)
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        try:
            records = await self._lookup(dns.reversename.from_address(str(address)), "PTR")
        except PermanentDNSError:
            return []
        return _unique([_text(r.target) for r in records])
