"""Layer 2: who sent this? SPF (RFC 7208), DKIM (RFC 6376), DMARC (RFC 7489), ARC (RFC 8617).

The libraries made for the field do the protocol work: pyspf evaluates SPF records, dkimpy (via
`mailyard.core.dkim`, which adds ed25519) checks DKIM signatures and ARC chains, and
publicsuffixlist (which ships the list, so no download at run time) gives the organisational
domain DMARC aligns on. Both pyspf and dkimpy ask DNS synchronously, so they run in a worker
thread with the blocking twin of the server's resolver (`Resolver.sync`): every lookup still
goes to the `[dns]` nameservers, and is bounded by `[checks] dns_timeout`.

SPF starts at MAIL FROM, so its lookups overlap with RCPT and DATA; DKIM, ARC and DMARC run at
the end of DATA. The outcome is one Authentication-Results field (RFC 8601) with the configured
hostname as authserv-id, and an action: a DMARC "reject" policy that fails is refused with
550 5.7.1 when enforcement is on (Junk otherwise), "quarantine" goes to Junk.
"""

from __future__ import annotations

import asyncio
import contextvars
import ipaddress
import logging
import random
import re
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import dns.exception
import dns.name
import dns.resolver
import spf
from publicsuffixlist import PublicSuffixList

from mailyard.core import dkim as core_dkim
from mailyard.core.authresults import FIELD, MethodResult, format_value
from mailyard.core.mime import ParsedMessage
from mailyard.dns import DNSError, Resolver
from mailyard.services.checks import Action, SMTPEnvelope, Verdict

log = logging.getLogger("mailyard.checks.auth")

_SYNC: contextvars.ContextVar[dns.resolver.Resolver] = contextvars.ContextVar("sync_resolver")
_PSL: PublicSuffixList | None = None


def public_suffix_list() -> PublicSuffixList:
    """Loaded once per process (a few ms): the copy of the list the package ships."""
    global _PSL
    if _PSL is None:
        _PSL = PublicSuffixList()
    return _PSL


def organizational_domain(domain: str) -> str:
    """RFC 7489 §3.2: the public suffix plus one label; a public suffix is its own."""
    domain = domain.lower().rstrip(".")
    return public_suffix_list().privatesuffix(domain) or domain


# ------------------------------------------------------------------------------------- DNS


def _spf_lookup(name: str, qtype: str, strict: Any = True, timeout: Any = None,
                level: int = 0) -> list[tuple[tuple[str, str], Any]]:
    """pyspf's lookup hook, answered by the resolver of the calling check (a context
    variable, so concurrent checks in several threads each use their own)."""
    resolver = _SYNC.get()
    try:
        qname = dns.name.from_text(name)
        answer = resolver.resolve(qname, qtype, raise_on_no_answer=False, search=False)
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer, dns.resolver.YXDOMAIN):
        return []
    except (dns.name.LabelTooLong, dns.name.NameTooLong, dns.name.EmptyLabel):
        return []
    except dns.exception.DNSException as e:
        raise spf.TempError(f"DNS {type(e).__name__}: {e}") from None
    out: list[tuple[tuple[str, str], Any]] = []
    for rdata in answer.rrset or []:
        if qtype in ("A", "AAAA"):
            out.append(((name, qtype), rdata.address))
        elif qtype == "MX":
            out.append(((name, qtype), (rdata.preference, rdata.exchange)))
        elif qtype == "PTR":
            out.append(((name, qtype), rdata.target.to_text(True)))
        elif qtype in ("TXT", "SPF"):
            out.append(((name, qtype), tuple(rdata.strings)))
    return out


spf.DNSLookup = _spf_lookup  # pyspf's documented hook; `_SYNC` makes it per check


class _Query(spf.query):  # type: ignore[misc]  # pyspf has no type hints
    """pyspf's query, with RFC 7208 §5.5 for the "ptr" mechanism and "p" macro: a DNS error
    on one PTR name's address lookup skips that name. pyspf lets it end the whole check as
    temperror, which a real resolver's SERVFAIL (a CNAME loop, a dead zone) would cause."""

    def validated_ptrs(self) -> list[str]:
        if self.strict > 1:
            return list(super().validated_ptrs())
        names: list[str] = []
        for name in self.dns_ptr(self.i)[:spf.MAX_PTR]:
            try:
                if self.cidrmatch(self.dns_a(name, self.A), self.cidrmax):
                    names.append(name)
            except spf.TempError:
                continue
        return names


def _txt_joined(resolver: dns.resolver.Resolver, name: bytes) -> bytes:
    """dkimpy's dnsfunc: the first TXT record's strings joined; b"" when there is none."""
    try:
        answer = resolver.resolve(dns.name.from_text(name.decode("ascii", "replace")), "TXT",
                                  raise_on_no_answer=False, search=False)
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer, dns.resolver.YXDOMAIN,
            dns.name.LabelTooLong, dns.name.NameTooLong, dns.name.EmptyLabel):
        return b""
    for rdata in answer.rrset or []:
        return b"".join(rdata.strings)
    return b""


_DKIM_SIGNATURE = re.compile(rb"\ndkim-signature[ \t]*:", re.IGNORECASE)
_ARC_SEAL = re.compile(rb"\narc-seal[ \t]*:", re.IGNORECASE)
"""A field of that name after a line break; the line break is a literal prefix, which lets the
regular expression engine skip to each line start at memchr speed (the multi-line `^` form
tests every position and takes ten times as long over a 14 MB header)."""


def has_field(raw: bytes, head_end: int, pattern: re.Pattern[bytes]) -> bool:
    """Whether the header block `raw[:head_end]` has a field `pattern` names, without copying
    or lower-casing the block: a message with no signature never reaches dkimpy."""
    if pattern.match(b"\n" + raw[:min(head_end, 64)]):  # the first field: no line break
        return True
    return pattern.search(raw, 0, head_end) is not None


# ------------------------------------------------------------------------------------- SPF


@dataclass(frozen=True)
class SPFResult:
    result: str             # pass fail softfail neutral none permerror temperror
    explanation: str = ""


def spf_check(resolver: dns.resolver.Resolver, ip: str, sender: str, helo: str, *,
              querytime: float = 20.0, default_explanation: str | None = None) -> SPFResult:
    """check_host() (RFC 7208 §4) for one identity; blocking, run it in a thread.

    `sender` is the MAIL FROM identity; for the HELO identity pass "postmaster@" + helo.
    """
    token = _SYNC.set(resolver)
    try:
        query = _Query(i=ip, s=sender, h=helo, querytime=querytime)
        if default_explanation is not None:
            query.set_default_explanation(default_explanation)
        result, _code, explanation = query.check()
    except Exception as e:  # a library bug on hostile input must not end the session
        log.warning("SPF check of %s from %s failed: %s", sender, ip, e)
        return SPFResult("temperror", str(e))
    finally:
        _SYNC.reset(token)
    result = {"unknown": "permerror", "error": "temperror"}.get(result, result)
    return SPFResult(result, explanation or "")


def _spf_identities(resolver: dns.resolver.Resolver, ip: str, mail_from: str, helo: str,
                    querytime: float) -> dict[str, SPFResult]:
    """RFC 7208 §2.3 and §2.4: HELO when it is a domain name, MAIL FROM (postmaster@HELO for
    the null sender)."""
    results: dict[str, SPFResult] = {}
    helo_domain = _is_domain(helo)
    if helo_domain:
        results["helo"] = spf_check(resolver, ip, f"postmaster@{helo}", helo, querytime=querytime)
    if mail_from:
        results["mailfrom"] = spf_check(resolver, ip, mail_from, helo, querytime=querytime)
    elif helo_domain:
        results["mailfrom"] = results["helo"]
    return results


