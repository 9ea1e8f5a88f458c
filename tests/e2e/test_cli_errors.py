"""Every CLI error path a user can walk into: one line on stderr, exit status 2, no
traceback, nothing on stdout. Real `mailyard` processes on a real data directory."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ALICE = "alice@example.test"


def mailyard(cwd: Path, *args: str, input: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    """`mailyard ARGS` in `cwd`, with no $MAILYARD_CONFIG and stdin a pipe (not a terminal)."""
    env = {k: v for k, v in os.environ.items() if k != "MAILYARD_CONFIG"}
    return subprocess.run([sys.executable, "-m", "mailyard.cli", *args], cwd=cwd, env=env,
                          input=input, capture_output=True, timeout=180, check=False)


def mbox(count: int) -> str:
    return "".join(
        f"From sender@example.org Thu Jan  {n + 1} 10:00:00 2026\nFrom: sender@example.org\n"
        f"To: {ALICE}\nSubject: note {n}\nMessage-ID: <n{n}@example.org>\n"
        f"Date: Thu, {n + 1} Jan 2026 10:00:00 +0000\n\nbody {n}\n\n" for n in range(count))


def ok(result: subprocess.CompletedProcess[bytes]) -> str:
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout.decode()


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory with mailyard.toml (data in ./data), one domain, Alice and three emails."""
    root = tmp_path_factory.mktemp("cli")
    (root / "mailyard.toml").write_text('data_dir = "data"\n')
    (root / "bad.toml").write_text("hostname = \n")
    (root / "unknown.toml").write_text('hostnme = "mx.example.test"\n')
    (root / "loud.toml").write_text('[log]\nlevel = "LOUD"\n')
    off = "[listen]\n" + "".join(f'{key} = ""\n' for key in (
        "smtp", "submission", "submissions", "imap", "imaps", "pop3", "pop3s", "http",
        "managesieve"))  # no port to find taken: the TLS files are what fails
    (root / "nocert.toml").write_text(
        f'data_dir = "data"\n{off}[tls]\ncertificate = "missing.pem"\n'
        'private_key = "missing.key"\n')
    (root / "notpem.toml").write_text(
        f'data_dir = "data"\n{off}[tls]\ncertificate = "three.mbox"\n'
        'private_key = "three.mbox"\n')
    (root / "three.mbox").write_text(mbox(3))
    ok(mailyard(root, "domain", "add", "example.test"))
    ok(mailyard(root, "user", "add", ALICE, "--password-stdin", input=b"secret\n"))
    ok(mailyard(root, "import", ALICE, "three.mbox"))
    return root


DOMAINS = ["", "bad domain!", "x@y", "a..b", "a" * 64 + ".test",
           ".".join(["a" * 63] * 4), "1.2.3.4", "-a.test"]

