"""DKIM signing and verification (RFC 6376), RSA and ed25519 (RFC 8463), on dkimpy.

dkimpy does the message parsing, canonicalisation and header selection for both algorithms and
the whole of rsa-sha256. Its own ed25519 code needs PyNaCl (the dkimpy[ed25519] extra), which
this project does not depend on, so ed25519-sha256 signatures are made and checked here with
`cryptography` over dkimpy's canonicalised data: the same bytes, the same wire format.

Line endings: a signature covers the message as it goes over SMTP, which is CRLF. dkimpy reads
LF and CRLF alike, but a bare CR would be kept inside a line here and turned into a line break
by some relay on the way, breaking the body hash. `sign` therefore signs `to_crlf(message)`:
send exactly that, with the returned header lines in front.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, get_args

import dkim
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from dkim.canonicalization import CanonicalizationPolicy, InvalidCanonicalizationPolicyError
from dkim.util import InvalidTagValueList, parse_tag_value

Algorithm = Literal["rsa-sha256", "ed25519-sha256"]

SIGNED_HEADERS: tuple[str, ...] = (
    "From", "To", "Cc", "Subject", "Date", "Message-ID", "Reply-To", "In-Reply-To",
    "References", "MIME-Version", "Content-Type", "Content-Transfer-Encoding", "List-*",
)
"""Signed when present (a name ending in "*" is a prefix); From is always signed once more
than it occurs, so that a second From cannot be added without breaking the signature. List-*
covers List-Unsubscribe and List-Unsubscribe-Post, which RFC 8058 requires to be signed."""

MIN_RSA_BITS = 1024
"""RFC 8301: verifiers reject smaller keys."""
MAX_RSA_BITS = 4096
"""RFC 8301: verifiers need not accept larger ones, and the record would not fit UDP DNS."""

MAX_PREFIX_NAMES = 16
"""Distinct field names a prefix ("List-*") signs: dkimpy looks each name up from the end of
the header, so thousands of distinct List-X fields would make signing quadratic."""

_CANON = b"relaxed/relaxed"
"""Relaxed headers survive re-folding by relays; relaxed bodies survive trailing-space edits."""
_LINE = 78


class DKIMError(ValueError):
    """The message or the key cannot be signed: a caller's bug, never a transient failure."""


@dataclass(frozen=True)
class DKIMKey:
    """`private_key` is what the store persists: a PEM RSA key (PKCS#1 or PKCS#8, both of which
    dkimpy reads) or, for ed25519, the base64 of the raw 32-byte seed (dkimpy's format)."""

    domain: str
    selector: str
    algorithm: Algorithm
    private_key: bytes

    def __post_init__(self) -> None:
        if self.algorithm not in get_args(Algorithm):
            raise DKIMError(f"unknown DKIM algorithm {self.algorithm!r}")
        for label, value in (("domain", self.domain), ("selector", self.selector)):
            if not value or not re.fullmatch(r"[A-Za-z0-9._-]+", value):
                raise DKIMError(f"invalid DKIM {label} {value!r}")


@dataclass(frozen=True)
class SignatureResult:
    """One DKIM-Signature header's outcome; inbound mail needs d= for DMARC alignment and
    Authentication-Results, not just a yes or no."""

    domain: str
    selector: str
    algorithm: str
    valid: bool


# --------------------------------------------------------------------------------------------
# Keys


def generate(
    domain: str, selector: str, algorithm: Algorithm = "rsa-sha256", bits: int = 2048
) -> DKIMKey:
    """`bits` applies to RSA only; ed25519 keys have one size."""
    if algorithm == "ed25519-sha256":
        seed = ed25519.Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
            serialization.NoEncryption())
        return DKIMKey(domain, selector, algorithm, base64.b64encode(seed))
    if not MIN_RSA_BITS <= bits <= MAX_RSA_BITS:
        raise DKIMError(f"RSA DKIM keys must have {MIN_RSA_BITS} to {MAX_RSA_BITS} bits")
    private = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption())
    return DKIMKey(domain, selector, algorithm, pem)


def _ed25519_private(key: DKIMKey) -> ed25519.Ed25519PrivateKey:
    try:
        seed = base64.b64decode(key.private_key.strip(), validate=True)
        return ed25519.Ed25519PrivateKey.from_private_bytes(seed)
    except ValueError as e:  # binascii.Error is a ValueError
        raise DKIMError("ed25519 DKIM key is not the base64 of a 32-byte seed") from e


