"""A DNS server on loopback (the outside world that cannot exist here), on dnslib.

The server's resolver (`mailyard.dns`) is pointed at it through `[dns] nameservers`, so every
lookup the server makes in a test (MX, A/AAAA, TXT for DKIM, PTR) crosses a real socket and
dnspython's real wire handling: UDP first, TCP when the UDP answer is truncated, error rcodes.

It answers like a recursive resolver would from a single flat zone: a name with records of
other types only gets NOERROR with no answer (NODATA), a name with no records at all (and no
records below it) gets NXDOMAIN, a CNAME is followed inside the zone. Negative answers carry
an SOA so that a caching resolver can cache them for `ttl` seconds, like it would on the
Internet. The default `ttl` of 0 keeps `set()`/`remove()` visible to the very next lookup.

UDP answers over 512 bytes (or the EDNS payload size the query offers) are truncated with the
TC bit, as a real server would, so that large TXT records (4096-bit DKIM keys, several DKIM
records at one name) exercise the TCP fallback. `queries` logs what was asked and over which
transport, for tests that care.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from dnslib import QTYPE, RCODE, RR, SOA, TXT, DNSHeader, DNSLabel, DNSRecord
from dnslib.server import DNSHandler, DNSLogger, DNSServer

log = logging.getLogger(__name__)

UDP_MAX = 512
"""Largest UDP answer to a query without EDNS (RFC 1035 §4.2.1)."""

TIMEOUT = "TIMEOUT"
"""Pseudo-rcode for `fail()`: the query is dropped and never answered."""

_MAX_CNAME_CHAIN = 8


@dataclass(frozen=True)
class Query:
    name: str
    rtype: str
    protocol: str
    """"udp" or "tcp"."""


class _Drop(Exception):
    """Raised inside the handler to leave a query unanswered (a lost packet)."""


def _norm(name: str) -> str:
    return name.strip().rstrip(".").lower()


def _parse(name: str, rtype: str, value: str | bytes) -> Any:
    """Zone-file rdata to a dnslib RD; at `set()` time, so that a typo fails the test early."""
    if rtype == "TXT":
        data = value.encode() if isinstance(value, str) else value
        return TXT([data[i:i + 255] for i in range(0, len(data), 255)] or [b""])
    if isinstance(value, bytes):
        raise TypeError(f"bytes are for TXT records only, not {rtype}")
    records = RR.fromZone(f"{name}. 0 IN {rtype} {value}")
    if len(records) != 1:
        raise ValueError(f"cannot parse {rtype} record {value!r}")
    return records[0].rdata


class _Zone:
    """The dnslib resolver: shared by the UDP and TCP servers and every handler thread."""

    def __init__(self, ttl: int) -> None:
        self.ttl = ttl
        self.lock = threading.Lock()
        self.records: dict[str, dict[str, list[Any]]] = {}
        self.failures: dict[str, str] = {}
        self.type_failures: dict[tuple[str, str], str] = {}
        self.queries: list[Query] = []

    def _exists(self, name: str) -> bool:
        """A name exists when it owns records or is an ancestor of one that does (RFC 8020)."""
        suffix = "." + name
        return name in self.records or any(n.endswith(suffix) for n in self.records)

    def resolve(self, request: DNSRecord, handler: DNSHandler) -> DNSRecord:
        qname = _norm(str(request.q.qname))
        qtype = QTYPE.get(request.q.qtype, str(request.q.qtype))
        reply = request.reply()
        with self.lock:
            self.queries.append(Query(qname, qtype, getattr(handler, "protocol", "udp")))
            name = qname
            for _ in range(_MAX_CNAME_CHAIN):
                failure = self.failures.get(name)
                if failure == TIMEOUT:
                    raise _Drop
                if failure is not None:
                    reply.header.rcode = getattr(RCODE, failure)
                    return reply
                failure = self.type_failures.get((name, qtype))
                if failure == TIMEOUT:
                    raise _Drop
                if failure is not None:
                    reply.header.rcode = getattr(RCODE, failure)
                    return reply
                types = self.records.get(name, {})
                if qtype == "ANY":
                    wanted = [(t, rd) for t, rds in types.items() for rd in rds]
                else:
                    wanted = [(qtype, rd) for rd in types.get(qtype, [])]
                if not wanted and qtype != "CNAME" and types.get("CNAME"):
                    target = types["CNAME"][0]
                    reply.add_answer(RR(name + ".", QTYPE.CNAME, rdata=target, ttl=self.ttl))
                    name = _norm(str(target.label))
                    continue
                for rtype, rd in wanted:
                    reply.add_answer(RR(name + ".", getattr(QTYPE, rtype), rdata=rd,
                                        ttl=self.ttl))
                if not wanted:
                    if not self._exists(name):
                        reply.header.rcode = RCODE.NXDOMAIN
                    reply.add_auth(self._soa(name))
                return reply
            reply.header.rcode = RCODE.SERVFAIL  # a CNAME loop
            return reply

    def _soa(self, name: str) -> RR:
        """The SOA of a negative answer; its owner must be an ancestor of the name asked."""
        zone = ".".join(name.split(".")[-2:]) + "."
        return RR(zone, QTYPE.SOA, ttl=self.ttl,
                  rdata=SOA(DNSLabel("ns." + zone), DNSLabel("hostmaster." + zone),
                            (1, 3600, 600, 86400, self.ttl)))


class _Handler(DNSHandler):  # type: ignore[misc]  # dnslib has no type hints
    """dnslib's handler, plus UDP truncation by the query's payload size and dropped queries."""

    def handle(self) -> None:
        with contextlib.suppress(_Drop):
            super().handle()

    def get_reply(self, data: bytes) -> bytes:
        request = DNSRecord.parse(data)
        reply: DNSRecord = self.server.resolver.resolve(request, self)
        rdata: bytes = reply.pack()
        if self.protocol == "udp":
            limit = max([UDP_MAX, *(rr.edns_len for rr in request.ar if rr.rtype == QTYPE.OPT)])
            if len(rdata) > limit:
                header = DNSHeader(id=reply.header.id, bitmap=reply.header.bitmap)
                header.tc = 1
                rdata = DNSRecord(header, q=reply.q).pack()
        return rdata


class TestDNS:
    """A DNS server on 127.0.0.1, UDP and TCP on one free port; a context manager."""

    __test__ = False  # not a pytest test class, despite the name

    def __init__(self, records: Mapping[tuple[str, str], Sequence[str | bytes]] | None = None,
                 ttl: int = 0) -> None:
        self._zone = _Zone(ttl)
        self._servers: list[DNSServer] = []
        self.port = 0
        for (name, rtype), values in (records or {}).items():
            self.set(name, rtype, values)

    @property
    def address(self) -> str:
        """As `[dns] nameservers` takes it."""
        return f"127.0.0.1:{self.port}"

    @property
    def queries(self) -> list[Query]:
        with self._zone.lock:
            return list(self._zone.queries)

    def start(self) -> TestDNS:
        if self._servers:
            return self
        logger = DNSLogger(log="-request,-reply,-truncated", prefix=False, logf=log.debug)
        for _ in range(20):
            # UDP on port 0 first, then TCP on the same number: that port may be taken for TCP.
            udp = DNSServer(self._zone, address="127.0.0.1", port=0, logger=logger,
                            handler=_Handler)
            port = int(udp.server.server_address[1])
            try:
                tcp = DNSServer(self._zone, address="127.0.0.1", port=port, tcp=True,
                                logger=logger, handler=_Handler)
            except OSError:
                udp.server.server_close()
                continue
            break
        else:
            raise OSError("no free port for UDP and TCP both")
        self.port = port
        self._servers = [udp, tcp]
        for server in self._servers:
            # A short poll so that stop() (socketserver's shutdown) returns at once, not in 0.5 s.
            server.thread = threading.Thread(target=server.server.serve_forever,
                                             kwargs={"poll_interval": 0.02}, daemon=True)
            server.thread.start()
        return self

    def stop(self) -> None:
        for server in self._servers:
            server.stop()
            server.server.server_close()
        self._servers = []

    def __enter__(self) -> TestDNS:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def set(self, name: str, rtype: str, values: Sequence[str | bytes]) -> None:
        """Replace the records of one type; a PTR may be given the IP address as its name.

        A TXT value may be bytes, for records that are not UTF-8 (which the Internet has).
        """
        rtype = rtype.upper()
        if rtype == "PTR":
            with contextlib.suppress(ValueError):
                name = ipaddress.ip_address(name).reverse_pointer
        name = _norm(name)
        parsed = [_parse(name, rtype, v) for v in values]
        with self._zone.lock:
            types = self._zone.records.setdefault(name, {})
            if parsed:
                types[rtype] = parsed
            else:
                types.pop(rtype, None)
                if not types:
                    del self._zone.records[name]

    def set_txt_strings(self, name: str, records: Sequence[Sequence[bytes]]) -> None:
        """TXT records given string by string: one record of several character-strings is
        not the same as several records (SPF joins the first, RFC 7208 §3.3)."""
        name = _norm(str(DNSLabel(_norm(name))))
        parsed = [TXT(list(strings)) for strings in records]
        with self._zone.lock:
            types = self._zone.records.setdefault(name, {})
            if parsed:
                types["TXT"] = parsed
            else:
                types.pop("TXT", None)
                if not types:
                    del self._zone.records[name]

    def set_rdata(self, name: str, rtype: str, rdatas: Sequence[Any]) -> None:
        """Records as dnslib rdata objects, for owner names no zone-file line can hold
        (spaces, "%" and other octets that test suites use on purpose)."""
        name = _norm(str(DNSLabel(_norm(name))))  # escaped as dnslib shows a query's name
        with self._zone.lock:
            types = self._zone.records.setdefault(name, {})
            if rdatas:
                types[rtype.upper()] = list(rdatas)
            else:
                types.pop(rtype.upper(), None)
                if not types:
                    del self._zone.records[name]

    def fail_type(self, name: str, rtype: str, rcode: str = "SERVFAIL") -> None:
        """Like `fail()`, for queries of one type only (the name answers the others)."""
        rcode = rcode.upper()
        if rcode != TIMEOUT and not hasattr(RCODE, rcode):
            raise ValueError(f"unknown rcode {rcode!r}")
        with self._zone.lock:
            self._zone.type_failures[(_norm(name), rtype.upper())] = rcode

    def remove(self, name: str, rtype: str | None = None) -> None:
        """Remove one type's records, or the whole name (and a `fail()` on it)."""
        name = _norm(name)
        with self._zone.lock:
            if rtype is None:
                self._zone.records.pop(name, None)
                self._zone.failures.pop(name, None)
                return
            types = self._zone.records.get(name, {})
            types.pop(rtype.upper(), None)
            if not types:
                self._zone.records.pop(name, None)

    def fail(self, name: str, rcode: str = "SERVFAIL") -> None:
        """Answer every query for this name with an error rcode, or drop it ("TIMEOUT")."""
        rcode = rcode.upper()
        if rcode != TIMEOUT and not hasattr(RCODE, rcode):
            raise ValueError(f"unknown rcode {rcode!r}")
        with self._zone.lock:
            self._zone.failures[_norm(name)] = rcode
