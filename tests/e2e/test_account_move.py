"""`mailyard account move` on a running server whose MailStore is two PostgreSQL shards.

SMTP keeps delivering to the account while the CLI (another process) moves it; an IMAP session
opened before the move keeps working, and a QRESYNC resync from a state saved before the move
is answered by the new shard.
"""

from __future__ import annotations

import imaplib
import re
import threading
from pathlib import Path

from tests.e2e.server import Server
from tests.e2e.test_smtp_inbound import message, send

ALICE = "alice@example.test"
PASSWORD = "secret-password"


def _shard_counts(server: Server) -> dict[str, int]:
    out = server.cli("account", "shards").stdout.decode()
    return {line.split("\t")[0]: int(line.split("\t")[1].split()[0])
            for line in out.splitlines()}


def test_account_move_while_smtp_delivers(tmp_path: Path) -> None:
    srv = Server(tmp_path, metadata="postgres-sharded", workers=1)
    srv.add_user(ALICE)
    srv.add_user("bob@example.test")  # the second account: each shard holds one
    assert _shard_counts(srv) == {"0": 1, "1": 1}
    srv.start()
    try:
        for n in range(5):
            send(srv, message(f"before {n}"))
        srv.wait_emails(ALICE, 5)
        srv.wait_queue_empty()
        imap = imaplib.IMAP4("127.0.0.1", srv.imap_port)
        imap.login(ALICE, PASSWORD)
        assert imap._simple_command("ENABLE", "QRESYNC")[0] == "OK"
        imap.select("INBOX")
        modseq = int(imap.untagged_responses["HIGHESTMODSEQ"][-1])
        uidvalidity = int(imap.untagged_responses["UIDVALIDITY"][-1])
        imap.store("2", "+FLAGS", "\\Deleted")  # after the saved state: vanishes
        imap.expunge()

        sent: list[str] = []
        failures: list[BaseException] = []

        def keep_sending() -> None:
            try:
                for n in range(30):
                    send(srv, message(f"during {n}"))
                    sent.append(f"during {n}")
            except BaseException as e:  # reported by the assertion below
                failures.append(e)

        sender = threading.Thread(target=keep_sending)
        sender.start()
        srv.wait_emails(ALICE, 4 + 3)  # the move starts while mail is flowing
        # Alice was made first, on shard 0 (ties go to the lower shard); Bob then on 1.
        out = srv.cli("account", "move", ALICE, "1").stdout.decode()
        sender.join()
        assert not failures and len(sent) == 30
        assert re.search(r"moved from shard 0 to 1: \d+ rows copied", out), out
        assert re.search(r"search index: \d+ documents copied, \d+ caught up", out), out
        assert _shard_counts(srv) == {"0": 0, "1": 2}

        srv.wait_emails(ALICE, 4 + 30)
        srv.wait_queue_empty()
        emails = srv.emails(ALICE)
        subjects = sorted(e["subject"] for e in emails)  # All Mail keeps "before 1"
        assert subjects == sorted([f"before {n}" for n in range(5)]
                                  + [f"during {n}" for n in range(30)])

        # The session from before the move: its mailbox still answers, UIDs unchanged.
        assert imap.noop()[0] == "OK"  # the session learns of the new mail
        typ, data = imap.uid("SEARCH", "ALL")
        uids = [int(u) for u in data[0].split()]
        assert typ == "OK" and uids == sorted(set(uids)) and len(uids) == 34
        assert uids[:4] == [1, 3, 4, 5]
        # The search index moved with the mail (search_move.py): what was indexed before the
        # move, during it and after it is found on the new shard.
        typ, data = imap.uid("SEARCH", "X-GM-RAW", '"during"')
        assert typ == "OK" and len(data[0].split()) == 30, data
        typ, data = imap.uid("SEARCH", "X-GM-RAW", '"before"')
        assert typ == "OK" and [int(u) for u in data[0].split()] == [1, 3, 4, 5], data
        imap.logout()

        # A new session resyncs from the state saved before the move.
        again = imaplib.IMAP4("127.0.0.1", srv.imap_port)
        again.login(ALICE, PASSWORD)
        assert again._simple_command("ENABLE", "QRESYNC")[0] == "OK"
        typ, _ = again._simple_command("SELECT", "INBOX",
                                       f"(QRESYNC ({uidvalidity} {modseq} 1:5))")
        assert typ == "OK"
        assert again.untagged_responses["VANISHED"] == [b"(EARLIER) 2"]
        assert int(again.untagged_responses["UIDVALIDITY"][-1]) == uidvalidity
        fetched = b" ".join(again.untagged_responses.get("FETCH", []))
        assert len(re.findall(rb"UID (\d+)", fetched)) == 30  # only what came after
        again.logout()
    finally:
        srv.stop()
