"""The [pop3] table of the config file."""

from __future__ import annotations

import pytest

from mailyard.config import ConfigError, parse


def test_pop3_table_defaults_and_values() -> None:
    assert parse({}).pop3.dele == "trash"
    assert parse({}).pop3.idle_timeout >= 600  # RFC 1939 §3: at least 10 minutes
    config = parse({"pop3": {"dele": "expunge", "max_line": 255}})
    assert (config.pop3.dele, config.pop3.max_line) == ("expunge", 255)


@pytest.mark.parametrize("table", [{"dele": "archive"}, {"dele": 1}, {"idle": 3}])
def test_bad_pop3_values_name_the_key(table: dict[str, object]) -> None:
    with pytest.raises(ConfigError, match="pop3"):
        parse({"pop3": table})
