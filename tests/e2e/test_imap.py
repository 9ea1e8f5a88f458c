"""IMAP against the real listener with Python's imaplib and a raw socket."""

from __future__ import annotations

import contextlib
import imaplib
import re
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

import pytest

from tests.e2e.server import Server
from tests.e2e.test_smtp_inbound import message, send

PASSWORD = "secret-password"


@pytest.fixture
def imap(server: Server) -> Iterator[imaplib.IMAP4]:
    client = imaplib.IMAP4("127.0.0.1", server.imap_port)
    client.login("alice@example.test", PASSWORD)
    yield client
    with contextlib.suppress(imaplib.IMAP4.error, OSError):
        client.logout()


def deliver(server: Server, *subjects: str) -> None:
    """Deliver one at a time, so that UIDs follow the order of `subjects`."""
    before = len(server.emails("alice@example.test"))
    for n, subject in enumerate(subjects, 1):
        send(server, message(subject))
        found = server.wait_emails("alice@example.test", before + n, timeout=60)
        assert len(found) == before + n, f"{subject!r} not delivered"
    server.wait_queue_empty()


def test_capabilities_login_and_bad_password(server: Server) -> None:
    client = imaplib.IMAP4("127.0.0.1", server.imap_port)
    caps = client.capabilities
    for cap in ("IMAP4REV1", "IMAP4REV2", "IDLE", "UIDPLUS", "MOVE", "STARTTLS", "SPECIAL-USE",
                "LITERAL+", "AUTH=PLAIN"):
        assert cap in caps, cap
    with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
        client.login("alice@example.test", "wrong")
    typ, _data = client.login("alice@example.test", PASSWORD)
    assert typ == "OK"
    client.logout()


def test_starttls_and_implicit_tls(server: Server) -> None:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    client = imaplib.IMAP4("127.0.0.1", server.imap_port)
    client.starttls(ssl_context=ctx)
    assert client.login("alice@example.test", PASSWORD)[0] == "OK"
    client.logout()
    secure = imaplib.IMAP4_SSL("127.0.0.1", server.imaps_port, ssl_context=ctx)
    assert secure.login("bob@example.test", PASSWORD)[0] == "OK"
    secure.logout()


def test_list_select_and_fetch(server: Server, imap: imaplib.IMAP4) -> None:
    deliver(server, "first", "second")
    typ, boxes = imap.list()
    assert typ == "OK"
    listing = b"\n".join(b for b in boxes if b)
    assert b'"INBOX"' in listing or b" INBOX" in listing
    assert b"\\Sent" in listing and b"\\All" in listing and b"\\Trash" in listing
    typ, data = imap.select("INBOX")
    assert typ == "OK" and data == [b"2"]
    typ, data = imap.fetch("1:2", "(UID FLAGS RFC822.SIZE ENVELOPE BODY.PEEK[HEADER.FIELDS "
                                  "(SUBJECT)])")
    assert typ == "OK"
    text = b" ".join(x if isinstance(x, bytes) else b" ".join(x) for x in data)
    assert b"Subject: first" in text and b"Subject: second" in text
    assert b"UID 1" in text and b"UID 2" in text
    typ, data = imap.uid("FETCH", "2", "(BODY[])")
    raw = data[0][1]
    emails = {e["subject"]: e for e in server.emails("alice@example.test")}
    assert raw == server.raw("alice@example.test", emails["second"]["id"])
    typ, data = imap.fetch("2", "(FLAGS)")
    assert b"\\Seen" in data[0], "a non-PEEK body fetch sets \\Seen"
    typ, data = imap.fetch("1", "(BODY.PEEK[1]<0.5>)")
    assert data[0][1] == b"Hello"


