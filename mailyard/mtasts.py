"""MTA-STS (RFC 8461): which MX hosts a domain allows, and that they must offer valid TLS.

A domain announces a policy with a TXT record at `_mta-sts.<domain>` and serves it over
HTTPS at `https://mta-sts.<domain>/.well-known/mta-sts.txt`. The HTTPS certificate is what
makes the policy trustworthy where DNS is not, so the fetch validates it strictly; the IP of
the HTTPS host still comes from our own Resolver (`[dns] nameservers`), like every lookup.

Policies are cached per domain for their max_age. The cache is the defence against an
attacker on the path: stripping the TXT record or blocking the HTTPS fetch must not make a
sender forget a policy it already holds (§5.1, §10.2). With no policy to be had, delivery
goes on as if the domain had none (fail open), as the RFC prescribes. In a cluster the policies
any node fetched are shared (`SeenPolicies`, in the directory database), so that defence holds
on a node that never fetched the domain's policy itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

import dns.exception
import dns.name

from mailyard.dns import DNSError, Resolver

log = logging.getLogger(__name__)

Mode = Literal["enforce", "testing", "none"]

MAX_AGE_LIMIT = 31557600
"""§3.2: a year; larger values make the policy invalid, not merely capped."""

WELL_KNOWN = "/.well-known/mta-sts.txt"

_MAX_LINE = 8192
"""Longest status, header or chunk-size line accepted from the policy host."""

_MAX_HEADERS = 100

_WSP = "[ \t]*"
# §3.1: the TXT record. The version field must come first; other fields are name=value.
_TXT_VERSION = re.compile(rf"v{_WSP}={_WSP}STSv1(?=[ \t;]|$)", re.IGNORECASE)
_TXT_FIELD = re.compile(
    rf"([A-Za-z0-9][A-Za-z0-9_.-]{{0,31}}){_WSP}={_WSP}([\x21-\x3a\x3c\x3e-\x7e]+)")
_TXT_ID = re.compile(r"[A-Za-z0-9]{1,32}")

_POLICY_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}")
_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")
_MAX_AGE = re.compile(r"[0-9]{1,10}")
_MODES: tuple[Mode, ...] = ("enforce", "testing", "none")


class PolicyError(ValueError):
    """A policy body or TXT record that the RFC says must be treated as no policy."""


class FetchError(Exception):
    """The policy could not be fetched: DNS, TCP, TLS, HTTP or a body that is not a policy."""


def _hostname(name: str) -> str | None:
    """Lower case, no trailing dot; None unless every label is letters, digits and hyphens."""
    text = name.strip().rstrip(".").lower()
    labels = text.split(".")
    if len(text) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        return None
    return text


def _domain(domain: str) -> str | None:
    """The A-label form a recipient domain takes in DNS, SNI and the Host header.

    None for an address literal, or for anything that is not a plain host name: it then has
    no policy, and nothing unchecked reaches the HTTP request line or headers.
    """
    text = domain.strip().rstrip(".")
    if not text or text.startswith("["):
        return None
    try:
        ascii_name = dns.name.from_text(text).to_text(omit_final_dot=True)
    except (dns.exception.DNSException, UnicodeError, ValueError):
        return None
    host = _hostname(ascii_name)
    if host is None or "." not in host:
        return None
    return host


@dataclass(frozen=True)
class Policy:
    """A fetched policy with what the cache needs: the id it answers to and its age."""

    mode: Mode
    mx: tuple[str, ...]
    """As published, lower case without a trailing dot: "mx.example.com", "*.example.com"."""
    max_age: int
    id: str
    """The TXT record's id this policy was fetched under; a new id announces a new policy."""
    fetched_at: float

    @property
    def expires_at(self) -> float:
        return self.fetched_at + self.max_age

    def expired(self, now: float) -> bool:
        return now >= self.expires_at

    def matches(self, host: str) -> bool:
        """§4.1: a wildcard stands for exactly one leftmost label, so "*.example.com" does not
        cover "example.com" itself, nor a name two labels deeper that the domain never vouched
        for."""
        name = host.strip().rstrip(".").lower()
        if not name:
            return False
        for pattern in self.mx:
            if pattern.startswith("*."):
                first, dot, rest = name.partition(".")
                if dot and first and rest == pattern[2:]:
                    return True
            elif name == pattern:
                return True
        return False


