"""`mailyard gc` on a real data directory: blobs of destroyed emails go once they are older
than the grace period; shared attachments, live emails, uploads and the spool of a dead
letter stay; a fresh unreferenced blob (a delivery in flight) is never removed."""

from __future__ import annotations

import hashlib
import imaplib
import os
import smtplib
import time
from email import policy
from email.message import EmailMessage
from pathlib import Path

from tests.e2e.jmapclient import Jmap
from tests.e2e.server import Server, wait_port

ALICE, BOB = "alice@example.test", "bob@example.test"
PASSWORD = "secret-password"
SHARED, OWN = b"S" * 9000, bytes(range(256)) * 40


def message(to: str, subject: str, attachment: bytes) -> bytes:
    msg = EmailMessage()
    msg["From"] = "carol@elsewhere.test"
    msg["To"] = to
    msg["Subject"] = subject
    msg.set_content(f"{subject}\n")
    msg.add_attachment(attachment, maintype="application", subtype="octet-stream",
                       filename="a.bin")
    return msg.as_bytes(policy=policy.SMTP)


def blob_files(srv: Server) -> dict[str, Path]:
    """Blob files by blob id: flat ids one level under their last two characters (the old
    two-level fan-out too, which stores still read), message bodies by the day received
    (bodies/YYYY/MM/DD/<sha256>, the id being the path)."""
    root = srv.data_dir / "blobs"
    flat = {p.name: p for pattern in ("??/*", "??/??/*") for p in root.glob(pattern)
            if p.is_file() and not p.name.startswith(".tmp-")}
    return flat | {p.relative_to(root).as_posix(): p for p in root.glob("bodies/*/*/*/*")
                   if not p.name.startswith(".tmp-")}


def age_all(srv: Server, seconds: float) -> None:
    old = time.time() - seconds
    for path in blob_files(srv).values():
        os.utime(path, (old, old))


def gc(srv: Server, *args: str) -> tuple[set[str], str]:
    result = srv.cli("gc", *args)
    freed = {line.split("\t")[1] for line in result.stdout.decode().splitlines()}
    return freed, result.stderr.decode()


def test_gc_frees_only_unreferenced_blobs_older_than_the_grace(tmp_path: Path) -> None:
    srv = Server(tmp_path, queue={"max_attempts": 1})
    srv.add_user(ALICE)
    srv.add_user(BOB)
    srv.cli("user", "quota", BOB, "2K")
    srv.start()
    try:
        with smtplib.SMTP("127.0.0.1", srv.smtp_port) as smtp:
            smtp.sendmail("carol@elsewhere.test", [ALICE], message(ALICE, "keep me", SHARED))
            smtp.sendmail("carol@elsewhere.test", [ALICE], message(ALICE, "drop me", SHARED))
            smtp.sendmail("carol@elsewhere.test", [ALICE], message(ALICE, "drop me too", OWN))
            # Bob's quota refuses it at delivery (no SIZE announced, so RCPT cannot tell):
            # a dead letter whose spooled octets `dlq retry` needs.
            assert smtp.mail("carol@elsewhere.test")[0] == 250
            assert smtp.rcpt(BOB)[0] == 250
            assert smtp.data(message(BOB, "too big", b"B" * 5000))[0] == 250
        assert len(srv.wait_emails(ALICE, 3)) == 3
        deadline = time.monotonic() + 60
        while srv.queue_stats()["dead"] != 1 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert srv.queue_stats()["dead"] == 1
        wait_port(srv.http_port)
        jmap = Jmap(srv, ALICE)
        upload = jmap.client.post(f"/jmap/upload/{jmap.account_id}/",
                                  content=b"an upload nobody used yet " * 100)
        assert upload.status_code == 201, upload.text
        upload_digest = upload.json()["blobId"].removeprefix("U")

        with imaplib.IMAP4("127.0.0.1", srv.imap_port) as imap:
            imap.login(ALICE, PASSWORD)
            imap.select('"All Mail"')
            _, found = imap.search(None, "SUBJECT", '"drop me"')
            assert len(found[0].split()) == 2
            imap.store(b",".join(found[0].split()).decode(), "+FLAGS", "\\Deleted")
            imap.expunge()
        assert [e["subject"] for e in srv.emails(ALICE)] == ["keep me"]
    finally:
        srv.stop()

    before = blob_files(srv)
    # Everything is minutes old: the default grace (24 h) and an hour keep it all.
    assert gc(srv)[0] == set()
    freed, summary = gc(srv, "--grace", "3600")
    assert freed == set() and "0 freed" in summary
    assert blob_files(srv).keys() == before.keys()

    age_all(srv, 7200)
    fresh = srv.data_dir / "blobs" / "zz" / "yy" / ("inflight-" + "0" * 20 + "yyzz")
    fresh.parent.mkdir(parents=True, exist_ok=True)
    fresh.write_bytes(b"written by a delivery that has not committed yet")

    would, _ = gc(srv, "--grace", "3600", "--dry-run")
    assert blob_files(srv).keys() == before.keys() | {fresh.name}
    freed, summary = gc(srv, "--grace", "3600")
    assert freed == would
    # The two destroyed messages' skeletons and the attachment only they used, and what the
    # refused delivery to Bob had written before his quota stopped it (skeleton, attachment).
    own = hashlib.sha256(OWN).hexdigest()
    shared = hashlib.sha256(SHARED).hexdigest()
    bobs = hashlib.sha256(b"B" * 5000).hexdigest()
    assert len(freed) == 5 and {own, bobs} <= freed and shared not in freed, (freed, summary)
    assert len([b for b in freed if b.startswith("bodies/")]) == 3, freed  # the skeletons
    left = blob_files(srv)
    assert fresh.name in left and upload_digest in left and shared in left
    assert not freed & left.keys()
    assert any(name.startswith("s") and len(name) < 60 for name in left)  # the dead spool

    # What is left is whole: fsck finds nothing, and the dead letter can still be delivered.
    assert srv.cli("fsck").stdout == b""
    srv.cli("user", "quota", BOB, "1M")
    srv.cli("dlq", "retry", "all")
    srv.start()
    try:
        assert [e["subject"] for e in srv.wait_emails(BOB, 1)] == ["too big"]
    finally:
        srv.stop()