CASES: list[tuple[list[str], str, bytes]] = [
    # configuration
    (["--config", "missing.toml", "user", "list"], "missing.toml not found", b""),
    (["user", "list", "--config", "missing.toml"], "missing.toml not found", b""),
    (["--config", "bad.toml", "user", "list"], "bad.toml: Invalid value", b""),
    (["--config", "unknown.toml", "domain", "list"], "hostnme: unknown key", b""),
    (["--config", ".", "user", "list"], "configuration error: config file .:", b""),
    (["--config", "loud.toml", "serve"], "log.level: expected one of DEBUG", b""),
    (["serve", "--log-level", "verbose"], "--log-level: 'verbose' is not a log level", b""),
    (["serve", "--workers", "-1"], "--workers: must be 0 or more, not -1", b""),
    (["config", "check", "unknown.toml"], "hostnme: unknown key", b""),
    (["config", "check", "missing.toml"], "not found", b""),
    (["--config", "nocert.toml", "serve"], "tls.certificate: missing.pem is not a file", b""),
    (["--config", "notpem.toml", "serve"], "cannot load them as a PEM certificate", b""),
    (["config", "check", "notpem.toml"], "cannot load them as a PEM certificate", b""),
    # usage
    ([], "required: COMMAND", b""),
    (["frobnicate"], "invalid choice: 'frobnicate'", b""),
    (["user"], "required: ACTION", b""),
    (["user", "add"], "required: address", b""),
    (["mail", "list"], "required: address", b""),
    (["search", ALICE], "required: query", b""),
    (["--config"], "expected one argument", b""),
    (["queue", "list", "--limit", "many"], "not a whole number: 'many'", b""),
    (["mail", "list", ALICE, "--limit", "0"], "--limit: must be 1 or more, not 0", b""),
    (["search", ALICE, "note", "--limit", "-3"], "--limit: must be 1 or more, not -3", b""),
    (["dlq", "list", "--limit", "0"], "--limit: must be 1 or more", b""),
    (["token", "create", ALICE, "--days", "-1"], "--days: must be more than 0 days", b""),
    (["token", "create", ALICE, "--days", "0"], "leave --days out for no expiry", b""),
    (["import", ALICE, "three.mbox", "--batch-size", "0"], "--batch-size: must be 1 or more",
     b""),
    (["user", "quota", ALICE, "lots"], "not a size", b""),
    (["domain", "dkim", "generate", "example.test", "--algorithm", "dsa"], "invalid choice",
     b""),
    # users
    (["user", "add", "bob@example.test"], "--password-stdin", b""),
    (["user", "passwd", ALICE], "--password-stdin", b""),
    (["user", "add", "bob@example.test", "--password-stdin"], "password must not be empty",
     b""),
    (["user", "add", "bob", "--password-stdin"], "not an address", b"pw\n"),
    (["user", "add", "bob@nowhere.test", "--password-stdin"], "not a local domain", b"pw\n"),
    (["user", "add", ALICE, "--password-stdin"], ALICE, b"pw\n"),
    (["user", "remove", "nobody@example.test"], "nobody@example.test", b""),
    (["user", "quota", "nobody@example.test", "1G"], "nobody@example.test", b""),
    # domains
    *[(["domain", "add", "--", name], "is not a domain name", b"") for name in DOMAINS],
    (["domain", "add", "Example.TEST."], "example.test", b""),
    (["domain", "remove", "nowhere.test"], "nowhere.test", b""),
    (["domain", "dkim", "show", "x@y"], "is not a domain name", b""),
    # mail and search
    (["mail", "list", "nobody@example.test"], "nobody@example.test", b""),
    (["mail", "show", ALICE, "nope"], "nope", b""),
    (["search", ALICE, "before:notadate"], 'before: cannot read "notadate"', b""),
    (["search", ALICE, "larger:huge"], 'larger: cannot read "huge"', b""),
    (["search", ALICE, "older_than:xyz"], 'older_than: cannot read "xyz"', b""),
    (["search", ALICE, "is:bogus"], 'is: cannot read "bogus"', b""),
    (["search", "--json", ALICE, "note after:2026/13/45"], "after: cannot read", b""),
    (["search", ALICE, "(pizza OR revenue"], 'unbalanced "(" at position 1', b""),
    (["search", "nobody@example.test", "x"], "nobody@example.test", b""),
    (["search", ALICE, "in:nolabel"],
     'in:nolabel: alice@example.test has no mailbox or label "nolabel" (it has', b""),
    (["search", ALICE, 'note OR -Label:"Not There"'], 'label:"Not There": ', b""),
    (["mail", "list", ALICE, "--label", "nolabel"], "--label nolabel: alice@example.test",
     b""),
    (["reindex", "nobody@example.test"], "nobody@example.test", b""),
    # queue, tokens, policy
    (["queue", "show", "nope"], "nope", b""),
    (["queue", "cancel", "nope"], "nope", b""),
    (["dlq", "show", "nope"], "nope", b""),
    (["dlq", "drop", "nope"], "nope", b""),
    (["token", "list", "nobody@example.test"], "nobody@example.test", b""),
    (["token", "revoke", ALICE, "nope"], "nope", b""),
    (["policy", "deny", "not an entry"], "not an entry", b""),
    (["policy", "remove", "10.0.0.1"], "10.0.0.1", b""),
    # transfer and operations
    (["import", ALICE, "missing.mbox"], "missing.mbox", b""),
    (["import", ALICE], "give a PATH or --imap URL", b""),
    (["import", ALICE, "--imap", "imaps://alice@127.0.0.1:1"], "MAILYARD_IMAP_PASSWORD", b""),
    (["import", ALICE, "--imap", "imaps://alice@127.0.0.1:1", "--password-file", "nope.txt"],
     "nope.txt", b""),
    (["export", ALICE, "no/such/dir/out.mbox"], "no/such/dir", b""),
    (["--data-dir", "three.mbox", "user", "list"], "three.mbox: is a file, not a directory",
     b""),
    (["--data-dir", "dta", "user", "list"], "no data directory dta (in ", b""),
    (["fsck", "nobody@example.test"], "nobody@example.test", b""),
    (["account", "shards"], "no shards", b""),
    (["account", "move", ALICE, "1"], "no shards", b""),
]


