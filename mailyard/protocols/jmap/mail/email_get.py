"""Email/get (RFC 8621 §4.2).

Metadata properties come from the stored record (what delivery computed once); the body
properties, and the headers the record does not keep (Sender, Bcc, Reply-To, header:*), come
from the raw message, parsed off the event loop only when the request asks for one of them.
"""

from __future__ import annotations

import asyncio
import re
import unicodedata
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

from mailyard.core import mime
from mailyard.core.mime import Part
from mailyard.protocols.jmap.core import Context, method
from mailyard.protocols.jmap.errors import MethodError
from mailyard.protocols.jmap.mail.bodyparts import (
    BODY_PROPERTIES,
    DEFAULT_BODY_PROPERTIES,
    Body,
    address_list,
)
from mailyard.protocols.jmap.mail.common import (
    MAIL,
    current_state,
    mailbox_service,
    requested_ids,
    requested_properties,
)
from mailyard.store.ports import EmailRecord

METADATA = ("id", "blobId", "threadId", "mailboxIds", "keywords", "size", "receivedAt")
HEADERS = ("messageId", "inReplyTo", "references", "sender", "from", "to", "cc", "bcc",
           "replyTo", "subject", "sentAt")
BODY = ("bodyStructure", "bodyValues", "textBody", "htmlBody", "attachments",
        "hasAttachment", "preview")
PROPERTIES = (*METADATA, *HEADERS, *BODY, "headers")
DEFAULT = (*METADATA, *HEADERS, "hasAttachment", "preview", "bodyValues", "textBody",
           "htmlBody", "attachments")
NEEDS_RAW = frozenset({"sender", "bcc", "replyTo", "bodyStructure", "bodyValues", "textBody",
                       "htmlBody", "attachments", "headers"})
_FORMS = ("asRaw", "asText", "asAddresses", "asGroupedAddresses", "asMessageIds", "asDate",
          "asURLs")


