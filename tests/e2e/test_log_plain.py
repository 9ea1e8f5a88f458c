"""No terminal escape codes in the log (issue 19, "Logs an admin can use"): uvicorn, which runs
the HTTPS/JMAP listener, logs its start and stop with a coloured copy of the message, and a
client can put escape codes in what it sends (a user name); neither reaches a line of the text
or the JSON log that `mailyard serve` writes to stderr."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from tests.e2e.server import Server, wait_port

ALICE = "alice@example.test"
PASSWORD = "secret-password"
EVIL = "\x1b[31mred\x1b[0m\x1b]0;title\x07@example.test"


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_no_escape_codes_in_the_log(tmp_path: Path, fmt: str) -> None:
    srv = Server(tmp_path)
    with srv.config_path.open("a") as f:
        f.write(f'[log]\nformat = "{fmt}"\nlevel = "DEBUG"\n')
    srv.add_user(ALICE)
    srv.start()
    try:
        wait_port(srv.http_port)
        with httpx.Client(base_url=f"https://127.0.0.1:{srv.http_port}", verify=False,
                          timeout=30) as client:
            assert client.get("/jmap/session", auth=(ALICE, PASSWORD)).status_code == 200
            assert client.get("/jmap/session", auth=(EVIL, "wrong")).status_code == 401
            assert client.get("/no/such/path").status_code in (401, 404)
    finally:
        srv.stop()
    data = srv.log_path.read_bytes()
    text = data.decode("utf-8")
    # The records that carried colours are there, without them.
    assert "Started server process" in text and "Finished server process" in text
    assert b"\x1b" not in data and "\x9b" not in text
    if fmt == "text":
        assert "color_message" not in text
        return
    events = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    assert any(e["logger"].startswith("uvicorn") for e in events)
    for event in events:
        assert "color_message" not in event, event
        assert "\x1b" not in json.dumps(event, ensure_ascii=False), event
