"""Delivery status notifications: RFC 3464 reports in RFC 6522 multipart/report (RFC 3461 §6).

Written by hand rather than with the stdlib email package: the report must be CRLF throughout,
carry the original header block byte for byte (8-bit included), keep every line within 998
octets and put the delivery-status fields in the exact order of RFC 3464's grammar, all of
which the stdlib generator makes awkward. The original message is read with our own MIME parser
so the header block and subject are the ones the store shows.

Sending is the caller's job, and must use a null reverse-path (MAIL FROM:<>): that, together
with `is_bounce`, is what keeps two servers from bouncing bounces at each other forever.
"""

from __future__ import annotations

import binascii
import re
import secrets
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Literal, get_args

from mailyard.core.ids import new_id
from mailyard.core.mime import ParsedMessage, parse_message

Action = Literal["failed", "delayed", "delivered", "relayed", "expanded"]

SUBJECT_FAILED = "Undelivered Mail Returned to Sender"
SUBJECT_DELAYED = "Delivery Status Notification (Delay)"
SUBJECT_SUCCESS = "Successful Mail Delivery Report"
"""For NOTIFY=SUCCESS reports (delivered, relayed, expanded)."""

_MAX_LINE = 998
_FOLD_AT = 78
_TEXT_WIDTH = 76
_STATUS = re.compile(r"[245]\.\d{1,3}\.\d{1,3}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
_LINE_END = re.compile(rb"\r\n|\r|\n")


@dataclass(frozen=True)
class RecipientStatus:
    """One recipient's line in the report. `diagnostic` is "type; text" as RFC 3464 wants it
    ("smtp; 550 5.1.1 No such user"; a bare text is taken as smtp). `original_recipient` is the
    RFC 3461 ORCPT, xtext-decoded ("rfc822;bob@example.com"): when the client gave one, the
    report must repeat it (RFC 3461 §6.3)."""

    recipient: str
    action: Action
    status: str
    remote_mta: str | None = None
    diagnostic: str | None = None
    last_attempt: datetime | None = None
    will_retry_until: datetime | None = None
    original_recipient: str | None = None

    def __post_init__(self) -> None:
        if self.action not in get_args(Action):
            raise ValueError(f"unknown DSN action {self.action!r}")
        if not _STATUS.fullmatch(self.status):
            raise ValueError(f"DSN status must look like 5.1.1, not {self.status!r}")
        if not self.recipient.strip():
            raise ValueError("DSN recipient is empty")


# --------------------------------------------------------------------------------------------
# Field values


def _clean(value: str) -> str:
    """One line of text: a multi-line SMTP reply or a hostile value must not start a new
    header field (CR/LF injection)."""
    return " ".join(_CONTROL.sub(" ", value).split())


def _date(value: datetime) -> str:
    """RFC 5322 date-time; a naive datetime is taken as UTC."""
    return format_datetime(value if value.tzinfo else value.replace(tzinfo=UTC))


def _escape(value: str, keep: str) -> str:
    """RFC 6533 EmbeddedUnicodeChar ("\\x{E9}") for every character outside `keep`, so that
    message/delivery-status stays ASCII even for internationalised addresses and replies."""
    return "".join(c if c in keep else f"\\x{{{ord(c):02X}}}" for c in value)


_QCHAR = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in "+=\\")
_PRINTABLE = "".join(chr(c) for c in range(0x20, 0x7F))


_TYPE = re.compile(r"[A-Za-z0-9-]+")


def _split_typed(value: str) -> tuple[str | None, str]:
    """("smtp", "550 ...") from "smtp; 550 ..."; (None, value) when no type is given."""
    kind, sep, rest = value.partition(";")
    if sep and _TYPE.fullmatch(kind.strip()):
        return kind.strip(), rest.strip()
    return None, value.strip()


def _address(value: str) -> str:
    """An address-type field (Final-Recipient, Original-Recipient): rfc822 when ASCII, else
    RFC 6533's utf-8 type in its xtext form, which message/delivery-status may carry."""
    kind, address = _split_typed(_clean(value))
    address = address.strip("<>") if kind is None else address
    kind = kind or "rfc822"
    if address.isascii():
        return f"{kind}; {address}"
    if kind.lower() in ("rfc822", "utf-8"):
        return f"utf-8; {_escape(address, _QCHAR)}"
    return f"{kind}; {_escape(address, _PRINTABLE)}"