class SPFCache:
    """SPF results by (client IP, HELO, MAIL FROM) for `seconds`, at most SIZE of them, the
    least recently used going first. The three are everything check_host() reads from the
    message (RFC 7208 §4.1: <ip>, <domain>, <sender>; macros may name the HELO), so a hit is
    the answer the evaluation would give while the DNS answers stand. A temperror (a lookup
    that timed out) is not kept: the next message tries again."""

    SIZE = 4096

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._kept: OrderedDict[tuple[str, str, str], tuple[float, dict[str, SPFResult]]] = \
            OrderedDict()

    def get(self, key: tuple[str, str, str]) -> dict[str, SPFResult] | None:
        found = self._kept.get(key)
        if found is None:
            return None
        if found[0] <= time.monotonic():
            del self._kept[key]
            return None
        self._kept.move_to_end(key)
        return found[1]

    def put(self, key: tuple[str, str, str], results: dict[str, SPFResult]) -> None:
        if self.seconds <= 0 or any(r.result == "temperror" for r in results.values()):
            return
        self._kept[key] = (time.monotonic() + self.seconds, results)
        self._kept.move_to_end(key)
        while len(self._kept) > self.SIZE:
            self._kept.popitem(last=False)


def _is_domain(name: str) -> bool:
    if not name or "." not in name or name.startswith("["):
        return False
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return True
    return False


# ----------------------------------------------------------------------------------- DMARC


@dataclass(frozen=True)
class DMARCPolicy:
    domain: str             # where the record was found
    p: str
    sp: str
    adkim: str
    aspf: str
    pct: int


def parse_dmarc(record: str, domain: str) -> DMARCPolicy | None:
    """RFC 7489 §6.3; None for a record that is not DMARC or lacks a valid p= (§6.6.3)."""
    tags: dict[str, str] = {}
    for n, part in enumerate(record.split(";")):
        key, eq, value = part.partition("=")
        key, value = key.strip().lower(), value.strip()
        if n == 0 and (key != "v" or value != "DMARC1"):
            return None
        if eq and key not in tags:
            tags[key] = value
    p = tags.get("p", "").lower()
    if p not in ("none", "quarantine", "reject"):
        return None
    sp = tags.get("sp", p).lower()
    try:
        pct = max(0, min(100, int(tags.get("pct", "100"))))
    except ValueError:
        pct = 100
    return DMARCPolicy(domain, p, sp if sp in ("none", "quarantine", "reject") else p,
                       tags.get("adkim", "r").lower(), tags.get("aspf", "r").lower(), pct)


def aligned(a: str, b: str, mode: str) -> bool:
    a, b = a.lower().rstrip("."), b.lower().rstrip(".")
    if mode == "s":
        return a == b
    return organizational_domain(a) == organizational_domain(b)


@dataclass
class DMARCResult:
    result: str             # pass fail none temperror permerror
    from_domain: str = ""
    policy: str = ""        # the policy that applies to a failure (after sp= and pct=)
    record: DMARCPolicy | None = None


# ------------------------------------------------------------------------------- the check


@dataclass
class AuthResults:
    spf: dict[str, SPFResult] = field(default_factory=dict)
    dkim: list[core_dkim.SignatureResult] = field(default_factory=list)
    dkim_error: str = ""
    arc: str = "none"
    dmarc: DMARCResult = field(default_factory=lambda: DMARCResult("none"))


