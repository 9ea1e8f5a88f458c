"""The README's examples work as written (issue 19): its shell blocks are taken from README.md
and run, each command as it stands, against a real `mailyard serve`. Only what a test must
change is changed: every default port becomes the test server's free port, `mailyard-data`
its data directory. The commands that ask for a password (the CLI's `user add`, curl, swaks,
fetchmail) get it typed on a pseudo-terminal, as a user would."""

from __future__ import annotations

import os
import pty
import re
import select
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from mailyard.config import Listen
from tests.e2e.server import ROOT, Server

README = ROOT / "README.md"
PASSWORD = "readme-password-1"


@dataclass(frozen=True)
class Ran:
    command: str
    output: str
    status: int


def shell_blocks() -> list[list[str]]:
    """The README's ```sh blocks, each a list of commands (continuation lines joined)."""
    blocks = re.findall(r"```sh\n(.*?)```", README.read_text(), re.S)
    return [[line for line in block.replace("\\\n", " ").splitlines() if line.strip()]
            for block in blocks]


def command(program: str, contains: str = "") -> str:
    """The one README command starting with `program` (and holding `contains`)."""
    found = [c for block in shell_blocks() for c in block
             if c.startswith(program) and contains in c]
    assert len(found) == 1, (program, contains, found)
    return found[0]


def port_map(server: Server) -> dict[str, str]:
    """README's ports (the [listen] defaults) -> the test server's."""
    defaults = Listen()
    ours = {"smtp": server.smtp_port, "submission": server.submission_port,
            "submissions": server.submissions_port, "imap": server.imap_port,
            "imaps": server.imaps_port, "pop3": server.pop3_port, "pop3s": server.pop3s_port,
            "http": server.http_port}
    return {getattr(defaults, key).rpartition(":")[2]: str(port) for key, port in ours.items()}


def localised(text: str, server: Server) -> str:
    ports = port_map(server)
    text = re.sub(r"(?<![0-9])(" + "|".join(ports) + r")(?![0-9])",
                  lambda m: ports[m.group(1)], text)
    return text.replace("mailyard-data/", f"{server.data_dir.name}/")


def run(text: str, server: Server, home: Path, timeout: float = 120) -> Ran:
    """`text` run by sh on a pseudo-terminal in the server's directory, the password typed at
    every prompt for one."""
    line = localised(text, server)
    env = {**os.environ, "HOME": str(home), "MAILYARD_CONFIG": str(server.config_path)}
    pid, fd = pty.fork()
    if pid == 0:  # the child: a user's shell in the directory the README's commands run in
        os.chdir(server.root)
        os.execvpe("sh", ["sh", "-c", line], env)
    out = b""
    answered = 0
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 1.0)
        if not ready:
            continue
        try:
            data = os.read(fd, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        out += data
        if out.lower().count(b"password") > answered and out.rstrip().endswith(b":"):
            answered = out.lower().count(b"password")
            os.write(fd, PASSWORD.encode() + b"\n")
    else:
        os.kill(pid, 9)
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return Ran(line, out.decode("utf-8", "replace"), os.waitstatus_to_exitcode(status))


@pytest.fixture
def readme_server(tmp_path: Path) -> Server:
    """A server as the README starts it: hostname localhost (the certificate's name), no
    domain yet (the README adds it), and `.venv/bin/mailyard` where the README calls it."""
    srv = Server(tmp_path / "srv", hostname="localhost", domains=())
    venv = srv.root / ".venv" / "bin"
    venv.mkdir(parents=True)
    (venv / "mailyard").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m mailyard.cli "$@"\n')
    (venv / "mailyard").chmod(0o755)
    return srv


def test_the_readme_ports_are_the_defaults() -> None:
    text = "\n".join(c for block in shell_blocks() for c in block)
    defaults = {v.rpartition(":")[2] for v in vars(Listen()).values() if v}
    used = set(re.findall(r"127\.0\.0\.1:(\d+)", text)) | set(re.findall(r"-P (\d+)", text))
    assert used and used <= defaults, used - defaults


def test_the_readme_examples_work_as_written(readme_server: Server, tmp_path: Path) -> None:
    srv = readme_server
    home = tmp_path / "home"
    home.mkdir()
    quick = next(b for b in shell_blocks() if any("domain add" in c for c in b))
    assert len(quick) == 5, quick
    domain_add, user_add, swaks, mail_list, curl_imap = quick
    assert run(domain_add, srv, home).status == 0
    added = run(user_add, srv, home)
    assert added.status == 0 and "alice@example.test added" in added.output, added
    srv.start()
    try:
        sent = run(swaks, srv, home)
        assert sent.status == 0 and "250 2.0.0 OK queued" in sent.output, sent
        srv.wait_emails("alice@example.test", 1)
        listed = run(mail_list, srv, home)
        assert listed.status == 0 and "\ttest " in listed.output, listed  # swaks's subject
        # The curl IMAP example shows the message itself, not a mailbox listing.
        shown = run(curl_imap, srv, home)
        assert shown.status == 0 and "This is a test mailing" in shown.output, shown
        assert "X-Mailer: swaks" in shown.output, shown

        pop3_list = run(command("curl", "pop3://"), srv, home)
        assert pop3_list.status == 0 and re.search(r"^1 \d+\r*$", pop3_list.output, re.M), \
            pop3_list
        fetched = run(command("fetchmail"), srv, home)
        assert fetched.status == 0, fetched
        assert "This is a test mailing" in (srv.root / "fetched.txt").read_text()
        assert len(srv.emails("alice@example.test")) == 1  # --keep

        session = run(command("curl -k -u"), srv, home)
        assert session.status == 0 and "urn:ietf:params:jmap:core" in session.output, session
        submitted = run(command("swaks", "--auth"), srv, home)
        assert submitted.status == 0 and "250 2.0.0 OK queued" in submitted.output, submitted
        searched = run(command(".venv/bin/mailyard search"), srv, home)
        assert searched.status == 0, searched

        created = run(command(".venv/bin/mailyard token create"), srv, home)
        token = re.search(r"myt1\.\S+", created.output)
        assert created.status == 0 and token, created
        bearer = command("curl", "Bearer").replace("myt1....", token.group(0))
        assert "urn:ietf:params:jmap:core" in run(bearer, srv, home).output
        listing = run(command(".venv/bin/mailyard token list"), srv, home)
        token_id = re.search(r"^(t\w+)\tphone", listing.output, re.M)
        assert listing.status == 0 and token_id, listing
        revoke = command(".venv/bin/mailyard token revoke").replace("TOKEN_ID", token_id.group(1))
        assert run(revoke, srv, home).status == 0
        refused = run(bearer + " -o /dev/null -w '%{http_code}'", srv, home)
        assert refused.output.strip().endswith("401"), refused
    finally:
        srv.stop()


def test_the_readme_points_only_inside_the_repository() -> None:
    """Every file the README names (a link, or a path under one of the repository's
    directories) is in the repository; nothing is named by a path that leaves it."""
    text = README.read_text()
    assert "../" not in text
    links = [t for t in re.findall(r"\]\(([^)]+)\)", text) if "://" not in t]
    paths = re.findall(r"(?<![\w/.-])((?:mailyard|tests|scripts|docs|bench)/[\w./-]*\w)", text)
    named = [p.rstrip("/") for p in links + paths]
    assert "mailyard.example.toml" in named and "tests/e2e/test_readme.py" in text
    missing = [p for p in named if not (ROOT / p).exists()]
    assert not missing, missing
