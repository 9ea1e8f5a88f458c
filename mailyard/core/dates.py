"""Dates as header fields write them (RFC 5322 §3.3)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from email.utils import format_datetime


def header_date(at: float | None = None) -> str:
    """`at` (seconds since the epoch; now when None) as a date-time in UTC with the zone
    `+0000`: the server knows its time is UTC. email.utils.formatdate(localtime=False) writes
    `-0000`, which RFC 5322 §3.3 reserves for a time whose zone is unknown."""
    return format_datetime(datetime.fromtimestamp(time.time() if at is None else at, UTC))