def _rsa_private(key: DKIMKey) -> rsa.RSAPrivateKey:
    try:
        private = serialization.load_pem_private_key(key.private_key, password=None)
    except (ValueError, TypeError) as e:
        raise DKIMError("RSA DKIM key is not an unencrypted PEM private key") from e
    if not isinstance(private, rsa.RSAPrivateKey):
        raise DKIMError("DKIM key for rsa-sha256 is not an RSA key")
    return private


def dns_record(key: DKIMKey) -> tuple[str, str]:
    """(name, TXT value). The value is one string even past 255 characters (a 2048-bit RSA
    key is ~400): splitting into character-strings is the DNS layer's job."""
    name = f"{key.selector}._domainkey.{key.domain.rstrip('.')}"
    if key.algorithm == "ed25519-sha256":
        public = _ed25519_private(key).public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        kind = "ed25519"
    else:
        public = _rsa_private(key).public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        kind = "rsa"
    return name, f"v=DKIM1; k={kind}; p={base64.b64encode(public).decode('ascii')}"


def zone_line(name: str, value: str) -> str:
    """The record as a line of a zone file: `name. IN TXT "..." "..."`, the value cut into
    character-strings of at most 255 octets (RFC 1035 §3.3.14; a 2048-bit RSA key's value
    is ~400), which verifiers join again (RFC 6376 §3.6.2.2). The value is ASCII base64 and
    tags: no quote or backslash to escape."""
    data = value.encode("ascii")
    strings = [data[i:i + 255].decode("ascii") for i in range(0, len(data), 255)] or [""]
    return f"{name}. IN TXT " + " ".join(f'"{s}"' for s in strings)


def selector_for_rotation(
    now: datetime, algorithm: Algorithm = "rsa-sha256", *, taken: Collection[str] = ()
) -> str:
    """A dated selector, e.g. "my202611" (RSA) or "my202611e" (ed25519): dual signing needs a
    DNS name per key, and a second rotation in one month must not reuse a published name."""
    when = now.astimezone(UTC) if now.tzinfo else now
    base = f"my{when:%Y%m}" + ("e" if algorithm == "ed25519-sha256" else "")
    used = {t.lower() for t in taken}
    candidate, n = base, 1
    while candidate in used:
        n += 1
        candidate = f"{base}-{n}"
    return candidate


# --------------------------------------------------------------------------------------------
# Signing


_LINE_END = re.compile(rb"\r\n|\r|\n")


def to_crlf(message: bytes) -> bytes:
    """The message as it goes over SMTP: every bare LF or bare CR becomes CRLF (RFC 5322 §2.3
    allows CR and LF only as a pair). Idempotent."""
    return _LINE_END.sub(b"\r\n", message)


_HEADER_NAME = re.compile(rb"([\x21-\x7e]+?):")
_FIELD_REST = re.compile(rb"[^\n]*(?:\n[ \t][^\n]*)*")


def split_message(message: bytes) -> tuple[list[list[bytes]], bytes]:
    """The header fields ([name, value with its CRLF-ended continuation lines]) and the CRLF
    body, exactly as dkimpy's `rfc822_parse` gives them, in linear time: dkimpy appends every
    continuation line to the field so far, so one field folded over many lines is quadratic
    (seconds for a few MB). Raises dkim.MessageFormatError where dkimpy does, and also for a
    continuation line before the first field (where dkimpy fails with an IndexError)."""
    names: list[bytes] = []
    values: list[list[bytes]] = []
    pos, end = 0, len(message)
    while pos < end:
        nl = message.find(b"\n", pos)
        line_end = end if nl < 0 else nl
        line = message[pos:line_end]
        if not line or (line == b"\r" and nl >= 0):
            pos = line_end + 1
            break
        m = None if line[:1] in (b" ", b"\t") else _HEADER_NAME.match(line)
        if m is not None or (line[:1] in (b" ", b"\t") and values):
            start = pos + (m.end() if m is not None else 0)
            rest = _FIELD_REST.match(message, start)
            field_end = rest.end() if rest is not None else line_end
            value = message[start:field_end]
            if field_end < end and value.endswith(b"\r"):
                value = value[:-1]  # the CR of the line break dkimpy splits at
            if m is not None:
                names.append(m.group(1))
                values.append([])
            values[-1] += (_crlf(value), b"\r\n")
            pos = field_end + 1
        elif line.startswith(b"From "):
            pos = line_end + 1
        else:
            raise dkim.MessageFormatError(
                f"Unexpected characters in RFC822 header: {line[:80]!r}")
    headers = [[name, b"".join(value)] for name, value in zip(names, values, strict=True)]
    return headers, _crlf(message[pos:]) if pos < end else b""


