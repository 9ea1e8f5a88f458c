"""`mailyard import` / `mailyard export` with real files, real servers and a real IMAP source.

Every check reads back through the server's own tools (`mail list --json`, `mail show --raw`,
`search`) or over IMAP with imaplib; nothing of ours is mocked.
"""

from __future__ import annotations

import hashlib
import imaplib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mailyard.core.mailformats import write_mbox
from tests.e2e.server import ROOT, Server

CORPUS = ROOT / "tests" / "data" / "corpora" / "mime"
PASSWORD = "secret-password"


def _msg(i: int, body: bytes = b"plain body\n", eol: bytes = b"\n", **headers: str) -> bytes:
    head = {"From": f"Sender {i} <s{i}@remote.test>", "To": "alice@example.test",
            "Subject": f"message {i}", "Message-ID": f"<m{i}@remote.test>",
            "Date": "Mon, 01 Jan 2024 10:00:00 +0000", **headers}
    lines = [f"{k.replace('_', '-')}: {v}".encode() for k, v in head.items()]
    return eol.join(lines) + eol + eol + body.replace(b"\n", eol)


def _import(server: Server, *args: str) -> str:
    return server.cli("import", *args).stdout.decode()


def _state(server: Server, address: str) -> dict[str, tuple[list[str], list[str]]]:
    """sha256 of the raw octets -> (labels but All Mail, keywords)."""
    out = {}
    raws = server.raws(address)
    for e in server.emails(address):
        raw = raws[e["id"]]
        out[hashlib.sha256(raw).hexdigest()] = (
            sorted(n for n in e["mailboxes"] if n != "All Mail"), sorted(e["keywords"]))
    return out


def _raws(server: Server, address: str) -> list[bytes]:
    return sorted(server.raws(address).values())


def _crlf(raw: bytes) -> bytes:
    """The form a message with bare LFs is stored and served in (issue 18)."""
    return raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def _exported(server: Server, address: str, path: Path) -> list[bytes]:
    """The messages as `mailyard export --format maildir` writes them."""
    server.cli("export", address, str(path), "--format", "maildir")
    return sorted(p.read_bytes() for p in path.rglob("cur/*"))


@pytest.fixture
def fresh(tmp_path: Path) -> Server:
    """A second server's data (never started: the CLI works on the data directory)."""
    srv = Server(tmp_path / "fresh")
    srv.add_user("carol@example.test")
    return srv


# ---------------------------------------------------------------------------- mbox

def test_mbox_with_from_lines_imports_byte_exact_once_and_is_searchable(
        server: Server, tmp_path: Path) -> None:
    tricky = [
        _msg(1, b"From the start of a line\n>From quoted once\n>>From quoted twice\nend\n"),
        _msg(2, b"crlf body\nFrom inside\n", eol=b"\r\n"),
        _msg(3, b"no newline at the end"),
        _msg(4, b"Zebrafish and kumquats\n"),
    ]
    no_id = b"From: x@remote.test\nSubject: no message id\n\nFrom a body line\n"
    mbox = tmp_path / "inbox.mbox"
    mbox.write_bytes(write_mbox([(r, "s@remote.test", 1_700_000_000_000) for r in
                                 [*tricky, no_id]]))
    out = _import(server, "alice@example.test", str(mbox))
    assert "5 imported, 0 skipped as duplicates, 0 failed" in out
    # mbox cannot carry "no final newline" without a sidecar: one newline is added, no more.
    came = [*tricky[:2], tricky[2] + b"\n", tricky[3], no_id]
    # Stored and served with CRLF; exported as they came.
    assert _raws(server, "alice@example.test") == sorted(_crlf(r) for r in came)
    assert _exported(server, "alice@example.test", tmp_path / "out") == sorted(came)
    out = _import(server, "alice@example.test", str(mbox))
    assert "0 imported, 5 skipped as duplicates" in out
    assert len(server.emails("alice@example.test")) == 5
    found = server.cli("search", "alice@example.test", "kumquats", "--json").stdout
    assert [r["subject"] for r in json.loads(found)["emails"]] == ["message 4"]
    # Over IMAP, in the INBOX, with the From-quoting undone.
    with imaplib.IMAP4("127.0.0.1", server.imap_port) as imap:
        imap.login("alice@example.test", PASSWORD)
        typ, data = imap.select("INBOX")
        assert data == [b"5"]
        typ, data = imap.fetch("1:*", "(BODY.PEEK[])")
        assert _crlf(tricky[0]) in [part[1] for part in data if isinstance(part, tuple)]


def test_mboxcl2_content_length_honoured(server: Server, tmp_path: Path) -> None:
    body = b"From an unquoted line (cl2 quotes nothing)\n>From kept as it is\n"
    first = b"Subject: cl2\nContent-Length: %d\n\n" % len(body) + body
    second = _msg(9)
    mbox = tmp_path / "cl2"
    mbox.write_bytes(b"From a@b Mon Jan  1 00:00:00 2024\n" + first + b"\n"
                     b"From a@b Mon Jan  1 00:00:00 2024\n" + second + b"\n")
    assert "2 imported" in _import(server, "alice@example.test", str(mbox))
    assert _raws(server, "alice@example.test") == sorted([_crlf(first), _crlf(second)])
    assert _exported(server, "alice@example.test", tmp_path / "out") == sorted([first, second])


