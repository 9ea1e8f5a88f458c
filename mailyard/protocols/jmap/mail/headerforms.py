"""`header:{name}[:{form}][:all]` properties given to Email/set create (RFC 8621 §4.1.2, §4.6),
written back as header fields.

A client may set any header field in any parsed form the RFC allows for that field: a known
one (`header:From:asAddresses`) stands for its convenience property (`from`), and giving both
is an error, as is a form the field does not take (`header:Subject:asDate`). Every string goes
through `headertext`, so no client value can end a field early or smuggle in another.
"""

from __future__ import annotations

import email.utils
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from mailyard.protocols.jmap.mail import headertext
from mailyard.protocols.jmap.mail.headertext import InvalidProperty

FORMS = ("asRaw", "asText", "asAddresses", "asGroupedAddresses", "asMessageIds", "asDate",
         "asURLs")
_ADDRESS_FIELDS = frozenset({"from", "sender", "reply-to", "to", "cc", "bcc", "resent-from",
                             "resent-sender", "resent-reply-to", "resent-to", "resent-cc",
                             "resent-bcc"})
_LIST_FIELDS = frozenset({"list-help", "list-unsubscribe", "list-subscribe", "list-post",
                          "list-owner", "list-archive"})
ALLOWED = {
    "asText": frozenset({"subject", "comments", "keywords", "list-id"}),
    "asAddresses": _ADDRESS_FIELDS,
    "asGroupedAddresses": _ADDRESS_FIELDS,
    "asMessageIds": frozenset({"message-id", "in-reply-to", "references",
                               "resent-message-id"}),
    "asDate": frozenset({"date", "resent-date"}),
    "asURLs": _LIST_FIELDS,
}
"""§4.1.2.x: the fields of RFC 5322 and RFC 2369 each parsed form applies to; a field
neither RFC defines takes every form, and every field takes asRaw."""
DEFINED = frozenset({"date", "from", "sender", "reply-to", "to", "cc", "bcc", "message-id",
                     "in-reply-to", "references", "subject", "comments", "keywords",
                     "resent-date", "resent-from", "resent-sender", "resent-to", "resent-cc",
                     "resent-bcc", "resent-message-id", "return-path", "received",
                     *_LIST_FIELDS})
"""The header fields RFC 5322 and RFC 2369 define."""


@dataclass(frozen=True, slots=True)
class HeaderProperty:
    """One `header:` property: the field name as given, its form, and whether `:all`."""

    prop: str
    name: str
    form: str
    every: bool

    @property
    def key(self) -> str:
        """The field it sets, as two properties that set the same field compare."""
        return self.name.lower()


def parse(prop: str) -> HeaderProperty:
    """The property name checked: a field name of printable ASCII without a colon, a form
    the RFC defines and the field takes."""
    pieces = prop.split(":")[1:]
    every = len(pieces) > 1 and pieces[-1] == "all"
    if every:
        pieces = pieces[:-1]
    name = pieces[0] if pieces else ""
    form = pieces[1] if len(pieces) == 2 else "asRaw"
    if (not name or len(pieces) > 2 or form not in FORMS or len(name) > 200
            or not all(33 <= ord(c) <= 126 for c in name)):
        raise InvalidProperty(f"{prop[:200]}: not header:Name[:form][:all] with a form of "
                              "RFC 8621 §4.1.2", [prop])
    if form != "asRaw" and name.lower() in DEFINED and name.lower() not in ALLOWED[form]:
        raise InvalidProperty(f"{prop}: the {name} field cannot take the {form} form "
                              "(RFC 8621 §4.1.2)", [prop])
    return HeaderProperty(prop, name, form, every)


def fields(header: HeaderProperty, value: Any) -> list[tuple[str, str]]:
    """(name, field body) of each field the property's value makes: none for null (or an
    empty :all array), one per element for :all."""
    if header.every:
        if value is not None and not isinstance(value, list):
            raise InvalidProperty(f"{header.prop}: an :all value is an array", [header.prop])
        values = value or []
    else:
        values = [value]
    return [(header.name, body(header.form, v, header.prop)) for v in values if v is not None]


def body(form: str, value: Any, prop: str) -> str:
    """The field body for one value in `form`, unfolded."""
    if form == "asRaw":
        text = headertext.text(value, prop, prop)
        if not text.isascii():
            raise InvalidProperty(f"{prop}: a raw value is US-ASCII (set :asText for other "
                                  "text)", [prop])
        return text.strip(" \t")
    if form == "asText":
        return headertext.unstructured(headertext.text(value, prop, prop))
    if form == "asAddresses":
        return addresses(prop, value)
    if form == "asGroupedAddresses":
        return _groups(prop, value)
    if form == "asMessageIds":
        return message_ids(prop, value)
    if form == "asDate":
        return date(prop, value)
    return _urls(prop, value)


def addresses(prop: str, value: Any) -> str:
    """EmailAddress[] as an address list (RFC 5322 §3.4)."""
    if not isinstance(value, list):
        raise InvalidProperty(f"{prop} must be an array of EmailAddress", [prop])
    out = []
    for item in value:
        if not isinstance(item, dict) or not isinstance(item.get("email"), str):
            raise InvalidProperty(f"{prop} holds something that is not an EmailAddress",
                                  [prop])
        name = headertext.text(item.get("name") or "", prop, f"{prop}: a name")
        addr = headertext.address(item["email"], prop, prop)
        out.append(f"{headertext.display_name(name)} <{addr}>" if name else addr)
    return ", ".join(out)


def _groups(prop: str, value: Any) -> str:
    """EmailAddressGroup[]: a named group as `name: addresses;`, a null name as the bare
    addresses (§4.1.2.4)."""
    if not isinstance(value, list):
        raise InvalidProperty(f"{prop} must be an array of EmailAddressGroup", [prop])
    out = []
    for group in value:
        if not isinstance(group, dict) or not isinstance(group.get("addresses"), list):
            raise InvalidProperty(f"{prop} holds something that is not an "
                                  "EmailAddressGroup", [prop])
        members = addresses(prop, group["addresses"])
        if group.get("name") is None:
            if members:
                out.append(members)
            continue
        name = headertext.text(group["name"], prop, f"{prop}: a group name")
        if not name.strip():
            raise InvalidProperty(f"{prop}: a group name is not empty", [prop])
        out.append(f"{headertext.display_name(name)}: {members};")
    return ", ".join(out)


def message_ids(prop: str, value: Any) -> str:
    if not isinstance(value, list) or not value or len(value) > 1000:
        raise InvalidProperty(f"{prop} must be an array of message ids (without <>)", [prop])
    return " ".join(f"<{headertext.message_id(v, prop)}>" for v in value)


def date(prop: str, value: Any) -> str:
    """An RFC 3339 Date as an RFC 5322 date-time, in the zone it was given in."""
    if not isinstance(value, str):
        raise InvalidProperty(f"{prop} must be a Date", [prop])
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidProperty(f"{prop} must be an RFC 3339 date", [prop]) from None
    if when.tzinfo is None:
        raise InvalidProperty(f"{prop} needs a time zone", [prop])
    return email.utils.format_datetime(when)


def _urls(prop: str, value: Any) -> str:
    """String[] of URLs as RFC 2369 writes them: `<url>, <url>`."""
    if not isinstance(value, list) or not value:
        raise InvalidProperty(f"{prop} must be an array of URLs", [prop])
    return ", ".join(f"<{headertext.single_word(u, prop, f'{prop}: a URL')}>" for u in value)