def utc_date(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _addresses(values: list[dict[str, str]]) -> list[dict[str, str | None]] | None:
    if not values:
        return None
    return [{"name": v.get("name") or None, "email": v.get("email", "")} for v in values]


def _flag(args: dict[str, Any], key: str) -> bool:
    value = args.get(key, False)
    if not isinstance(value, bool):
        raise MethodError("invalidArguments", f"{key} must be a boolean")
    return value


def header_form(prop: str) -> tuple[str, str, bool]:
    """header:{name}[:{form}][:all] (§4.1.3) as (lower-case name, form, all)."""
    pieces = prop.split(":")[1:]
    every = bool(pieces) and pieces[-1] == "all"
    if every:
        pieces = pieces[:-1]
    if not pieces or not pieces[0] or len(pieces) > 2:
        raise MethodError("invalidArguments", f"bad header property {prop}")
    form = pieces[1] if len(pieces) == 2 else "asRaw"
    if form not in _FORMS:
        raise MethodError("invalidArguments", f"unsupported header form in {prop}")
    return pieces[0].lower(), form, every


def grouped_addresses(value: str) -> list[dict[str, Any]]:
    """RFC 8621 §4.1.2.4: addresses outside a group form groups of their own with a null
    name, one per run between groups."""
    out: list[dict[str, Any]] = []
    rest = value
    while rest.strip():
        colon = _group_colon(rest)
        if colon < 0:
            out.append({"name": None, "addresses": address_list(rest) or []})
            break
        before, _, after = rest[:colon], ":", rest[colon + 1:]
        # Addresses before the group (up to its display name) are ungrouped.
        head, _, name = before.rpartition(",")
        if head.strip():
            out.append({"name": None, "addresses": address_list(head) or []})
        members, _, rest = after.partition(";")
        out.append({"name": mime.decode_words(name.strip().strip('"')) or None,
                    "addresses": address_list(members) or []})
        rest = rest.lstrip(" ,")
    return out


def _group_colon(text: str) -> int:
    """The position of the colon that opens a group, outside quotes, comments and <>."""
    depth, quoted, angle = 0, False, False
    for i, ch in enumerate(text):
        if quoted:
            quoted = ch != '"' or text[i - 1] == "\\"
        elif ch == '"':
            quoted = True
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth = max(0, depth - 1)
        elif ch == "<":
            angle = True
        elif ch == ">":
            angle = False
        elif ch == ":" and not depth and not angle:
            return i
    return -1


def _parse_form(value: str, form: str) -> Any:
    if form == "asRaw":
        return value
    if form == "asGroupedAddresses":
        return grouped_addresses(value)
    if form == "asURLs":
        urls = re.findall(r"<([^<>\s]+)>", value)
        return urls or None
    if form == "asText":  # §4.1.2.2: unfolded, decoded, "converted to ... NFC"
        return unicodedata.normalize("NFC", " ".join(mime.decode_words(value).split()))
    if form == "asAddresses":
        return address_list(value) or []
    if form == "asMessageIds":
        ids = [i.strip("<>") for i in value.split() if i.startswith("<")]
        return ids or None
    try:  # asDate
        return parsedate_to_datetime(value.strip()).isoformat()
    except (TypeError, ValueError):
        return None


def header_value(body: Body, prop: str, part: Part | None = None) -> Any:
    """header:{name}[:{form}][:all] of the message, or of one body part (§4.1.4 lets
    bodyProperties name them too)."""
    name, form, every = header_form(prop)
    values = [_parse_form(v, form) for n, v in body.headers(part) if n.lower() == name]
    if every:
        return values
    return values[-1] if values else None


class EmailView:
    """One Email object's properties, from its record and (when needed) its parsed body."""

    def __init__(self, record: EmailRecord, body: Body | None, box_ids: dict[str, str],
                 body_props: list[str], values: dict[str, Any]) -> None:
        self.record = record
        self.body = body
        self.box_ids = box_ids
        self.body_props = body_props
        self.values = values

    def _part_header(self, part: Part, prop: str) -> Any:
        assert self.body is not None
        return header_value(self.body, prop, part)

    def get(self, prop: str) -> Any:
        r, body = self.record, self.body
        if prop.startswith("header:"):
            assert body is not None
            return header_value(body, prop)
        simple: dict[str, Any] = {
            "id": r.id, "blobId": r.id, "threadId": r.thread_id, "size": r.size,
            "subject": unicodedata.normalize("NFC", r.subject),
            "preview": r.preview, "hasAttachment": r.has_attachment,
        }
        if prop in simple:
            return simple[prop]
        if prop == "mailboxIds":
            return {self.box_ids[n]: True for n in r.mailboxes if n in self.box_ids}
        if prop == "keywords":
            return dict.fromkeys(r.keywords, True)
        if prop == "receivedAt":
            return utc_date(r.received_at)
        if prop == "sentAt":
            return None if r.sent_at is None else utc_date(r.sent_at)
        if prop == "messageId":
            return [r.message_id] if r.message_id else None
        if prop == "inReplyTo":
            return r.in_reply_to or None
        if prop == "references":
            return r.references or None
        if prop in ("from", "to", "cc"):
            return _addresses({"from": r.from_, "to": r.to, "cc": r.cc}[prop])
        assert body is not None
        if prop in ("sender", "bcc", "replyTo"):
            found = [v for n, v in body.headers()
                     if n.lower() == {"replyTo": "reply-to"}.get(prop, prop)]
            return address_list(found[-1]) if found else None
        if prop == "headers":
            return [{"name": n, "value": v} for n, v in body.headers()]
        if prop == "bodyStructure":
            # A tree without its branches says nothing: subParts always comes with it.
            props = self.body_props if "subParts" in self.body_props \
                else [*self.body_props, "subParts"]
            return body.to_json(body.root, props, self._part_header)
        if prop in ("textBody", "htmlBody", "attachments"):
            parts = {"textBody": body.text_body, "htmlBody": body.html_body,
                     "attachments": body.attachments}[prop]
            return [body.to_json(p, self.body_props, self._part_header) for p in parts]
        if prop == "bodyValues":
            return self.values
        raise MethodError("invalidArguments", f"unknown property {prop}")


def body_values(body: Body, args: dict[str, Any]) -> dict[str, Any]:
    max_bytes = args.get("maxBodyValueBytes", 0) or 0
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 0:
        raise MethodError("invalidArguments", "maxBodyValueBytes must be a positive integer")
    chosen = []
    if _flag(args, "fetchAllBodyValues"):
        chosen = [*body.text_body, *body.html_body,
                  *(p for p in body.attachments if p.content_type.startswith("text/"))]
    else:
        if _flag(args, "fetchTextBodyValues"):
            chosen += body.text_body
        if _flag(args, "fetchHTMLBodyValues"):
            chosen += body.html_body
    out: dict[str, Any] = {}
    for part in chosen:
        part_id = body.part_id(part)
        if part_id is not None and part_id not in out and part.content_type.startswith("text/"):
            out[part_id] = body.value(part, max_bytes)
    return out


@method("Email/get", capability=MAIL)
async def email_get(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    account_id = ctx.account_id(args)
    ids = requested_ids(ctx, args)
    props = requested_properties(args, "properties", PROPERTIES, DEFAULT,
                                 headers=True)
    body_props = requested_properties(args, "bodyProperties", BODY_PROPERTIES,
                                      DEFAULT_BODY_PROPERTIES, headers=True)
    for p in (*props, *body_props):
        if p.startswith("header:"):
            header_form(p)
    service = mailbox_service(ctx)
    state = await current_state(ctx)
    if ids is None:  # every email is more than a client may fetch at once: the newest ones
        ids = [r.id for r in await service.emails(ctx.account, None, limit=500)]
    records = {r.id: r for r in await service.get_emails(ctx.account, ids, brief=True)}
    box_ids = {b.name: b.id for b in await service.mailboxes(ctx.account)}
    needs_raw = any(p in NEEDS_RAW or p.startswith("header:") for p in props)
    listed = []
    for email_id in ids:
        record = records.get(email_id)
        if record is None:
            continue
        body = None
        if needs_raw:
            raw = await service.raw_of(record)
            body = await asyncio.to_thread(Body, record.id, raw)
        values = body_values(body, args) if body is not None and "bodyValues" in props else {}
        view = EmailView(record, body, box_ids, body_props, values)
        listed.append({p: view.get(p) for p in ("id", *props)})
    return {"accountId": account_id, "state": str(state), "list": listed,
            "notFound": [i for i in ids if i not in records]}
