from __future__ import annotations

from pathlib import Path

import pytest

from mailyard.config import Config, ConfigError, load, parse


def test_defaults_follow_the_design() -> None:
    c = Config()
    assert c.data_dir == Path("mailyard-data")
    assert c.listen.smtp == "127.0.0.1:2525"
    assert c.listen.http == "127.0.0.1:8080"
    assert c.limits.message_size == 36_700_160


def test_file_values_and_data_dir_relative_to_the_file(tmp_path: Path) -> None:
    path = tmp_path / "m.toml"
    path.write_text('data_dir = "d"\ndomains = ["Example.ORG."]\n[listen]\nsmtp = "0.0.0.0:25"\n'
                    'imap = ""\n[limits]\nconnections_per_ip = 5\n[queue]\nbackoff_base = 1\n')
    c = load(str(path))
    assert c.data_dir == tmp_path / "d"
    assert c.domains == ("example.org",)
    assert c.listen.smtp == "0.0.0.0:25" and c.listen.imap == ""
    assert c.limits.connections_per_ip == 5
    assert c.queue.backoff_base == 1.0
    assert load(str(path), data_dir="/x").data_dir == Path("/x")


@pytest.mark.parametrize("data, key", [
    ({"dta_dir": "x"}, "dta_dir"),
    ({"listen": {"smtpp": "1:2"}}, "smtpp"),
    ({"listen": {"smtp": "nonsense"}}, "listen.smtp"),
    ({"listen": {"smtp": 25}}, "listen.smtp"),
    ({"limits": {"message_size": "big"}}, "limits.message_size"),
    ({"limits": {"message_size": -1}}, "limits.message_size"),
    ({"limits": {"connections_per_ip": True}}, "limits.connections_per_ip"),
    ({"domains": "example.org"}, "domains"),
    ({"queue": {"max_attempts": 0}}, "queue.max_attempts"),
    ({"queue": {"spool_tries": 0}}, "queue.spool_tries"),
    ({"queue": {"worker_nice": 20}}, "queue.worker_nice"),
    ({"imap": {"fetch_cache": -1}}, "imap.fetch_cache"),
    ({"checks": {"spf_cache_seconds": -1}}, "checks.spf_cache_seconds"),
    ({"queue": {"worker_nice": -1}}, "queue.worker_nice"),
])
def test_bad_keys_and_values_name_the_key(data: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        parse(data)


def test_environment_then_local_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "mailyard.toml").write_text('hostname = "local"\n')
    env = tmp_path / "env.toml"
    env.write_text('hostname = "env"\n')
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MAILYARD_CONFIG", raising=False)
    assert load().hostname == "local"
    monkeypatch.setenv("MAILYARD_CONFIG", str(env))
    assert load().hostname == "env"
    with pytest.raises(ConfigError, match="not found"):
        load(str(tmp_path / "missing.toml"))
    (tmp_path / "broken.toml").write_text("hostname = \n")
    with pytest.raises(ConfigError):
        load(str(tmp_path / "broken.toml"))


def test_metadata_list_is_shards() -> None:
    dsns = ["postgresql://db1/mail", "postgresql://db2/mail"]
    store = parse({"store": {"metadata": dsns, "search": "postgresql"}}).store
    assert store.shards == tuple(dsns) and store.metadata == dsns[0]
    assert store.search_dsn == dsns[0]
    assert parse({"store": {"metadata": dsns[0]}}).store.shards == ()
    for bad in ([], [dsns[0], dsns[0]], [dsns[0], "mysql://x"], [1]):
        with pytest.raises(ConfigError, match=r"store\.metadata"):
            parse({"store": {"metadata": bad}})
