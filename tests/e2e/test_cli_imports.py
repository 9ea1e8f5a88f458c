"""What each `mailyard` admin command imports (issues 18 and 19: admin commands start in well
under 300 ms). Start-up time is what a command imports, so this checks the modules, in a
fresh interpreter per command, rather than racing the clock: no listener, no pipeline worker,
no inbound check and no library of an engine that is not configured. The figures themselves
are printed by bench/cli_startup.py (docs/BENCHMARKS.md, "CLI start-up")."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.test_cli_errors import ALICE, mbox, ok

PROBE = """
import sys
from mailyard.cli import main
try:
    code = main(sys.argv[2:])
except SystemExit as e:  # --help, --version
    code = e.code
with open(sys.argv[1], "w") as out:
    out.write("\\n".join(sorted(sys.modules)))
raise SystemExit(code)
"""

LIBRARIES = ("aiosmtpd", "aiosmtplib", "starlette", "uvicorn", "websockets", "httpx",
             "asyncpg", "aiobotocore", "botocore", "nats", "redis", "dkim", "dns", "spf",
             "publicsuffixlist", "cryptography", "http_ece", "argon2", "tqdm", "uvloop",
             "pypdf")
"""Third-party packages no command below needs (unless it says so in ALSO)."""

SERVER_ONLY = ("mailyard.protocols", "mailyard.pipeline.outbound", "mailyard.pipeline.worker",
               "mailyard.pipeline.smtpclient", "mailyard.services.checks",
               "mailyard.services.submission", "mailyard.services.vacation", "mailyard.tls",
               "mailyard.dns", "mailyard.mtasts", "mailyard.store.postgres",
               "mailyard.store.s3", "mailyard.store.redis")
"""The listeners, the workers and what only they use, and the engines not configured.
(mailyard.pipeline.inbound is not here: `reindex`, `fsck` and APPEND-like commands use it;
READERS below are the commands that must not load it.)"""

ROOT = Path(__file__).resolve().parents[2]

CLI = {"mailyard", "mailyard.cli", "mailyard.cli_ops", "mailyard.cli_transfer",
       "mailyard.cli_routing", "mailyard.cli_sieve"}


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A working directory with data/: one domain, Alice, three emails and a token."""
    root = tmp_path_factory.mktemp("imports")
    (root / "in.mbox").write_text(mbox(3))
    ok(run(root, "domain", "add", "example.test")[0])
    ok(run(root, "user", "add", ALICE, "--password-stdin", input=b"secret\n")[0])
    ok(run(root, "import", ALICE, str(root / "in.mbox"))[0])
    ok(run(root, "token", "create", ALICE, "--name", "probe")[0])
    return root


def run(home: Path, *args: str, input: bytes = b"", data: bool = True
        ) -> tuple[subprocess.CompletedProcess[bytes], set[str]]:
    """`mailyard ARGS` in a fresh interpreter (with --data-dir home/data): its result and
    every module it had imported when it was done."""
    env = {k: v for k, v in os.environ.items() if k != "MAILYARD_CONFIG"}
    env["PYTHONPATH"] = str(ROOT)  # this tree's mailyard, whatever is installed
    listing = home / "modules.txt"
    words = ["--data-dir", str(home / "data"), *args] if data else list(args)
    result = subprocess.run([sys.executable, "-c", PROBE, str(listing), *words], cwd=home,
                            env=env, input=input, capture_output=True, timeout=180,
                            check=False)
    return result, set(listing.read_text().split())


def loaded(modules: set[str], names: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules for n in names if m == n or m.startswith(n + "."))


@pytest.mark.parametrize("args", [["--version"], ["--help"], ["search", "--help"]],
                         ids=" ".join)
def test_help_and_version_load_no_more_than_the_cli(home: Path, args: list[str]) -> None:
    result, modules = run(home, *args, data=False)
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout
    assert {m for m in modules if m.split(".")[0] == "mailyard"} <= CLI
    assert "asyncio" not in modules


