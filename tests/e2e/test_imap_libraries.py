"""IMAP with the two Python client libraries nobody here wrote: imapclient and aioimaplib.

imapclient parses ENVELOPE and BODYSTRUCTURE itself, so it checks the syntax of what the
pipeline stored; aioimaplib drives IDLE asynchronously.
"""

from __future__ import annotations

import asyncio
from email.message import EmailMessage

import aioimaplib
from imapclient import IMAPClient

from tests.e2e.server import Server
from tests.e2e.test_imap import PASSWORD, deliver
from tests.e2e.test_smtp_inbound import message, send


def with_attachment() -> bytes:
    msg = EmailMessage()
    msg["From"] = '"Zoë Example" <zoe@remote.test>'
    msg["To"] = "alice@example.test"
    msg["Subject"] = "Réunion: =?weird"
    msg["Message-ID"] = "<att@remote.test>"
    msg.set_content("See the file.\n")
    msg.add_attachment(b"%PDF-1.4 fake", maintype="application", subtype="pdf",
                       filename="agenda.pdf")
    return msg.as_bytes().replace(b"\n", b"\r\n")


def test_imapclient_parses_envelope_and_bodystructure(server: Server) -> None:
    send(server, with_attachment())
    server.wait_emails("alice@example.test", 1)
    server.wait_queue_empty()
    with IMAPClient("127.0.0.1", port=server.imap_port, ssl=False) as client:
        client.login("alice@example.test", PASSWORD)
        info = client.select_folder("INBOX")
        assert info[b"EXISTS"] == 1
        [uid] = client.search(["ALL"])
        data = client.fetch([uid], ["ENVELOPE", "BODYSTRUCTURE", "FLAGS", "RFC822.SIZE",
                                    "INTERNALDATE", "EMAILID", "THREADID"])[uid]
        env = data[b"ENVELOPE"]
        assert env.message_id == b"<att@remote.test>"
        assert env.from_[0].mailbox == b"zoe" and env.from_[0].host == b"remote.test"
        body = data[b"BODYSTRUCTURE"]
        assert body.is_multipart
        parts = body[0]
        assert parts[0][0].lower() == b"text" and parts[1][1].lower() == b"pdf"
        assert data[b"EMAILID"] and data[b"THREADID"]
        folders = {name: flags for flags, _, name in client.list_folders()}
        assert b"\\Sent" in folders["Sent"]
        client.add_flags([uid], [b"\\Seen"])
        assert b"\\Seen" in client.get_flags([uid])[uid]
        client.move([uid], "Archive")
        assert client.folder_status("Archive", ["MESSAGES"])[b"MESSAGES"] == 1


def test_aioimaplib_idle_sees_a_delivery(server: Server) -> None:
    deliver(server, "before idle")

    async def go() -> list[bytes]:
        client = aioimaplib.IMAP4(host="127.0.0.1", port=server.imap_port, timeout=60)
        await client.wait_hello_from_server()
        await client.login("alice@example.test", PASSWORD)
        await client.select("INBOX")
        idle = await client.idle_start(timeout=60)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, send, server, message("during idle"))
        pushed = await client.wait_server_push(timeout=60)
        client.idle_done()
        await asyncio.wait_for(idle, 60)
        await client.logout()
        return list(pushed) if isinstance(pushed, list) else [pushed]

    pushed = asyncio.run(go())
    assert any(b"2 EXISTS" in (line if isinstance(line, bytes) else str(line).encode())
               for line in pushed), pushed