def test_store_search_copy_move_expunge(server: Server, imap: imaplib.IMAP4) -> None:
    deliver(server, "alpha", "beta", "gamma")
    imap.select("INBOX")
    assert imap.store("1", "+FLAGS", "(\\Flagged $Work)")[0] == "OK"
    assert imap.search(None, "FLAGGED")[1] == [b"1"]
    assert imap.search(None, "UNSEEN")[1] == [b"1 2 3"]
    assert imap.search(None, 'SUBJECT "bet"')[1] == [b"2"]
    assert imap.search(None, "KEYWORD", "$Work")[1] == [b"1"]
    assert imap.search(None, 'OR SUBJECT gamma SUBJECT alpha')[1] == [b"1 3"]
    assert imap.search(None, "NOT", "FLAGGED", "LARGER", "10")[1] == [b"2 3"]
    assert imap.uid("SEARCH", None, "UID", "2:*")[1] == [b"2 3"]
    assert imap.create("Work")[0] == "OK"
    typ, data = imap.copy("1:2", "Work")
    assert typ == "OK" and b"COPYUID" in data[0]
    typ, data = imap.uid("MOVE", "3", "Work")
    assert typ == "OK"
    typ, data = imap.select("Work")
    assert data == [b"3"]
    imap.select("INBOX")
    assert imap.store("1", "+FLAGS", "\\Deleted")[0] == "OK"
    typ, data = imap.expunge()
    assert data == [b"1"]
    assert imap.select("INBOX")[1] == [b"1"]
    # the expunged email lost its INBOX label but still lives in Work and All Mail
    labels = {e["subject"]: sorted(e["mailboxes"]) for e in server.emails("alice@example.test")}
    assert labels["alpha"] == ["All Mail", "Work"]
    assert labels["gamma"] == ["All Mail", "Work"]


def test_append_is_threaded_and_gets_a_uid(server: Server, imap: imaplib.IMAP4) -> None:
    deliver(server, "thread root")
    reply = message("Re: thread root", msgid="<reply@remote.test>",
                    in_reply_to="<thread-root@remote.test>",
                    references="<thread-root@remote.test>")
    typ, data = imap.append("Sent", "(\\Seen)", imaplib.Time2Internaldate(time.time()), reply)
    assert typ == "OK"
    m = re.search(rb"APPENDUID (\d+) (\d+)", data[0])
    assert m and m.group(2) == b"1"
    emails = {e["subject"]: e for e in server.emails("alice@example.test")}
    assert emails["Re: thread root"]["threadId"] == emails["thread root"]["threadId"]
    assert emails["Re: thread root"]["keywords"] == ["$seen"]
    assert "Sent" in emails["Re: thread root"]["mailboxes"]
    _, _raw = imap.select("Sent")
    typ, data = imap.fetch("1", "(BODY.PEEK[])")
    assert data[0][1] == reply
    typ, data = imap.append("Nope", None, None, reply)
    assert typ == "NO"


def test_status_and_subscriptions(server: Server, imap: imaplib.IMAP4) -> None:
    deliver(server, "one", "two")
    typ, data = imap.status("INBOX", "(MESSAGES UNSEEN UIDNEXT UIDVALIDITY SIZE)")
    assert typ == "OK"
    assert re.search(rb"MESSAGES 2 .*UNSEEN 2 .*UIDNEXT 3", data[0])
    imap.create("Lists/Python")
    imap.unsubscribe("Lists/Python")
    typ, data = imap.lsub()
    assert not any(b"Lists/Python" in d for d in data if d)
    imap.rename("Lists", "Groups")
    typ, data = imap.list('""', "Groups/*")
    assert b"Groups/Python" in data[0]
    assert imap.delete("Groups/Python")[0] == "OK"
    assert imap.select("Groups/Python")[0] == "NO"


def test_two_sessions_see_each_others_changes(server: Server) -> None:
    deliver(server, "shared")
    a = imaplib.IMAP4("127.0.0.1", server.imap_port)
    b = imaplib.IMAP4("127.0.0.1", server.imap_port)
    for c in (a, b):
        c.login("alice@example.test", PASSWORD)
        c.select("INBOX")
    a.store("1", "+FLAGS", "\\Answered")
    b.untagged_responses.clear()
    _typ, _ = b.noop()
    assert b"\\Answered" in b" ".join(
        x if isinstance(x, bytes) else b"" for x in b.untagged_responses.get("FETCH", []))
    send(server, message("newcomer"))
    server.wait_emails("alice@example.test", 2)
    server.wait_queue_empty()
    b.untagged_responses.clear()
    b.noop()
    assert b.untagged_responses.get("EXISTS") == [b"2"]
    a.logout()
    b.logout()


def _logged_delivery(server: Server) -> float:
    """When the server's log says the pipeline stored a message (the first such line)."""
    deadline = time.monotonic() + 60
    while True:
        for line in server.log_path.read_text(errors="replace").splitlines():
            if " mailyard.worker delivered " in line:
                stamp = " ".join(line.split()[:2])  # asctime: local time, as this process's
                return datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()
        assert time.monotonic() < deadline, "no delivery in the log"
        time.sleep(0.1)


