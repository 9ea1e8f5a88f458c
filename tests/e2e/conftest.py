from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.server import Server


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    srv = Server(tmp_path)
    srv.add_user("alice@example.test")
    srv.add_user("bob@example.test")
    srv.start()
    yield srv
    srv.stop()
