"""An Email object of Email/set create (RFC 8621 §4.6) turned into RFC 5322 octets.

The stdlib `email` package writes the MIME (its SMTP policy: CRLF, RFC 2047 encoded words,
folding); this module only decides the shape. A client gives either `bodyStructure` (the whole
tree) or the `textBody`/`htmlBody`/`attachments` shorthand, which becomes the tree every mail
client sends: alternative text and HTML, inline images related to the HTML, the rest mixed in.
Attachments come from blobs the client uploaded (or of emails it can read), fetched beforehand,
so the builder itself does no I/O and runs off the event loop.
"""

from __future__ import annotations

import email.policy
import email.utils
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime
from email.message import MIMEPart
from typing import Any

from mailyard.protocols.jmap.mail import headertext
from mailyard.protocols.jmap.mail.headertext import InvalidProperty

POLICY = email.policy.SMTP.clone(max_line_length=78)

ADDRESS_HEADERS = {"from": "From", "to": "To", "cc": "Cc", "bcc": "Bcc", "replyTo": "Reply-To",
                   "sender": "Sender"}
ID_HEADERS = {"messageId": "Message-ID", "inReplyTo": "In-Reply-To", "references": "References"}
SETTABLE = frozenset({"mailboxIds", "keywords", "receivedAt", "subject", "sentAt",
                      "bodyStructure", "textBody", "htmlBody", "attachments", "bodyValues",
                      *ADDRESS_HEADERS, *ID_HEADERS})
_BODY_PART_KEYS = frozenset({"partId", "blobId", "type", "charset", "name", "disposition",
                             "cid", "language", "location", "subParts", "headers", "size"})
MAX_DEPTH = 20
"""Nesting of multiparts in a bodyStructure: the email package writes a part by recursion,
and the depth orjson allows (1024) ran the writer out of stack, a serverFail."""

ComposeError = InvalidProperty
"""The object cannot be made into a message; `properties` are the ones at fault. Every
string that goes into a header field is checked by `headertext`, which raises it too."""


def blob_ids(obj: Mapping[str, Any]) -> dict[str, list[str]]:
    """Every blobId the object's body parts name (to fetch them before building), with the
    properties that name it (a blobNotFound error lists them)."""
    found: dict[str, list[str]] = {}

    def walk(part: Any, depth: int, key: str) -> None:
        if isinstance(part, dict) and depth <= MAX_DEPTH:
            if isinstance(part.get("blobId"), str):
                where = found.setdefault(part["blobId"], [])
                if key not in where:
                    where.append(key)
            children = part.get("subParts")
            for child in children if isinstance(children, list) else []:
                walk(child, depth + 1, key)

    walk(obj.get("bodyStructure"), 0, "bodyStructure")
    for key in ("textBody", "htmlBody", "attachments"):
        parts = obj.get(key)
        for part in parts if isinstance(parts, list) else []:
            walk(part, 0, key)
    return found


def _addresses(key: str, value: Any) -> str:
    if not isinstance(value, list):
        raise ComposeError(f"{key} must be an array of EmailAddress", [key])
    out = []
    for item in value:
        if not isinstance(item, dict) or not isinstance(item.get("email"), str):
            raise ComposeError(f"{key} holds something that is not an EmailAddress", [key])
        name = headertext.text(item.get("name") or "", key, f"{key}: a name")
        addr = headertext.address(item["email"], key, key)
        out.append(f"{headertext.display_name(name)} <{addr}>" if name else addr)
    return ", ".join(out)


def _message_ids(key: str, value: Any) -> str:
    if not isinstance(value, list) or not value or len(value) > 1000:
        raise ComposeError(f"{key} must be an array of message ids (without <>)", [key])
    return " ".join(f"<{headertext.message_id(v, key)}>" for v in value)


def _date(value: Any) -> str:
    if not isinstance(value, str):
        raise ComposeError("sentAt must be a Date", ["sentAt"])
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ComposeError("sentAt must be an RFC 3339 date", ["sentAt"]) from None
    if when.tzinfo is None:
        raise ComposeError("sentAt needs a time zone", ["sentAt"])
    return email.utils.format_datetime(when)


def _check_header_value(prop: str, value: Any) -> str:
    return headertext.text(value, prop, prop)