def test_idle_wakes_on_delivery(server: Server) -> None:
    sock, f = _idle_session(server, b"c")
    threading.Thread(target=send, args=(server, message("wake up"))).start()
    line = f.readline()
    heard = time.time()
    assert line == b"* 1 EXISTS\r\n", line
    # Woken by the delivery itself, not by a later poll: measured from the server's record of
    # the delivery, so the time SMTP and the pipeline take on a busy machine does not count.
    assert heard - _logged_delivery(server) < 5
    assert f.readline() == b"* 1 RECENT\r\n"  # an IMAP4rev1 session: \Recent is its own
    sock.sendall(b"DONE\r\n")
    assert f.readline().startswith(b"c OK")
    sock.close()


def test_bad_commands_get_bad_and_the_session_survives(server: Server) -> None:
    sock = socket.create_connection(("127.0.0.1", server.imap_port), timeout=60)
    f = sock.makefile("rb")
    f.readline()
    for line in (b"\r\n", b"nonsense\r\n", b"a FROB\r\n", b"b SELECT INBOX\r\n",
                 b"c LOGIN\r\n", b"d FETCH 1 FLAGS\r\n", b"e LOGIN \"unterminated\r\n"):
        sock.sendall(line)
        reply = f.readline()
        assert b"BAD" in reply or b"NO" in reply, (line, reply)
    sock.sendall(b"f APPEND INBOX {99999999999}\r\n")
    assert f.readline().startswith(b"f NO [TOOBIG]")
    sock.sendall(b"g LOGIN alice@example.test secret-password\r\n")
    reply = f.readline()
    while not reply.startswith(b"g "):
        reply = f.readline()
    assert reply.startswith(b"g OK"), reply
    sock.close()


def test_other_users_mail_is_invisible(server: Server) -> None:
    send(server, message("for bob only"), to="bob@example.test")
    server.wait_emails("bob@example.test", 1)
    client = imaplib.IMAP4("127.0.0.1", server.imap_port)
    client.login("alice@example.test", PASSWORD)
    assert client.select("INBOX")[1] == [b"0"]
    assert client.search(None, "ALL")[1] == [b""]
    client.logout()


def test_auth_failures_are_rate_limited(tmp_path: Path) -> None:
    srv = Server(tmp_path, auth={"failures_per_network_per_hour": 3})
    srv.add_user("alice@example.test")
    srv.start()
    try:
        client = imaplib.IMAP4("127.0.0.1", srv.imap_port)
        for _ in range(3):
            with pytest.raises(imaplib.IMAP4.error):
                client.login("alice@example.test", "wrong")
        with pytest.raises((imaplib.IMAP4.error, imaplib.IMAP4.abort)):
            client.login("alice@example.test", PASSWORD)
    finally:
        srv.stop()


def test_condstore_and_qresync_resync(server: Server, imap: imaplib.IMAP4) -> None:
    deliver(server, "m1", "m2", "m3")
    typ, data = imap._simple_command("ENABLE", "QRESYNC")
    assert typ == "OK"
    typ, data = imap.select("INBOX")
    assert typ == "OK"
    modseq = int(imap.untagged_responses["HIGHESTMODSEQ"][-1])
    uidvalidity = int(imap.untagged_responses["UIDVALIDITY"][-1])
    imap.unselect()
    # another session flags m1 and expunges m2
    other = imaplib.IMAP4("127.0.0.1", server.imap_port)
    other.login("alice@example.test", PASSWORD)
    other.select("INBOX")
    other.store("1", "+FLAGS", "\\Flagged")
    other.store("2", "+FLAGS", "\\Deleted")
    other.expunge()
    other.logout()
    imap.untagged_responses.clear()
    typ, data = imap._simple_command("SELECT", "INBOX",
                                     f"(QRESYNC ({uidvalidity} {modseq} 1:3))")
    assert typ == "OK"
    imap.state = "SELECTED"  # imaplib only tracks its own select()
    assert imap.untagged_responses["VANISHED"] == [b"(EARLIER) 2"]
    fetches = b" ".join(imap.untagged_responses["FETCH"])
    assert b"UID 1 FLAGS (\\Flagged) MODSEQ" in fetches
    # conditional store: a stale UNCHANGEDSINCE fails with MODIFIED
    typ, data = imap._simple_command("UID", "STORE", "1",
                                     f"(UNCHANGEDSINCE {modseq}) +FLAGS.SILENT (\\Seen)")
    assert typ == "OK" and data[-1].startswith(b"[MODIFIED 1]"), data
    typ, data = imap.uid("FETCH", "1:*", f"(FLAGS) (CHANGEDSINCE {modseq} VANISHED)")
    assert typ == "OK"
    assert b"UID 1" in b" ".join(d for d in data if isinstance(d, bytes))


