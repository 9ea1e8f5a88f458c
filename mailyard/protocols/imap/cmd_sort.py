"""SORT and THREAD (RFC 5256), over the stored metadata of the selected mailbox."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from mailyard.core.mime import normalize_subject
from mailyard.protocols.imap.cmd_message import records_of
from mailyard.protocols.imap.grammar import Command, parse_sort, parse_thread
from mailyard.protocols.imap.search import evaluate
from mailyard.protocols.imap.session import SELECTED, Session, command
from mailyard.store.ports import EmailRecord


def _address_key(addresses: list[dict[str, str]], display: bool) -> str:
    if not addresses:
        return ""
    first = addresses[0]
    if display and first.get("name"):
        return first["name"].casefold()
    return first["email"].partition("@")[0].casefold()


def _sort_value(record: EmailRecord, key: str) -> Any:
    if key == "ARRIVAL":
        return record.received_at
    if key == "DATE":
        return record.sent_at if record.sent_at is not None else record.received_at
    if key == "SIZE":
        return record.size
    if key == "SUBJECT":
        return normalize_subject(record.subject)
    if key in ("FROM", "DISPLAYFROM"):
        return _address_key(record.from_, key == "DISPLAYFROM")
    if key in ("TO", "DISPLAYTO"):
        return _address_key(record.to, key == "DISPLAYTO")
    return _address_key(record.cc, False)


async def _matching(s: Session, key: Any) -> list[tuple[int, EmailRecord]]:
    sel = s.sel

    async def load(indexes: list[int]) -> dict[str, EmailRecord]:
        return await records_of(s, indexes, brief=True)

    matches, records = await evaluate(s, key, load)
    if not records:  # a key on flags alone read none; sorting needs them
        records = await load(matches)
    return [(i, records[sel.email_ids[i]]) for i in matches]


@command("SORT", "UID SORT", states=SELECTED)
async def sort(s: Session, cmd: Command) -> None:
    uid = cmd.uid
    program = parse_sort(cmd.tokenizer(), uid=uid)
    found = await _matching(s, program.search.key)
    # Stable sorts from the last criterion to the first; ties end in sequence order.
    found.sort(key=lambda pair: pair[0])
    for name, reverse in reversed(program.criteria):
        def by(pair: tuple[int, EmailRecord], name: str = name) -> Any:
            return _sort_value(pair[1], name)
        found.sort(key=by, reverse=reverse)
    numbers = [s.sel.uids[i] if uid else i + 1 for i, _ in found]
    s.untagged("SORT" + "".join(f" {n}" for n in numbers))
    s.ok(cmd)




def _date(record: EmailRecord) -> int:
    return record.sent_at if record.sent_at is not None else record.received_at


def _render(node: int, children: dict[int, list[int]], number: dict[int, int]) -> str:
    """A thread node and its descendants in RFC 5256 syntax: a single child continues the
    chain ("1 2 3"), several become parenthesised siblings ("1 (2)(3)")."""
    out = [str(number[node])]
    kids = children.get(node, [])
    while len(kids) == 1:
        node = kids[0]
        out.append(str(number[node]))
        kids = children.get(node, [])
    if kids:
        out.append("".join(f"({_render(k, children, number)})" for k in kids))
    return " ".join(out)


def _references_forest(found: list[tuple[int, EmailRecord]]) -> tuple[list[int],
                                                                       dict[int, list[int]]]:
    """Parent of each message: its nearest referenced message present in the result set;
    messages of the same stored thread with no such link hang under the thread's oldest."""
    by_msgid = {r.message_id: i for i, r in found if r.message_id}
    date_of = {i: _date(r) for i, r in found}
    parent: dict[int, int | None] = {}
    for i, r in found:
        refs = [*r.references, *r.in_reply_to]
        parent[i] = next((by_msgid[m] for m in reversed(refs)
                          if m in by_msgid and by_msgid[m] != i), None)
    oldest: dict[str, int] = {}
    for i, r in sorted(found, key=lambda p: (date_of[p[0]], p[0])):
        oldest.setdefault(r.thread_id, i)
    for i, r in found:
        if parent[i] is None and oldest[r.thread_id] != i:
            parent[i] = oldest[r.thread_id]
    children: dict[int, list[int]] = defaultdict(list)
    roots = []
    for i, _ in found:
        p = parent[i]
        if p is None or _creates_cycle(i, p, parent):
            roots.append(i)
        else:
            children[p].append(i)
    for kids in children.values():
        kids.sort(key=lambda k: (date_of[k], k))
    roots.sort(key=lambda k: (date_of[k], k))
    return roots, children


def _creates_cycle(node: int, p: int | None, parent: dict[int, int | None]) -> bool:
    seen = {node}
    while p is not None:
        if p in seen:
            return True
        seen.add(p)
        p = parent.get(p)
    return False


@command("THREAD", "UID THREAD", states=SELECTED)
async def thread(s: Session, cmd: Command) -> None:
    uid = cmd.uid
    program = parse_thread(cmd.tokenizer(), uid=uid)
    algorithm = program.algorithm
    found = await _matching(s, program.search.key)
    number = {i: (s.sel.uids[i] if uid else i + 1) for i, _ in found}
    if algorithm == "ORDEREDSUBJECT":
        groups: dict[str, list[tuple[int, EmailRecord]]] = defaultdict(list)
        for i, r in found:
            groups[normalize_subject(r.subject)].append((i, r))
        roots: list[int] = []
        children: dict[int, list[int]] = {}
        for members in groups.values():
            members.sort(key=lambda p: (_date(p[1]), p[0]))
            head = members[0][0]
            roots.append(head)
            children[head] = [i for i, _ in members[1:]]
        roots.sort(key=lambda k: (_date(dict(found)[k]), k))
    else:
        roots, children = _references_forest(found)
    text = "".join(f"({_render(r, children, number)})" for r in roots)
    s.untagged("THREAD" + (f" {text}" if text else ""))
    s.ok(cmd)
