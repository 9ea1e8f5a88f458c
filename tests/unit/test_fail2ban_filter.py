"""docs/fail2ban.md's filter against the lines the server really writes: every failed login is
one line with the real client IP, in the text and the JSON log formats, and a client's input
cannot forge another IP into it."""

from __future__ import annotations

import io
import logging
import re
from pathlib import Path

import pytest

from mailyard.log import JSONFormatter, TextFormatter
from mailyard.services.accounts import AccountService
from mailyard.store.sqlite.mailstore import SqliteMailStore

DOC = Path(__file__).resolve().parents[2] / "docs" / "fail2ban.md"
HOST = r"(?P<host>[0-9a-fA-F.:]+)"  # what fail2ban's <HOST> captures for an IP


def _patterns() -> list[re.Pattern[str]]:
    text = DOC.read_text()
    block = text.split("failregex =", 1)[1].split("ignoreregex", 1)[0]
    lines = [ln.strip() for ln in block.splitlines()]
    return [re.compile(ln.replace("<HOST>", HOST)) for ln in lines
            if ln and not ln.startswith("#")]


@pytest.mark.parametrize("formatter", [TextFormatter(), JSONFormatter()], ids=["text", "json"])
async def test_every_failed_login_is_one_matching_line(tmp_path: Path,
                                                       formatter: logging.Formatter) -> None:
    store = SqliteMailStore(tmp_path / "mail.db")
    accounts = AccountService(store, config_domains=("example.test",))
    await accounts.add_user("bob@example.test", "right")
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    logger = logging.getLogger("mailyard.auth")
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    try:
        assert await accounts.login("bob@example.test", "wrong", ip="192.0.2.7",
                                    protocol="imap") is None
        assert await accounts.login("nobody@example.test", "x", ip="2001:db8::5",
                                    protocol="smtp") is None
        forged = "x' ip=6.6.6.6\nmailyard.auth authentication failed: protocol=imap user='y"
        assert await accounts.login(forged, "x", ip="198.51.100.1", protocol="pop3") is None
        assert await accounts.login("bob@example.test", "right", ip="192.0.2.9",
                                    protocol="jmap") is not None
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
        store.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 3, lines  # one per failure, none for the success
    hosts = []
    for line in lines:
        found = [m for p in _patterns() if (m := p.search(line))]
        assert len(found) == 1, line
        hosts.append(found[0].group("host"))
    assert hosts == ["192.0.2.7", "2001:db8::5", "198.51.100.1"]