def test_quota(server: Server, imap: imaplib.IMAP4) -> None:
    deliver(server, "weighs something")
    server.cli("user", "quota", "alice@example.test", "10M")
    typ, data = imap.getquotaroot("INBOX")
    assert typ == "OK"
    quota = b" ".join(x for x in data[1] if x)
    m = re.search(rb"STORAGE (\d+) 10240", quota)
    assert m and int(m.group(1)) >= 0
    assert imap._simple_command("SETQUOTA", '""', "(STORAGE 1)")[0] == "NO"


def test_sort_and_thread(server: Server, imap: imaplib.IMAP4) -> None:
    mails = [message("Banana", msgid="<b@remote.test>", body="x" * 500),
             message("apple", msgid="<a@remote.test>"),
             message("Re: Banana", msgid="<rb@remote.test>", in_reply_to="<b@remote.test>",
                     references="<b@remote.test>")]
    for n, mail in enumerate(mails, 1):  # one at a time, so UIDs follow this order
        send(server, mail)
        server.wait_emails("alice@example.test", n)
    imap.select("INBOX")
    typ, data = imap.sort("(SUBJECT)", "UTF-8", "ALL")
    assert data == [b"2 1 3"]
    _typ, data = imap.sort("(REVERSE SIZE)", "UTF-8", "ALL")
    assert data[0].split()[0] == b"1"
    assert imap.thread("REFERENCES", "UTF-8", "ALL") == ("OK", [b"(1 3)(2)"])
    _, data = imap.thread("ORDEREDSUBJECT", "UTF-8", "ALL")
    assert data == [b"(1 3)(2)"]
    _, data = imap.uid("SORT", "(ARRIVAL)", "UTF-8", "SUBJECT", "banana")
    assert data == [b"1 3"]


def test_gmail_labels(server: Server, imap: imaplib.IMAP4) -> None:
    deliver(server, "labelled")
    imap.select("INBOX")
    typ, data = imap.store("1", "+X-GM-LABELS", "(Receipts \\Sent)")
    assert typ == "OK"
    typ, data = imap.fetch("1", "(X-GM-LABELS X-GM-MSGID X-GM-THRID)")
    assert b"Receipts" in data[0] and b"\\Inbox" in data[0] and b"Sent" in data[0]
    assert imap.search(None, "X-GM-LABELS", "Receipts")[1] == [b"1"]
    typ, data = imap.store("1", "-X-GM-LABELS", "(\\Sent)")
    assert typ == "OK"
    [email] = server.emails("alice@example.test")
    assert sorted(email["mailboxes"]) == ["All Mail", "INBOX", "Receipts"]
    assert imap.search(None, "X-GM-RAW", '"labelled"')[1] == [b"1"]


def test_searchres_saves_and_reuses_a_result(server: Server, imap: imaplib.IMAP4) -> None:
    deliver(server, "keep", "drop", "keep too")
    imap.select("INBOX")
    typ, _ = imap._simple_command("UID", "SEARCH", "RETURN", "(SAVE)", "SUBJECT", "keep")
    assert typ == "OK"
    typ, _ = imap._simple_command("UID", "STORE", "$", "+FLAGS", "(\\Flagged)")
    assert typ == "OK"
    assert imap.search(None, "FLAGGED")[1] == [b"1 3"]
    assert imap._simple_command("SEARCH", "RETURN", "(COUNT)", "$")[0] == "OK"
    assert imap.untagged_responses["ESEARCH"][-1].endswith(b"COUNT 2")