def parse_txt(record: str) -> str:
    """The id of a `_mta-sts` TXT record (§3.1); PolicyError if it is not a valid one.

    Unknown fields are allowed (future extensions) but must still be well formed, and the id
    must appear exactly once: two ids would leave the cache unsure which policy it holds.
    """
    match = _TXT_VERSION.match(record)
    if match is None:
        raise PolicyError(f"TXT record does not start with v=STSv1: {record!r}")
    rest = record[match.end():]
    fields = rest.split(";")
    if fields[0].strip(" \t"):
        raise PolicyError(f"TXT record: expected ';' after the version: {record!r}")
    ids: list[str] = []
    seen = 0
    for index, field in enumerate(fields[1:], start=1):
        text = field.strip(" \t")
        if not text:
            if index == len(fields) - 1 and seen:  # one trailing ";" is allowed
                continue
            raise PolicyError(f"TXT record: empty field: {record!r}")
        parsed = _TXT_FIELD.fullmatch(text)
        if parsed is None:
            raise PolicyError(f"TXT record: malformed field {text!r}")
        seen += 1
        if parsed.group(1).lower() == "id":
            if not _TXT_ID.fullmatch(parsed.group(2)):
                raise PolicyError(f"TXT record: id must be 1 to 32 letters or digits: {text!r}")
            ids.append(parsed.group(2))
    if len(ids) != 1:
        raise PolicyError(f"TXT record: expected exactly one id, found {len(ids)}")
    return ids[0]


def _mx_pattern(value: str) -> str:
    wildcard = value.startswith("*.")
    host = _hostname(value[2:] if wildcard else value)
    if host is None or ("." not in host and not wildcard):
        raise PolicyError(f"policy: invalid mx pattern {value!r}")
    return "*." + host if wildcard else host


def parse_policy(text: str) -> tuple[Mode, tuple[str, ...], int]:
    """Mode, mx patterns and max_age of a policy body (§3.2); PolicyError when it is invalid.

    Field names and the values of version and mode are case-sensitive (the ABNF's %s).
    Unknown fields are ignored so that future extensions do not break this sender; a field
    other than mx given twice keeps its first value. Blank lines are tolerated, since a stray
    one at the end of a hand-written file is common and changes nothing.
    """
    fields: dict[str, str] = {}
    mx: list[str] = []
    for line in text.split("\n"):
        line = line.removesuffix("\r").rstrip(" \t")
        if not line:
            continue
        key, colon, value = line.partition(":")
        if not colon or not _POLICY_KEY.fullmatch(key):
            raise PolicyError(f"policy: not a 'key: value' line: {line[:80]!r}")
        value = value.lstrip(" \t")
        if key == "mx":
            mx.append(_mx_pattern(value))
        else:
            fields.setdefault(key, value)
    version = fields.get("version")
    if version != "STSv1":
        raise PolicyError(f"policy: version must be STSv1, not {version!r}")
    mode = next((m for m in _MODES if m == fields.get("mode")), None)
    if mode is None:
        raise PolicyError(f"policy: mode must be enforce, testing or none, not "
                          f"{fields.get('mode')!r}")
    age = fields.get("max_age")
    if age is None or not _MAX_AGE.fullmatch(age):
        raise PolicyError(f"policy: max_age must be 1 to 10 digits, not {age!r}")
    max_age = int(age)
    if max_age > MAX_AGE_LIMIT:
        raise PolicyError(f"policy: max_age {max_age} is over {MAX_AGE_LIMIT}")
    if not mx and mode != "none":
        raise PolicyError(f"policy: mode {mode} without any mx")
    return mode, tuple(dict.fromkeys(mx)), max_age


# ---------------------------------------------------------------------- HTTP


def _headers(lines: list[bytes]) -> dict[str, list[str]]:
    headers: dict[str, list[str]] = {}
    for raw in lines:
        name, colon, value = raw.decode("latin-1").partition(":")
        if not colon or not name or name != name.strip():
            raise FetchError(f"malformed header line {raw[:80]!r}")
        headers.setdefault(name.lower(), []).append(value.strip(" \t"))
    return headers


