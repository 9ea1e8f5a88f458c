"""SIGTERM under load: listeners stop, sessions are told (SMTP 421, IMAP BYE, POP3 -ERR), the
pipeline stops cleanly, and after a restart every message that got a 250 is in its mailbox
exactly once. Also: the JSON log follows one message by its queue id from SMTP to mailbox."""

from __future__ import annotations

import json
import signal
import smtplib
import socket
import threading
import time
from collections import Counter
from pathlib import Path

from tests.e2e.server import Server

ALICE = "alice@example.test"
PASSWORD = "secret-password"


def json_server(tmp_path: Path) -> Server:
    srv = Server(tmp_path)
    with srv.config_path.open("a") as f:
        f.write('[log]\nformat = "json"\n')
    srv.add_user(ALICE)
    return srv


def log_events(srv: Server) -> list[dict[str, object]]:
    events = []
    for line in srv.log_path.read_text().splitlines():
        if line.startswith("{"):
            events.append(json.loads(line))
    return events


def test_json_log_follows_a_message_by_its_queue_id(tmp_path: Path) -> None:
    srv = json_server(tmp_path)
    srv.start()
    try:
        with smtplib.SMTP("127.0.0.1", srv.smtp_port) as smtp:
            smtp.ehlo()
            smtp.mail("carol@elsewhere.test")
            smtp.rcpt(ALICE)
            code, reply = smtp.data(b"Subject: traced\r\n\r\nFollow me.\r\n")
        assert code == 250
        queue_id = reply.decode().rsplit(" ", 1)[-1]
        assert queue_id.startswith("q")
        (email,) = srv.wait_emails(ALICE, 1)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            mine = [e for e in log_events(srv) if e.get("queue_id") == queue_id]
            if any(e["logger"] == "mailyard.worker" for e in mine):
                break
            time.sleep(0.1)
    finally:
        srv.stop()
    accepted = [e for e in mine if e["logger"] == "mailyard.delivery"]
    delivered = [e for e in mine if e["logger"] == "mailyard.worker"]
    assert len(accepted) == 1 and "accepted" in str(accepted[0]["msg"]), mine
    assert len(delivered) == 1 and delivered[0]["email_id"] == email["id"], mine
    assert all({"ts", "level", "msg"} <= e.keys() for e in mine)
    # Every line of the log is one JSON event (the start-up banner on stdout aside).
    lines = srv.log_path.read_text().splitlines()
    assert all(line.startswith("{") or line.startswith("mailyard: serving") for line in lines)


class Sender(threading.Thread):
    """Sends numbered messages over one connection after another until the server goes."""

    def __init__(self, port: int, name: str, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.port, self.label, self.stop = port, name, stop
        self.acked: list[str] = []
        self.refusals: list[str] = []

    def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            try:
                with smtplib.SMTP("127.0.0.1", self.port, timeout=30) as smtp:
                    for _ in range(5):
                        subject = f"{self.label}-{n}"
                        n += 1
                        body = (f"Subject: {subject}\r\n\r\n" + "load line\r\n" * 40).encode()
                        smtp.sendmail("carol@elsewhere.test", [ALICE], body)
                        self.acked.append(subject)  # sendmail returned: DATA got 250
            except smtplib.SMTPResponseException as e:
                self.refusals.append(f"{e.smtp_code} {e.smtp_error!r}")
                if e.smtp_code == 421:
                    return
            except (smtplib.SMTPServerDisconnected, OSError) as e:
                self.refusals.append(repr(e))
                if self.stop.is_set() or isinstance(e, ConnectionRefusedError):
                    return
                time.sleep(0.05)


def read_until(sock: socket.socket, marker: bytes, timeout: float = 60.0) -> bytes:
    sock.settimeout(timeout)
    data = b""
    while marker not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def test_sigterm_under_smtp_load_loses_nothing(tmp_path: Path) -> None:
    srv = json_server(tmp_path)
    srv.start()
    imap = socket.create_connection(("127.0.0.1", srv.imap_port))
    read_until(imap, b"\r\n")
    imap.sendall(f"a LOGIN {ALICE} {PASSWORD}\r\n".encode())
    assert b"a OK" in read_until(imap, b"a OK")
    pop = socket.create_connection(("127.0.0.1", srv.pop3_port))
    read_until(pop, b"\r\n")
    pop.sendall(f"USER {ALICE}\r\n".encode())
    assert read_until(pop, b"\r\n").startswith(b"+OK")
    pop.sendall(f"PASS {PASSWORD}\r\n".encode())
    assert read_until(pop, b"\r\n").startswith(b"+OK")

    stop = threading.Event()
    senders = [Sender(srv.smtp_port, f"t{n}", stop) for n in range(6)]
    for s in senders:
        s.start()
    deadline = time.monotonic() + 180  # 60 acknowledged messages, however busy the machine
    while sum(len(s.acked) for s in senders) < 60 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert srv.process is not None
    srv.process.send_signal(signal.SIGTERM)
    assert srv.process.wait(40) == 0
    stop.set()
    for s in senders:
        s.join(30)
    srv.process = None

    assert b"* BYE" in read_until(imap, b"* BYE")
    assert read_until(pop, b"-ERR").startswith(b"-ERR")
    imap.close()
    pop.close()
    acked = [subject for s in senders for subject in s.acked]
    refusals = [r for s in senders for r in s.refusals]
    assert len(acked) >= 60
    assert any(r.startswith("421") for r in refusals), refusals
    log = srv.log_path.read_text()
    assert "Traceback" not in log

    srv.start()
    try:
        srv.wait_queue_empty()
        subjects = Counter(e["subject"] for e in srv.emails(ALICE))
    finally:
        srv.stop()
    missing = [s for s in acked if subjects[s] != 1]
    assert missing == [], f"{len(missing)} of {len(acked)} acknowledged: {missing[:10]}"
    assert max(subjects.values()) == 1  # nothing twice, acknowledged or not
