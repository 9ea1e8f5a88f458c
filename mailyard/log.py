"""Logging set-up: one line per event, as text or as JSON (`[log] format`).

A message's trace id is its queue id: every line about one message (SMTP acceptance, the
pipeline's delivery, each outbound attempt) carries it as `queue_id` (`extra={"queue_id":
...}`), so `grep`/`jq` on one id follows a mail from SMTP to the mailbox.

No line carries a terminal escape code, in either format: uvicorn (the HTTPS/JMAP listener)
logs its start and stop with `extra={"color_message": ...}`, the same text with ANSI colours
for its own formatter, which is dropped here; and any escape sequence left in a message, an
extra or a traceback (a client's input quoted in a line, a library's colours) is removed, so
that `less`, `grep` and fail2ban read plain text and a log viewer's terminal takes no orders
from what a client sent.
"""

from __future__ import annotations

import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

import orjson

_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message", "asctime", "taskName"}
"""LogRecord attributes every record has; anything else came in through `extra`."""


_NOT_OURS = frozenset({"color_message"})
"""Extras that libraries add for their own formatters: uvicorn's coloured copy of the message."""

_ESCAPE = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]"  # CSI: ESC [ ... final (colours among them)
                     r"|\x9b[0-?]*[ -/]*[@-~]"  # the same with the one-character C1 CSI
                     r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)"  # OSC: titles, links, to BEL or ST
                     r"|\x1b[@-_]?|\x9b")  # any other ESC (and its next character), alone
"""A terminal escape sequence; what is left of an unfinished one is plain text."""


def plain(text: str) -> str:
    """`text` without terminal escape sequences."""
    return _ESCAPE.sub("", text) if "\x1b" in text or "\x9b" in text else text


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: plain(v) if isinstance(v, str) else v for k, v in vars(record).items()
            if k not in _STANDARD and k not in _NOT_OURS}


class JSONFormatter(logging.Formatter):
    """{"ts", "level", "logger", "msg", extras..., "exc"} on one line."""

    def format(self, record: logging.LogRecord) -> str:
        event: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname, "logger": record.name,
            "msg": plain(record.getMessage()),
            "pid": record.process,
        }
        event.update(_extras(record))
        if record.exc_info:
            event["exc"] = plain(self.formatException(record.exc_info))
        return orjson.dumps(event, default=str).decode()


class TextFormatter(logging.Formatter):
    """The classic line, with the extras (queue_id=...) appended as key=value."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = plain(super().format(record))
        extras = _extras(record)
        if extras:
            first, nl, rest = line.partition("\n")
            line = first + " " + " ".join(f"{k}={v}" for k, v in extras.items()) + nl + rest
        return line


def configure(fmt: str = "text", level: str | int = "INFO") -> None:
    """Replace the root handlers with one on stderr in `fmt` ("text" or "json")."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JSONFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
