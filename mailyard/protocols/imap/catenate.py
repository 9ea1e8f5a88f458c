"""CATENATE (RFC 4469): an APPEND whose message is made of TEXT literals and of IMAP URLs
(RFC 5092) to messages, or parts of messages, the user already has on this server.

The server fetches what a URL names itself, as BODY.PEEK[section]<partial> would (no \\Seen),
so a client can forward or re-draft a message without downloading its attachments. Only URLs
to this server and to the logged-in user's own mailboxes resolve (URLAUTH, RFC 4467, is not
offered); anything else is NO [BADURL url], and nothing of the APPEND is stored.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

from mailyard.core import sections
from mailyard.core.mime import Part
from mailyard.protocols.imap.grammar import (
    CatPart,
    ParseError,
    Tokenizer,
    decode_mailbox_name,
    parse_fetch_items,
)
from mailyard.protocols.imap.session import No, Session
from mailyard.store.ports import NotFound

_SERVER = re.compile(
    r"imap://(?P<user>[^@/;]*)(?:;AUTH=[^@/]*)?@(?P<host>\[[^\]/]*\]|[^:/]*)(?::[0-9]*)?(?=/)",
    re.I)
"""iserver = [iuserinfo "@"] host [":" port] (RFC 5092 §11): the user must be named, since
only the logged-in user's own mail can be fetched."""

_MESSAGE_PART = re.compile(
    r"/(?P<mailbox>[^;?#]+?)(?:;UIDVALIDITY=(?P<uidvalidity>[1-9][0-9]{0,9}))?"
    r"/;UID=(?P<uid>[1-9][0-9]{0,9})"
    r"(?:/;SECTION=(?P<section>[^;?#]+?))?"
    r"(?:/;PARTIAL=(?P<offset>[0-9]{1,19})(?:\.(?P<length>[1-9][0-9]{0,18}))?)?\Z",
    re.I)
"""imessagepart = imailbox-ref iuid [isection] [ipartial] (RFC 5092 §11, RFC 5550 for
;PARTIAL), as an absolute path; the keywords are case-insensitive (RFC 4469 §5's example
writes ;section=)."""

_RESP_TEXT = re.compile(r"[^\x01-\x09\x0b\x0c\x0e-\x5c\x5e-\x7e]")


@dataclass(frozen=True, slots=True)
class MessagePartUrl:
    """What an IMAP URL to a message (part) names, decoded."""

    mailbox: str
    uidvalidity: int | None
    uid: int
    section: str | None
    partial: tuple[int, int | None] | None


def bad_url(url: bytes, why: str) -> No:
    """NO [BADURL url] (RFC 4469 §6): url-resp-text is TEXT-CHAR but "]"."""
    text = _RESP_TEXT.sub("", url.decode("utf-8", "replace"))[:300]
    return No(f"Cannot use that URL: {why}", f"BADURL {text}")


def _mailbox_name(encoded: str) -> str:
    """enc-mailbox is the %-encoded name (RFC 5092 §5): UTF-8 when it has 8-bit octets, as
    RFC 5092 asks of URL writers, else the modified UTF-7 IMAP name."""
    octets = unquote_to_bytes(encoded)
    text = octets.decode("utf-8")  # UnicodeDecodeError is a ValueError: a bad URL
    name = text if not text.isascii() else decode_mailbox_name(octets)
    return "INBOX" if name.upper() == "INBOX" else name


def parse_url(url: bytes, user: str, hosts: frozenset[str]) -> MessagePartUrl:
    """An absolute IMAP URL of this server and `user`, or a relative one with an absolute
    path (RFC 4469 §5's examples: "/Drafts;UIDVALIDITY=385759045/;UID=20/;section=HEADER"),
    naming a message; raises ValueError (a BADURL) for anything else."""
    text = url.decode("ascii")  # a URL is ASCII (RFC 3986); 8-bit is %-encoded
    server = _SERVER.match(text)
    if server is not None:
        owner = unquote_to_bytes(server.group("user")).decode("utf-8")
        if owner.lower() != user.lower():
            raise ValueError("another user's mail")
        if server.group("host").lower() not in hosts:
            raise ValueError("another server")
        text = text[server.end():]
    elif not text.startswith("/") or text.startswith("//"):
        raise ValueError("not an IMAP URL of this server")
    m = _MESSAGE_PART.match(text)
    if m is None:
        raise ValueError("not a URL of a message")
    uidvalidity = m.group("uidvalidity")
    section = m.group("section")
    offset, length = m.group("offset"), m.group("length")
    return MessagePartUrl(
        mailbox=_mailbox_name(m.group("mailbox")),
        uidvalidity=int(uidvalidity) if uidvalidity else None,
        uid=int(m.group("uid")),
        section=unquote_to_bytes(section).decode("utf-8") if section else None,
        partial=(int(offset), int(length) if length else None) if offset else None,
    )


def _our_hosts(s: Session) -> frozenset[str]:
    """The names a URL of this server may carry: ours, and the address the client reached."""
    hosts = {s.services.policy.hostname.lower(), "localhost", "127.0.0.1", "[::1]"}
    writer = getattr(s, "writer", None)
    local = writer.get_extra_info("sockname") if writer is not None else None
    if isinstance(local, tuple):
        address = str(local[0])
        hosts.add(f"[{address}]" if ":" in address else address)
    return frozenset(hosts)


async def fetch_url(s: Session, url: bytes) -> bytes:
    """The octets an IMAP URL names, as BODY.PEEK[section]<partial> gives them (RFC 4469 §3);
    NO [BADURL] when it names nothing we can give."""
    try:
        ref = parse_url(url, s.user.address, _our_hosts(s))
    except (ValueError, ParseError) as e:
        raise bad_url(url, str(e) or "malformed") from None
    try:
        box = await s.mailbox.mailbox(s.user, ref.mailbox)
    except NotFound:
        raise bad_url(url, "no such mailbox") from None
    if ref.uidvalidity is not None and ref.uidvalidity != box.uidvalidity:
        raise bad_url(url, "UIDVALIDITY has changed")
    entries = (await s.mailbox.snapshot(s.user, box)).entries
    at = bisect.bisect_left(entries, ref.uid, key=lambda e: e.uid)
    if at == len(entries) or entries[at].uid != ref.uid:
        raise bad_url(url, "no such message")
    try:
        record = await s.mailbox.email(s.user, entries[at].email_id)
    except NotFound:
        raise bad_url(url, "no such message") from None
    raw = await s.mailbox.raw_of(record)
    data: bytes | None = raw
    if ref.section is not None:
        try:
            tok = Tokenizer(f"BODY.PEEK[{ref.section}]".encode())
            [item] = parse_fetch_items(tok)
            tok.end()
        except (ParseError, ValueError):
            raise bad_url(url, "bad section") from None
        assert item.section is not None
        sec = item.section
        data = sections.body_section(raw, Part.from_json(record.parts), sec.part, sec.text,
                                     sec.fields)
    if data is None:
        raise bad_url(url, "no such section")
    if ref.partial is not None:
        data = sections.partial(data, ref.partial[0], ref.partial[1])
    return data


async def catenate(s: Session, parts: tuple[CatPart, ...], limit: int) -> bytes:
    """The message the parts make, in order; NO [TOOBIG] past `limit` octets (RFC 4469 §6),
    checked as it grows so a URL to a huge message is not joined in full for nothing."""
    out = bytearray()
    for part in parts:
        out += part.value if part.kind == "TEXT" else await fetch_url(s, part.value)
        if len(out) > limit:
            raise No(f"The message would be over {limit} octets", "TOOBIG")
    return bytes(out)
