"""Outbound through a smarthost (a relayhost) instead of the recipients' MX hosts: one
configured server, for every sender or per sender domain, reached over TLS (STARTTLS on 587
or implicit TLS on 465, RFC 8314) with its certificate checked against the host name, and
AUTH PLAIN when the URL names a user (RFC 4954). The relay then does the MX work.

A relay is written as a URL: `smtp://user:password@host:587` (STARTTLS, required) or
`smtps://user:password@host:465` (implicit TLS); `smtp+insecure://host:25` sends in the clear
to a relay on a trusted network, and never authenticates there.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit


@dataclass(frozen=True, slots=True)
class Relay:
    host: str
    port: int
    implicit_tls: bool = False
    """False: STARTTLS, required unless `insecure`."""
    insecure: bool = False
    username: str = ""
    password: str = ""

    def __repr__(self) -> str:  # never a password in a log line
        return f"Relay({self.host}:{self.port})"


_DEFAULT_PORTS = {"smtp": 587, "smtps": 465, "smtp+insecure": 25}


def parse_relay(url: str, key: str = "relayhost") -> Relay:
    """The relay a URL names; ValueError saying what is wrong with it."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise ValueError(f"{key}: expected smtp://[user:password@]host[:port], smtps://... or"
                         f" smtp+insecure://host[:port], got a {scheme or 'missing'} scheme")
    try:
        port = parts.port or _DEFAULT_PORTS[scheme]
    except ValueError:
        raise ValueError(f"{key}: the port is not a number") from None
    if not parts.hostname:
        raise ValueError(f"{key}: no host")
    relay = Relay(parts.hostname, port, implicit_tls=scheme == "smtps",
                  insecure=scheme == "smtp+insecure", username=unquote(parts.username or ""),
                  password=unquote(parts.password or ""))
    if relay.insecure and relay.username:
        raise ValueError(f"{key}: no password is sent without TLS (smtp:// or smtps://)")
    return relay


def parse_relays(global_url: str, by_domain: list[str]) -> tuple[Relay | None,
                                                                  dict[str, Relay]]:
    """`[outbound] relayhost` and `relayhost_by_domain` ("example.org=smtp://..."), read."""
    default = parse_relay(global_url) if global_url else None
    relays: dict[str, Relay] = {}
    for entry in by_domain:
        domain, sep, url = entry.partition("=")
        if not sep or not domain.strip():
            raise ValueError(f"relayhost_by_domain: expected \"domain=smtp://...\", got"
                             f" {entry.split('@')[-1]!r}")
        relays[domain.strip().lower().rstrip(".")] = parse_relay(
            url.strip(), f"relayhost_by_domain ({domain.strip()})")
    return default, relays