async def _line(reader: asyncio.StreamReader) -> bytes:
    """One CRLF (or bare LF) terminated line without its ending; FetchError at EOF."""
    try:
        line = await reader.readuntil(b"\n")
    except asyncio.IncompleteReadError:
        raise FetchError("connection closed in the middle of the response") from None
    except asyncio.LimitOverrunError:
        raise FetchError(f"response line longer than {_MAX_LINE} bytes") from None
    return line.rstrip(b"\r\n")


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, list[str]]]:
    status_line = await _line(reader)
    parts = status_line.split(b" ", 2)
    if len(parts) < 2 or not re.fullmatch(rb"HTTP/1\.[01]", parts[0]) \
            or not re.fullmatch(rb"[0-9]{3}", parts[1]):
        raise FetchError(f"not an HTTP/1.x status line: {status_line[:80]!r}")
    lines: list[bytes] = []
    while True:
        line = await _line(reader)
        if not line:
            break
        if len(lines) >= _MAX_HEADERS:
            raise FetchError(f"more than {_MAX_HEADERS} header lines")
        if line[:1] in (b" ", b"\t"):
            raise FetchError("obsolete folded header line")
        lines.append(line)
    return int(parts[1]), _headers(lines)


async def _read_chunked(reader: asyncio.StreamReader, limit: int) -> bytes:
    body = bytearray()
    while True:
        size_line = (await _line(reader)).split(b";", 1)[0].strip(b" \t")
        if not re.fullmatch(rb"[0-9A-Fa-f]{1,8}", size_line):
            raise FetchError(f"bad chunk size {size_line[:20]!r}")
        size = int(size_line, 16)
        if size == 0:
            break
        if len(body) + size > limit:
            raise FetchError(f"policy larger than {limit} bytes")
        try:
            body += await reader.readexactly(size)
        except asyncio.IncompleteReadError:
            raise FetchError("connection closed in the middle of a chunk") from None
        if await _line(reader):
            raise FetchError("chunk not followed by CRLF")
    # The trailer section: read and ignored. A server that closes right after the last
    # chunk has still sent the whole body.
    with contextlib.suppress(FetchError):
        for _ in range(_MAX_HEADERS):
            if not await _line(reader):
                break
    return bytes(body)


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, list[str]],
                     limit: int) -> bytes:
    """Per RFC 9112 §6.3: Transfer-Encoding over Content-Length, else until the close."""
    codings = [c.strip().lower() for value in headers.get("transfer-encoding", [])
               for c in value.split(",") if c.strip()]
    if codings:
        if codings != ["chunked"]:
            raise FetchError(f"unsupported transfer coding {', '.join(codings)}")
        return await _read_chunked(reader, limit)
    lengths = {v.strip() for value in headers.get("content-length", []) for v in value.split(",")}
    if lengths:
        if len(lengths) != 1 or not (length := lengths.pop()).isdigit() \
                or not length.isascii():
            raise FetchError("invalid Content-Length")
        size = int(length)
        if size > limit:
            raise FetchError(f"policy of {size} bytes is larger than {limit}")
        try:
            return await reader.readexactly(size)
        except asyncio.IncompleteReadError:
            raise FetchError("connection closed before the end of the body") from None
    body = await reader.read(limit + 1)
    while body and len(body) <= limit:
        more = await reader.read(limit + 1 - len(body))
        if not more:
            break
        body += more
    if len(body) > limit:
        raise FetchError(f"policy larger than {limit} bytes")
    return body


def _content_type_ok(headers: dict[str, list[str]]) -> bool:
    values = headers.get("content-type", [])
    return len(values) == 1 and values[0].split(";", 1)[0].strip().lower() == "text/plain"


# ---------------------------------------------------------------------- MTA-STS


class SeenPolicies(Protocol):
    """The policies every node of a cluster has fetched (store/postgres/mtasts.py), so that a
    node that never saw a domain's policy (or has just restarted) still holds it when an
    attacker strips the TXT record or blocks the policy host.

    The directory database keeps them rather than Redis: a policy is a security decision that
    lives up to a year (max_age), which a database keeps across restarts of everything, where
    Redis may run without persistence and is allowed to be away (a node then decides alone):
    an emptied cache is exactly the downgrade window §10.2 closes. The load is small: a write
    per policy fetched (a new id, or max_age ran out); a read when a domain's TXT id is new to
    the process, and for a domain without a policy in memory at most one per `seen_recheck`.
    Without PostgreSQL metadata there is one node, and its memory.
    """

    async def get(self, domain: str) -> Policy | None: ...

    async def put(self, domain: str, policy: Policy) -> None:
        """Keep `policy` unless a policy fetched later is kept already."""
        ...