def test_connection_limits_per_user_and_ip(tmp_path: Path) -> None:
    srv = Server(tmp_path, imap={"connections_per_user": 2, "connections_per_ip": 3})
    srv.add_user("alice@example.test")
    srv.add_user("bob@example.test")
    srv.start()
    try:
        first, second, third = (imaplib.IMAP4("127.0.0.1", srv.imap_port) for _ in range(3))
        first.login("alice@example.test", PASSWORD)
        second.login("alice@example.test", PASSWORD)
        with pytest.raises(imaplib.IMAP4.error, match="LIMIT"):
            third.login("alice@example.test", PASSWORD)
        assert third.login("bob@example.test", PASSWORD)[0] == "OK"
        fourth = socket.create_connection(("127.0.0.1", srv.imap_port))
        assert fourth.makefile("rb").readline().startswith(b"* BYE [UNAVAILABLE]")
        fourth.close()
        first.logout()
        # The server frees the slot once it has closed the first connection: wait for that.
        deadline = time.monotonic() + 60
        while True:
            again = imaplib.IMAP4("127.0.0.1", srv.imap_port)
            try:
                assert again.login("alice@example.test", PASSWORD)[0] == "OK"
                break
            except imaplib.IMAP4.error as e:
                assert "LIMIT" in str(e) and time.monotonic() < deadline, e
                again.logout()
                time.sleep(0.1)
        for c in (second, third, again):
            c.logout()
    finally:
        srv.stop()


def test_login_needs_tls_unless_configured_for_loopback(tmp_path: Path) -> None:
    srv = Server(tmp_path, plaintext_on_loopback=False)
    srv.add_user("alice@example.test")
    srv.start()
    try:
        client = imaplib.IMAP4("127.0.0.1", srv.imap_port)
        assert "LOGINDISABLED" in client.capabilities and "STARTTLS" in client.capabilities
        with pytest.raises(imaplib.IMAP4.error, match="PRIVACYREQUIRED"):
            client.login("alice@example.test", PASSWORD)
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        client.starttls(ssl_context=ctx)
        assert "LOGINDISABLED" not in client.capabilities
        assert client.login("alice@example.test", PASSWORD)[0] == "OK"
        client.logout()
        out = subprocess.run(
            ["curl", "-sS", "-k", "--ssl-reqd", "-u", f"alice@example.test:{PASSWORD}",
             f"imap://127.0.0.1:{srv.imap_port}/"], capture_output=True, timeout=30)
        assert out.returncode == 0 and b"INBOX" in out.stdout, out.stderr
    finally:
        srv.stop()


def test_imap4rev2_answers_search_with_esearch(server: Server, imap: imaplib.IMAP4) -> None:
    deliver(server, "a", "b")
    assert imap._simple_command("ENABLE", "IMAP4rev2")[0] == "OK"
    assert imap.untagged_responses["ENABLED"][-1] == b"IMAP4rev2"
    imap.select("INBOX")
    assert "RECENT" not in imap.untagged_responses
    imap._simple_command("SEARCH", "ALL")
    assert imap.untagged_responses["ESEARCH"][-1].endswith(b"ALL 1:2")


def test_uids_stay_unique_under_concurrent_append_and_delivery(tmp_path: Path) -> None:
    srv = Server(tmp_path, workers=2, imap={"connections_per_user": 0},
                 limits={"messages_per_ip_per_minute": 0})
    srv.add_user("alice@example.test")
    srv.start()
    try:
        def appender(n: int) -> None:
            client = imaplib.IMAP4("127.0.0.1", srv.imap_port)
            client.login("alice@example.test", PASSWORD)
            for k in range(10):
                assert client.append("INBOX", None, None, message(f"append {n}-{k}"))[0] == "OK"
            client.logout()

        def sender() -> None:
            for k in range(20):
                send(srv, message(f"smtp {k}"))

        threads = [threading.Thread(target=appender, args=(n,)) for n in range(4)]
        threads.append(threading.Thread(target=sender))
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        srv.wait_queue_empty()
        emails = srv.wait_emails("alice@example.test", 60)
        uids = sorted(e["mailboxes"]["INBOX"] for e in emails)
        assert uids == list(range(1, 61))
        client = imaplib.IMAP4("127.0.0.1", srv.imap_port)
        client.login("alice@example.test", PASSWORD)
        assert client.select("INBOX")[1] == [b"60"]
        assert client.uid("SEARCH", None, "ALL")[1][0].split() == [
            str(u).encode() for u in range(1, 61)]
        client.logout()
    finally:
        srv.stop()


def test_idle_timeout_says_bye(tmp_path: Path) -> None:
    srv = Server(tmp_path, imap={"idle_timeout": 1.0})
    srv.add_user("alice@example.test")
    srv.start()
    try:
        sock = socket.create_connection(("127.0.0.1", srv.imap_port), timeout=60)
        f = sock.makefile("rb")
        assert f.readline().startswith(b"* OK")
        assert f.readline().startswith(b"* BYE")
        assert f.readline() == b""
        sock.close()
    finally:
        srv.stop()


