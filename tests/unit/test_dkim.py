"""DKIM: generate -> sign -> verify round trips against a fake DNS built from dns_record."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta, timezone

import dkim as dkimpy
import pytest
from cryptography.hazmat.primitives import serialization

from mailyard.core import dkim
from mailyard.core.dkim import DKIMError, DKIMKey

MESSAGE = (
    b"From: Alice Example <alice@example.com>\r\n"
    b"To: Bob <bob@example.net>\r\n"
    b"Cc: carol@example.org\r\n"
    b"Subject: Quarterly numbers, as promised\r\n"
    b"Date: Mon, 02 Nov 2026 10:00:00 +0000\r\n"
    b"Message-ID: <20261102100000.abc@example.com>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: 8bit\r\n"
    b"List-Unsubscribe: <mailto:unsub@example.com>\r\n"
    b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
    b"X-Not-Signed: whatever\r\n"
    b"\r\n"
    b"Hi Bob,\r\n"
    b"\r\n"
    b"the numbers are attached. \xe2\x82\xac 12\r\n"
    b"-- \r\n"
    b"Alice\r\n"
)


@pytest.fixture(scope="module")
def rsa_key() -> DKIMKey:
    return dkim.generate("example.com", "rsa1", "rsa-sha256", 2048)


@pytest.fixture(scope="module")
def ed_key() -> DKIMKey:
    return dkim.generate("example.com", "ed1", "ed25519-sha256")


def dns_for(keys: Iterable[DKIMKey]) -> dkim.DNSFunc:
    records = dict(dkim.dns_record(k) for k in keys)

    def lookup(name: bytes) -> bytes:
        return records.get(name.decode("ascii"), "").encode("ascii")

    return lookup


def signed(message: bytes, keys: list[DKIMKey]) -> bytes:
    return dkim.sign(message, keys) + dkim.to_crlf(message)


def tags(header_line: bytes) -> dict[str, str]:
    value = re.sub(rb"\r\n[ \t]+", b" ", header_line).decode().split(":", 1)[1]
    return {k.strip(): v.strip() for k, v in (t.split("=", 1) for t in value.split(";"))}


def sig_lines(sig: bytes) -> list[bytes]:
    return [b"DKIM-Signature:" + s for s in sig.split(b"DKIM-Signature:")[1:]]


# ---------------------------------------------------------------------------------------------
# Round trips


@pytest.mark.parametrize("which", ["rsa", "ed25519"])
def test_sign_verify_single(which: str, rsa_key: DKIMKey, ed_key: DKIMKey) -> None:
    key = rsa_key if which == "rsa" else ed_key
    message = signed(MESSAGE, [key])
    assert dkim.verify(message, dns_for([key]))
    [result] = dkim.verify_signatures(message, dns_for([key]))
    assert result == dkim.SignatureResult("example.com", key.selector, key.algorithm, True)


def test_dual_signing_both_verify(rsa_key: DKIMKey, ed_key: DKIMKey) -> None:
    sig = dkim.sign(MESSAGE, [rsa_key, ed_key])
    lines = sig_lines(sig)
    assert len(lines) == 2
    assert [tags(line)["a"] for line in lines] == ["rsa-sha256", "ed25519-sha256"]
    results = dkim.verify_signatures(sig + MESSAGE, dns_for([rsa_key, ed_key]))
    assert [(r.algorithm, r.valid) for r in results] == [
        ("rsa-sha256", True), ("ed25519-sha256", True)]


def test_dual_signing_one_key_unpublished_still_verifies(
        rsa_key: DKIMKey, ed_key: DKIMKey) -> None:
    message = signed(MESSAGE, [rsa_key, ed_key])
    results = dkim.verify_signatures(message, dns_for([rsa_key]))
    assert [r.valid for r in results] == [True, False]
    assert dkim.verify(message, dns_for([rsa_key]))


def test_signature_header_format(rsa_key: DKIMKey, ed_key: DKIMKey) -> None:
    sig = dkim.sign(MESSAGE, [rsa_key, ed_key])
    assert sig.endswith(b"\r\n")
    assert b"\n" not in sig.replace(b"\r\n", b"")
    for line in sig_lines(sig):
        assert all(len(physical) <= 78 for physical in line.split(b"\r\n"))
        t = tags(line)
        assert t["c"] == "relaxed/relaxed"
        assert t["d"] == "example.com"
        assert "l" not in t
        assert abs(int(t["t"]) - datetime.now(UTC).timestamp()) < 300
        signed_headers = [h.strip() for h in t["h"].split(":")]
        assert signed_headers.count("from") == 2  # over-signed
        assert set(signed_headers) == {
            "from", "to", "cc", "subject", "date", "message-id", "mime-version",
            "content-type", "content-transfer-encoding", "list-unsubscribe",
            "list-unsubscribe-post"}


def test_absent_headers_are_not_listed(ed_key: DKIMKey) -> None:
    minimal = b"From: a@example.com\r\nSubject: x\r\n\r\nbody\r\n"
    sig = dkim.sign(minimal, [ed_key])
    assert tags(sig)["h"].replace(" ", "") == "from:subject:from"
    assert dkim.verify(sig + minimal, dns_for([ed_key]))


def test_custom_header_list(rsa_key: DKIMKey) -> None:
    sig = dkim.sign(MESSAGE, [rsa_key], headers=["Subject", "X-Not-*"])
    assert tags(sig)["h"].replace(" ", "") == "from:subject:x-not-signed:from"
    assert dkim.verify(sig + MESSAGE, dns_for([rsa_key]))


def test_no_keys_no_signature() -> None:
    assert dkim.sign(MESSAGE, []) == b""


def test_message_without_from_is_refused(rsa_key: DKIMKey) -> None:
    with pytest.raises(DKIMError):
        dkim.sign(b"Subject: x\r\n\r\nbody\r\n", [rsa_key])


# ---------------------------------------------------------------------------------------------
# Tampering


@pytest.fixture(scope="module")
def both(rsa_key: DKIMKey, ed_key: DKIMKey) -> list[DKIMKey]:
    return [rsa_key, ed_key]


def assert_all_invalid(message: bytes, keys: list[DKIMKey]) -> None:
    results = dkim.verify_signatures(message, dns_for(keys))
    assert len(results) == len(keys)
    assert not any(r.valid for r in results)
    assert not dkim.verify(message, dns_for(keys))


def test_tampered_body_fails(both: list[DKIMKey]) -> None:
    message = signed(MESSAGE, both).replace(b"\xe2\x82\xac 12", b"\xe2\x82\xac 13")
    assert_all_invalid(message, both)


def test_appended_body_fails(both: list[DKIMKey]) -> None:
    assert_all_invalid(signed(MESSAGE, both) + b"P.S. click here\r\n", both)


def test_tampered_subject_fails(both: list[DKIMKey]) -> None:
    message = signed(MESSAGE, both).replace(b"as promised", b"as promisee")
    assert_all_invalid(message, both)


def test_second_from_fails(both: list[DKIMKey]) -> None:
    message = signed(MESSAGE, both)
    extra = b"From: ceo@example.com\r\n"
    above = message.replace(b"From: Alice", extra + b"From: Alice", 1)
    below = message.replace(b"X-Not-Signed:", extra + b"X-Not-Signed:", 1)
    for forged in (above, below):
        assert forged.count(b"\nFrom: ") == 2
        assert_all_invalid(forged, both)


def test_unsigned_header_may_be_added(both: list[DKIMKey]) -> None:
    message = b"Received: from relay\r\n" + signed(MESSAGE, both)
    assert all(r.valid for r in dkim.verify_signatures(message, dns_for(both)))


def test_wrong_dns_key_fails(rsa_key: DKIMKey, ed_key: DKIMKey) -> None:
    other_rsa = DKIMKey("example.com", "rsa1", "rsa-sha256",
                        dkim.generate("x.test", "s", bits=1024).private_key)
    other_ed = dkim.generate("example.com", "ed1", "ed25519-sha256")
    assert_all_invalid(signed(MESSAGE, [rsa_key, ed_key]), [other_rsa, other_ed])


def test_revoked_and_malformed_records_fail(ed_key: DKIMKey, rsa_key: DKIMKey) -> None:
    message = signed(MESSAGE, [rsa_key, ed_key])
    for answer in (b"", b"v=DKIM1; k=ed25519; p=", b"v=DKIM1; k=rsa; p=", b"garbage",
                   b"v=DKIM1; k=ed25519; p=!!!", b"v=DKIM1; k=ed25519; s=tlsrpt; p=AAAA"):

        def lookup(_name: bytes, a: bytes = answer) -> bytes:
            return a

        results = dkim.verify_signatures(message, lookup)
        assert [r.valid for r in results] == [False, False], answer


def test_rsa_sha1_is_not_accepted(rsa_key: DKIMKey) -> None:
    """RFC 8301: even a correct rsa-sha1 signature is not valid."""
    sha1 = dkimpy.sign(MESSAGE, b"rsa1", b"example.com", rsa_key.private_key,
                       signature_algorithm=b"rsa-sha1")
    assert not dkim.verify(sha1 + MESSAGE, dns_for([rsa_key]))


def test_unsigned_and_unparsable_messages() -> None:
    assert dkim.verify_signatures(MESSAGE, dns_for([])) == []
    assert not dkim.verify(MESSAGE, dns_for([]))
    assert dkim.verify_signatures(b"\x00not a header\r\n\r\n", dns_for([])) == []
    broken = b"DKIM-Signature: v=1; a=rsa-sha256; nonsense\r\n" + MESSAGE
    [result] = dkim.verify_signatures(broken, dns_for([]))
    assert not result.valid


def test_dns_errors_propagate(ed_key: DKIMKey) -> None:
    """A resolver failure is a temporary error for the caller, not a failed signature."""

    def failing(_name: bytes) -> bytes:
        raise TimeoutError("resolver timed out")

    with pytest.raises(TimeoutError):
        dkim.verify(signed(MESSAGE, [ed_key]), failing)


# ---------------------------------------------------------------------------------------------
# Relaxed canonicalisation


def refold(message: bytes) -> bytes:
    head, _, body = message.partition(b"\r\n\r\n")
    head = head.replace(b"Subject: Quarterly numbers, as promised",
                        b"Subject:   Quarterly\r\n\t numbers,   as\r\n  promised  ")
    head = head.replace(b"To: Bob <bob@example.net>", b"to:Bob\r\n <bob@example.net>")
    body = body.replace(b"Hi Bob,", b"Hi   Bob,\t ")
    return head + b"\r\n\r\n" + body + b"\r\n\r\n"


def test_relaxed_survives_refolding_and_whitespace(both: list[DKIMKey]) -> None:
    message = refold(signed(MESSAGE, both))
    assert message != signed(MESSAGE, both)
    assert all(r.valid for r in dkim.verify_signatures(message, dns_for(both)))


def test_signature_header_refolded_by_a_relay(both: list[DKIMKey]) -> None:
    sig = dkim.sign(MESSAGE, both)
    unfolded = re.sub(rb"\r\n[ \t]+", b" ", sig.rstrip(b"\r\n")).replace(
        b" DKIM-Signature:", b"\r\nDKIM-Signature:") + b"\r\n"
    assert unfolded.count(b"\r\n") == 2
    results = dkim.verify_signatures(unfolded + MESSAGE, dns_for(both))
    assert all(r.valid for r in results)


# ---------------------------------------------------------------------------------------------
# Line endings


def test_bare_lf_is_normalised(both: list[DKIMKey]) -> None:
    lf = MESSAGE.replace(b"\r\n", b"\n")
    sig = dkim.sign(lf, both)
    assert b"\r\n" in sig and b"\n" not in sig.replace(b"\r\n", b"")
    assert all(r.valid for r in dkim.verify_signatures(sig + dkim.to_crlf(lf), dns_for(both)))
    assert dkim.to_crlf(lf) == MESSAGE


def test_bare_cr_is_normalised(both: list[DKIMKey]) -> None:
    odd = MESSAGE.replace(b"Hi Bob,\r\n", b"Hi Bob,\r")
    sig = dkim.sign(odd, both)
    on_the_wire = dkim.to_crlf(odd)
    assert b"Hi Bob,\r\n" in on_the_wire
    assert all(r.valid for r in dkim.verify_signatures(sig + on_the_wire, dns_for(both)))


def test_to_crlf_idempotent() -> None:
    assert dkim.to_crlf(b"a\nb\r\nc\rd\r\n\n") == b"a\r\nb\r\nc\r\nd\r\n\r\n"
    assert dkim.to_crlf(MESSAGE) == MESSAGE


# ---------------------------------------------------------------------------------------------
# Keys and DNS records


def test_rsa_record(rsa_key: DKIMKey) -> None:
    name, value = dkim.dns_record(rsa_key)
    assert name == "rsa1._domainkey.example.com"
    assert value.startswith("v=DKIM1; k=rsa; p=MIIB")
    assert len(value) > 255  # one string: the DNS layer splits it
    assert '"' not in value and "\n" not in value
    der = base64.b64decode(value.split("p=", 1)[1])
    public = serialization.load_der_public_key(der)
    assert public.key_size == 2048  # type: ignore[union-attr]


def test_ed25519_record(ed_key: DKIMKey) -> None:
    name, value = dkim.dns_record(ed_key)
    assert name == "ed1._domainkey.example.com"
    assert value.startswith("v=DKIM1; k=ed25519; p=")
    assert len(base64.b64decode(value.split("p=", 1)[1])) == 32


def test_key_bytes_round_trip(rsa_key: DKIMKey, ed_key: DKIMKey) -> None:
    """What the store persists (the PEM, the base64 seed) rebuilds a working key."""
    assert rsa_key.private_key.startswith(b"-----BEGIN RSA PRIVATE KEY-----")
    assert len(base64.b64decode(ed_key.private_key, validate=True)) == 32
    stored = [(k.domain, k.selector, k.algorithm, bytes(k.private_key))
              for k in (rsa_key, ed_key)]
    restored = [DKIMKey(*row) for row in stored]
    assert restored == [rsa_key, ed_key]
    assert [dkim.dns_record(k) for k in restored] == [dkim.dns_record(rsa_key),
                                                       dkim.dns_record(ed_key)]
    message = signed(MESSAGE, restored)
    assert all(r.valid for r in dkim.verify_signatures(message, dns_for([rsa_key, ed_key])))


def test_pkcs8_and_crlf_pem_are_accepted(rsa_key: DKIMKey) -> None:
    private = serialization.load_pem_private_key(rsa_key.private_key, password=None)
    pkcs8 = private.private_bytes(serialization.Encoding.PEM,
                                  serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption())
    for pem in (pkcs8, rsa_key.private_key.replace(b"\n", b"\r\n")):
        key = DKIMKey("example.com", "rsa1", "rsa-sha256", pem)
        assert dkim.dns_record(key) == dkim.dns_record(rsa_key)
        assert dkim.verify(signed(MESSAGE, [key]), dns_for([rsa_key]))


def test_bad_keys_are_refused() -> None:
    with pytest.raises(DKIMError):
        dkim.sign(MESSAGE, [DKIMKey("example.com", "s", "ed25519-sha256", b"c2hvcnQ=")])
    with pytest.raises(DKIMError):
        dkim.sign(MESSAGE, [DKIMKey("example.com", "s", "rsa-sha256", b"not a pem")])
    ed_seed = dkim.generate("example.com", "s", "ed25519-sha256").private_key
    with pytest.raises(DKIMError):
        dkim.dns_record(DKIMKey("example.com", "s", "rsa-sha256", ed_seed))
    with pytest.raises(DKIMError):
        DKIMKey("example.com", "bad selector", "rsa-sha256", b"")
    with pytest.raises(DKIMError):
        DKIMKey("example.com", "s", "rsa-sha1", b"")  # type: ignore[arg-type]
    for bits in (512, 8192):
        with pytest.raises(DKIMError):
            dkim.generate("example.com", "s", bits=bits)


def test_selector_for_rotation() -> None:
    now = datetime(2026, 11, 30, 23, 30, tzinfo=UTC)
    assert dkim.selector_for_rotation(now) == "my202611"
    assert dkim.selector_for_rotation(now, "ed25519-sha256") == "my202611e"
    ahead = now.astimezone(timezone(timedelta(hours=3)))  # already December locally
    assert dkim.selector_for_rotation(ahead) == "my202611"
    assert dkim.selector_for_rotation(now.replace(tzinfo=None)) == "my202611"
    assert dkim.selector_for_rotation(now, taken=["my202611"]) == "my202611-2"
    assert dkim.selector_for_rotation(now, taken={"MY202611", "my202611-2"}) == "my202611-3"
    selector = dkim.selector_for_rotation(now)
    assert DKIMKey("example.com", selector, "rsa-sha256", b"").selector == selector


# A message signed by dkimpy's own ed25519 code (with PyNaCl, which this project does not
# install), recorded once: ours must verify what the reference implementation produces.
KAT_SEED = b"VVbZ3dpwHNL0oJR30C9aUqgDQqBIVwLVA5c6W0Zmtog="
KAT_RECORD = "v=DKIM1; k=ed25519; p=PfIkHcg6WVYX2bra3gfn0Aeqjoe6Q2ZwWN8GhUOyZig="
KAT_MESSAGE = (
    b"From: Joe <joe@example.org>\r\nTo: Jane <jane@example.net>\r\nSubject: Kickoff at noon\r\n"
    b"Date: Sun, 01 Nov 2026 12:00:00 +0000\r\nMessage-ID: <kat.1@example.org>\r\n\r\n"
    b"See you there.  \r\n\r\n"
)
KAT_RELAXED = (
    b"DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed; d=example.org;\r\n"
    b" i=@example.org; q=dns/txt; s=kat; t=1795923733; h=from : to : subject\r\n"
    b" : date : message-id : from;\r\n"
    b" bh=K47clZLy3SkSvn80F8IT587cmsRu+P9V0H0ghNqLqIo=;\r\n"
    b" b=aJsWcqcOpiqrwVCZysyI5+yfiZo3zf5Nj5fTPif/Z1DfBJ8GHUL7GIeljP9aVJRmFmjhL\r\n"
    b" qeb0gJqCMGQNZVECw==\r\n"
)
KAT_SIMPLE = (
    b"DKIM-Signature: v=1; a=ed25519-sha256; c=simple/simple; d=example.org;\r\n"
    b" i=@example.org; q=dns/txt; s=kat; t=1795923733; h=from : to : subject\r\n"
    b" : from; bh=8NF7QaRoTPO6LTivFD4YWw9jABL5ZoN3yvrCFoSVOuo=;\r\n"
    b" b=BsEB4wugl7c1QEi17YiioWgvtO82O0a7HyPjyJW5vpVgxINBtjc8+33HvldO1NbCnP7eh\r\n"
    b" nn7o/JLpPLAySeXDA==\r\n"
)


def kat_dns(name: bytes) -> bytes:
    return KAT_RECORD.encode() if name == b"kat._domainkey.example.org" else b""


def test_dkimpy_ed25519_signatures_verify() -> None:
    results = dkim.verify_signatures(KAT_RELAXED + KAT_SIMPLE + KAT_MESSAGE, kat_dns)
    assert [(r.domain, r.selector, r.valid) for r in results] == [
        ("example.org", "kat", True), ("example.org", "kat", True)]
    tampered = KAT_RELAXED + KAT_MESSAGE.replace(b"noon", b"one")
    assert not dkim.verify(tampered, kat_dns)


def test_known_key_and_body_hash() -> None:
    key = DKIMKey("example.org", "kat", "ed25519-sha256", KAT_SEED)
    assert dkim.dns_record(key) == ("kat._domainkey.example.org", KAT_RECORD)
    ours = dkim.sign(KAT_MESSAGE, [key], headers=["From", "To", "Subject", "Date", "Message-ID"])
    assert tags(ours)["bh"] == tags(KAT_RELAXED)["bh"]
    assert tags(ours)["h"] == tags(KAT_RELAXED)["h"]
    assert dkim.verify(ours + KAT_MESSAGE, kat_dns)


@pytest.mark.parametrize("algorithm", ["rsa-sha256", "ed25519-sha256"])
def test_the_zone_line_cuts_the_value_into_255_octet_strings(algorithm: str) -> None:
    """A 2048-bit RSA record's value (~400 octets) is two character-strings (RFC 1035
    §3.3.14: at most 255 octets each) that join back into the value; ed25519's fits in one."""
    key = dkim.generate("example.test", "s1", algorithm)  # type: ignore[arg-type]
    name, value = dkim.dns_record(key)
    line = dkim.zone_line(name, value)
    head, _, rest = line.partition(" IN TXT ")
    assert head == "s1._domainkey.example.test."
    strings = re.findall(r'"([^"]*)"', rest)
    assert "".join(strings) == value
    assert all(len(s) <= 255 for s in strings)
    assert rest == " ".join(f'"{s}"' for s in strings)
    assert len(strings) == (len(value) + 254) // 255
    assert len(strings) == (2 if algorithm == "rsa-sha256" else 1)
