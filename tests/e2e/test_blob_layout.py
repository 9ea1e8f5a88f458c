"""Where delivered mail's blobs land, on files and on S3 (the session's Ceph radosgw): message
bodies under the day they were received, attachments by hash, the email row naming the body's
whole key; and stores written before that layout (bodies under their bare SHA-256) still read,
checked, collected and exported."""

from __future__ import annotations

import asyncio
import hashlib
import imaplib
import json
import mailbox
import smtplib
import sqlite3
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.server import Server

ALICE = "alice@example.test"
ENGINES = ["files", "s3"]

# Blob work through the same Runtime the CLI opens, so one script serves both blob engines.
_BLOBS = """
import asyncio, json, sys
from mailyard import config
from mailyard.app import Runtime

async def main() -> None:
    op, arg = sys.argv[1], json.loads(sys.argv[2])
    runtime = Runtime.open(config.load(None))
    try:
        out = {}
        if op == "bodies":  # arg: an address -> {email id: [blob id, received_at]}
            account = await runtime.store.get_account(arg)
            records = await runtime.mailbox.emails(account, None, limit=10_000)
            out = {r.id: [r.blob_id, r.received_at] for r in records}
        elif op == "move":  # arg: {from id: to id}
            for old, new in arg.items():
                data = await runtime.blobs.get(old)
                await runtime.blobs.put(new, data)
                await runtime.blobs.delete(old)
        elif op == "replace":  # arg: {id: hex of the new octets, or "" to delete}
            for blob_id, data in arg.items():
                await runtime.blobs.delete(blob_id)
                if data:
                    await runtime.blobs.put(blob_id, bytes.fromhex(data))
        print(json.dumps(out))
    finally:
        runtime.close()

asyncio.run(main())
"""


def blobs(srv: Server, op: str, arg: Any) -> Any:
    result = subprocess.run([sys.executable, "-c", _BLOBS, op, json.dumps(arg)],
                            capture_output=True, env=srv.env(), cwd=srv.root, timeout=120,
                            check=False)
    assert result.returncode == 0, result.stderr.decode()
    return json.loads(result.stdout)


def message(word: str, attachment: bytes) -> bytes:
    msg = EmailMessage()
    msg["From"] = "carol@elsewhere.test"
    msg["To"] = ALICE
    msg["Subject"] = word.title()
    msg["Message-ID"] = f"<{word}@elsewhere.test>"
    msg.set_content(f"The word of the day is {word}.\n")
    msg.add_attachment(attachment, maintype="application", subtype="octet-stream",
                       filename=f"{word}.bin")
    return msg.as_bytes(policy=policy.SMTP)


WORDS = {"zanzibar": b"Z" * 8192, "quokka": bytes(range(256)) * 32, "marmalade": b"M" * 8192}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(params=ENGINES)
def delivered(request: pytest.FixtureRequest, tmp_path: Path
              ) -> Iterator[tuple[Server, dict[str, str], int, int]]:
    """Three messages with an 8 KiB attachment each, delivered over SMTP to a server whose
    MailStore is SQLite (the legacy test edits rows) and whose blobs are files or S3; stopped
    again. Also the clock (ms) before and after, which bound every received_at."""
    srv = Server(tmp_path, blobs="s3" if request.param == "s3" else "", metadata="")
    srv.add_user(ALICE)
    srv.start()
    try:
        start = int(time.time() * 1000)
        with smtplib.SMTP("127.0.0.1", srv.smtp_port) as smtp:
            for word, data in WORDS.items():
                smtp.sendmail("carol@elsewhere.test", [ALICE], message(word, data))
        emails = srv.wait_emails(ALICE, 3)
        assert len(emails) == 3
        srv.wait_queue_empty()
        end = int(time.time() * 1000)
    finally:
        srv.stop()
    yield srv, {e["subject"].lower(): e["id"] for e in emails}, start, end
    srv.stop()


def s3_keys(srv: Server, under: str) -> list[str]:
    """Keys in the server's bucket under its prefix + `under`, listed with a plain client."""
    from tests import s3
    from tests.s3client import keys

    url = tomllib.loads(srv.config_path.read_text())["store"]["blobs"]
    bucket, _, prefix = url.removeprefix("s3://").partition("/")
    gateway = s3.gateway()
    assert bucket == gateway.bucket
    return [k.removeprefix(prefix + "/")
            for k in asyncio.run(keys(gateway, f"{prefix}/{under}"))]