def _id(case: tuple[list[str], str, bytes]) -> str:
    return " ".join(case[0])[:60] or "(nothing)"


@pytest.fixture(scope="module")
def results(home: Path) -> Iterator[dict[str, subprocess.CompletedProcess[bytes]]]:
    """Every case run once, three at a time (each is a Python start-up)."""
    with ThreadPoolExecutor(3) as pool:
        futures = {_id(c): pool.submit(mailyard, home, *c[0], input=c[2]) for c in CASES}
        yield {key: future.result() for key, future in futures.items()}


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_a_user_error_is_one_line_and_status_2(
        case: tuple[list[str], str, bytes],
        results: dict[str, subprocess.CompletedProcess[bytes]]) -> None:
    result = results[_id(case)]
    err = result.stderr.decode()
    assert "Traceback" not in err, err
    assert err.count("\n") == 1 and err.endswith("\n"), f"not one line:\n{err}"
    assert case[1] in err, err
    assert err.startswith("mailyard"), err
    assert result.stdout == b"", result.stdout
    assert result.returncode == 2, (result.returncode, err)


def test_the_data_was_not_touched_by_the_errors(
        home: Path, results: dict[str, subprocess.CompletedProcess[bytes]]) -> None:
    assert results  # every error case has run
    assert ok(mailyard(home, "domain", "list")) == "example.test\n"
    assert ok(mailyard(home, "user", "list")).startswith(ALICE + "\t")
    assert len(ok(mailyard(home, "mail", "list", ALICE)).splitlines()) == 3
    assert not (home / "mailyard-data").exists()


def _listen(**keys: str) -> str:
    off = {k: "" for k in ("smtp", "submission", "submissions", "imap", "imaps", "pop3",
                           "pop3s", "http")}
    return "[listen]\n" + "".join(f'{k} = "{v}"\n' for k, v in {**off, **keys}.items())


