"""The configuration as TOML text: the commented sample (`mailyard config sample`, shipped as
mailyard.example.toml) and the effective configuration (`mailyard config check`).

Both are generated from the dataclasses of mailyard/config.py, the docstrings under their
fields included, so the sample cannot drift from what the loader accepts: a test compares the
shipped file with `sample()` and loads it.
"""

from __future__ import annotations

import ast
import inspect
import json
import math
import re
import textwrap
from dataclasses import Field, fields, is_dataclass
from functools import cache
from itertools import pairwise
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from mailyard.config import Config

_HEADER = """\
# Mailyard configuration: every key with its default.
#
# Generated from mailyard/config.py by `mailyard config sample`; regenerate it rather than
# edit it. Copy what you change to mailyard.toml (or a file given with --config or
# $MAILYARD_CONFIG): keys left out keep their defaults. `mailyard config check FILE`
# validates a file and prints the configuration it gives.
"""

MASK = "********"
"""What `effective` prints instead of a secret (the S3 secret key, a DSN's password)."""


# ---------------------------------------------------------------------------------- docstrings

@cache
def field_docs(cls: type) -> dict[str, str]:
    """The docstring written under each field of dataclass `cls` (PEP 257's attribute
    docstrings: a string statement right after the annotated assignment)."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    docs: dict[str, str] = {}
    for stmt, after in pairwise(body):
        if (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)
                and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)):
            docs[stmt.target.id] = inspect.cleandoc(after.value.value)
    return docs


def _comment(text: str) -> list[str]:
    return [f"# {line}".rstrip() for line in text.splitlines()]


# ---------------------------------------------------------------------------------- values

def _string(text: str) -> str:
    """A TOML basic string. JSON's escapes are TOML's, except that TOML wants DEL escaped."""
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str | Path):
        return _string(str(value))
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML form for {value!r}")


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _key(name: str) -> str:
    return name if _BARE_KEY.fullmatch(name) else _string(name)


def _keys(cls: type) -> list[Field[Any]]:
    """The fields a config file may set (not derived ones like Store.shards)."""
    return [f for f in fields(cls) if f.metadata.get("key", True)]


# ---------------------------------------------------------------------------------- writing

def _table(name: str, cls: type, value: Any, doc: str | None, commented: bool,
           out: list[str]) -> None:
    """`[name]` with the scalar keys of dataclass `value`, then its sub-tables."""
    out.append("")
    if commented and doc:
        out.extend(_comment(doc))
    out.append(f"[{name}]")
    _keys_of(cls, value, commented, out, prefix=name)


def _keys_of(cls: type, value: Any, commented: bool, out: list[str], prefix: str) -> None:
    docs = field_docs(cls) if commented else {}
    tables: list[tuple[str, type, Any, str | None]] = []
    for f in _keys(cls):
        v = getattr(value, f.name)
        if is_dataclass(v):
            doc = docs.get(f.name) or (inspect.getdoc(type(v)) if commented else None)
            tables.append((f.name, type(v), v, doc))
            continue
        if commented and f.name in docs:
            out.extend(_comment(docs[f.name]))
        out.append(f"{_key(f.name)} = {toml_value(v)}")
        if commented:
            out.append("")
    if out and out[-1] == "":
        out.pop()
    for name, sub_cls, sub, doc in tables:
        _table(f"{prefix}.{name}" if prefix else name, sub_cls, sub, doc, commented, out)


def sample() -> str:
    """Every key of every table with its default, each under its docstring as a comment."""
    out = _HEADER.rstrip("\n").splitlines()
    out.append("")
    _keys_of(Config, Config(), True, out, prefix="")
    return "\n".join(out) + "\n"


def _mask_dsn(dsn: str) -> str:
    parts = urlsplit(dsn)
    if parts.password is None:
        return dsn
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:{MASK}@{host}"))


def effective(config: Config) -> str:
    """`config` as a TOML file that loads back to it (except secrets, masked), every key
    written out, for an admin to see what the server will run with."""
    store = config.store
    metadata: Any = [_mask_dsn(d) for d in store.shards] if store.shards \
        else _mask_dsn(store.metadata)
    values: dict[tuple[str, str], Any] = {
        ("store", "metadata"): metadata,
        ("store", "search"): _mask_dsn(store.search),
        ("store", "counters"): _mask_dsn(store.counters),
        ("store.s3", "secret_key"): MASK if store.s3.secret_key else "",
        ("routing", "srs_secret"): MASK if config.routing.srs_secret else "",
        ("outbound", "relayhost"): _mask_dsn(config.outbound.relayhost),
        ("outbound", "relayhost_by_domain"): [
            f"{d}={_mask_dsn(u)}" for d, _, u in
            (e.partition("=") for e in config.outbound.relayhost_by_domain)],
    }
    out = [f"# effective configuration of {config.source or 'the built-in defaults'}"
           + (" (secrets masked)" if any(MASK in str(v) for v in values.values()) else "")]
    _effective_keys(Config, config, "", values, out)
    return "\n".join(out) + "\n"


def _effective_keys(cls: type, value: Any, prefix: str, overrides: dict[tuple[str, str], Any],
                    out: list[str]) -> None:
    tables = []
    for f in _keys(cls):
        v = getattr(value, f.name)
        if is_dataclass(v):
            tables.append((f.name, type(v), v))
            continue
        v = overrides.get((prefix, f.name), v)
        out.append(f"{_key(f.name)} = {toml_value(v)}")
    for name, sub_cls, sub in tables:
        full = f"{prefix}.{name}" if prefix else name
        out.extend(["", f"[{full}]"])
        _effective_keys(sub_cls, sub, full, overrides, out)