def _diagnostic(value: str) -> str:
    """Diagnostic-Code, smtp unless typed; non-ASCII escaped to keep the part ASCII."""
    kind, text = _split_typed(_clean(value))
    return f"{kind or 'smtp'}; {_escape(text, _PRINTABLE)}"


def _host(name: str) -> str:
    """dns-type names are ASCII: IDNs as A-labels."""
    name = _clean(name).rstrip(".")
    if name.isascii():
        return name
    try:
        return name.encode("idna").decode("ascii")
    except UnicodeError:
        return _escape(name, _PRINTABLE)


def _field(name: str, value: str) -> bytes:
    """A header field folded at spaces near 78 columns; a single word longer than a line may
    allow is cut, as nothing else keeps the line within 998 octets."""
    lines = [name.encode("ascii") + b":"]
    for word in value.encode("utf-8").split():
        has_word = len(lines) > 1 or len(lines[0]) > len(name) + 1
        if has_word and len(lines[-1]) + 1 + len(word) > _FOLD_AT:
            lines.append(b"")
        lines[-1] += b" " + word
        while len(lines[-1]) > _MAX_LINE:
            lines[-1], rest = lines[-1][:_MAX_LINE], lines[-1][_MAX_LINE:]
            lines.append(b" " + rest)
    return b"\r\n".join(lines) + b"\r\n"


# --------------------------------------------------------------------------------------------
# The three parts


def _original_head(original: bytes) -> tuple[bytes, ParsedMessage]:
    """The original header block (CRLF, no blank line, mbox "From " line dropped) as our
    parser delimits it, and the parsed message for its subject and Message-ID."""
    parsed = parse_message(original, text_limit=0)
    head = original[: parsed.root.body_start]
    if head.startswith(b"From "):
        head = head.partition(b"\n")[2]
    head = _LINE_END.sub(b"\r\n", head).rstrip(b"\r\n")
    return (_within_limit(head) + b"\r\n" if head else b""), parsed


def _within_limit(block: bytes) -> bytes:
    """Folds (at a space if there is one) header lines over 998 octets, which would otherwise
    make the whole report unsendable."""
    out: list[bytes] = []
    for line in block.split(b"\r\n"):
        # Offsets, not a shrinking copy of the rest: that would be quadratic on a long line.
        # `lead` is the space a cut without a blank in reach puts before the continuation.
        pos, lead = 0, b""
        while len(lead) + len(line) - pos > _MAX_LINE:
            room = _MAX_LINE - len(lead)
            cut = line.rfind(b" ", pos + (0 if lead else 1), pos + room)
            if cut > pos:
                out.append(lead + line[pos:cut])
                pos, lead = cut, b""
            else:
                out.append(lead + line[pos : pos + room - 1])
                pos, lead = pos + room - 1, b" "
        out.append(lead + line[pos:])
    return b"\r\n".join(out)


def _delivery_status(
    reporting_mta: str, arrival: datetime, envelope_id: str | None,
    recipients: Sequence[RecipientStatus],
) -> bytes:
    """Fields in RFC 3464 §2.2 and §2.3 grammar order; blocks separated by one blank line."""
    block = b""
    if envelope_id is not None:
        block += _field("Original-Envelope-Id", _escape(_clean(envelope_id), _PRINTABLE))
    block += _field("Reporting-MTA", f"dns; {_host(reporting_mta)}")
    block += _field("Arrival-Date", _date(arrival))
    blocks = [block]
    for r in recipients:
        block = b""
        if r.original_recipient:
            block += _field("Original-Recipient", _address(r.original_recipient))
        block += _field("Final-Recipient", _address(r.recipient))
        block += _field("Action", r.action)
        block += _field("Status", r.status)
        if r.remote_mta:
            block += _field("Remote-MTA", f"dns; {_host(r.remote_mta)}")
        if r.diagnostic:
            block += _field("Diagnostic-Code", _diagnostic(r.diagnostic))
        if r.last_attempt is not None:
            block += _field("Last-Attempt-Date", _date(r.last_attempt))
        if r.action == "delayed" and r.will_retry_until is not None:
            block += _field("Will-Retry-Until", _date(r.will_retry_until))
        blocks.append(block)
    return b"\r\n".join(blocks)