def test_a_taken_port_names_the_listen_key(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        (tmp_path / "mailyard.toml").write_text(_listen(smtp="127.0.0.1:0", imap=address))
        result = mailyard(tmp_path, "serve")
    err = result.stderr.decode()
    assert result.returncode == 2, err
    assert err == f'mailyard: [listen] imap = "{address}": cannot listen there: Address' \
                  " already in use\n", err
    assert not (tmp_path / "mailyard-data").exists() or result.stdout == b""


def test_two_keys_on_one_port_name_the_second(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{probe.getsockname()[1]}"
    (tmp_path / "mailyard.toml").write_text(_listen(imap=address, pop3=address))
    result = mailyard(tmp_path, "serve")
    err = result.stderr.decode()
    assert result.returncode == 2, err
    assert err.startswith(f'mailyard: [listen] pop3 = "{address}": cannot listen there'), err
    assert err.count("\n") == 1, err


def test_fsck_with_problems_left_is_status_1_not_2(home: Path) -> None:
    """1 stays "ran, and found something": fsck with a problem it did not repair."""
    assert ok(mailyard(home, "fsck")) == ""
    blobs = [p for p in (home / "data" / "blobs").rglob("*") if p.is_file()]
    assert blobs
    broken = blobs[0]
    kept = broken.read_bytes()
    broken.write_bytes(b"not what was stored")
    try:
        result = mailyard(home, "fsck")
        assert result.returncode == 1, result.stderr.decode()
        assert "Traceback" not in result.stderr.decode()
    finally:
        broken.write_bytes(kept)
    assert ok(mailyard(home, "fsck")) == ""


@pytest.mark.parametrize("wrong", ["database", "role"])
def test_a_postgresql_server_refusing_the_store_settings_is_one_line(tmp_path: Path,
                                                                     wrong: str) -> None:
    """A database or role that the PostgreSQL server does not have is a [store] setting to
    fix: one line and status 2, from an admin command and from serve alike (asyncpg's
    traceback before)."""
    import asyncio
    from urllib.parse import urlsplit, urlunsplit

    from tests.pgserver import admin_dsn, with_database

    admin = asyncio.run(admin_dsn())
    if wrong == "database":
        dsn, said = with_database(admin, "mailyard_no_such_db"), \
            'database "mailyard_no_such_db" does not exist'
    else:
        parts = urlsplit(admin)
        dsn, said = urlunsplit(parts._replace(netloc="mailyard_no_such_role@" + (
            parts.hostname or "127.0.0.1") + (f":{parts.port}" if parts.port else ""))), \
            "mailyard_no_such_role"
    (tmp_path / "mailyard.toml").write_text(
        _listen() + f'[store]\nmetadata = "{dsn}"\n')
    for args in (["user", "list"], ["serve"]):
        result = mailyard(tmp_path, *args)
        err = result.stderr.decode()
        assert result.returncode == 2, err
        assert err.startswith("mailyard: the PostgreSQL server refused the [store] settings: ")
        assert said in err and err.count("\n") == 1, err


def test_a_command_waiting_for_nats_that_does_not_answer_says_so(tmp_path: Path) -> None:
    """The NATS connection retries for ever; an admin command waiting on it says which
    servers do not answer (it was silent), and Ctrl-C ends it with one line."""
    import select
    import signal
    import time

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        nobody = f"nats://127.0.0.1:{probe.getsockname()[1]}"  # closed again: nothing there
    (tmp_path / "mailyard.toml").write_text(
        f'data_dir = "data"\n[cluster]\nnats = ["{nobody}"]\nqueue = "nats"\n')
    env = {k: v for k, v in os.environ.items() if k != "MAILYARD_CONFIG"}
    # As from a terminal: a suite started in the background (nohup, CI) has SIGINT ignored,
    # which its children inherit, and a process that starts with SIGINT ignored never sees
    # Ctrl-C (CI runs 2 and 3 hung here).
    proc = subprocess.Popen([sys.executable, "-m", "mailyard.cli", "queue", "stats"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        assert proc.stderr is not None
        ready, _, _ = select.select([proc.stderr], [], [], 120)
        assert ready, "no word on stderr in 2 minutes"
        line = proc.stderr.readline().decode()
        assert line.startswith("mailyard: waiting for NATS ([cluster] nats), which does not"
                               f" answer: {nobody}: Connection refused"), line
        assert proc.poll() is None, "it keeps waiting"
        proc.send_signal(signal.SIGINT)
        deadline = time.monotonic() + 60
        while proc.poll() is None:
            assert time.monotonic() < deadline, "Ctrl-C did not end it"
            time.sleep(0.1)
        assert proc.returncode == 130
        assert proc.stderr.read().decode() == "mailyard: interrupted\n"
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def test_labels_the_account_has_are_searched(home: Path) -> None:
    """The check for unknown labels leaves roles, their other names, keyword labels and
    labels written with dashes for spaces alone."""
    assert len(ok(mailyard(home, "search", ALICE, "in:inbox note")).splitlines()) == 3
    for query in ("in:spam", "in:Sent", "label:all-mail", "in:starred", "-in:drafts note"):
        result = mailyard(home, "search", ALICE, query)
        assert result.returncode == 0, (query, result.stderr)
    assert len(ok(mailyard(home, "mail", "list", ALICE, "--label", "Inbox")).splitlines()) == 3


READ_ONLY = [["user", "list"], ["domain", "list"], ["mail", "list", ALICE],
             ["search", ALICE, "note"], ["queue", "stats"], ["dlq", "list"], ["policy", "list"],
             ["alias", "list"], ["token", "list", ALICE], ["fsck"], ["reindex"],
             ["domain", "dkim", "show", "example.test"], ["user", "remove", ALICE]]


@pytest.mark.parametrize("args", READ_ONLY, ids=" ".join)
def test_a_command_in_a_directory_with_no_data_makes_none(tmp_path: Path,
                                                          args: list[str]) -> None:
    """Run where nothing was set up (the wrong directory, no config), a command that does not
    add anything says so in one line and leaves no empty ./mailyard-data behind."""
    result = mailyard(tmp_path, *args)
    err = result.stderr.decode()
    assert result.returncode == 2, err
    assert err == (f"mailyard: no data directory mailyard-data (in {tmp_path}): nothing has"
                   " been set up there; give --data-dir DIR (or the --config that names"
                   " data_dir), or start with `mailyard domain add DOMAIN`\n")
    assert result.stdout == b""
    assert list(tmp_path.iterdir()) == []


def test_the_first_domain_add_makes_the_data_directory(tmp_path: Path) -> None:
    ok(mailyard(tmp_path, "--data-dir", "new", "domain", "add", "example.test"))
    assert (tmp_path / "new" / "mail.db").is_file()
    assert ok(mailyard(tmp_path, "--data-dir", "new", "domain", "list")) == "example.test\n"
