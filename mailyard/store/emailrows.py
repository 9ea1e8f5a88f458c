"""An email's row as both SQL mail stores keep it (store/sqlite, store/postgres): what its
`headers` JSON column holds, which columns a brief read takes, and the EmailRecord a row
reads back as. Defined once, so a field added to the record is written and read alike on
every engine (each engine only says how it stores a keyword list)."""

from __future__ import annotations

from typing import Any

import orjson

from mailyard.store.ports.records import EmailRecord, NewEmail

BRIEF_COLUMNS = ("id, account_id, thread_id, blob_id, size, received_at, sent_at, message_id,"
                 " subject, headers, preview, has_attachment, attachments, keywords, modseq")
"""Everything but the IMAP structures and the part tree: what searching and sorting read."""
FULL_COLUMNS = BRIEF_COLUMNS + ", envelope, bodystructure, body, parts"


def headers(email: NewEmail) -> bytes:
    """The `headers` column: the address fields and the threading ones, as JSON."""
    return orjson.dumps({
        "from": email.from_, "to": email.to, "cc": email.cc, "bcc": email.bcc,
        "reply_to": email.reply_to, "sender": email.sender,
        "in_reply_to": email.in_reply_to, "references": email.references,
    })


def from_addr(email: NewEmail) -> str:
    """The `from_addr` column: the first From address (what search's `from:` reads)."""
    return email.from_[0]["email"] if email.from_ else ""


def email_record(row: Any, keywords: list[str], boxes: dict[str, int]) -> EmailRecord:
    """The record of a row of FULL_COLUMNS (or more) or BRIEF_COLUMNS (no IMAP structures,
    no part tree); `keywords` decoded by the engine, `boxes` its mailbox name -> UID."""
    stored = orjson.loads(row["headers"])
    full = "parts" in row.keys()  # noqa: SIM118 (on a Row or Record, "in" tests values)
    return EmailRecord(
        id=row["id"], account_id=row["account_id"], thread_id=row["thread_id"],
        blob_id=row["blob_id"], size=row["size"], received_at=row["received_at"],
        sent_at=row["sent_at"], message_id=row["message_id"], subject=row["subject"],
        from_=stored["from"], to=stored["to"], cc=stored["cc"], preview=row["preview"],
        has_attachment=bool(row["has_attachment"]),
        attachments=orjson.loads(row["attachments"]), keywords=keywords, mailboxes=boxes,
        in_reply_to=stored["in_reply_to"], references=stored["references"],
        modseq=row["modseq"],
        envelope=row["envelope"] if full else b"",
        bodystructure=row["bodystructure"] if full else b"",
        body=row["body"] if full else b"",
        parts=orjson.loads(row["parts"]) if full else {},
    )