# ---------------------------------------------------------------------------- Maildir, eml

def test_maildir_flags_and_folders(server: Server, tmp_path: Path) -> None:
    root = tmp_path / "Maildir"
    files = {
        "cur/100.a.host:2,S": _msg(1),
        "cur/101.b.host:2,FRS": _msg(2),
        "new/102.c.host": _msg(3),
        ".Work.Projects/cur/103.d.host:2,Da": _msg(4),
        ".Work.Projects/cur/104.e.host:2,T": _msg(5),
        ".Sent/cur/105.f.host:2,S": _msg(6),
        ".Entw&APw-rfe/cur/106.g.host:2,": _msg(7),
    }
    for name, raw in files.items():
        path = root / name
        for sub in ("cur", "new", "tmp"):
            (path.parent.parent / sub).mkdir(parents=True, exist_ok=True)
        path.write_bytes(raw)
    (root / ".Work.Projects" / "dovecot-keywords").write_text("0 Important-Client\n")
    # The same message in two folders: one email with two labels.
    (root / ".Sent/cur/107.h.host:2,S").write_bytes(_msg(1))
    os.utime(root / "cur/100.a.host:2,S", (1_600_000_000, 1_600_000_000))
    out = _import(server, "alice@example.test", str(root))
    assert "7 imported, 1 skipped as duplicates, 0 failed" in out
    by_subject = {e["subject"]: e for e in server.emails("alice@example.test")}
    expect = {
        "message 1": (["INBOX", "Sent"], ["$seen"]),
        "message 2": (["INBOX"], ["$answered", "$flagged", "$seen"]),
        "message 3": (["INBOX"], []),
        "message 4": (["Work/Projects"], ["$draft", "important-client"]),
        "message 5": (["Work/Projects"], ["$deleted"]),
        "message 6": (["Sent"], ["$seen"]),
        "message 7": (["Entwürfe"], []),
    }
    for subject, (labels, keywords) in expect.items():
        e = by_subject[subject]
        assert sorted(n for n in e["mailboxes"] if n != "All Mail") == labels, subject
        assert sorted(e["keywords"]) == keywords, subject
    assert by_subject["message 1"]["receivedAt"] == 1_600_000_000_000
    assert "0 imported, 8 skipped" in _import(server, "alice@example.test", str(root))


def test_corpus_as_eml_round_trips_through_mbox_export(server: Server, fresh: Server,
                                                       tmp_path: Path) -> None:
    """The MIME corpus (CPython's and SpamScope's edge cases) as a directory of .eml files:
    imported, exported as mbox, imported into a fresh server: the same octets."""
    eml = tmp_path / "eml"
    sources = sorted(p for p in CORPUS.rglob("*") if p.is_file())
    assert len(sources) > 40
    for i, path in enumerate(sources):
        folder = eml / path.parent.name
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, folder / f"{i:03d}.eml")
    out = _import(server, "alice@example.test", str(eml))
    imported = int(out.split()[0])
    duplicates = int(out.split(", ")[1].split()[0])
    assert imported + duplicates == len(sources) and "0 failed" in out
    before = _state(server, "alice@example.test")
    assert {tuple(v[0]) for v in before.values()} <= {("cpython",), ("spamscope",),
                                                      ("cpython", "spamscope")}
    server.cli("export", "alice@example.test", str(tmp_path / "all.mbox"))
    fresh.cli("import", "carol@example.test", str(tmp_path / "all.mbox"))
    assert _state(fresh, "carol@example.test") == before


# ---------------------------------------------------------------------------- round trips

def _populate_over_imap(server: Server, address: str) -> None:
    """Labels and flags made the way a user makes them: APPEND, COPY, STORE."""
    with imaplib.IMAP4("127.0.0.1", server.imap_port) as imap:
        imap.login(address, PASSWORD)
        imap.create("Work")
        imap.create("Work/Projects")
        imap.append("INBOX", "(\\Seen)", None, _msg(1))
        imap.append("INBOX", "(\\Flagged $Forwarded)", None, _msg(2, b"From me\n>From you\n"))
        imap.append("Work/Projects", "(\\Answered custom-kw)", None, _msg(3, eol=b"\r\n"))
        imap.append("Sent", "(\\Seen)", None, _msg(4, b"no final newline"))
        imap.append("Archive", "()", None, _msg(5))
        imap.select("INBOX")
        imap.uid("COPY", "1", "Work")
        imap.select("Archive")
        imap.uid("STORE", "1", "+FLAGS.SILENT", "(\\Deleted)")
        imap.expunge()  # out of Archive: in no label but All Mail
        imap.uid("STORE", "1", "-FLAGS.SILENT", "(\\Deleted)")