def _crlf(data: bytes) -> bytes:
    """Every line break as CRLF (what `\r?\n` -> CRLF does), by two bytes.replace: the regex
    substitution held the GIL for 0.25 s on a 14 MB field, stalling the event loop."""
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def _load(signer: Any, message: bytes) -> Any:
    """`signer` (a dkimpy DKIM or ARC made without a message) with `message` loaded by our
    linear parser instead of dkimpy's."""
    signer.headers, signer.body = split_message(message)
    return signer


def _parse(message: bytes) -> Any:
    try:
        return _load(dkim.DKIM(None, linesep=b"\r\n"), message)
    except dkim.DKIMException as e:
        raise DKIMError(f"message cannot be parsed for DKIM: {e}") from e


def _include_headers(parsed: Any, wanted: Sequence[str]) -> list[bytes]:
    """Present headers in message order, each occurrence once, plus From once more."""
    exact = {w.lower() for w in wanted if not w.endswith("*")} | {"from"}
    prefixes = tuple(w[:-1].lower() for w in wanted if w.endswith("*"))
    names = [bytes(name).lower() for name, _value in parsed.headers]
    if b"from" not in names:
        raise DKIMError("message has no From header to sign")
    chosen: list[bytes] = []
    by_prefix: set[bytes] = set()
    for n in names:
        text = n.decode("ascii")
        if text in exact:
            chosen.append(n)
        elif prefixes and text.startswith(prefixes) and (
                n in by_prefix or len(by_prefix) < MAX_PREFIX_NAMES):
            by_prefix.add(n)
            chosen.append(n)
    return [*chosen, b"from"]


def sign(
    message: bytes, keys: Sequence[DKIMKey], *, headers: Sequence[str] = SIGNED_HEADERS
) -> bytes:
    """DKIM-Signature header lines, one per key in the given order, each CRLF-terminated, to
    prepend to `to_crlf(message)`. Two keys (RSA and ed25519) give the dual signature RFC 8463
    recommends: receivers that do not know ed25519 ignore that one."""
    message = to_crlf(message)
    out: list[bytes] = []
    for key in keys:
        parsed = _parse(message)
        include = _include_headers(parsed, headers)
        if key.algorithm == "ed25519-sha256":
            out.append(_sign_ed25519(parsed, key, include))
            continue
        _rsa_private(key)  # a clear error for a bad key; dkimpy's are cryptic
        try:
            line = parsed.sign(
                key.selector.encode("ascii"), key.domain.encode("ascii"),
                key.private_key.replace(b"\r\n", b"\n"),
                signature_algorithm=b"rsa-sha256", canonicalize=tuple(_CANON.split(b"/")),
                include_headers=include)
        except dkim.DKIMException as e:
            raise DKIMError(f"DKIM signing failed: {e}") from e
        out.append(bytes(line))
    return b"".join(out)


def _sign_ed25519(parsed: Any, key: DKIMKey, include: list[bytes]) -> bytes:
    """RFC 8463: the RFC 6376 header hash (SHA-256) is signed with PureEdDSA. Same tags as
    dkimpy writes for RSA, so both signatures of a message read alike."""
    policy = CanonicalizationPolicy.from_c_value(_CANON)
    body_hash = hashlib.sha256(policy.canonicalize_body(parsed.body)).digest()
    tags = [
        ("v", "1"), ("a", key.algorithm), ("c", _CANON.decode()), ("d", key.domain),
        ("i", "@" + key.domain), ("q", "dns/txt"), ("s", key.selector),
        ("t", str(int(datetime.now(UTC).timestamp()))),
        ("h", " : ".join(n.decode("ascii") for n in include)),
        ("bh", base64.b64encode(body_hash).decode("ascii")), ("b", ""),
    ]
    unsigned = "; ".join(f"{k}={v}" for k, v in tags)
    hasher = hashlib.sha256()
    dkim.hash_headers(hasher, policy, policy.canonicalize_headers(parsed.headers), include,
                      (b"DKIM-Signature", b" " + unsigned.encode("ascii")), {})
    signature = _ed25519_private(key).sign(hasher.digest())
    return _fold(unsigned.split(" "), base64.b64encode(signature).decode("ascii"))