@pytest.mark.parametrize(("args", "also"), [
    (["search", ALICE, "note"], ()),
    (["search", ALICE, "note", "--json"], ()),
    (["user", "list"], ()),
    (["domain", "list"], ()),  # AccountService (the config's domains too), not argon2
    (["mail", "list", ALICE], ()),
    (["mail", "show", ALICE, "--raw", "ID"], ()),
    (["queue", "stats"], ()),
    (["dlq", "list"], ()),
    (["token", "list", ALICE], ()),
    (["fsck"], ()),
    (["gc", "--dry-run"], ()),
    (["export", ALICE, "EXPORT"], ("tqdm",)),
    (["import", ALICE, "MBOX"], ("tqdm",)),
    (["reindex", ALICE], ()),
    (["user", "add", "carol@example.test", "--password-stdin"], ("argon2",)),
    (["config", "sample"], ()),
], ids=lambda v: " ".join(v) if isinstance(v, list) else "")
def test_admin_command_imports_no_server_part(home: Path, args: list[str],
                                              also: tuple[str, ...]) -> None:
    if "ID" in args:
        listed = ok(run(home, "mail", "list", ALICE)[0])
        args = [listed.split("\t")[0] if a == "ID" else a for a in args]
    paths = {"EXPORT": str(home / "out.mbox"), "MBOX": str(home / "in.mbox")}
    args = [paths.get(a, a) for a in args]
    result, modules = run(home, *args, input=b"secret\n")
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout or result.stderr
    assert loaded(modules, SERVER_ONLY) == []
    assert loaded(modules, tuple(n for n in LIBRARIES if n not in also)) == []


def test_search_builds_only_what_it_reads(home: Path) -> None:
    """The search service over the MailStore and the index: no accounts service (argon2),
    no queue, no spam model."""
    result, modules = run(home, "search", ALICE, "note")
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.count(b"\t") == 9, result.stdout  # three emails, four columns each
    assert "mailyard.services.search" in modules
    assert loaded(modules, ("mailyard.services.accounts", "mailyard.store.sqlite.queue",
                            "mailyard.store.sqlite.spam", "mailyard.store.sqlite.counters")) \
        == []


READERS = [["mail", "list", ALICE], ["mail", "list", ALICE, "--label", "inbox"],
           ["mail", "show", ALICE, "ID"], ["user", "list"], ["domain", "list"],
           ["token", "list", ALICE], ["queue", "stats"], ["search", ALICE, "note"],
           ["search", ALICE, "in:inbox from:alice"]]
"""Commands that read mail or accounts: the inbound pipeline (its parsers, spam checks and
work items) is built when mail is ingested, not for them. (ssl is not checked here: asyncio
itself imports it.)"""


@pytest.mark.parametrize("args", READERS, ids=" ".join)
def test_a_command_that_reads_loads_no_pipeline(home: Path, args: list[str]) -> None:
    if "ID" in args:
        listed = ok(run(home, "mail", "list", ALICE)[0])
        args = [listed.split("\t")[0] if a == "ID" else a for a in args]
    result, modules = run(home, *args)
    assert result.returncode == 0, result.stderr.decode()
    assert loaded(modules, ("mailyard.pipeline", "mailyard.core.spam",
                            "mailyard.core.workitems", "argon2")) == []


def test_user_list_opens_the_mailstore_only(home: Path) -> None:
    result, modules = run(home, "user", "list")
    assert result.stdout.decode().startswith(ALICE + "\t")
    assert loaded(modules, ("mailyard.services", "mailyard.pipeline")) == []
    assert "mailyard.store.sqlite.mailstore" in modules


def test_the_probe_sees_a_command_that_needs_a_library(home: Path) -> None:
    """`domain dkim generate` needs dkimpy and cryptography, and the probe says so: the
    checks above would see a heavy import if a command made one."""
    result, modules = run(home, "domain", "dkim", "generate", "example.test",
                          "--algorithm", "ed25519", "--selector", "probe")
    assert result.returncode == 0, result.stderr.decode()
    assert b"probe._domainkey.example.test" in result.stdout
    assert {"dkim", "cryptography"} <= {m.split(".")[0] for m in modules}
