"""IMAP TEXT and BODY search what RFC 3501 §6.4.4 / RFC 9051 §6.4.4 and Dovecot search (issue
18), in scripted transcripts over a real socket, on SQLite and on PostgreSQL:

- BODY: the decoded body (quoted-printable with a soft line break inside a word, UTF-8), the
  text of text attachments (base64 text/plain, text/csv, text/html read as text), inline text
  parts that are not the body (text/calendar), and the attachments' file names
  (`BODY ".pdf"` finds report.pdf);
- TEXT: that and every top-level header field (Message-ID, a header only this message has);
  BODY never finds what only a top-level header holds;
- a needle too short for the trigram index (one or two characters) is looked for in the same
  decoded text, not in the raw octets (base64 hides it there);
- X-GM-RAW and JMAP Email/query `text` find the same messages for the same words.

Messages are APPENDed by the test (APPEND indexes before it answers), so no wait is needed.
"""

from __future__ import annotations

import base64
import imaplib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.server import Server
from tests.e2e.test_jmap_mail import Jmap
from tests.e2e.test_rfc_search import append, connect, select
from tests.e2e.transcript import Wire, play

ALICE = "alice@example.test"


def _b64(data: bytes) -> str:
    return base64.encodebytes(data).decode().replace("\n", "\\n")


def _mixed(name: str, parts: list[str], extra: str = "") -> str:
    """A multipart/mixed message (`\\n` stands for CRLF, as `append` sends it)."""
    body = "".join(f"--BB\\n{p}\\n" for p in parts)
    return (f"From: {name}@sender.test\\nTo: {ALICE}\\nSubject: {name}\\n{extra}"
            f"Message-ID: <{name}.4711@sender.test>\\nMIME-Version: 1.0\\n"
            f"Content-Type: multipart/mixed; boundary=BB\\n\\n{body}--BB--\\n")


REPORT = _mixed("report", [
    "Content-Type: text/plain\\n\\nsee the attached figures",
    "Content-Type: application/pdf; name=report.pdf\\n"
    "Content-Disposition: attachment; filename=report.pdf\\n"
    "Content-Transfer-Encoding: base64\\n\\n" + _b64(b"%PDF-1.4\n\x00\x01\x02 binary"),
])
NOTES = _mixed("notes", [
    "Content-Type: text/plain\\n\\nmy notes are attached",
    "Content-Type: text/plain; charset=utf-8\\nContent-Disposition: attachment;"
    " filename=notes.txt\\nContent-Transfer-Encoding: base64\\n\\n"
    + _b64("Notes\nthe secret word is Zyxwvutonic, Ωλ\n".encode()),
    "Content-Type: text/csv\\nContent-Disposition: attachment; filename=ledger.csv\\n"
    "Content-Transfer-Encoding: base64\\n\\n" + _b64(b"item,amount\nledgerquux,12\n"),
    "Content-Type: text/html\\nContent-Disposition: attachment; filename=page.html\\n\\n"
    "<p>Hello <b>pangolinry</b> world</p>",
])
QP = ("From: qp@sender.test\\nTo: alice@example.test\\nSubject: qp\\n"
      "Message-ID: <qp.4711@sender.test>\\nMIME-Version: 1.0\\n"
      "Content-Type: text/plain; charset=utf-8\\nContent-Transfer-Encoding: quoted-printable\\n"
      "\\nan extraordi=\\nnarily long line at the caf=C3=A9 with a soft break inside a=\\n"
      " word\\n")
INVITE = _mixed("invite", [
    "Content-Type: text/plain\\n\\nsee the invitation",
    "Content-Type: text/calendar; method=REQUEST\\n\\nBEGIN:VCALENDAR\\n"
    "SUMMARY:axolotl review\\nEND:VCALENDAR",
])
PARTHDR = _mixed("parthdr", [
    "Content-Type: text/plain\\nContent-Description: quokkalike notes\\n\\nplain body",
])
HEADER = ("From: header@sender.test\\nTo: alice@example.test\\nSubject: header\\n"
          "X-Tracker: wombatish\\nMessage-ID: <uniq.4711@sender.test>\\n\\n"
          "nothing special in here\\n")
MESSAGES = {"report": REPORT, "notes": NOTES, "qp": QP, "invite": INVITE, "header": HEADER,
            "parthdr": PARTHDR}


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[Server]:
    srv = Server(Path(tmp_path_factory.mktemp(f"text-body-{request.param}")),
                 metadata="" if request.param == "sqlite" else "postgres")
    srv.add_user(ALICE)
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def uids(server: Server) -> dict[str, str]:
    """Each message's UID in INBOX (APPENDed once per server)."""
    wire = connect(server)
    try:
        return {name: append(wire, f"a{n}", raw) for n, (name, raw) in
                enumerate(MESSAGES.items())}
    finally:
        wire.close()


@pytest.fixture
def wire(server: Server, uids: dict[str, str]) -> Iterator[Wire]:
    session = connect(server)
    select(session)
    yield session
    session.close()