_EXPLAIN: dict[str, tuple[str, str]] = {
    "1.1": ("The address does not exist at the recipient's mail server.",
            "Check the address for typing mistakes and send the message again, or ask the "
            "recipient for their correct address."),
    "1.2": ("The recipient's domain does not exist or does not receive mail.",
            "Check the part of the address after the @ for typing mistakes."),
    "1.3": ("The address is not a valid email address.",
            "Check the address for typing mistakes and send the message again."),
    "1.6": ("The recipient's mailbox has moved and no new address is known.",
            "Ask the recipient for their new address."),
    "1.10": ("The recipient's domain does not accept any mail.",
             "Check the address, or contact the recipient another way."),
    "2.1": ("The recipient's mailbox is disabled.", "Contact the recipient another way."),
    "2.2": ("The recipient's mailbox is full.",
            "Try again later, or contact the recipient another way."),
    "2.3": ("The message is larger than the recipient accepts.",
            "Send it again with smaller or fewer attachments, or share large files as a "
            "link."),
    "3.4": ("The message is larger than the recipient's mail system accepts.",
            "Send it again with smaller or fewer attachments, or share large files as a "
            "link."),
    "1": ("The recipient's address was not accepted.",
          "Check the address for typing mistakes and send the message again."),
    "2": ("The recipient's mailbox did not accept the message.",
          "Try again later, or contact the recipient another way."),
    "3": ("The recipient's mail system had a problem accepting the message.",
          "Try again later; if it keeps failing, contact the recipient another way."),
    "4": ("The recipient's mail server could not be reached.",
          "Check the address for typing mistakes; if it is right, their mail server may be "
          "down for a long time, so try again later or contact them another way."),
    "5": ("The recipient's mail server and ours could not agree on how to deliver it.",
          "Ask your administrator to look at the technical details below."),
    "6": ("The recipient's mail system could not handle the message's content or format.",
          "Try sending it again without unusual attachments or formatting."),
    "7": ("The recipient's mail server refused the message because of its security or "
          "spam policy.",
          "Contact the recipient another way, or ask your administrator to look at the "
          "technical details below."),
}
"""RFC 3463 status subjects (and the commonest details): what happened, what to do."""


def _explain(status: str) -> tuple[str, str]:
    _cls, subject, detail = status.split(".")
    generic = ("The message could not be delivered.",
               "Ask your administrator to look at the technical details below.")
    return _EXPLAIN.get(f"{subject}.{detail}") or _EXPLAIN.get(subject, generic)


_INTRO: dict[str, str] = {
    "failed": "It could not be delivered to the recipients below, and we have stopped trying.",
    "delayed": "It has not been delivered yet to the recipients below. We are still trying, so "
               "you do not need to send it again.",
    "delivered": "It was delivered to the recipients below, as you asked to be told.",
    "relayed": "It was passed on to the recipients' mail systems below, which do not send "
               "delivery reports: you may not hear whether it finally arrives.",
    "expanded": "It was delivered to the mailing lists or aliases below, which passed it on to "
                "their members.",
}


def _wrap(text: str, indent: str = "") -> list[str]:
    return textwrap.wrap(text, _TEXT_WIDTH, initial_indent=indent, subsequent_indent=indent,
                         break_on_hyphens=False) or [indent.rstrip()]


def _human_text(
    parsed: ParsedMessage, reporting_mta: str, arrival: datetime,
    recipients: Sequence[RecipientStatus],
) -> str:
    subject = _clean(parsed.subject) or "(no subject)"
    lines = _wrap(f"This is the mail delivery system at {_clean(reporting_mta)}, about your "
                  f"message \"{subject}\", which we received on {_date(arrival)}.")
    for action in get_args(Action):
        group = [r for r in recipients if r.action == action]
        if not group:
            continue
        lines += ["", *_wrap(_INTRO[action])]
        for r in group:
            lines += ["", f"  <{_clean(r.recipient).strip('<>')}>"]
            if action in ("failed", "delayed"):
                what, advice = _explain(r.status)
                lines += _wrap(what, "    ")
                if action == "failed":
                    lines += _wrap(f"What you can do: {advice}", "    ")
            if r.diagnostic:
                said = _split_typed(_clean(r.diagnostic))[1]
                who = f"The server {_clean(r.remote_mta)}" if r.remote_mta else "The server"
                lines += _wrap(f"{who} said: {said}", "    ")
            if action == "delayed":
                until = (f"until {_date(r.will_retry_until)}" if r.will_retry_until
                         else "for a while")
                lines += _wrap(f"We will keep trying {until} and tell you if we give up.",
                               "    ")
            lines.append(f"    (Status {r.status})")
    lines += ["", *_wrap("The attached delivery report has the technical details, followed by "
                         "the headers of your message; its text is not included.")]
    return "\n".join(lines) + "\n"