class Builder:
    def __init__(self, obj: Mapping[str, Any], blobs: Mapping[str, bytes]) -> None:
        self.obj = obj
        self.blobs = blobs
        values = obj.get("bodyValues") or {}
        if not isinstance(values, dict):
            raise ComposeError("bodyValues must map part ids to EmailBodyValue", ["bodyValues"])
        self.values: dict[str, str] = {}
        for part_id, value in values.items():
            if (not isinstance(value, dict) or not isinstance(value.get("value"), str)
                    or value.get("isTruncated") or value.get("isEncodingProblem")):
                raise ComposeError(f"bodyValues/{part_id} must be a complete text value",
                                   ["bodyValues"])
            self.values[part_id] = value["value"]
        self.used: set[str] = set()

    def build(self) -> bytes:
        obj = self.obj
        if "bodyStructure" in obj and any(k in obj for k in ("textBody", "htmlBody",
                                                             "attachments")):
            raise ComposeError("give bodyStructure or textBody/htmlBody/attachments, not both",
                               ["bodyStructure"])
        root = (self._part(obj["bodyStructure"], "bodyStructure") if "bodyStructure" in obj
                else self._shorthand())
        # The header fields of the message are written here (headertext), not by the email
        # package: it re-parses any value it is given as a raw field, structured by its name,
        # so client text came out decoded (an encoded word in a subject became a real Bcc
        # field), refolded without white space, or raised.
        fields: list[bytes] = []
        for key, name in ADDRESS_HEADERS.items():
            if obj.get(key):  # null and [] both mean no such header
                fields.append(headertext.fold(name, _addresses(key, obj[key]), key))
        fields.append(headertext.fold("Date", _date(obj["sentAt"]) if obj.get("sentAt")
                                      is not None else email.utils.format_datetime(
                                          datetime.now(UTC)), "sentAt"))
        if obj.get("subject") is not None:
            fields.append(headertext.fold("Subject", headertext.unstructured(
                _check_header_value("subject", obj["subject"])), "subject"))
        for key, name in ID_HEADERS.items():
            if obj.get(key) is not None:
                fields.append(headertext.fold(name, _message_ids(key, obj[key]), key))
        if obj.get("messageId") is None:
            # Given now, so the draft and the copy a later submission files in Sent are one
            # message (RFC 5322 §3.6.4: every message SHOULD have one).
            domain = (headertext.address(obj["from"][0]["email"], "from", "from")
                      .rpartition("@")[2] if obj.get("from") else "mailyard.invalid")
            fields.append(f"Message-ID: <{secrets.token_hex(12)}@{domain}>\r\n".encode())
        for prop, value in obj.items():
            if prop.startswith("header:"):
                fields.append(self._header(prop, value))
        fields.append(b"MIME-Version: 1.0\r\n")
        unused = set(self.values) - self.used
        if unused:
            raise ComposeError(f"bodyValues {sorted(unused)[0]} is not used by any part",
                               ["bodyValues"])
        # The message is its header fields followed by the root entity, whose own fields
        # (Content-Type, Content-Transfer-Encoding) end the header block.
        return b"".join(fields) + root.as_bytes(policy=POLICY)

    @staticmethod
    def _header(prop: str, value: Any) -> bytes:
        """header:Name[:asRaw|:asText] (RFC 8621 §4.1.3); no form is the raw form."""
        name, _, form = prop[len("header:"):].partition(":")
        if not name or form not in ("", "asRaw", "asText") or not all(
                33 <= ord(c) <= 126 and c != ":" for c in name):
            raise ComposeError(f"{prop}: only header:Name, :asRaw and :asText can be set",
                               [prop])
        if name.lower() in {"mime-version", "content-type", "content-transfer-encoding",
                            *(h.lower() for h in (*ADDRESS_HEADERS.values(),
                                                  *ID_HEADERS.values(), "Subject", "Date"))}:
            raise ComposeError(f"{prop}: set this header through its own property", [prop])
        text = _check_header_value(prop, value)
        if form == "asText":
            return headertext.fold(name, headertext.unstructured(text), prop)
        if not text.isascii():
            raise ComposeError(f"{prop}: a raw value is US-ASCII (set :asText for other "
                               "text)", [prop])
        return headertext.fold(name, text.strip(" \t"), prop)

    def _shorthand(self) -> MIMEPart:
        obj = self.obj
        text = self._single(obj.get("textBody"), "textBody", "text/plain")
        html = self._single(obj.get("htmlBody"), "htmlBody", "text/html")
        attachments = obj.get("attachments") or []
        if not isinstance(attachments, list):
            raise ComposeError("attachments must be an array of EmailBodyPart", ["attachments"])
        body: MIMEPart
        if text is not None and html is not None:
            body = _multipart("alternative", [text, html])
        else:
            body = text or html or self._text("", "text/plain")
        files = [self._part(a, "attachments") for a in attachments]
        inline = [f for f in files if f["Content-ID"] and html is not None
                  and f.get_content_disposition() == "inline"]
        if inline:
            body = _multipart("related", [body, *inline])
        rest = [f for f in files if f not in inline]
        return _multipart("mixed", [body, *rest]) if rest else body

    def _single(self, value: Any, key: str, kind: str) -> MIMEPart | None:
        if value is None:
            return None
        if not isinstance(value, list) or len(value) != 1 or not isinstance(value[0], dict):
            raise ComposeError(f"{key} must hold exactly one part", [key])
        part = value[0]
        if part.get("type", kind) != kind or "partId" not in part:
            raise ComposeError(f"{key} must be one {kind} part with a partId", [key])
        return self._part(part, key)

    def _text(self, text: str, kind: str) -> MIMEPart:
        part = MIMEPart(policy=POLICY)
        part.set_content(text.replace("\r\n", "\n"), subtype=kind.split("/")[1],
                         charset="utf-8")
        return part

    def _part(self, spec: Any, key: str, depth: int = 0) -> MIMEPart:
        if not isinstance(spec, dict) or set(spec) - _BODY_PART_KEYS:
            raise ComposeError(f"{key} holds a part that is not an EmailBodyPart", [key])
        if depth > MAX_DEPTH:
            raise ComposeError(f"{key} nests more than {MAX_DEPTH} multiparts", [key])
        kind = None if spec.get("type") is None else headertext.media_type(spec["type"], key)
        sub_parts = spec.get("subParts")
        if sub_parts is not None:
            if (kind is None or not kind.startswith("multipart/")
                    or not isinstance(sub_parts, list) or not sub_parts):
                raise ComposeError("subParts belong to a multipart type", [key])
            return _multipart(kind.split("/", 1)[1],
                              [self._part(s, key, depth + 1) for s in sub_parts])
        part_id, blob_id = spec.get("partId"), spec.get("blobId")
        if (part_id is None) == (blob_id is None):
            raise ComposeError("a part has either a partId or a blobId", [key])
        if part_id is not None:
            kind = kind or "text/plain"
            if (not isinstance(part_id, str) or part_id not in self.values
                    or kind not in ("text/plain", "text/html")):
                raise ComposeError(f"part {str(part_id)[:100]} needs a text type and a body"
                                   " value", [key])
            self.used.add(part_id)
            part = self._text(self.values[part_id], kind)
        else:
            if not isinstance(blob_id, str) or blob_id not in self.blobs:
                raise ComposeError(f"no blob {str(blob_id)[:100]}", [key])
            part = self._blob(self.blobs[blob_id], kind or "application/octet-stream",
                              spec.get("charset"), key)
        self._describe(part, spec, key, blob_id is not None)
        return part

    @staticmethod
    def _blob(data: bytes, kind: str, given_charset: Any, key: str) -> MIMEPart:
        """A leaf part holding a blob; text is re-encoded as UTF-8 from the charset the
        client names, and stays octets when it is not in that charset."""
        if kind.startswith("multipart/"):
            raise ComposeError("a blob cannot be a multipart", [key])
        part = MIMEPart(policy=POLICY)
        maintype, subtype = kind.split("/", 1)
        if maintype == "text":
            name = "utf-8" if given_charset is None else headertext.charset(given_charset, key)
            try:
                part.set_content(data.decode(name), subtype=subtype, charset="utf-8")
            except (LookupError, ValueError):  # an unknown charset, or not in it
                part.set_content(data, maintype="application", subtype="octet-stream")
        elif maintype == "message":
            part.set_content(data, maintype="application", subtype="octet-stream")
            part.replace_header("Content-Type", kind)
        else:
            part.set_content(data, maintype=maintype, subtype=subtype)
        return part

    @staticmethod
    def _describe(part: MIMEPart, spec: dict[str, Any], key: str, is_blob: bool) -> None:
        """Content-Disposition, its file name, Content-ID, -Language and -Location."""
        name = spec.get("name")
        if name is not None:
            name = headertext.text(name, key, f"{key}: a part's name", limit=1000)
        cid = spec.get("cid")
        if cid is not None:
            cid = headertext.single_word(cid.strip("<>") if isinstance(cid, str) else cid,
                                         key, f"{key}: a cid", limit=250)
        disposition = spec.get("disposition") or ("attachment" if is_blob and not cid
                                                  else None)
        if disposition is not None:
            if disposition not in ("attachment", "inline"):
                raise ComposeError("disposition is attachment or inline", [key])
            if "Content-Disposition" in part:
                del part["Content-Disposition"]
            part.add_header("Content-Disposition", disposition,
                            **({"filename": name} if name else {}))
        elif name:
            part.set_param("name", name)
        if cid is not None:
            part["Content-ID"] = f"<{cid}>"
        if spec.get("language") is not None:
            part["Content-Language"] = ", ".join(headertext.languages(spec["language"], key))
        if spec.get("location") is not None:
            part["Content-Location"] = headertext.single_word(
                spec["location"], key, f"{key}: a location", limit=2000)


def _multipart(subtype: str, parts: list[MIMEPart]) -> MIMEPart:
    container = MIMEPart(policy=POLICY)
    container.set_type(f"multipart/{subtype}")
    del container["MIME-Version"]  # set_type adds one; only the message's header has it
    container.set_boundary("=_" + secrets.token_urlsafe(24))
    for part in parts:
        container.attach(part)
    return container


def build(obj: Mapping[str, Any], blobs: Mapping[str, bytes]) -> bytes:
    """The message for `obj`; raises ComposeError naming the properties at fault."""
    return Builder(obj, blobs).build()