def _fold(words: list[str], signature: str) -> bytes:
    """Breaks only where the unsigned value has a space (relaxed canonicalisation turns the
    fold back into that space) and inside b=, whose whitespace verifiers strip: the folded
    header hashes exactly as the unfolded one that was signed."""
    lines = ["DKIM-Signature:"]
    for word in words:
        if len(lines[-1]) + 1 + len(word) > _LINE and lines[-1].strip():
            lines.append("")
        lines[-1] += " " + word
    rest = signature
    while rest:
        room = _LINE - len(lines[-1])
        if room < 8:
            lines.append(" ")
            room = _LINE - 1
        lines[-1], rest = lines[-1] + rest[:room], rest[room:]
    return ("\r\n".join(lines) + "\r\n").encode("ascii")


# --------------------------------------------------------------------------------------------
# Verification


DNSFunc = Callable[[bytes], bytes]
"""Takes the record name as `dns_record` gives it (b"sel._domainkey.example.com", no final
dot); answers the TXT strings joined, or b"" when there is none. A DNS failure should raise:
it propagates, because a temporary error is not a bad signature."""

MAX_SIGNATURES = 10
"""DKIM-Signature fields checked per message, from the top (RFC 6376 §6.1 lets a verifier
limit them against denial of service): each costs a DNS query and a pass over the message."""
MAX_SIGNED_FIELDS = 256
"""A signature whose h= names more fields is not checked (and fails): real signers name a few
dozen, and dkimpy's header selection costs h= entries times header fields."""
MAX_SIGNED_BYTES = 1 << 20
"""A signature covering more header octets than this fails unchecked: each of up to
MAX_SIGNATURES signatures canonicalises what it covers, and a sender could name a 14 MB field."""
MAX_ARC_SETS = 50
"""RFC 8617 §4.2.1: ARC instance numbers run from 1 to 50."""

_ACCEPTED = (b"rsa-sha256", b"ed25519-sha256")
"""RFC 8301: rsa-sha1 signatures must not be considered valid."""


def verify(message: bytes, dnsfunc: DNSFunc) -> bool:
    """True when at least one signature verifies (RFC 6376 §6.1: one good signature is enough,
    and an ed25519 signature an older verifier cannot check must not spoil its RSA twin)."""
    return any(r.valid for r in verify_signatures(message, dnsfunc))


def verify_signatures(message: bytes, dnsfunc: DNSFunc) -> list[SignatureResult]:
    """Each DKIM-Signature header, top to bottom, checked on its own."""
    try:
        parsed = _load(dkim.DKIM(None, minkey=MIN_RSA_BITS), message)
    except dkim.DKIMException:
        return []

    def lookup(name: bytes, timeout: int = 5) -> bytes:
        return dnsfunc(bytes(name).rstrip(b"."))

    every = parsed.headers
    names = [bytes(name).lower() for name, _ in every]
    count = min(names.count(b"dkim-signature"), MAX_SIGNATURES)
    results = []
    for idx in range(count):
        parsed.headers = every
        try:
            prep = parsed.verify_headerprep(idx)
        except dkim.DKIMException:
            results.append(SignatureResult("", "", "", False))
            continue
        sig, include, sig_headers = prep
        if len(include) > MAX_SIGNED_FIELDS:
            results.append(SignatureResult("", "", "", False))
            continue
        # Only the fields h= names (and the signatures, so that idx still counts them): what
        # dkimpy selects is the same, and its per-name search from the end of the header and
        # its canonicalisation no longer cost the whole header per signature.
        wanted = {*include, b"dkim-signature"}
        parsed.headers = [f for f, n in zip(every, names, strict=True) if n in wanted]
        if sum(len(v) for n, v in parsed.headers if bytes(n).lower() in include) \
                > MAX_SIGNED_BYTES:
            results.append(SignatureResult("", "", "", False))
            continue
        algorithm = bytes(sig[b"a"])
        valid = False
        try:
            if algorithm == b"ed25519-sha256":
                valid = _verify_ed25519(parsed, sig, include, sig_headers[idx], lookup)
            elif algorithm in _ACCEPTED:
                valid = bool(parsed.verify(idx=idx, dnsfunc=lookup))
        except dkim.DKIMException:
            valid = False
        results.append(SignatureResult(
            bytes(sig[b"d"]).decode("ascii", "replace"),
            bytes(sig[b"s"]).decode("ascii", "replace"),
            algorithm.decode("ascii", "replace"), valid))
    return results