def _text_part(text: str) -> tuple[bytes, bytes]:
    """7bit when it can be; otherwise quoted-printable UTF-8, readable and line-safe."""
    data = text.encode("utf-8")
    if data.isascii() and all(len(line) <= _FOLD_AT for line in data.split(b"\n")):
        body, encoding = data, b"7bit"
    else:
        body, encoding = binascii.b2a_qp(data, istext=True), b"quoted-printable"
    headers = (b"Content-Type: text/plain; charset=utf-8\r\n"
               b"Content-Transfer-Encoding: " + encoding + b"\r\n")
    return headers, body.replace(b"\n", b"\r\n")


# --------------------------------------------------------------------------------------------
# The report


def _subject(recipients: Sequence[RecipientStatus]) -> str:
    actions = {r.action for r in recipients}
    if "failed" in actions:
        return SUBJECT_FAILED
    if "delayed" in actions:
        return SUBJECT_DELAYED
    return SUBJECT_SUCCESS


def build_dsn(
    original: bytes, *, reporting_mta: str, sender: str, postmaster: str,
    recipients: Sequence[RecipientStatus], arrival: datetime, envelope_id: str | None = None,
    now: datetime | None = None, message_id_domain: str,
) -> bytes:
    """The whole report as CRLF bytes, to send from <> to `sender`. `original` is the message
    as queued; only its header block goes back, even under RET=FULL (a SHOULD in RFC 3461),
    because the body may be large or private and the sender has it. Addresses that are not
    ASCII are written as UTF-8 (RFC 6532): a sender who used one can receive one."""
    if not recipients:
        raise ValueError("a DSN needs at least one recipient")
    now = now or datetime.now(UTC)
    head, parsed = _original_head(original)
    text_headers, text_body = _text_part(_human_text(parsed, reporting_mta, arrival, recipients))
    status_body = _delivery_status(reporting_mta, arrival, envelope_id, recipients)
    head_encoding = b"7bit" if head.isascii() else b"8bit"
    head_label = ("Undelivered Message Headers" if _subject(recipients) == SUBJECT_FAILED
                  else "Message Headers")
    parts = [
        (text_headers, text_body),
        (b"Content-Type: message/delivery-status\r\nContent-Description: Delivery report\r\n",
         status_body),
        (b"Content-Type: text/rfc822-headers\r\nContent-Description: " + head_label.encode()
         + b"\r\nContent-Transfer-Encoding: " + head_encoding + b"\r\n", head),
    ]
    boundary = _boundary([body for _, body in parts])

    top = _field("From", f'"Mail Delivery System" <{_clean(postmaster).strip("<>")}>')
    top += _field("To", f"<{_clean(sender).strip('<>')}>")
    top += _field("Subject", _subject(recipients))
    top += _field("Date", _date(now))
    top += _field("Message-ID", f"<dsn.{new_id('')}@{_clean(message_id_domain)}>")
    if parsed.message_id:
        top += _field("In-Reply-To", f"<{_clean(parsed.message_id)}>")
        top += _field("References", f"<{_clean(parsed.message_id)}>")
    top += _field("Auto-Submitted", "auto-replied")
    top += _field("MIME-Version", "1.0")
    top += _field("Content-Type", "multipart/report; report-type=delivery-status; "
                                  f'boundary="{boundary}"')
    if head_encoding == b"8bit":
        top += _field("Content-Transfer-Encoding", "8bit")

    delimiter = b"\r\n--" + boundary.encode("ascii")
    out = [top, b"\r\nThis is a MIME-encapsulated delivery status notification.\r\n"]
    for headers, body in parts:
        out += [delimiter, b"\r\n", headers, b"\r\n", body]
    out += [delimiter, b"--\r\n"]
    return b"".join(out)


def _boundary(bodies: Sequence[bytes]) -> str:
    """Random, and checked against the content anyway: the original headers are not ours."""
    while True:
        boundary = f"=_dsn_{secrets.token_hex(12)}"
        if not any(boundary.encode("ascii") in body for body in bodies):
            return boundary


def is_bounce(raw: bytes) -> bool:
    """A delivery report (RFC 3464, or RFC 6533's global form), about which no report may be
    sent. A null reverse-path says the same and is for the caller, who has the envelope."""
    root = parse_message(raw, text_limit=0).root
    return root.content_type == "multipart/report" and root.params.get(
        "report-type", "").strip().lower() in ("delivery-status", "global-delivery-status")