class AuthCheck:
    """The authentication layer as a `Check`."""

    name = "auth"

    def __init__(self, resolver: Resolver, *, authserv_id: str, enforce_dmarc: bool = True,
                 timeout: float = 2.0, spf_cache_seconds: float = 60.0) -> None:
        self.resolver = resolver
        self.authserv_id = authserv_id
        self.enforce_dmarc = enforce_dmarc
        self.timeout = timeout
        self.sync = resolver.sync(timeout)
        self.spf_cache = SPFCache(spf_cache_seconds)
        public_suffix_list()

    async def mail_from(self, envelope: SMTPEnvelope, verdict: Verdict) -> None:
        """Start SPF now; DATA awaits it, so its lookups overlap the rest of the dialogue."""
        envelope.state["spf"] = asyncio.ensure_future(self._spf(envelope))

    async def _spf(self, envelope: SMTPEnvelope) -> dict[str, SPFResult]:
        key = (envelope.peer, envelope.helo.lower(), envelope.mail_from.lower())
        results = self.spf_cache.get(key)
        if results is None:
            results = await asyncio.to_thread(_spf_identities, self.sync, envelope.peer,
                                              envelope.mail_from, envelope.helo, self.timeout)
            self.spf_cache.put(key, results)
        return results

    async def check(self, envelope: SMTPEnvelope, raw: bytes, parsed: ParsedMessage,
                    verdict: Verdict) -> None:
        task = envelope.state.pop("spf", None)
        spf_task: asyncio.Future[dict[str, SPFResult]] = (
            task if task is not None else asyncio.ensure_future(self._spf(envelope)))
        end = parsed.root.body_start
        dkim_task = asyncio.ensure_future(self._dkim(raw, end))
        arc_task = asyncio.ensure_future(self._arc(raw, end))
        from_domain = _from_domain(parsed)
        # The DMARC record is fetched alongside SPF and DKIM: a clean mail waits for one
        # round of lookups, not three in a row.
        record_task = asyncio.ensure_future(self._record(from_domain)) if from_domain else None
        results = AuthResults(spf=await spf_task)
        results.dkim, results.dkim_error = await dkim_task
        results.arc = await arc_task
        record: DMARCPolicy | DNSError | None = None
        if record_task is not None:
            try:
                record = await record_task
            except DNSError as e:
                record = e
        results.dmarc = self._dmarc(envelope, from_domain, record, results)
        verdict.headers.append((FIELD, format_value(self.authserv_id, self._resinfo(
            envelope, results))))
        verdict.data["auth"] = {
            "spf": {k: v.result for k, v in results.spf.items()},
            "dkim": [{"d": r.domain, "s": r.selector, "a": r.algorithm, "valid": r.valid}
                     for r in results.dkim],
            "arc": results.arc,
            "dmarc": results.dmarc.result, "dmarc_policy": results.dmarc.policy,
            "from_domain": results.dmarc.from_domain,
        }
        self._act(results.dmarc, verdict)

    def _act(self, dmarc: DMARCResult, verdict: Verdict) -> None:
        verdict.add(f"DMARC_{dmarc.result.upper()}")
        if dmarc.result != "fail":
            return
        domain = dmarc.from_domain
        if dmarc.policy == "reject" and self.enforce_dmarc:
            text = f"Email rejected per DMARC policy for {domain}"
            verdict.ask(Action.REJECT, text, f"550 5.7.1 {text}")
        elif dmarc.policy in ("reject", "quarantine"):
            verdict.ask(Action.JUNK, f"DMARC {dmarc.policy} policy of {domain}")

    async def _dkim(self, raw: bytes, head_end: int
                    ) -> tuple[list[core_dkim.SignatureResult], str]:
        """Every DKIM-Signature checked in a worker thread (canonicalising and hashing 14 MB
        takes a CPU for a good part of a second, which the listener's loop must not give)."""
        def run() -> list[core_dkim.SignatureResult]:
            if not has_field(raw, head_end, _DKIM_SIGNATURE):
                return []  # dkimpy is not even loaded with the message
            return core_dkim.verify_signatures(raw, self._txt)
        try:
            return await asyncio.to_thread(run), ""
        except dns.exception.DNSException as e:
            return [], f"DNS {type(e).__name__}"
        except Exception as e:  # dkimpy on hostile input: a failed check, never a crash
            log.warning("DKIM verification failed: %s", e)
            return [], f"{type(e).__name__}"

    async def _arc(self, raw: bytes, head_end: int) -> str:
        """The ARC chain's status, in a worker thread, by `core.dkim.arc_verify`: our linear
        parse of the message and at most MAX_ARC_SETS sets (dkimpy's own `arc_verify` parses
        folded fields in quadratic time and follows a chain of any length)."""
        def run() -> str:
            if not has_field(raw, head_end, _ARC_SEAL):
                return "none"
            return core_dkim.arc_verify(raw, self._txt)
        try:
            return await asyncio.to_thread(run)
        except dns.exception.DNSException:
            return "temperror"
        except Exception as e:
            log.info("ARC verification failed: %s", e)
            return "fail"

    def _txt(self, name: bytes) -> bytes:
        """core.dkim's DNS function, on the blocking twin of the server's resolver."""
        return _txt_joined(self.sync, name)

    def _dmarc(self, envelope: SMTPEnvelope, from_domain: str | None,
               record: DMARCPolicy | DNSError | None,
               results: AuthResults) -> DMARCResult:
        if not from_domain:
            # RFC 7489 §6.6.1: no usable RFC5322.From domain, nothing to align on.
            return DMARCResult("none" if from_domain is None else "permerror")
        if isinstance(record, DNSError):
            return DMARCResult("temperror", from_domain)
        if record is None:
            return DMARCResult("none", from_domain)
        dkim_ok = any(r.valid and aligned(r.domain, from_domain, record.adkim)
                      for r in results.dkim)
        spf_mf = results.spf.get("mailfrom")
        mf_domain = (envelope.mail_from.rpartition("@")[2] if envelope.mail_from
                     else envelope.helo)
        spf_ok = bool(spf_mf and spf_mf.result == "pass"
                      and aligned(mf_domain, from_domain, record.aspf))
        if dkim_ok or spf_ok:
            return DMARCResult("pass", from_domain, "", record)
        policy = record.sp if record.domain != from_domain else record.p
        if record.pct < 100 and random.uniform(0, 100) >= record.pct:
            # §6.6.4: not sampled, apply the next less strict policy.
            policy = {"reject": "quarantine", "quarantine": "none"}.get(policy, policy)
        return DMARCResult("fail", from_domain, policy, record)

    async def _record(self, from_domain: str) -> DMARCPolicy | None:
        """§6.6.3: the From domain's record, else its organisational domain's."""
        org = organizational_domain(from_domain)
        for domain in dict.fromkeys([from_domain, org]):
            records = [r for r in await self.resolver.txt(f"_dmarc.{domain}")
                       if r.strip().startswith("v=DMARC1")]
            if len(records) == 1:
                return parse_dmarc(records[0], domain)
        return None

    def _resinfo(self, envelope: SMTPEnvelope, r: AuthResults) -> list[MethodResult]:
        out: list[MethodResult] = []
        if "mailfrom" in r.spf and envelope.mail_from:
            out.append(MethodResult("spf", r.spf["mailfrom"].result,
                                    [("smtp.mailfrom", envelope.mail_from)]))
        if "helo" in r.spf:
            out.append(MethodResult("spf", r.spf["helo"].result, [("smtp.helo", envelope.helo)]))
        if r.dkim_error:
            out.append(MethodResult("dkim", "temperror", reason=r.dkim_error))
        for sig in r.dkim:
            out.append(MethodResult("dkim", "pass" if sig.valid else "fail",
                                    [("header.d", sig.domain), ("header.s", sig.selector),
                                     ("header.a", sig.algorithm)]))
        if not r.dkim and not r.dkim_error:
            out.append(MethodResult("dkim", "none"))
        out.append(MethodResult("arc", r.arc))
        dmarc_props: Sequence[tuple[str, str]] = (
            [("header.from", r.dmarc.from_domain)] if r.dmarc.from_domain else [])
        reason = f"p={r.dmarc.policy}" if r.dmarc.result == "fail" else ""
        out.append(MethodResult("dmarc", r.dmarc.result, dmarc_props, reason))
        return out


def _from_domain(parsed: ParsedMessage) -> str | None:
    """The RFC5322.From domain; "" when From names several domains, None when none."""
    domains = {a.email.rpartition("@")[2].lower().rstrip(".") for a in parsed.from_
               if "@" in a.email}
    if len(domains) > 1:
        return ""
    return domains.pop() if domains else None
