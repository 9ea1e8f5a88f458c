"""Raw 8-bit octets inside RFC 2047 words are found by the searches that read stored headers
(issue 17): `=?iso-8859-1?Q?Fr\\xf6sche?=` with the octet unencoded, as some mailers send it,
reads "Frösche" in IMAP SEARCH (SUBJECT, FROM, HEADER, TEXT) and in a JMAP header filter, on
both engines. The header conditions decoded the stored octets with "replace" before the words,
so the word held U+FFFD where the octet was and nothing matched.

Mail arrives over SMTP at the MX as the octets below; searches go over IMAP and JMAP.
"""

from __future__ import annotations

import imaplib
import smtplib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.server import Server
from tests.e2e.test_jmap_mail import Jmap

ALICE = "alice@example.test"
PASSWORD = "secret-password"

MESSAGES = {
    "latin1": (b"From: =?iso-8859-1?Q?J\xfcrgen_Gr\xfcn?= <juergen@remote.test>\r\n"
               b"To: alice@example.test\r\nSubject: =?iso-8859-1?Q?Fr\xf6sche?= im Teich\r\n"
               b"X-Note: =?iso-8859-1?Q?K\xe4fer?=\r\n"
               b"Message-ID: <latin1@remote.test>\r\n\r\nQuak.\r\n"),
    "utf8": ("From: Anna <anna@remote.test>\r\nTo: alice@example.test\r\n"
             "Subject: Frösche am Ufer\r\nMessage-ID: <utf8@remote.test>\r\n\r\n"
             "Quak.\r\n").encode(),
    "other": (b"From: Otto <otto@remote.test>\r\nTo: alice@example.test\r\n"
              b"Subject: =?iso-8859-1?Q?Fr=F6hlich?= und Fr?sche\r\n"
              b"Message-ID: <other@remote.test>\r\n\r\nQuak.\r\n"),
}


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[Server]:
    srv = Server(Path(tmp_path_factory.mktemp(f"header-8bit-{request.param}")),
                 metadata="" if request.param == "sqlite" else "postgres")
    srv.add_user(ALICE, PASSWORD)
    srv.start()
    with smtplib.SMTP("127.0.0.1", srv.smtp_port, timeout=30) as s:
        for raw in MESSAGES.values():
            s.sendmail("sender@remote.test", [ALICE], raw)
    srv.wait_emails(ALICE, len(MESSAGES))
    yield srv
    srv.stop()


def message_ids(imap: imaplib.IMAP4, *criteria: str, text: str) -> set[str]:
    """Message-IDs of the messages `criteria` followed by `text` (a UTF-8 literal) find."""
    imap.literal = text.encode()  # type: ignore[assignment]
    typ, data = imap.uid("SEARCH", "CHARSET", "UTF-8", *criteria)
    assert typ == "OK", data
    found = set()
    for uid in data[0].split():
        typ, parts = imap.uid("FETCH", uid.decode(), "(BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
        assert typ == "OK"
        found.add(parts[0][1].decode().split("<")[1].split("@")[0])
    return found


@pytest.fixture
def imap(server: Server) -> Iterator[imaplib.IMAP4]:
    with imaplib.IMAP4("127.0.0.1", server.imap_port) as client:
        client.login(ALICE, PASSWORD)
        client.select("INBOX")
        yield client


def test_imap_search_reads_raw_octets_in_the_words_charset(imap: imaplib.IMAP4) -> None:
    assert message_ids(imap, "SUBJECT", text="Frösche") == {"latin1", "utf8"}
    assert message_ids(imap, "SUBJECT", text="frösche im teich") == {"latin1"}
    assert message_ids(imap, "SUBJECT", text="Fröhlich") == {"other"}
    assert message_ids(imap, "FROM", text="Jürgen Grün") == {"latin1"}
    assert message_ids(imap, "HEADER", "X-Note", text="Käfer") == {"latin1"}
    assert message_ids(imap, "TEXT", text="Käfer") == {"latin1"}


def test_jmap_header_filter_reads_raw_octets_in_the_words_charset(server: Server) -> None:
    jmap = Jmap(server, ALICE)

    def found(**condition: object) -> set[str]:
        ids = jmap.call("Email/query", filter=condition)["ids"]
        emails = jmap.call("Email/get", ids=ids, properties=["messageId"])["list"]
        return {e["messageId"][0].split("@")[0] for e in emails}

    assert found(header=["Subject", "Frösche"]) == {"latin1", "utf8"}
    assert found(header=["Subject", "FRÖSCHE IM"]) == {"latin1"}
    assert found(header=["X-Note", "käfer"]) == {"latin1"}
    assert found(header=["From", "Grün"]) == {"latin1"}
    assert found(subject="Frösche") == {"latin1", "utf8"}
