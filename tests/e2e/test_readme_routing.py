"""The README's routing example works as written (tests/e2e/test_readme.py's way: the shell
block taken from README.md, each command run as it stands on a pseudo-terminal against a
real `mailyard serve`, ports moved to the test server's)."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.server import Server
from tests.e2e.test_readme import readme_server, run, shell_blocks

__all__ = ["readme_server"]


def test_the_readme_routing_example_works_as_written(readme_server: Server,
                                                    tmp_path: Path) -> None:
    srv = readme_server
    home = tmp_path / "home"
    home.mkdir()
    quick = next(b for b in shell_blocks() if any("domain add" in c for c in b))
    domain_add, user_add = quick[:2]
    routing = next(b for b in shell_blocks() if any("alias add" in c for c in b))
    assert len(routing) == 8, routing
    bob, alias, domain_alias, catchall, swaks, search, forward, listing = routing
    for line in (domain_add, user_add, bob, alias, domain_alias, catchall):
        done = run(line, srv, home)
        assert done.status == 0, done
    srv.start()
    try:
        sent = run(swaks, srv, home)
        assert sent.status == 0 and "250 2.0.0 OK queued" in sent.output, sent
        srv.wait_queue_empty()
        alice = srv.emails("alice@example.test")
        assert [e["subject"] for e in alice] == ["routed"], alice  # once, by two ways
        assert [e["subject"] for e in srv.emails("bob@example.test")] == ["routed"]
        found = run(search, srv, home)
        assert found.status == 0 and "* SEARCH 1" in found.output, found
        forwarded = run(forward, srv, home)
        assert forwarded.status == 0, forwarded
        listed = run(listing, srv, home)
        assert listed.status == 0, listed
        assert ("alice@example.test\talice@elsewhere.example, alice@example.test (own"
                " mailbox)") in listed.output, listed
        assert "team@example.test\talice@example.test, bob@example.test" in listed.output
    finally:
        srv.stop()
