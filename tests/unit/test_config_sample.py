"""The shipped mailyard.example.toml is what `mailyard config sample` generates from the config
dataclasses, it loads to the defaults, and `config check`'s effective TOML loads back to the
configuration it was written from. Domain names and log levels are refused with their key."""

from __future__ import annotations

import tomllib
from dataclasses import fields, is_dataclass, replace
from pathlib import Path

import pytest

from mailyard import config as configuration
from mailyard.config import Config, ConfigError, domain_display, domain_name, load, parse
from mailyard.configdoc import MASK, effective, field_docs, sample

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "mailyard.example.toml"


def _tables(cls: type = Config) -> list[type]:
    """Every dataclass reachable from Config (its tables and their sub-tables)."""
    found = [cls]
    for f in fields(cls):
        default = f.default_factory() if callable(f.default_factory) else f.default
        if is_dataclass(default):
            found += _tables(type(default))
    return found


def test_the_shipped_sample_is_the_generated_one() -> None:
    assert EXAMPLE.read_text() == sample(), (
        "mailyard.example.toml is stale: .venv/bin/mailyard config sample >"
        " mailyard.example.toml")


def test_the_sample_loads_to_the_defaults(tmp_path: Path) -> None:
    loaded = load(str(EXAMPLE))
    assert replace(loaded, source=None, data_dir=Config().data_dir) == Config()
    assert loaded.data_dir == EXAMPLE.parent / "mailyard-data", "relative to the file"


def test_the_sample_has_every_key_of_every_table() -> None:
    data = tomllib.loads(sample())
    for name in ("data_dir", "hostname", "domains"):
        assert name in data
    for table, cls in configuration._TABLES.items():
        keys = {f.name for f in fields(cls) if f.metadata.get("key", True)}
        written = {k for k, v in data[table].items() if not isinstance(v, dict)} | {
            k for k, v in data[table].items() if isinstance(v, dict)}
        assert written == keys, table
    assert set(data["store"]["s3"]) == {f.name for f in fields(configuration.S3)}
    assert "shards" not in data["store"] and "source" not in data, "derived, not keys"


def test_every_key_of_config_py_is_documented() -> None:
    """The sample's comments come from the docstrings under the fields: one missing is a key
    an admin meets without a word of explanation. (Tables defined elsewhere, [search] and
    [spam], are held to it where their modules document them.)"""
    own = [cls for cls in _tables() if cls.__module__ == "mailyard.config"]
    assert len(own) > 10
    for cls in own:
        docs = field_docs(cls)
        for f in fields(cls):
            default = f.default_factory() if callable(f.default_factory) else f.default
            if f.metadata.get("key", True) and not is_dataclass(default):
                assert f.name in docs, f"{cls.__name__}.{f.name} has no docstring"
        assert cls.__doc__ and not cls.__doc__.startswith(cls.__name__ + "("), cls.__name__


def test_field_docs_reads_the_strings_under_the_fields() -> None:
    docs = field_docs(configuration.Limits)
    assert docs["message_size"].startswith("Bytes (SMTP SIZE")
    assert "\n    " not in docs["query_seconds"], "indentation is removed"
    assert "# Bytes (SMTP SIZE" in sample()


def test_effective_configuration_loads_back(tmp_path: Path) -> None:
    path = tmp_path / "m.toml"
    path.write_text('hostname = "mx.example.org"\ndomains = ["Example.ORG", "bücher.example"]\n'
                    '[listen]\nimap = ""\nsmtp = "[::1]:2525"\n[outbound]\n'
                    'retry_schedule = [1, 2.5]\n[log]\nlevel = "debug"\n'
                    '[store]\nblobs = "s3://bucket/p"\n[store.s3]\nsecret_key = "s3cr\\u007fet"\n'
                    '[spam]\nrspamd_url = "http://127.0.0.1:11333"\n')
    config = load(str(path))
    text = effective(config)
    assert "s3cr" not in text and MASK in text
    again = tmp_path / "again.toml"
    again.write_text(text)
    back = load(str(again))
    assert back.domains == ("example.org", "xn--bcher-kva.example")
    assert back.outbound.retry_schedule == [1.0, 2.5]
    assert back.store.s3.secret_key == MASK
    assert replace(back, source=path, store=config.store) == config


def test_effective_masks_dsn_passwords_and_keeps_shards() -> None:
    config = parse({"store": {"metadata": ["postgresql://u:pw@db1/m", "postgresql://db2/m"]}})
    text = effective(config)
    assert "pw@" not in text
    assert tomllib.loads(text)["store"]["metadata"] == [
        f"postgresql://u:{MASK}@db1/m", "postgresql://db2/m"]


@pytest.mark.parametrize(("text", "name"), [
    ("Example.ORG.", "example.org"),
    ("bücher.example", "xn--bcher-kva.example"),
    ("XN--BCHER-KVA.example", "xn--bcher-kva.example"),
    ("Straße.de", "xn--strae-oqa.de"),
    ("localhost", "localhost"),
    ("a-b.c0.example", "a-b.c0.example"),
    ("a" * 63 + ".test", "a" * 63 + ".test"),
    (".".join(["a" * 63] * 3 + ["a" * 61]), ".".join(["a" * 63] * 3 + ["a" * 61])),  # 253
])
def test_domain_names_are_stored_in_their_ascii_form(text: str, name: str) -> None:
    assert domain_name(text) == name


@pytest.mark.parametrize("text", [
    "", ".", "bad domain!", "x@y", "a..b", ".a", "-a.test", "a-.test", "a_b.test",
    "a" * 64 + ".test", ".".join(["a" * 63] * 4), "1.2.3.4", "xn--zz.test",
    "exa mple.test", "bad\u200b\u00e9!.test",
])
def test_not_domain_names_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="is not a domain name"):
        domain_name(text)


def test_domains_in_the_config_file() -> None:
    assert parse({"domains": ["Bücher.Example"]}).domains == ("xn--bcher-kva.example",)
    with pytest.raises(ConfigError, match=r"domains\[1\]: 'x@y' is not a domain name"):
        parse({"domains": ["example.org", "x@y"]})


def test_domain_display_shows_both_forms() -> None:
    assert domain_display("xn--bcher-kva.example") == "xn--bcher-kva.example (bücher.example)"
    assert domain_display("example.org") == "example.org"


def test_log_levels() -> None:
    assert parse({"log": {"level": "debug"}}).log.level == "debug"
    with pytest.raises(ConfigError, match=r"log\.level: expected one of DEBUG, INFO.*'LOUD'"):
        parse({"log": {"level": "LOUD"}})


def test_derived_fields_are_not_keys() -> None:
    with pytest.raises(ConfigError, match=r"\[store\] shards: unknown key"):
        parse({"store": {"shards": ["postgresql://x/y"]}})
    with pytest.raises(ConfigError, match="source: unknown key"):
        parse({"source": "x"})


def test_unreadable_files_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="Is a directory"):
        load(str(tmp_path))
    bad = tmp_path / "latin1.toml"
    bad.write_bytes(b'hostname = "caf\xe9"\n')
    with pytest.raises(ConfigError, match=r"latin1\.toml"):
        load(str(bad))
