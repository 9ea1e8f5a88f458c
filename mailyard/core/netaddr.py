"""Facts about a client's IP address that more than one listener needs."""

from __future__ import annotations

import ipaddress


def is_loopback(host: str) -> bool:
    """Whether `host` (an IP address as text) is this machine: 127.0.0.0/8, ::1, or an
    IPv4-mapped loopback address. Anything that is not an IP address is not."""
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback
