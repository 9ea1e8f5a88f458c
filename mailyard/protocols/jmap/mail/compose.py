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

from mailyard.protocols.jmap.mail import headerforms, headertext
from mailyard.protocols.jmap.mail.headertext import InvalidProperty

POLICY = email.policy.SMTP.clone(max_line_length=78, refold_source="none")
"""refold_source none: a body part's header: field is folded by headertext and stored as it
is (set_raw); the email package would otherwise parse a long one again, decoding its words."""

ADDRESS_HEADERS = {"from": "From", "to": "To", "cc": "Cc", "bcc": "Bcc", "replyTo": "Reply-To",
                   "sender": "Sender"}
ID_HEADERS = {"messageId": "Message-ID", "inReplyTo": "In-Reply-To", "references": "References"}
SETTABLE = frozenset({"mailboxIds", "keywords", "receivedAt", "subject", "sentAt",
                      "bodyStructure", "textBody", "htmlBody", "attachments", "bodyValues",
                      *ADDRESS_HEADERS, *ID_HEADERS})
PROPERTY_FIELDS = {**{k: v.lower() for k, v in (*ADDRESS_HEADERS.items(), *ID_HEADERS.items())},
                   "sentAt": "date", "subject": "subject"}
"""The header field each convenience property sets (§4.1.3 `header:` forms give the same)."""
_BODY_PART_KEYS = frozenset({"partId", "blobId", "type", "charset", "name", "disposition",
                             "cid", "language", "location", "subParts", "size"})
_PART_FIELDS = {"type": "content-type", "charset": "content-type", "name": "content-type",
                "disposition": "content-disposition", "cid": "content-id",
                "language": "content-language", "location": "content-location"}
"""The header field each EmailBodyPart property writes."""
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


