"""The RoutingStore port on every engine: SQLite (routing.db) and PostgreSQL (the database a
single-DSN MailStore uses, or the directory shard of a sharded one: routing rows are global).
The routing service's rules are run over each engine too, so they cannot drift apart."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from mailyard.core.routing import SRS
from mailyard.services.accounts import AccountService, RecipientStatus
from mailyard.services.routing import RouteError, RoutingService
from mailyard.store.ports import Conflict, NotFound, RouteRow
from tests.contract.conftest import Engine, _open_mailstore

ROUTING_STORES = ["sqlite", "postgres", "postgres-sharded"]


def _open_routing(name: str, tmp_path: Path, mail: Engine) -> Engine:
    if name == "sqlite":
        from mailyard.store.sqlite.routing import SqliteRoutingStore

        return Engine(name, lambda: SqliteRoutingStore(tmp_path / "routing.db"))
    from mailyard.store.postgres.routing import PostgresRoutingStore

    async def open_postgres() -> PostgresRoutingStore:
        # The routing rows live in the MailStore's (first) database, as app.py wires it.
        store = mail._open[0]
        home = getattr(store, "home", store)
        return PostgresRoutingStore(home._pool.dsn)

    return Engine(name, open_postgres)


@pytest.fixture(params=ROUTING_STORES)
async def engines(request: pytest.FixtureRequest,
                  tmp_path: Path) -> AsyncIterator[tuple[Engine, Any, Engine]]:
    mail = _open_mailstore("sqlite" if request.param == "sqlite" else request.param, tmp_path)
    routing: Engine | None = None
    try:
        mailstore = await mail.open()
        routing = _open_routing(request.param, tmp_path, mail)
        yield routing, mailstore, mail
    finally:
        if routing is not None:
            await routing.close_all()
        await mail.close_all()


async def test_rows_are_added_listed_and_removed(engines: tuple[Engine, Any, Engine]) -> None:
    engine, _, _ = engines
    store = await engine.open()
    await store.add_route(RouteRow("alias", "team@example.test", "bob@example.test"))
    await store.add_route(RouteRow("alias", "team@example.test", "ann@remote.test"))
    await store.add_route(RouteRow("alias", "team@example.test", "carol@example.test"))
    await store.add_route(RouteRow("domain", "example.net", "example.test"))
    await store.add_route(RouteRow("catchall", "example.test", "bob@example.test"))
    with pytest.raises(Conflict):
        await store.add_route(RouteRow("alias", "team@example.test", "bob@example.test"))
    # in the order added, not sorted
    assert await store.targets("alias", "team@example.test") == [
        "bob@example.test", "ann@remote.test", "carol@example.test"]
    assert await store.targets("alias", "nobody@example.test") == []
    assert await store.targets("domain", "example.net") == ["example.test"]
    assert await store.routes("catchall") == [
        RouteRow("catchall", "example.test", "bob@example.test")]
    assert [r.kind for r in await store.routes()] == ["alias"] * 3 + ["catchall", "domain"]
    # another process (the CLI) sees the same rows
    other = await engine.open()
    assert await other.targets("alias", "team@example.test") == [
        "bob@example.test", "ann@remote.test", "carol@example.test"]
    assert await other.remove_routes("alias", "team@example.test", "ann@remote.test") == 1
    assert await store.targets("alias", "team@example.test") == [
        "bob@example.test", "carol@example.test"]
    assert await store.remove_routes("alias", "team@example.test") == 2
    assert await store.remove_routes("alias", "team@example.test") == 0
    assert await store.targets("alias", "team@example.test") == []


async def test_rules_resolve_alike_on_every_engine(
        engines: tuple[Engine, Any, Engine]) -> None:
    engine, mailstore, _ = engines
    store = await engine.open()
    await mailstore.add_domain("example.test")
    alice = await mailstore.create_account("alice@example.test", "h", 10**9)
    bob = await mailstore.create_account("bob@example.test", "h", 10**9)
    accounts = AccountService(mailstore)
    srs = SRS(b"secret", "example.test")
    routing = RoutingService(accounts, store, srs=srs)

    assert await routing.add_alias("team@example.test", ["bob@example.test", "alice@example.test",
                                                         "ann@remote.test"]) == [
        "bob@example.test", "alice@example.test", "ann@remote.test"]
    await routing.add_domain_alias("example.net", "example.test")
    with pytest.raises(RouteError):
        await routing.add_domain_alias("example.test", "example.net")  # a local domain
    with pytest.raises(RouteError):
        await routing.add_alias("x@elsewhere.test", ["bob@example.test"])  # not local

    r = await routing.resolve("Alice+News@example.test")
    assert r.status is RecipientStatus.OK
    assert [(t.account.id, t.recipient, t.delivered_to) for t in r.local] == [
        (alice.id, "alice+news@example.test", "alice+news@example.test")]
    r = await routing.resolve("bob@example.net")
    assert [(t.account.id, t.recipient) for t in r.local] == [(bob.id, "bob@example.test")]
    assert await routing.check("nobody@example.test") is RecipientStatus.UNKNOWN_USER
    assert await routing.check("nobody@example.net") is RecipientStatus.UNKNOWN_USER
    assert await routing.check("x@elsewhere.test") is RecipientStatus.NOT_LOCAL

    plan = await routing.plan(["alice@example.test", "team@example.net", "bob@example.test"])
    assert [t.account.id for t in plan.local] == [alice.id, bob.id]
    # `via`: the envelope recipient as it came (Delivered-To of the forwarded copy)
    assert [(t.address, t.via) for t in plan.remote] == [("ann@remote.test",
                                                           "team@example.net")]

    await routing.set_catchall("example.test", "bob@example.test")
    r = await routing.resolve("whoever@example.net")
    assert [t.account.id for t in r.local] == [bob.id]
    assert await routing.set_catchall("example.test", None) is True
    assert await routing.check("whoever@example.test") is RecipientStatus.UNKNOWN_USER

    # forwarding with a local copy; a loop of aliases ends where it closes
    await routing.add_alias("alice@example.test", ["ann@remote.test"], keep_copy=True)
    r = await routing.resolve("alice@example.test")
    assert [t.account.id for t in r.local] == [alice.id]
    assert [t.address for t in r.remote] == ["ann@remote.test"]
    await routing.add_alias("a@example.test", ["b@example.test"])
    await routing.add_alias("b@example.test", ["a@example.test", "bob@example.test"])
    r = await routing.resolve("a@example.test")
    assert [t.account.id for t in r.local] == [bob.id]

    # reverse SRS: only an address we wrote, to the original sender
    forwarded = srs.forward("carol@remote.test")
    assert forwarded.startswith("SRS0=") and forwarded.endswith("@example.test")
    r = await routing.resolve(forwarded)
    assert r.bounce and [t.address for t in r.remote] == ["carol@remote.test"]
    forged = forwarded.replace("SRS0=", "SRS0=x", 1)
    assert await routing.check(forged) is RecipientStatus.UNKNOWN_USER

    with pytest.raises(NotFound):
        await routing.remove_alias("nobody@example.test")
    await routing.remove_alias("team@example.test", ["ann@remote.test"])
    assert await store.targets("alias", "team@example.test") == [
        "bob@example.test", "alice@example.test"]