def test_idle_timeout_in_idle_says_bye(tmp_path: Path) -> None:
    """The timeout also ends an IDLE that lasts too long (one sweep for all sessions, no
    timer per session)."""
    srv = Server(tmp_path, imap={"idle_timeout": 1.0})
    srv.add_user("alice@example.test")
    srv.start()
    try:
        started = time.monotonic()  # before any activity of the session the timer counts from
        sock, f = _idle_session(srv, b"c")
        assert f.readline() == b"* BYE Idle for too long\r\n"  # within the socket's timeout
        assert time.monotonic() - started >= 1.0, "BYE before idle_timeout"
        assert f.readline() == b""
        sock.close()
    finally:
        srv.stop()


def _idle_session(server: Server, tag: bytes) -> tuple[socket.socket, BinaryIO]:
    """A raw socket logged in as alice, INBOX selected, in IDLE under `tag`."""
    sock = socket.create_connection(("127.0.0.1", server.imap_port), timeout=60)
    f = sock.makefile("rb")
    f.readline()
    sock.sendall(b"a LOGIN alice@example.test secret-password\r\nb SELECT INBOX\r\n")
    while not f.readline().startswith(b"b OK"):
        pass
    sock.sendall(tag + b" IDLE\r\n")
    assert f.readline().startswith(b"+")
    return sock, f


def test_sessions_sharing_a_mailbox_each_hear_changes_in_their_own_numbers(
        server: Server, imap: imaplib.IMAP4) -> None:
    """Sessions on one INBOX share its UID map: two in IDLE are woken by one delivery and by
    another session's expunge; one that was not told of the delivery yet (no command since)
    hears both changes, in order, at its next NOOP."""
    deliver(server, "one", "two", "three")
    behind = imaplib.IMAP4("127.0.0.1", server.imap_port)
    behind.login("alice@example.test", "secret-password")
    behind.select("INBOX")
    idlers = [_idle_session(server, b"i1"), _idle_session(server, b"i2")]
    deliver(server, "four")
    for _sock, f in idlers:
        assert f.readline() == b"* 4 EXISTS\r\n"  # type: ignore[attr-defined]
        # RECENT 1 for the idler that saw "four" first, 0 for the other (RFC 3501 §2.3.2)
        assert f.readline() in (b"* 1 RECENT\r\n", b"* 0 RECENT\r\n")  # type: ignore
    imap.select("INBOX")
    imap.store("2", "+FLAGS", "\\Deleted")
    imap.expunge()
    for _sock, f in idlers:
        lines = [f.readline(), f.readline()]  # type: ignore[attr-defined]
        assert b"* 2 EXPUNGE\r\n" in lines, lines
    for sock, f in idlers:
        sock.sendall(b"DONE\r\n")
        while not (line := f.readline()).startswith(b"i"):  # type: ignore[attr-defined]
            assert line.startswith(b"*"), line
        assert b" OK " in line
        sock.close()
    typ, data = behind.noop()
    assert typ == "OK"
    responses = behind.untagged_responses
    assert responses.get("EXISTS") and responses.get("EXPUNGE") == [b"2"], responses
    assert behind.search(None, "ALL")[1] == [b"1 2 3"]
    behind.logout()


def test_text_search_finds_words_inside_encoded_bodies(server: Server,
                                                       imap: imaplib.IMAP4) -> None:
    from email.message import EmailMessage

    msg = EmailMessage()
    msg["From"] = "Zoë <zoe@remote.test>"
    msg["To"] = "alice@example.test"
    msg["Subject"] = "Menu du jour"
    msg["Message-ID"] = "<menu@remote.test>"
    msg.set_content("Un café crème et une tarte aux pommes.\n", cte="quoted-printable")
    raw = msg.as_bytes().replace(b"\n", b"\r\n")
    assert "café".encode() not in raw  # only the decoded text says "café"
    send(server, raw)
    deliver(server, "unrelated")
    imap.select("INBOX")
    imap.literal = "café crème".encode()  # 8-bit search text goes as a literal
    assert imap.search("UTF-8", "BODY")[1] == [b"1"]
    assert imap.search(None, "TEXT", "tarte")[1] == [b"1"]
    assert imap.search(None, "SUBJECT", '"du jo"')[1] == [b"1"]
    assert imap.search(None, "FROM", "zoe@remote")[1] == [b"1"]
    assert imap.search(None, "BODY", "pommes", "NOT", "SUBJECT", "menu")[1] == [b""]
    assert imap.search(None, "BODY", "xyzzy")[1] == [b""]