def header_properties(obj: Mapping[str, Any], claimed: dict[str, str],
                      where: str | None = None) -> list[headerforms.HeaderProperty]:
    """The `header:` properties of an Email or a body part, each checked; `claimed` (field
    -> property) gains each one, and a field two properties set is invalidProperties
    naming both (§4.6), or the Email's property `where` that holds the part."""
    out = []
    for prop in obj:
        if not prop.startswith("header:"):
            continue
        header = headerforms.parse(prop)
        if header.key in claimed:
            raise ComposeError(f"{claimed[header.key]} and {prop} both set the {header.name}"
                               " field", [where] if where else [claimed[header.key], prop])
        claimed[header.key] = prop
        out.append(header)
    return out


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
        headers, claimed = self._top_headers()
        if "bodyStructure" in obj:
            root = self._part(obj["bodyStructure"], "bodyStructure", top=claimed)
        else:
            root = self._shorthand()
        # The header fields of the message are written here (headertext), not by the email
        # package: it re-parses any value it is given as a raw field, structured by its name,
        # so client text came out decoded (an encoded word in a subject became a real Bcc
        # field), refolded without white space, or raised.
        fields: list[bytes] = []
        for key, name in ADDRESS_HEADERS.items():
            if obj.get(key):  # null and [] both mean no such header
                fields.append(headertext.fold(name, headerforms.addresses(key, obj[key]), key))
        if obj.get("sentAt") is not None:
            fields.append(headertext.fold("Date", headerforms.date("sentAt", obj["sentAt"]),
                                          "sentAt"))
        elif "date" not in claimed:
            fields.append(headertext.fold("Date", email.utils.format_datetime(
                datetime.now(UTC)), "sentAt"))
        if obj.get("subject") is not None:
            fields.append(headertext.fold("Subject", headertext.unstructured(
                headertext.text(obj["subject"], "subject", "subject")), "subject"))
        for key, name in ID_HEADERS.items():
            if obj.get(key) is not None:
                fields.append(headertext.fold(name, headerforms.message_ids(key, obj[key]), key))
        if "message-id" not in claimed:
            # Given now, so the draft and the copy a later submission files in Sent are one
            # message (RFC 5322 §3.6.4: every message SHOULD have one).
            domain = (headertext.address(obj["from"][0]["email"], "from", "from")
                      .rpartition("@")[2] if obj.get("from") else "mailyard.invalid")
            fields.append(f"Message-ID: <{secrets.token_hex(12)}@{domain}>\r\n".encode())
        for header in headers:
            for name, value in headerforms.fields(header, obj[header.prop]):
                fields.append(headertext.fold(name, value, header.prop))
        fields.append(b"MIME-Version: 1.0\r\n")
        unused = set(self.values) - self.used
        if unused:
            raise ComposeError(f"bodyValues {sorted(unused)[0]} is not used by any part",
                               ["bodyValues"])
        # The message is its header fields followed by the root entity, whose own fields
        # (Content-Type, Content-Transfer-Encoding) end the header block.
        return b"".join(fields) + root.as_bytes(policy=POLICY)

    def _top_headers(self) -> tuple[list[headerforms.HeaderProperty], dict[str, str]]:
        """The Email's header: properties, and the property that sets each field (by lower
        case name): §4.6 forbids two properties for one field (`from` and `header:From`),
        and Content-* fields on the Email rather than on a body part."""
        claimed = {field: key for key, field in PROPERTY_FIELDS.items()
                   if self.obj.get(key) is not None}
        headers = header_properties(self.obj, claimed)
        for header in headers:
            if header.key.startswith("content-") or header.key == "mime-version":
                raise ComposeError(f"{header.prop}: MIME-Version and Content-* fields are "
                                   "not set on the Email (a body part's are)", [header.prop])
        return headers, claimed

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
        if part.get("type") not in (None, kind):
            raise ComposeError(f"{key} must be one {kind} part", [key])
        return self._part({**part, "type": kind}, key, body=True)  # by partId or blobId

    def _text(self, text: str, kind: str) -> MIMEPart:
        part = MIMEPart(policy=POLICY)
        part.set_content(text.replace("\r\n", "\n"), subtype=kind.split("/")[1],
                         charset="utf-8")
        return part

    def _part(self, spec: Any, key: str, depth: int = 0,
              top: dict[str, str] | None = None, body: bool = False) -> MIMEPart:
        """One EmailBodyPart; `top` holds the fields the Email itself sets, which the root
        of a bodyStructure may not set again (§4.6). A blob is an attachment unless it is
        the text or HTML `body` or has a cid (or the client says otherwise)."""
        if not isinstance(spec, dict):
            raise ComposeError(f"{key} holds a part that is not an EmailBodyPart", [key])
        if "headers" in spec:
            raise ComposeError(f"{key}: a part's header fields are given as header: "
                               "properties, not headers (RFC 8621 §4.6)", [key])
        if set(k for k in spec if not k.startswith("header:")) - _BODY_PART_KEYS:
            raise ComposeError(f"{key} holds a part that is not an EmailBodyPart", [key])
        if depth > MAX_DEPTH:
            raise ComposeError(f"{key} nests more than {MAX_DEPTH} multiparts", [key])
        headers = self._part_headers(spec, key, top)
        kind = None if spec.get("type") is None else headertext.media_type(spec["type"], key)
        sub_parts = spec.get("subParts")
        if sub_parts is not None:
            if (kind is None or not kind.startswith("multipart/")
                    or not isinstance(sub_parts, list) or not sub_parts):
                raise ComposeError("subParts belong to a multipart type", [key])
            part = _multipart(kind.split("/", 1)[1],
                              [self._part(s, key, depth + 1) for s in sub_parts])
            _add_fields(part, spec, headers, key)
            return part
        part_id, blob_id = spec.get("partId"), spec.get("blobId")
        if (part_id is None) == (blob_id is None):
            raise ComposeError("a part has either a partId or a blobId", [key])
        if part_id is not None:
            for given in ("charset", "size"):
                if spec.get(given) is not None:
                    raise ComposeError(f"{key}: a part given by partId has no {given} (the "
                                       "server encodes its body value; RFC 8621 §4.6)", [key])
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
            kind = kind or "application/octet-stream"
            if spec.get("charset") is not None and not kind.startswith("text/"):
                raise ComposeError(f"{key}: charset is for a text/* part, not {kind}", [key])
            part = self._blob(self.blobs[blob_id], kind, spec.get("charset"), key)
        self._describe(part, spec, key, blob_id is not None and not body and not any(
            h.key == "content-disposition" for h in headers))
        _add_fields(part, spec, headers, key)
        return part

    @staticmethod
    def _part_headers(spec: dict[str, Any], key: str, top: dict[str, str] | None
                      ) -> list[headerforms.HeaderProperty]:
        """A part's header: properties. The part's own properties write Content-Type
        (type, charset, name), -Disposition, -ID, -Language and -Location, so a header:
        form of one of those given beside them sets the field twice; the server chooses
        the Content-Transfer-Encoding (§4.6 forbids the field) and, from type and charset,
        the Content-Type."""
        claimed = {field: prop for prop, field in _PART_FIELDS.items()
                   if spec.get(prop) is not None}
        try:
            headers = header_properties(spec, claimed, key)
        except InvalidProperty as e:  # a bad header: name or form inside the part
            raise ComposeError(f"{key}: {e.body.get('description')}", [key]) from None
        for header in headers:
            if header.key in ("content-transfer-encoding", "content-type", "mime-version"):
                raise ComposeError(f"{key}: {header.prop} is not given (the server writes "
                                   "MIME-Version, Content-Type from type and charset, and "
                                   "the Content-Transfer-Encoding)", [key])
            if top is not None and header.key in top:
                raise ComposeError(f"{key}: {header.prop} sets a field the Email sets "
                                   f"({top[header.key]})", [key, top[header.key]])
        return headers

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


def _add_fields(part: MIMEPart, spec: dict[str, Any],
                headers: list[headerforms.HeaderProperty], key: str) -> None:
    """A part's header: fields, folded by headertext and kept as they are (see POLICY)."""
    for header in headers:
        try:
            values = headerforms.fields(header, spec[header.prop])
        except InvalidProperty as e:
            raise ComposeError(f"{key}: {e.body.get('description')}", [key]) from None
        for name, value in values:
            if name.lower() in part:  # set by the builder from the part's own properties
                raise ComposeError(f"{key}: {header.prop} sets a field the part's "
                                   "properties set", [key])
            folded = headertext.fold(name, value, header.prop).decode()
            part.set_raw(name, folded[len(name) + 2:].removesuffix("\r\n"))


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