class MTASTS:
    """Policy lookups for outbound delivery, with the per-domain cache §5.1 relies on.

    `retry_after` spaces out fetch attempts for a TXT id whose policy could not be fetched
    (§3.3 suggests five minutes): a queue run to a domain with a dead policy host would
    otherwise wait out `timeout` on every message. `clock` is wall time, as `fetched_at` is.
    `seen`: the policies every node fetched (a cluster), asked when memory holds no policy
    for the TXT record read, at most once per `seen_recheck` seconds for the same record.
    """

    def __init__(self, resolver: Resolver, *, port: int = 443, cafile: str | None = None,
                 timeout: float = 10.0, max_body: int = 64 * 1024, retry_after: float = 300.0,
                 clock: Callable[[], float] = time.time,
                 seen: SeenPolicies | None = None, seen_recheck: float = 60.0) -> None:
        self.resolver = resolver
        self.seen = seen
        self.seen_recheck = seen_recheck
        self._asked: dict[str, tuple[str | None, float]] = {}
        self.port = port
        self.timeout = timeout
        self.max_body = max_body
        self.retry_after = retry_after
        self.clock = clock
        # Built once: loading the system CA store costs milliseconds per context.
        self.context = ssl.create_default_context(cafile=cafile)
        self.context.minimum_version = ssl.TLSVersion.TLSv1_2
        self._cache: dict[str, Policy] = {}
        self._failed: dict[str, tuple[str, float]] = {}
        self._inflight: dict[tuple[str, str], asyncio.Task[Policy | None]] = {}

    def cached(self, domain: str) -> Policy | None:
        """The cached policy, expired or not, for diagnostics and tests."""
        name = _domain(domain)
        return self._cache.get(name) if name else None

    async def policy(self, domain: str) -> Policy | None:
        """The policy to apply to mail for `domain` now, or None to deliver as without one.

        Never raises for a network or policy problem: every failure degrades to the cached
        policy while it lasts, then to none.
        """
        name = _domain(domain)
        if name is None:
            return None
        now = self.clock()
        cached = self._cache.get(name)
        if cached is not None and cached.expired(now):
            del self._cache[name]
            cached = None
        policy_id = await self._txt_id(name)
        if cached is not None and (policy_id is None or cached.id == policy_id):
            return cached  # §5.1: a removed record does not undo a policy already held
        if self.seen is not None and self._ask_due(name, policy_id, now):
            shared = await self._seen(name, now)  # what the other nodes have fetched
            if shared is not None:
                cached = shared
                if policy_id is None or shared.id == policy_id:
                    return shared
        if policy_id is None:
            return cached
        failed = self._failed.get(name)
        if failed is not None:
            if failed[0] == policy_id and now < failed[1]:
                return cached
            del self._failed[name]
        key = (name, policy_id)
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.create_task(self._refresh(name, policy_id, cached))
            self._inflight[key] = task
            task.add_done_callback(lambda _t: self._inflight.pop(key, None))
        # Shielded: one caller giving up must not cancel the fetch the others wait for.
        return await asyncio.shield(task)

    def _ask_due(self, domain: str, policy_id: str | None, now: float) -> bool:
        """Whether to ask the other nodes' policies now: once per `seen_recheck` seconds for
        a domain whose TXT record reads the same, so a domain with no policy (most) costs a
        query per domain and interval, not one per message. The price: a policy another node
        fetched first reaches this one up to `seen_recheck` seconds later when an attacker
        strips the TXT record meanwhile (a new id is asked about at once)."""
        last = self._asked.get(domain)
        if last is not None and last[0] == policy_id and now < last[1]:
            return False
        if len(self._asked) > 10_000:
            self._asked = {d: a for d, a in self._asked.items() if a[1] > now}
        self._asked[domain] = (policy_id, now + self.seen_recheck)
        return True

    async def _seen(self, domain: str, now: float) -> Policy | None:
        """The shared policy of `domain` if one is in force (kept in memory then, unless
        memory holds a later one); a store that cannot answer means none (logged)."""
        assert self.seen is not None
        try:
            policy = await self.seen.get(domain)
        except Exception as e:
            log.warning("MTA-STS: the policies seen by other nodes could not be read for %s:"
                        " %s", domain, e)
            return None
        if policy is None or policy.expired(now):
            return None
        mine = self._cache.get(domain)
        if mine is not None and mine.fetched_at >= policy.fetched_at:
            return mine
        self._cache[domain] = policy
        return policy

    async def _share(self, domain: str, policy: Policy) -> None:
        if self.seen is None:
            return
        try:
            await self.seen.put(domain, policy)
        except Exception as e:  # the policy still applies here; other nodes fetch their own
            log.warning("MTA-STS: the policy of %s could not be shared: %s", domain, e)

    async def _txt_id(self, domain: str) -> str | None:
        name = f"_mta-sts.{domain}"
        try:
            records = await self.resolver.txt(name)
        except DNSError as e:
            log.warning("MTA-STS: TXT lookup of %s failed: %s", name, e)
            return None
        candidates = [r for r in records if _TXT_VERSION.match(r)]
        if not candidates:
            return None
        if len(candidates) > 1:  # §3.1: then the domain has no usable policy
            log.warning("MTA-STS: %s has %d v=STSv1 TXT records; ignoring them", name,
                        len(candidates))
            return None
        try:
            return parse_txt(candidates[0])
        except PolicyError as e:
            log.warning("MTA-STS: %s: %s", name, e)
            return None

    async def _refresh(self, domain: str, policy_id: str, cached: Policy | None) -> Policy | None:
        try:
            mode, mx, max_age = parse_policy(await self.fetch(domain))
        except (FetchError, PolicyError) as e:
            self._failed[domain] = (policy_id, self.clock() + self.retry_after)
            log.warning("MTA-STS: no policy fetched for %s (id %s): %s; %s", domain, policy_id,
                        e, "keeping the cached one" if cached else "delivering without one")
            return cached
        except Exception:  # a bug here must cost the policy, never the delivery
            log.exception("MTA-STS: fetching the policy of %s failed", domain)
            self._failed[domain] = (policy_id, self.clock() + self.retry_after)
            return cached
        policy = Policy(mode, mx, max_age, policy_id, self.clock())
        self._failed.pop(domain, None)
        self._cache[domain] = policy
        log.info("MTA-STS: %s policy %s: mode %s, mx %s, max_age %d", domain, policy_id, mode,
                 ", ".join(mx) or "-", max_age)
        await self._share(domain, policy)
        return policy

    async def fetch(self, domain: str) -> str:
        """The policy body of `domain`, fetched once; FetchError on any failure.

        Redirects are failures (§3.3): following one would let the policy come from a host
        the certificate check never covered.
        """
        name = _domain(domain)
        if name is None:
            raise FetchError(f"not a domain name: {domain!r}")
        host = f"mta-sts.{name}"
        try:
            async with asyncio.timeout(self.timeout):
                return await self._fetch(host)
        except TimeoutError:
            raise FetchError(f"https://{host}{WELL_KNOWN}: timed out after "
                             f"{self.timeout:g}s") from None
        except FetchError as e:
            raise FetchError(f"https://{host}{WELL_KNOWN}: {e}") from None

    async def _fetch(self, host: str) -> str:
        try:
            addresses = await self.resolver.addresses(host)
        except DNSError as e:
            raise FetchError(str(e)) from None
        errors: list[str] = []
        for address in addresses:
            try:
                reader, writer = await asyncio.open_connection(
                    address, self.port, ssl=self.context, server_hostname=host,
                    limit=_MAX_LINE)
            except ssl.SSLCertVerificationError as e:
                errors.append(f"[{address}]: certificate: {e.verify_message}")
                continue
            except (OSError, ssl.SSLError) as e:
                errors.append(f"[{address}]: {e}")
                continue
            try:
                return await self._exchange(host, reader, writer)
            finally:
                writer.transport.abort()
        raise FetchError("; ".join(errors) or "no address")

    async def _exchange(self, host: str, reader: asyncio.StreamReader,
                        writer: asyncio.StreamWriter) -> str:
        authority = host if self.port == 443 else f"{host}:{self.port}"
        request = (f"GET {WELL_KNOWN} HTTP/1.1\r\nHost: {authority}\r\n"
                   "User-Agent: Mailyard MTA-STS\r\nAccept: text/plain\r\n"
                   "Connection: close\r\n\r\n")
        try:
            writer.write(request.encode("ascii"))
            await writer.drain()
            status, headers = await _read_head(reader)
            if status != 200:
                location = headers.get("location")
                where = f" to {location[0][:200]}" if location and 300 <= status < 400 else ""
                raise FetchError(f"HTTP status {status}{where}")
            if not _content_type_ok(headers):
                raise FetchError(f"Content-Type {headers.get('content-type')} is not text/plain")
            body = await _read_body(reader, headers, self.max_body)
        except (OSError, ssl.SSLError) as e:
            raise FetchError(f"{type(e).__name__}: {e}") from None
        try:
            return body.decode("utf-8")
        except UnicodeDecodeError:
            raise FetchError("policy is not UTF-8") from None