@pytest.mark.parametrize("fmt", ["mbox", "maildir"])
def test_export_import_round_trip(server: Server, fresh: Server, tmp_path: Path,
                                  fmt: str) -> None:
    _populate_over_imap(server, "alice@example.test")
    before = _state(server, "alice@example.test")
    assert len(before) == 5
    assert sorted(v[0] for v in before.values()) == [
        [], ["INBOX"], ["INBOX", "Work"], ["Sent"], ["Work/Projects"]]
    target = tmp_path / f"export.{fmt}"
    out = server.cli("export", "alice@example.test", str(target), "--format", fmt)
    assert "5 messages exported" in out.stdout.decode()
    fresh.cli("import", "carol@example.test", str(target))
    assert _state(fresh, "carol@example.test") == before
    again = fresh.cli("import", "carol@example.test", str(target)).stdout.decode()
    assert again.startswith("0 imported")


def test_export_one_label(server: Server, tmp_path: Path) -> None:
    _populate_over_imap(server, "alice@example.test")
    out = server.cli("export", "alice@example.test", str(tmp_path / "work"), "--format",
                     "maildir", "--label", "Work/Projects").stdout.decode()
    assert "1 messages exported" in out
    [only] = (tmp_path / "work" / ".Work.Projects" / "cur").iterdir()
    assert only.read_bytes() == _msg(3, eol=b"\r\n")
    assert only.name.endswith(":2,Ra")  # \Answered and Dovecot keyword letter a
    assert "custom-kw" in (tmp_path / "work" / ".Work.Projects" / "dovecot-keywords").read_text()


# ---------------------------------------------------------------------------- interruption

def _count_found(server: Server, address: str, query: str) -> int:
    out = server.cli("search", address, query, "--json", "--limit", "1").stdout
    return int(json.loads(out)["total"])


@pytest.mark.slow
def test_sigkill_midway_then_rerun_loses_nothing_and_duplicates_nothing(
        fresh: Server, tmp_path: Path) -> None:
    total = 2000
    mbox = tmp_path / "big.mbox"
    mbox.write_bytes(write_mbox((_msg(i, b"bulk payload marmalade %d\n" % i), "s@remote.test",
                                 1_700_000_000_000 + i) for i in range(total)))
    cmd = [sys.executable, "-m", "mailyard.cli", "import", "carol@example.test", str(mbox),
           "--batch-size", "50"]
    proc = subprocess.Popen(cmd, env=fresh.env(), cwd=fresh.root, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    records = fresh.data_dir / "transfer"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        found = list(records.glob("import-*.json")) if records.exists() else []
        if found and json.loads(found[0].read_bytes() or b'{"from": 0}')["from"] >= 500:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = len(fresh.emails("carol@example.test"))
    assert 0 < partial < total, partial
    out = fresh.cli("import", "carol@example.test", str(mbox)).stdout.decode()
    assert "resumed at message" in out
    emails = fresh.emails("carol@example.test")
    assert len(emails) == total
    assert len({e["messageId"] for e in emails}) == total
    assert int(out.split()[0]) == total - partial
    assert _count_found(fresh, "carol@example.test", "marmalade") == total
    assert not list(records.glob("import-*.json"))


# ---------------------------------------------------------------------------- IMAP pull

def _pull(target: Server, address: str, source: Server, *extra: str) -> str:
    env = {**target.env(), "MAILYARD_IMAP_PASSWORD": PASSWORD}
    url = f"imaps://alice%40example.test@127.0.0.1:{source.imaps_port}"
    result = subprocess.run(
        [sys.executable, "-m", "mailyard.cli", "import", address, "--imap", url, "--insecure",
         *extra], env=env, cwd=target.root, capture_output=True, timeout=300)
    assert result.returncode == 0, result.stderr.decode()
    assert PASSWORD not in " ".join(map(str, result.args))
    return result.stdout.decode()


@pytest.mark.parametrize("mode", [(), ("--no-gmail",)], ids=["x-gm-labels", "mailboxes"])
def test_imap_pull_from_another_server(server: Server, fresh: Server,
                                       mode: tuple[str, ...]) -> None:
    _populate_over_imap(server, "alice@example.test")
    before = _state(server, "alice@example.test")
    out = _pull(fresh, "carol@example.test", server, *mode)
    assert "0 failed" in out
    after = _state(fresh, "carol@example.test")
    if mode:  # mailbox by mailbox: All Mail is skipped, so the unlabelled email stays behind
        before = {k: v for k, v in before.items() if v[0]}
    assert after == before
    received = {e["messageId"]: e["receivedAt"] for e in server.emails("alice@example.test")}
    for e in fresh.emails("carol@example.test"):
        assert abs(e["receivedAt"] - received[e["messageId"]]) < 1000  # INTERNALDATE: seconds
    assert _pull(fresh, "carol@example.test", server, *mode).startswith("0 imported")
    assert _state(fresh, "carol@example.test") == after


def test_imap_pull_needs_a_password_not_in_argv(server: Server, fresh: Server) -> None:
    result = fresh.cli("import", "carol@example.test", "--imap",
                       f"imaps://alice@127.0.0.1:{server.imaps_port}", check=False)
    assert result.returncode == 2, "a user error (issue 19)"
    assert b"MAILYARD_IMAP_PASSWORD" in result.stderr