def test_body_is_the_decoded_text_attachments_and_file_names(wire: Wire,
                                                             uids: dict[str, str]) -> None:
    u = uids
    play(wire, f"""
C: b1 UID SEARCH BODY ".pdf"
S: * SEARCH {u['report']}
S~ b1 OK .*
C: b2 UID SEARCH TEXT ".pdf"
S: * SEARCH {u['report']}
S~ b2 OK .*
C: b3 UID SEARCH BODY REPORT.PDF
S: * SEARCH {u['report']}
S~ b3 OK .*
C: b4 UID SEARCH BODY zyxwvutonic
S: * SEARCH {u['notes']}
S~ b4 OK .*
C: b5 UID SEARCH BODY "ledgerquux,12"
S: * SEARCH {u['notes']}
S~ b5 OK .*
C: b6 UID SEARCH BODY "hello pangolinry"
S: * SEARCH {u['notes']}
S~ b6 OK .*
C: b7 UID SEARCH BODY extraordinarily
S: * SEARCH {u['qp']}
S~ b7 OK .*
C: b8 UID SEARCH BODY "inside a word"
S: * SEARCH {u['qp']}
S~ b8 OK .*
C: b9 UID SEARCH CHARSET UTF-8 BODY {{{{CAFÉ}}}}
S: * SEARCH {u['qp']}
S~ b9 OK .*
C: b10 UID SEARCH BODY "=C3=A9"
S: * SEARCH
S~ b10 OK .*
C: b11 UID SEARCH BODY axolotl
S: * SEARCH {u['invite']}
S~ b11 OK .*
C: b12 UID SEARCH BODY notes.txt
S: * SEARCH {u['notes']}
S~ b12 OK .*
C: b13 UID SEARCH NOT BODY ".pdf"
S: * SEARCH {u['notes']} {u['qp']} {u['invite']} {u['header']} {u['parthdr']}
S~ b13 OK .*
C: b14 UID SEARCH OR BODY axolotl BODY zyxwvutonic
S: * SEARCH {u['notes']} {u['invite']}
S~ b14 OK .*
C: b15 UID SEARCH BODY quokkalike
S: * SEARCH {u['parthdr']}
S~ b15 OK .*
C: b16 UID SEARCH TEXT "content-description: quokka"
S: * SEARCH {u['parthdr']}
S~ b16 OK .*
""")


def test_text_adds_every_top_level_header(wire: Wire, uids: dict[str, str]) -> None:
    u = uids
    play(wire, f"""
C: t1 UID SEARCH TEXT "<uniq.4711@sender.test>"
S: * SEARCH {u['header']}
S~ t1 OK .*
C: t2 UID SEARCH TEXT uniq.4711
S: * SEARCH {u['header']}
S~ t2 OK .*
C: t3 UID SEARCH BODY uniq.4711
S: * SEARCH
S~ t3 OK .*
C: t4 UID SEARCH TEXT wombatish
S: * SEARCH {u['header']}
S~ t4 OK .*
C: t5 UID SEARCH BODY wombatish
S: * SEARCH
S~ t5 OK .*
C: t6 UID SEARCH TEXT "x-tracker: womb"
S: * SEARCH {u['header']}
S~ t6 OK .*
C: t7 UID SEARCH TEXT zyxwvutonic
S: * SEARCH {u['notes']}
S~ t7 OK .*
C: t8 UID SEARCH TEXT 4711@sender.test
S: * SEARCH {u['report']} {u['notes']} {u['qp']} {u['invite']} {u['header']} {u['parthdr']}
S~ t8 OK .*
C: t9 UID SEARCH TEXT wombatish BODY nothing
S: * SEARCH {u['header']}
S~ t9 OK .*
""")


def test_short_needles_are_looked_for_in_the_decoded_text(wire: Wire,
                                                          uids: dict[str, str]) -> None:
    """One or two characters: no trigram, so the messages are read, decoded as the index
    would have them (base64 and quoted-printable undone, case folded)."""
    u = uids
    play(wire, f"""
C: s1 UID SEARCH CHARSET UTF-8 BODY {{{{ωλ}}}}
S: * SEARCH {u['notes']}
S~ s1 OK .*
C: s2 UID SEARCH CHARSET UTF-8 BODY {{{{é}}}}
S: * SEARCH {u['qp']}
S~ s2 OK .*
C: s3 UID SEARCH CHARSET UTF-8 TEXT {{{{Ωλ}}}}
S: * SEARCH {u['notes']}
S~ s3 OK .*
C: s4 UID SEARCH BODY "=C"
S: * SEARCH
S~ s4 OK .*
""")


WORDS = {
    "report.pdf": {"report"},
    "zyxwvutonic": {"notes"},
    "ledgerquux": {"notes"},
    "pangolinry": {"notes"},
    "extraordinarily": {"qp"},
    "axolotl": {"invite"},
}


def test_x_gm_raw_and_jmap_text_find_what_body_finds(server: Server,
                                                     uids: dict[str, str]) -> None:
    by_uid = {uid: name for name, uid in uids.items()}
    jmap = Jmap(server, ALICE)
    with imaplib.IMAP4("127.0.0.1", server.imap_port) as imap:
        imap.login(ALICE, "secret-password")
        imap.select("INBOX")

        def imap_names(*criteria: str) -> set[str]:
            typ, data = imap.uid("SEARCH", *criteria)
            assert typ == "OK", data
            return {by_uid[n.decode()] for n in data[0].split()}

        def jmap_names(text: str) -> set[str]:
            ids = jmap.call("Email/query", filter={"text": text})["ids"]
            emails = jmap.call("Email/get", ids=ids, properties=["messageId"])["list"]
            return {e["messageId"][0].split(".")[0] for e in emails}

        for word, expected in WORDS.items():
            assert imap_names("BODY", f'"{word}"') == expected, word
            assert imap_names("X-GM-RAW", f'"{word}"') == expected, word
            assert jmap_names(word) == expected, word
        assert imap_names("X-GM-RAW", '"filename:pdf"') == {"report"}
        assert imap_names("X-GM-RAW", "has:attachment") == {"report", "notes"}
