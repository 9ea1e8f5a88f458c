"""SORT and THREAD (RFC 5256), ESORT and CONTEXT=SORT (RFC 5267), PARTIAL (RFC 9394) and
SORT=DISPLAY (RFC 5957), over the selected mailbox.

The algorithms live in core.imapthread; this module gathers what they read. Most keys are on
the stored record; the address keys need the group syntax that the record's address lists do
not keep, so those read the stored header block (`get_heads`) of the matching messages.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from mailyard.core import imapthread as th
from mailyard.core.mime import decode_words, parse_address_list
from mailyard.protocols.imap.cmd_message import records_of
from mailyard.protocols.imap.esearch import esearch_data, quote
from mailyard.protocols.imap.grammar import Command, PartialRange, parse_sort, parse_thread
from mailyard.protocols.imap.search import evaluate
from mailyard.protocols.imap.session import SELECTED, Bad, Session, command
from mailyard.store.ports import EmailRecord

_ADDRESS_KEYS = {"FROM": "from", "TO": "to", "CC": "cc", "DISPLAYFROM": "from",
                 "DISPLAYTO": "to"}
_HEAD_BATCH = 2000
THREAD_ALGORITHMS = ("ORDEREDSUBJECT", "REFERENCES")


async def _matching(s: Session, key: Any) -> list[tuple[int, EmailRecord]]:
    """The matching messages' 0-based indexes in sequence order, with their records."""
    sel = s.sel

    async def load(indexes: list[int]) -> dict[str, EmailRecord]:
        return await records_of(s, indexes, brief=True)

    matches, records = await evaluate(s, key, load)
    missing = [i for i in matches if sel.email_ids[i] not in records]
    if missing:  # a key on flags alone read none; sorting needs them
        records = {**records, **await load(missing)}
    return [(i, records[sel.email_ids[i]]) for i in matches]


def header_field(head: bytes, name: str) -> str | None:
    """The first `name` field of a header block, unfolded, as text (UTF-8, else Latin-1 as
    the MIME parser reads it)."""
    wanted = name.lower().encode() + b":"
    lines = head.split(b"\n")
    for n, line in enumerate(lines):
        if line[:len(wanted)].lower() != wanted:
            continue
        value = [line[len(wanted):].rstrip(b"\r")]
        for more in lines[n + 1:]:
            if more[:1] not in (b" ", b"\t"):
                break
            value.append(more.rstrip(b"\r"))
        raw = b"".join(value).strip()
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return raw.decode("latin-1")
    return None


async def _addresses(s: Session, found: list[tuple[int, EmailRecord]],
                     fields: set[str]) -> dict[str, dict[str, list[th.EnvAddr]]]:
    """Each message's From/To/Cc as ENVELOPE address tuples, groups included."""
    ids = [r.id for _, r in found]
    out: dict[str, dict[str, list[th.EnvAddr]]] = {}
    for start in range(0, len(ids), _HEAD_BATCH):
        for head in await s.mailbox.get_heads(s.user, ids[start:start + _HEAD_BATCH]):
            out[head.id] = {f: parse_address_list(header_field(head.head, f)) for f in fields}
    return out


def _sent_date(record: EmailRecord) -> int:
    """RFC 5256 §2.2: the Date header in UTC, or INTERNALDATE when absent or unparsable."""
    return record.sent_at if record.sent_at is not None else record.received_at


def _key_function(name: str, addresses: dict[str, dict[str, list[th.EnvAddr]]]
                  ) -> Callable[[EmailRecord], Any]:
    if name == "ARRIVAL":
        return lambda r: r.received_at
    if name == "DATE":
        return _sent_date
    if name == "SIZE":
        return lambda r: r.size
    if name == "SUBJECT":
        return lambda r: th.subject_key(r.subject)
    field = _ADDRESS_KEYS[name]
    key = th.display_key if name.startswith("DISPLAY") else th.address_key
    return lambda r: key(addresses.get(r.id, {}).get(field, []), decode_words)


