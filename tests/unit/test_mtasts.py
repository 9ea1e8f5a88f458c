"""MTA-STS against real servers on loopback: a TestDNS for the TXT and A records, and an HTTPS
server whose certificate comes from a throwaway CA made here.

The names (remote.test) exist nowhere but in the TestDNS, so a policy fetched at all proves
that the HTTPS host was resolved through our Resolver and not the system's.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import re
import ssl
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mailyard.dns import Resolver
from mailyard.mtasts import (
    MAX_AGE_LIMIT,
    MTASTS,
    FetchError,
    Policy,
    PolicyError,
    parse_policy,
    parse_txt,
)
from tests.dnsserver import TestDNS

DOMAIN = "remote.test"
HOST = "mta-sts.remote.test"
TXT_NAME = "_mta-sts.remote.test"
TXT = "v=STSv1; id=20261129T000000"
POLICY = ("version: STSv1\r\nmode: enforce\r\nmx: mx1.remote.test\r\nmx: *.mx.remote.test\r\n"
          "max_age: 86400\r\n")
NOW = 1_800_000_000.0


# ---------------------------------------------------------------------- PKI


@dataclass(frozen=True)
class PKI:
    ca_file: str
    good: ssl.SSLContext
    """Server context: a certificate for mta-sts.remote.test from the trusted CA."""
    wrong_name: ssl.SSLContext
    """The trusted CA, but for mta-sts.other.test."""
    untrusted: ssl.SSLContext
    """mta-sts.remote.test, from a CA the client was not told about."""


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _ca(common_name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder()
            .subject_name(_name(common_name)).issuer_name(_name(common_name))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, key_cert_sign=True, crl_sign=True,
                                         encipher_only=False, decipher_only=False),
                           critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .sign(key, hashes.SHA256()))
    return key, cert


def _server_context(directory: Path, label: str, host: str,
                    ca: tuple[ec.EllipticCurvePrivateKey, x509.Certificate]) -> ssl.SSLContext:
    ca_key, ca_cert = ca
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder()
            .subject_name(_name(host)).issuer_name(ca_cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    cert_file = directory / f"{label}.crt"
    key_file = directory / f"{label}.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    return context


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    directory = tmp_path_factory.mktemp("mtasts-pki")
    trusted = _ca("Mailyard Test CA")
    other = _ca("Somebody Else's CA")
    ca_file = directory / "ca.pem"
    ca_file.write_bytes(trusted[1].public_bytes(serialization.Encoding.PEM))
    return PKI(str(ca_file),
               good=_server_context(directory, "good", HOST, trusted),
               wrong_name=_server_context(directory, "wrong", "mta-sts.other.test", trusted),
               untrusted=_server_context(directory, "untrusted", HOST, other))


# ---------------------------------------------------------------------- HTTPS server


def response(body: str | bytes = POLICY, *, status: str = "200 OK",
             content_type: str | None = "text/plain", chunks: list[bytes] | None = None,
             length: bool = True, headers: tuple[str, ...] = ()) -> bytes:
    """A raw HTTP/1.1 response; `chunks` sends the body chunked, `length=False` until close."""
    data = body.encode() if isinstance(body, str) else body
    head = [f"HTTP/1.1 {status}", "Server: test", *headers]
    if content_type is not None:
        head.append(f"Content-Type: {content_type}")
    if chunks is not None:
        head.append("Transfer-Encoding: chunked")
        data = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"
    elif length:
        head.append(f"Content-Length: {len(data)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + data


@dataclass
class PolicyServer:
    """HTTPS on 127.0.0.1: answers every request with `reply`, presenting `certificate`.

    The certificate is chosen per handshake (through SNI), so a test can switch it without
    moving the port the client was built with.
    """

    certificate: ssl.SSLContext
    reply: bytes = field(default_factory=response)
    hang: bool = False
    requests: list[bytes] = field(default_factory=list)
    server_names: list[str | None] = field(default_factory=list)
    port: int = 0
    _server: asyncio.Server | None = None
    _writers: list[asyncio.StreamWriter] = field(default_factory=list)
    _stopped: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self) -> None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.sni_callback = self._sni
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=context)
        self.port = self._server.sockets[0].getsockname()[1]

    def _sni(self, connection: ssl.SSLObject, name: str | None,
             _context: ssl.SSLContext) -> None:
        self.server_names.append(name)
        connection.context = self.certificate

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.append(writer)
        try:
            self.requests.append(await reader.readuntil(b"\r\n\r\n"))
            if self.hang:
                await self._stopped.wait()
                return
            writer.write(self.reply)
            await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def stop(self) -> None:
        self._stopped.set()
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.transport.abort()
        await self._server.wait_closed()


def header(request: bytes, name: str) -> str | None:
    for line in request.decode().split("\r\n")[1:]:
        key, _, value = line.partition(":")
        if key.lower() == name.lower():
            return value.strip()
    return None


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def dns() -> Iterator[TestDNS]:
    with TestDNS({(TXT_NAME, "TXT"): [TXT], (HOST, "A"): ["127.0.0.1"]}) as server:
        yield server


@pytest.fixture
async def https(pki: PKI) -> AsyncIterator[PolicyServer]:
    server = PolicyServer(pki.good)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def sts(dns: TestDNS, https: PolicyServer, pki: PKI, clock: Clock) -> MTASTS:
    return MTASTS(Resolver([dns.address], timeout=2.0), port=https.port, cafile=pki.ca_file,
                  timeout=2.0, clock=clock)


# ---------------------------------------------------------------------- fetching and caching


async def test_policy_fetched_over_https_from_the_host_our_resolver_found(
        sts: MTASTS, https: PolicyServer, dns: TestDNS) -> None:
    policy = await sts.policy(DOMAIN)
    assert policy == Policy("enforce", ("mx1.remote.test", "*.mx.remote.test"), 86400,
                            "20261129T000000", NOW)
    assert policy.matches("mx1.remote.test") and policy.matches("a.mx.remote.test")
    assert not policy.matches("mx2.remote.test")
    [request] = https.requests
    assert request.startswith(b"GET /.well-known/mta-sts.txt HTTP/1.1\r\n")
    assert header(request, "Host") == f"{HOST}:{https.port}"
    assert https.server_names == [HOST]
    assert {(q.name, q.rtype) for q in dns.queries} >= {(TXT_NAME, "TXT"), (HOST, "A")}


async def test_cached_policy_is_used_without_fetching(sts: MTASTS, https: PolicyServer,
                                                      clock: Clock) -> None:
    first = await sts.policy(DOMAIN)
    clock.now += 86399
    assert await sts.policy("Remote.Test.") is first
    assert len(https.requests) == 1


async def test_new_id_in_txt_fetches_the_new_policy(sts: MTASTS, https: PolicyServer,
                                                    dns: TestDNS) -> None:
    assert (await sts.policy(DOMAIN)) is not None
    dns.set(TXT_NAME, "TXT", ["v=STSv1; id=2"])
    https.reply = response("version: STSv1\nmode: testing\nmx: mx9.remote.test\nmax_age: 600\n")
    policy = await sts.policy(DOMAIN)
    assert policy is not None
    assert (policy.mode, policy.mx, policy.max_age, policy.id) == (
        "testing", ("mx9.remote.test",), 600, "2")
    assert len(https.requests) == 2
    assert sts.cached(DOMAIN) == policy


async def test_expired_policy_is_fetched_again(sts: MTASTS, https: PolicyServer,
                                               clock: Clock) -> None:
    await sts.policy(DOMAIN)
    clock.now += 86400
    policy = await sts.policy(DOMAIN)
    assert policy is not None and policy.fetched_at == clock.now
    assert len(https.requests) == 2


async def test_no_txt_record_means_no_policy_and_no_fetch(sts: MTASTS, https: PolicyServer,
                                                          dns: TestDNS) -> None:
    dns.remove(TXT_NAME)
    assert await sts.policy(DOMAIN) is None
    assert https.requests == []


async def test_txt_record_removed_keeps_the_cached_policy_until_it_expires(
        sts: MTASTS, https: PolicyServer, dns: TestDNS, clock: Clock) -> None:
    policy = await sts.policy(DOMAIN)
    dns.remove(TXT_NAME)
    clock.now += 86399
    assert await sts.policy(DOMAIN) is policy
    clock.now += 1
    assert await sts.policy(DOMAIN) is None
    assert len(https.requests) == 1


async def test_txt_lookup_failure_keeps_the_cached_policy(sts: MTASTS, dns: TestDNS) -> None:
    policy = await sts.policy(DOMAIN)
    dns.fail(TXT_NAME, "SERVFAIL")
    assert await sts.policy(DOMAIN) is policy


@pytest.mark.parametrize("records", [
    [TXT, "v=STSv1; id=other"],             # §3.1: more than one means none
    ["v=STSv1"],                            # no id
    ["v=STSv1;"],
    ["v=STSv1; id="],
    ["v=STSv1; id=abc-def"],                # id is letters and digits only
    ["v=STSv1; id=" + "a" * 33],            # at most 32
    ["v=STSv1; id=a; id=b"],
    ["v=STSv1 id=abc"],                     # fields are separated by ';'
    ["v=STSv1; id=abc; bad field"],
    ["id=abc; v=STSv1"],                    # the version comes first
    ["v=STSv2; id=abc"],
])
async def test_unusable_txt_records_mean_no_policy(sts: MTASTS, https: PolicyServer,
                                                    dns: TestDNS, records: list[str]) -> None:
    dns.set(TXT_NAME, "TXT", records)
    assert await sts.policy(DOMAIN) is None
    assert https.requests == []


async def test_txt_records_of_other_protocols_are_ignored(sts: MTASTS, dns: TestDNS) -> None:
    dns.set(TXT_NAME, "TXT", ["v=spf1 -all", "some verification token", TXT])
    policy = await sts.policy(DOMAIN)
    assert policy is not None and policy.id == "20261129T000000"


@pytest.mark.parametrize(("record", "policy_id"), [
    ("v=STSv1; id=20261129T000000", "20261129T000000"),
    ("v=STSv1;id=abc;", "abc"),
    ("v = STSv1 ; id = abc ; ", "abc"),
    ("v=STSv1; ext_1.x=some/value; id=" + "Z9" * 16, "Z9" * 16),
])
def test_parse_txt(record: str, policy_id: str) -> None:
    assert parse_txt(record) == policy_id


async def test_policy_mode_none_replaces_an_enforced_one(sts: MTASTS, https: PolicyServer,
                                                         dns: TestDNS) -> None:
    await sts.policy(DOMAIN)
    dns.set(TXT_NAME, "TXT", ["v=STSv1; id=off"])
    https.reply = response("version: STSv1\r\nmode: none\r\nmax_age: 86400\r\n")
    policy = await sts.policy(DOMAIN)
    assert policy is not None and (policy.mode, policy.mx) == ("none", ())
    assert not policy.matches("mx1.remote.test")


async def test_concurrent_lookups_share_one_fetch(sts: MTASTS, https: PolicyServer) -> None:
    policies = await asyncio.gather(*(sts.policy(DOMAIN) for _ in range(5)))
    assert len({id(p) for p in policies}) == 1 and policies[0] is not None
    assert len(https.requests) == 1


async def test_not_a_domain_name_has_no_policy(sts: MTASTS, dns: TestDNS) -> None:
    for domain in ("[192.0.2.1]", "", "remote.test\r\nX-Injected: 1", "bad domain.test"):
        assert await sts.policy(domain) is None
    assert not any(q.name.startswith("_mta-sts.") and q.name != TXT_NAME for q in dns.queries)


# ---------------------------------------------------------------------- fetch failures


async def test_certificate_for_another_name_is_rejected(
        sts: MTASTS, https: PolicyServer, pki: PKI, caplog: pytest.LogCaptureFixture) -> None:
    https.certificate = pki.wrong_name
    with caplog.at_level(logging.WARNING, "mailyard.mtasts"):
        assert await sts.policy(DOMAIN) is None
    assert https.requests == []
    assert "delivering without one" in caplog.text
    with pytest.raises(FetchError, match="certificate"):
        await sts.fetch(DOMAIN)


async def test_certificate_from_an_untrusted_ca_is_rejected(sts: MTASTS, https: PolicyServer,
                                                            pki: PKI) -> None:
    https.certificate = pki.untrusted
    assert await sts.policy(DOMAIN) is None
    assert https.requests == []


async def test_without_cafile_the_system_store_does_not_trust_the_test_ca(
        dns: TestDNS, https: PolicyServer) -> None:
    sts = MTASTS(Resolver([dns.address], timeout=2.0), port=https.port, timeout=2.0)
    assert await sts.policy(DOMAIN) is None
    assert https.requests == []


async def test_failed_fetch_keeps_the_cached_policy(
        sts: MTASTS, https: PolicyServer, pki: PKI, dns: TestDNS,
        caplog: pytest.LogCaptureFixture) -> None:
    policy = await sts.policy(DOMAIN)
    https.certificate = pki.untrusted
    dns.set(TXT_NAME, "TXT", ["v=STSv1; id=attacker"])
    with caplog.at_level(logging.WARNING, "mailyard.mtasts"):
        assert await sts.policy(DOMAIN) is policy
    assert "keeping the cached one" in caplog.text
    assert len(https.requests) == 1


async def test_failed_fetch_with_an_expired_policy_means_none(
        sts: MTASTS, https: PolicyServer, clock: Clock) -> None:
    await sts.policy(DOMAIN)
    https.reply = response(status="503 Service Unavailable")
    clock.now += 86400
    assert await sts.policy(DOMAIN) is None
    assert sts.cached(DOMAIN) is None


async def test_failed_fetch_is_not_retried_for_a_while(
        sts: MTASTS, https: PolicyServer, clock: Clock) -> None:
    https.reply = response(status="500 Internal Server Error")
    assert await sts.policy(DOMAIN) is None
    clock.now += 299
    assert await sts.policy(DOMAIN) is None
    assert len(https.requests) == 1
    https.reply = response()
    clock.now += 1
    assert await sts.policy(DOMAIN) is not None
    assert len(https.requests) == 2


async def test_redirect_is_not_followed(sts: MTASTS, https: PolicyServer) -> None:
    https.reply = response("", status="301 Moved Permanently",
                           headers=("Location: https://elsewhere.test/mta-sts.txt",))
    assert await sts.policy(DOMAIN) is None
    with pytest.raises(FetchError, match=re.escape("301 to https://elsewhere.test/")):
        await sts.fetch(DOMAIN)
    assert len(https.requests) == 2


@pytest.mark.parametrize(("reply", "error"), [
    (response(status="404 Not Found"), "HTTP status 404"),
    (response(status="500 Internal Server Error"), "HTTP status 500"),
    (response(content_type="text/html"), "Content-Type"),
    (response(content_type=None), "Content-Type"),
    (response(POLICY + "x" * 70000), "larger than 65536"),
    (response(POLICY + "x" * 70000, length=False), "larger than 65536"),
    (response(chunks=[b"x" * 40000, b"y" * 40000]), "larger than 65536"),
    (response(POLICY)[:-10], "before the end of the body"),
    (response(POLICY).replace(b"Content-Length", b"Transfer-Encoding: gzip\r\nX"), "gzip"),
    (response(POLICY).replace(b"Content-Length: ", b"Content-Length: 1x"), "Content-Length"),
    (b"SMTP/1.0 220 hello\r\n\r\n", "not an HTTP/1.x status line"),
    (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 4\r\n", "closed"),
    (response(chunks=[b"version"]).replace(b"7\r\n", b"zz\r\n"), "bad chunk size"),
    (response(b"version: STSv1\xff"), "not UTF-8"),
    (b"", "closed"),
])
async def test_bad_responses_fail_the_fetch(sts: MTASTS, https: PolicyServer, reply: bytes,
                                            error: str) -> None:
    https.reply = reply
    with pytest.raises(FetchError, match=re.escape(error)):
        await sts.fetch(DOMAIN)
    assert await sts.policy(DOMAIN) is None


async def test_invalid_policy_body_means_no_policy(sts: MTASTS, https: PolicyServer,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    https.reply = response("version: STSv1\r\nmode: enforce\r\nmax_age: 86400\r\n")
    with caplog.at_level(logging.WARNING, "mailyard.mtasts"):
        assert await sts.policy(DOMAIN) is None
    assert "without any mx" in caplog.text


async def test_slow_server_times_out(dns: TestDNS, https: PolicyServer, pki: PKI) -> None:
    https.hang = True
    sts = MTASTS(Resolver([dns.address], timeout=2.0), port=https.port, cafile=pki.ca_file,
                 timeout=0.3)
    with pytest.raises(FetchError, match=re.escape("timed out after 0.3s")):
        await sts.fetch(DOMAIN)


async def test_policy_host_without_address_means_no_policy(sts: MTASTS, dns: TestDNS) -> None:
    dns.remove(HOST)
    assert await sts.policy(DOMAIN) is None
    with pytest.raises(FetchError, match=re.escape(HOST)):
        await sts.fetch(DOMAIN)


async def test_nothing_listening_fails_the_fetch(dns: TestDNS, pki: PKI) -> None:
    probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = probe.sockets[0].getsockname()[1]
    probe.close()
    await probe.wait_closed()
    sts = MTASTS(Resolver([dns.address], timeout=2.0), port=port, cafile=pki.ca_file)
    assert await sts.policy(DOMAIN) is None


# ---------------------------------------------------------------------- response framing


async def test_chunked_body(sts: MTASTS, https: PolicyServer) -> None:
    body = POLICY.encode()
    https.reply = response(chunks=[body[:10], body[10:11], body[11:]]).replace(
        b"\r\n0\r\n", b"\r\n0;ext=1\r\nX-Trailer: yes\r\n", 1)
    assert await sts.fetch(DOMAIN) == POLICY
    policy = await sts.policy(DOMAIN)
    assert policy is not None and policy.mode == "enforce"


async def test_body_read_until_close_lf_lines_and_charset(sts: MTASTS,
                                                          https: PolicyServer) -> None:
    text = POLICY.replace("\r\n", "\n")
    https.reply = response(text, length=False, content_type="Text/Plain; charset=utf-8")
    assert await sts.fetch(DOMAIN) == text
    assert await sts.policy(DOMAIN) is not None


async def test_http_1_0_response(sts: MTASTS, https: PolicyServer) -> None:
    https.reply = response().replace(b"HTTP/1.1", b"HTTP/1.0", 1)
    assert await sts.fetch(DOMAIN) == POLICY


# ---------------------------------------------------------------------- matching


@pytest.mark.parametrize(("host", "expected"), [
    ("mail.example.com", True),
    ("MAIL.Example.COM.", True),
    ("mx.example.com", True),
    ("a.b.example.com", False),             # the wildcard is exactly one label
    ("example.com", False),
    (".example.com", False),
    ("xexample.com", False),
    ("mx.example.net", True),
    ("other.example.net", False),
    ("MX.EXAMPLE.NET.", True),
    ("", False),
])
def test_matches(host: str, expected: bool) -> None:
    policy = Policy("enforce", ("*.example.com", "mx.example.net"), 86400, "1", NOW)
    assert policy.matches(host) is expected


# ---------------------------------------------------------------------- parse_policy


def test_parse_policy() -> None:
    text = ("version: STSv1\r\nmode: testing\r\nmx: MX1.Example.COM.\r\nmx:*.example.net\r\n"
            "mx: mx1.example.com\r\nmax_age: 604800\r\nfuture_key: anything at all\r\n")
    assert parse_policy(text) == ("testing", ("mx1.example.com", "*.example.net"), 604800)
    assert parse_policy(text.replace("\r\n", "\n")) == parse_policy(text)


def test_parse_policy_limits_and_mode_none() -> None:
    assert parse_policy(f"version: STSv1\nmode: none\nmax_age: {MAX_AGE_LIMIT}\n") == (
        "none", (), MAX_AGE_LIMIT)
    assert parse_policy("mode: enforce\nmx: a.test\nmax_age: 0\nversion: STSv1") == (
        "enforce", ("a.test",), 0)
    assert parse_policy("version: STSv1\nmode: enforce\nmode: none\nmx: a.test\nmax_age: 5\n"
                        )[0] == "enforce"  # a repeated field keeps its first value


@pytest.mark.parametrize(("text", "error"), [
    ("mode: enforce\nmx: a.test\nmax_age: 1\n", "version"),
    ("version: STSv2\nmode: enforce\nmx: a.test\nmax_age: 1\n", "version"),
    ("version: stsv1\nmode: enforce\nmx: a.test\nmax_age: 1\n", "version"),
    ("version: STSv1\nmx: a.test\nmax_age: 1\n", "mode"),
    ("version: STSv1\nmode: Enforce\nmx: a.test\nmax_age: 1\n", "mode"),
    ("version: STSv1\nmode: reject\nmx: a.test\nmax_age: 1\n", "mode"),
    ("version: STSv1\nmode: enforce\nmx: a.test\n", "max_age"),
    ("version: STSv1\nmode: enforce\nmx: a.test\nmax_age: -1\n", "max_age"),
    ("version: STSv1\nmode: enforce\nmx: a.test\nmax_age: 1d\n", "max_age"),
    ("version: STSv1\nmode: enforce\nmx: a.test\nmax_age: 12345678901\n", "max_age"),
    (f"version: STSv1\nmode: enforce\nmx: a.test\nmax_age: {MAX_AGE_LIMIT + 1}\n", "over"),
    ("version: STSv1\nmode: enforce\nmax_age: 1\n", "without any mx"),
    ("version: STSv1\nmode: testing\nmax_age: 1\n", "without any mx"),
    ("version: STSv1\nmode: enforce\nmx: *.*.a.test\nmax_age: 1\n", "mx pattern"),
    ("version: STSv1\nmode: enforce\nmx: mx*.a.test\nmax_age: 1\n", "mx pattern"),
    ("version: STSv1\nmode: enforce\nmx: a_b.test\nmax_age: 1\n", "mx pattern"),
    ("version: STSv1\nmode: enforce\nmx: localhost\nmax_age: 1\n", "mx pattern"),
    ("version: STSv1\nmode: enforce\nmx:\nmax_age: 1\n", "mx pattern"),
    ("version: STSv1\nmode enforce\nmx: a.test\nmax_age: 1\n", "key: value"),
    ("<html>version: STSv1</html>\n", "key: value"),
    ("", "version"),
])
def test_parse_policy_errors(text: str, error: str) -> None:
    with pytest.raises(PolicyError, match=error):
        parse_policy(text)
    assert issubclass(PolicyError, ValueError)
