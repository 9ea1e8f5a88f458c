"""The SRS key when `[routing] srs_secret` is unset (issue 21): with PostgreSQL metadata one
key in the directory database for every node, so a bounce to an address one node rewrote is
reversed by another; two nodes making it at the same instant agree. Each node is a Runtime
with a data_dir of its own on one database."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from mailyard.app import Runtime, srs_secret
from mailyard.config import Config, Store
from mailyard.core.routing import SRSError
from tests.pgserver import TestDatabase


@pytest.fixture
def dsn(postgres_dsn: str) -> str:
    return postgres_dsn


def node(root: Path, name: str, dsn: str) -> Config:
    (root / name).mkdir(exist_ok=True)
    return Config(data_dir=root / name, hostname="mx.example.test",
                  domains=("example.test",), store=Store(metadata=dsn))


async def test_two_nodes_reverse_each_others_addresses(tmp_path: Path, dsn: str) -> None:
    a, b = Runtime(node(tmp_path, "a", dsn)), Runtime(node(tmp_path, "b", dsn))
    try:
        srs_a, srs_b = a.routing.srs, b.routing.srs
        assert srs_a is not None and srs_b is not None
        via_a = srs_a.forward("alice@remote.example")
        via_b = srs_b.forward("bob@elsewhere.example")
        assert via_a.startswith("SRS0=") and via_a.endswith("@mx.example.test")
        assert srs_b.reverse(via_a) == "alice@remote.example"
        assert srs_a.reverse(via_b) == "bob@elsewhere.example"
        assert not (tmp_path / "a" / "srs.secret").exists()  # nothing per node
    finally:
        a.close()
        b.close()


async def test_nodes_starting_together_agree_on_one_key(tmp_path: Path, dsn: str) -> None:
    configs = [node(tmp_path, f"n{i}", dsn) for i in range(6)]
    keys = await asyncio.gather(*(asyncio.to_thread(srs_secret, c) for c in configs))
    assert len(set(keys)) == 1 and len(keys[0]) >= 32
    assert srs_secret(configs[0]) == keys[0]  # and it stays


async def test_a_key_kept_from_a_single_node_becomes_the_clusters(tmp_path: Path,
                                                                   dsn: str) -> None:
    old = node(tmp_path, "old", dsn)
    (old.data_dir / "srs.secret").write_bytes(b"the-key-of-the-single-node-era\n")
    assert srs_secret(old) == b"the-key-of-the-single-node-era"
    assert srs_secret(node(tmp_path, "new", dsn)) == b"the-key-of-the-single-node-era"


async def test_another_database_has_another_key(tmp_path: Path, dsn: str) -> None:
    """The key is the database's, not a constant: a cluster elsewhere cannot reverse ours."""
    other = TestDatabase()
    try:
        ours = Runtime(node(tmp_path, "ours", dsn))
        theirs = Runtime(node(tmp_path, "theirs", await other.dsn()))
        try:
            assert ours.routing.srs is not None and theirs.routing.srs is not None
            rewritten = ours.routing.srs.forward("carol@remote.example")
            with pytest.raises(SRSError):
                theirs.routing.srs.reverse(rewritten)
        finally:
            ours.close()
            theirs.close()
    finally:
        await other.drop()