def _sequence_set(numbers: Sequence[int]) -> str:
    """A sequence-set that keeps the given order (RFC 5267 §3.2: ALL of a SORT is in sort
    order), so only ascending runs are joined into ranges."""
    parts: list[str] = []
    i = 0
    while i < len(numbers):
        j = i
        while j + 1 < len(numbers) and numbers[j + 1] == numbers[j] + 1:
            j += 1
        parts.append(str(numbers[i]) if i == j else f"{numbers[i]}:{numbers[j]}")
        i = j + 1
    return ",".join(parts)


def _esearch(cmd: Command, uid: bool, options: tuple[str, ...], numbers: list[int],
             partial: PartialRange | None) -> str:
    """ESEARCH for a SORT (RFC 5267 §3): MIN/MAX are the first and last in sort order, ALL
    and PARTIAL keep that order."""
    parts = [f"(TAG {quote(cmd.tag)})"] + (["UID"] if uid else [])
    parts += esearch_data(numbers, options, partial, set_text=_sequence_set)
    return "ESEARCH " + " ".join(parts)


@command("SORT", "UID SORT", states=SELECTED)
async def sort(s: Session, cmd: Command) -> None:
    uid = cmd.uid
    tok = cmd.tokenizer()
    program = parse_sort(tok, uid=uid)
    tok.end()
    found = await _matching(s, program.search.key)
    fields = {_ADDRESS_KEYS[c.key] for c in program.criteria if c.key in _ADDRESS_KEYS}
    addresses = await _addresses(s, found, fields) if fields and found else {}
    # Stable sorts from the last criterion to the first over sequence order: messages equal on
    # every criterion stay in sequence order, which REVERSE does not turn round (§3).
    for criterion in reversed(program.criteria):
        key = _key_function(criterion.key, addresses)

        def by(pair: tuple[int, EmailRecord], key: Callable[[EmailRecord], Any] = key) -> Any:
            return key(pair[1])
        found.sort(key=by, reverse=criterion.reverse)
    numbers = [s.sel.uids[i] if uid else i + 1 for i, _ in found]
    options = program.search.return_options
    if options is None:
        s.untagged("SORT" + "".join(f" {n}" for n in numbers))
    else:
        s.untagged(_esearch(cmd, uid, options, numbers, program.partial))
        if "UPDATE" in options:
            # RFC 5267 §4.3: a server that will not track this result says so, and the
            # client knows to repeat the SORT when it needs a fresh result.
            s.untagged(f"NO [NOUPDATE {quote(cmd.tag)}] No update notifications for SORT")
    await s.report_updates(expunges=uid)
    s.ok(cmd)


def _thread_message(i: int, record: EmailRecord, number: int) -> th.ThreadMessage:
    return th.ThreadMessage(seq=i + 1, number=number, date=_sent_date(record),
                            subject=record.subject, message_id=record.message_id,
                            references=tuple(record.references),
                            in_reply_to=tuple(record.in_reply_to))


@command("THREAD", "UID THREAD", states=SELECTED)
async def thread(s: Session, cmd: Command) -> None:
    uid = cmd.uid
    tok = cmd.tokenizer()
    program = parse_thread(tok, uid=uid)
    tok.end()
    if program.algorithm not in THREAD_ALGORITHMS:
        raise Bad(f"Unsupported threading algorithm {program.algorithm}")
    found = await _matching(s, program.search.key)
    sel = s.sel
    messages = [_thread_message(i, r, sel.uids[i] if uid else i + 1) for i, r in found]
    if program.algorithm == "ORDEREDSUBJECT":
        threads = th.orderedsubject(messages)
    else:
        threads = th.references(messages)
    text = th.render(threads)
    s.untagged("THREAD" + (f" {text}" if text else ""))
    await s.report_updates(expunges=uid)
    s.ok(cmd)
