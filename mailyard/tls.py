"""TLS server contexts, and the self-signed certificate made on first start.

A fresh install must speak STARTTLS at once (senders prefer it, and submission requires it), so
when no certificate is configured one is made in data_dir and reused on every later start.
"""

from __future__ import annotations

import datetime
import os
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def ensure_self_signed(directory: Path, hostname: str) -> tuple[Path, Path]:
    cert_path, key_path = directory / "tls-cert.pem", directory / "tls-key.pem"
    if cert_path.exists() and key_path.exists():
        return cert_path, key_path
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    tmp_key = key_path.with_suffix(".tmp")
    fd = os.open(tmp_key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM,
                                  serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    os.replace(tmp_key, key_path)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


INTERMEDIATE_TLS12_CIPHERS = ":".join([
    "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305",
    "DHE-RSA-AES128-GCM-SHA256", "DHE-RSA-AES256-GCM-SHA384", "DHE-RSA-CHACHA20-POLY1305",
])
"""The TLS 1.2 suites of Mozilla's "intermediate" server profile: forward secret key exchange
(ECDHE, DHE) with an AEAD cipher only. No CBC suite (SHA-1 or SHA-2: Lucky13-style padding
oracles), no static-RSA key exchange (no forward secrecy, ROBOT). The DHE ones are used only
when DH parameters are loaded, which Mailyard does not do: ECDHE serves every client that
speaks TLS 1.2. TLS 1.3's suites are all AEAD and stay OpenSSL's defaults."""


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    """The one TLS configuration of every listener (SMTP STARTTLS and submissions, IMAP and
    IMAPS, POP3 and POP3S, HTTPS): Mozilla's intermediate profile, TLS 1.2 and 1.3 only."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(INTERMEDIATE_TLS12_CIPHERS)
    # Client-initiated renegotiation only costs the server handshakes (a CPU DoS); TLS 1.3
    # has none, and no mail client needs it in 1.2.
    context.options |= ssl.OP_NO_RENEGOTIATION | ssl.OP_NO_COMPRESSION
    # No TLS 1.3 session tickets: mail clients reconnect rarely enough not to need resumption,
    # and a ticket arriving right after the handshake makes some clients (offlineimap's
    # imaplib2) see a readable socket that yields no data, which they treat as a dead peer.
    context.num_tickets = 0
    context.load_cert_chain(cert, key)
    return context