def test_delivered_body_sits_under_its_date_and_attachments_by_hash(
        delivered: tuple[Server, dict[str, str], int, int]) -> None:
    srv, ids, start, end = delivered
    bodies = blobs(srv, "bodies", ALICE)
    assert set(bodies) == set(ids.values())
    days = set()
    for blob_id, received_at in bodies.values():
        assert start - 1000 <= received_at <= end + 1000
        day = datetime.fromtimestamp(received_at / 1000, UTC).strftime("%Y/%m/%d")
        days.add(day)
        prefix, _, digest = blob_id.rpartition("/")
        assert prefix == f"bodies/{day}" and len(digest) == 64, blob_id
    attachments = {sha(data) for data in WORDS.values()}
    body_ids = {blob_id for blob_id, _ in bodies.values()}
    if srv.blobs == "s3":
        listed = set()
        for day in days:  # one listing per day prefix: what a lifecycle rule or an operator sees
            listed |= set(s3_keys(srv, f"bodies/{day}/"))
        assert listed == body_ids
        flat = s3_keys(srv, "blobs/")
        assert {k.rsplit("/", 1)[-1] for k in flat} == attachments  # spools are gone
        assert all(k == f"blobs/{a[-2:]}/{a[-4:-2]}/{a}" for k in flat
                   for a in [k.rsplit("/", 1)[-1]])
    else:
        root = srv.data_dir / "blobs"
        for blob_id in body_ids:
            path = root / blob_id
            assert path.is_file() and sha(path.read_bytes()) == blob_id.rsplit("/", 1)[-1]
        assert {p.relative_to(root).as_posix() for p in root.glob("bodies/*/*/*/*")} == body_ids
        # Flat ids one level under their last two characters (issue 24); spools are gone.
        assert {p.name for p in root.glob("??/*")} == attachments
        for a in attachments:
            assert (root / a[-2:] / a).is_file()
    # Read back whole through the server's own path.
    raws = srv.raws(ALICE)
    for word in WORDS:
        assert f"The word of the day is {word}.".encode() in raws[ids[word]]


def test_fsck_checks_the_sha256_of_dated_bodies(
        delivered: tuple[Server, dict[str, str], int, int]) -> None:
    srv, ids, _, _ = delivered
    bodies = blobs(srv, "bodies", ALICE)
    damaged, lost = bodies[ids["zanzibar"]][0], bodies[ids["marmalade"]][0]
    blobs(srv, "replace", {damaged: b"not the skeleton it was".hex(), lost: ""})
    result = srv.cli("fsck", check=False)
    assert result.returncode == 1, result.stderr.decode()
    lines = result.stdout.decode().splitlines()
    found = {(line.split("\t")[1], line.split("\t")[2]) for line in lines}
    assert found == {("bad-blob", "NOT REPAIRABLE"), ("missing-blob", "NOT REPAIRABLE")}, lines
    assert any(damaged in line and "\tbad-blob\t" in line for line in lines), lines
    assert any(lost in line and "\tmissing-blob\t" in line for line in lines), lines


def test_store_older_than_the_dated_layout_reads_checks_collects_and_exports(
        delivered: tuple[Server, dict[str, str], int, int], tmp_path: Path) -> None:
    """Two bodies moved back to their bare SHA-256 ids (where Mailyard kept every body before
    the dated layout) with the rows naming them so: the mail still reads and exports, fsck
    finds it whole, and gc frees a destroyed email's old-style body but keeps a live one."""
    srv, ids, _, _ = delivered
    before = srv.raws(ALICE)
    bodies = blobs(srv, "bodies", ALICE)
    legacy = {ids[w]: bodies[ids[w]][0] for w in ("zanzibar", "quokka")}
    bare = {email: blob_id.rsplit("/", 1)[-1] for email, blob_id in legacy.items()}
    blobs(srv, "move", {legacy[e]: bare[e] for e in legacy})
    mail = sqlite3.connect(srv.data_dir / "mail.db")
    with mail:
        for email, blob_id in bare.items():
            assert mail.execute("UPDATE emails SET blob_id = ? WHERE id = ?",
                                (blob_id, email)).rowcount == 1
    mail.close()

    assert srv.raws(ALICE) == before
    fsck = srv.cli("fsck", check=False)
    assert (fsck.returncode, fsck.stdout) == (0, b""), fsck.stdout.decode()
    assert "3 email(s)" in fsck.stderr.decode()

    # Destroy the old-style zanzibar; quokka (old style) and marmalade (dated) stay.
    srv.start()
    try:
        with imaplib.IMAP4("127.0.0.1", srv.imap_port) as imap:
            imap.login(ALICE, "secret-password")
            imap.select('"All Mail"')  # expunged there, an email is destroyed
            _, found = imap.search(None, "SUBJECT", "Zanzibar")
            assert len(found[0].split()) == 1
            imap.store(found[0].decode(), "+FLAGS", "\\Deleted")
            imap.expunge()
    finally:
        srv.stop()
    gc = srv.cli("gc", "--grace", "0")
    freed = {line.split("\t")[1] for line in gc.stdout.decode().splitlines()}
    assert freed == {bare[ids["zanzibar"]], sha(WORDS["zanzibar"])}, gc.stdout.decode()
    assert srv.cli("gc", "--grace", "0").stdout == b""  # the rest is all referenced

    fsck = srv.cli("fsck", check=False)
    assert (fsck.returncode, fsck.stdout) == (0, b""), fsck.stdout.decode()
    target = tmp_path / "alice.mbox"
    assert "2 messages exported" in srv.cli("export", ALICE, str(target)).stdout.decode()
    exported = [m.as_bytes() for m in mailbox.mbox(target)]
    assert len(exported) == 2
    assert any(b"The word of the day is quokka." in m for m in exported)
    assert any(b"The word of the day is marmalade." in m for m in exported)
    after = srv.raws(ALICE)
    assert after == {k: v for k, v in before.items() if k != ids["zanzibar"]}