_ARC_INSTANCE = re.compile(rb"(?:^|[;\s])i\s*=\s*(\d+)")


def arc_verify(message: bytes, dnsfunc: DNSFunc) -> str:
    """The ARC chain validation status (RFC 8617 §5.2): "pass", "fail" or "none", by dkimpy
    over our linear parse; a chain claiming more than MAX_ARC_SETS sets fails unchecked (each
    set is a DNS query and a pass over the header)."""
    try:
        arc = _load(dkim.ARC(None, minkey=MIN_RSA_BITS), message)
    except dkim.DKIMException:
        return "fail"
    seals = [bytes(v) for n, v in arc.headers if bytes(n).lower() == b"arc-seal"]
    if not seals:
        return "none"
    instances = [int(m.group(1)[:6]) for v in seals if (m := _ARC_INSTANCE.search(v))]
    if len(seals) > MAX_ARC_SETS or any(i > MAX_ARC_SETS for i in instances):
        return "fail"

    # Only the ARC sets and the fields their message signatures name: dkimpy canonicalises
    # every field it is given several times over (about a second per pass for a 14 MB one).
    signed: set[bytes] = set()
    for name, value in arc.headers:
        if bytes(name).lower() == b"arc-message-signature":
            try:
                h = parse_tag_value(bytes(value)).get(b"h", b"")
            except InvalidTagValueList:
                return "fail"
            signed |= {x.strip().lower() for x in bytes(h).split(b":") if x.strip()}
    arc.headers = [(n, v) for n, v in arc.headers
                   if bytes(n).lower().startswith(b"arc-") or bytes(n).lower() in signed]
    if sum(len(v) for n, v in arc.headers
           if not bytes(n).lower().startswith(b"arc-")) > MAX_SIGNED_BYTES:
        return "fail"  # as a DKIM signature covering that much (MAX_SIGNED_BYTES)

    def lookup(name: bytes, timeout: int = 5) -> bytes:
        return dnsfunc(bytes(name).rstrip(b"."))

    try:
        cv, _results, _reason = arc.verify(dnsfunc=lookup)
    except dkim.DKIMException:
        return "fail"
    return bytes(cv).decode("ascii", "replace").lower() if cv else "fail"


def _ed25519_public(record: bytes) -> ed25519.Ed25519PublicKey | None:
    try:
        tags = parse_tag_value(record)
    except InvalidTagValueList:
        return None
    if tags.get(b"v", b"DKIM1") != b"DKIM1" or tags.get(b"k") != b"ed25519":
        return None
    if b"h" in tags and b"sha256" not in re.split(rb"\s*:\s*", tags[b"h"]):
        return None
    if tags.get(b"s", b"*") not in (b"*", b"email"):
        return None
    try:
        raw = base64.b64decode(re.sub(rb"\s+", b"", tags.get(b"p", b"")), validate=True)
        return ed25519.Ed25519PublicKey.from_public_bytes(raw)  # an empty p= (revoked) fails
    except ValueError:
        return None


def _verify_ed25519(
    parsed: Any, sig: dict[bytes, bytes], include: list[bytes],
    sig_header: tuple[bytes, bytes], lookup: Callable[[bytes], bytes],
) -> bool:
    """The mirror of `_sign_ed25519`, and of dkimpy's RSA checks (l=, the extra From)."""
    public = _ed25519_public(lookup(sig[b"s"] + b"._domainkey." + sig[b"d"] + b".") or b"")
    if public is None:
        return False
    try:
        policy = CanonicalizationPolicy.from_c_value(sig.get(b"c", b"simple/simple"))
        body = policy.canonicalize_body(parsed.body)
        if b"l" in sig:
            body = body[: int(sig[b"l"])]
        expected = base64.b64decode(re.sub(rb"\s+", b"", sig[b"bh"]))
        signature = base64.b64decode(re.sub(rb"\s+", b"", sig[b"b"]))
    except (ValueError, InvalidCanonicalizationPolicyError):  # bad c=, l= or base64
        return False
    if hashlib.sha256(body).digest() != expected:
        return False
    headers = [*include, b"from"] if b"from" in include else list(include)
    hasher = hashlib.sha256()
    dkim.hash_headers(hasher, policy, policy.canonicalize_headers(parsed.headers), headers,
                      sig_header, sig)
    try:
        public.verify(signature, hasher.digest())
    except InvalidSignature:
        return False
    return True
