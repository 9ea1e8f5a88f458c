"""The RFC 5256 algorithms (base subject, SORT keys, THREAD=ORDEREDSUBJECT and REFERENCES),
RFC 5957 display keys and the RFC 5051 i;unicode-casemap collation, pure and I/O-free.

`mime.normalize_subject` is a looser key for mail threading at delivery; IMAP clients compare
SORT and THREAD results across servers, so these follow the RFC text step by step instead.
Trees are walked with explicit stacks: a reply chain thousands deep is ordinary mailing-list
mail and must not hit Python's recursion limit.
"""

from __future__ import annotations

import functools
import itertools
import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

# --------------------------------------------------------------------------------------------
# i;unicode-casemap (RFC 5051 §2)


@functools.lru_cache(maxsize=4096)
def _casemap_char(ch: str) -> str:
    """UnicodeData's simple titlecase mapping, then its decomposition mapping (canonical or
    compatibility), repeated until neither applies. Python exposes only the full titlecase
    mapping; where that is one character it equals the simple one, otherwise there is none."""
    titled = ch.title()
    if len(titled) != 1:
        titled = ch
    decomposition = unicodedata.decomposition(titled)
    codes = [c for c in decomposition.split() if not c.startswith("<")]
    if not codes:
        return titled
    return "".join(_casemap_char(chr(int(c, 16))) for c in codes)


def casemap(text: str) -> str:
    """The i;unicode-casemap key: two strings compare as their keys' code points (the same
    order as their UTF-8 octets, which is what RFC 5051 compares)."""
    if text.isascii():
        return text.upper()
    return "".join(_casemap_char(ch) for ch in text)


# --------------------------------------------------------------------------------------------
# Base subject (RFC 5256 §2.1)

_WSP_RUN = re.compile(r"[ \t\r\n]+")
_BLOB = r"\[[^\[\]]*\][ \t]*"
_LEADER = re.compile(r"(?:" + _BLOB + r")*(?:re|fwd?)[ \t]*(?:" + _BLOB + r")?:", re.I)
_BLOB_PREFIX = re.compile(_BLOB)


@dataclass(frozen=True, slots=True)
class BaseSubject:
    text: str
    reply_or_forward: bool
    """Whether extraction removed a subj-refwd, a "(fwd)" trailer or a [fwd: ...] wrapper:
    what step 5 of THREAD=REFERENCES asks of a message."""


def base_subject(subject: str) -> BaseSubject:
    """RFC 5256 §2.1 on a subject whose RFC 2047 encoded words are already decoded.

    It works on a [start, end) window of the text so that a subject made of thousands of
    prefixes or wrappers costs linear time, not a copy per step."""
    # (1) tabs and continuations to space, runs of spaces to one
    text = _WSP_RUN.sub(" ", subject)
    start, end = 0, len(text)
    refwd = False
    while True:
        # (2) trailing "(fwd)" and WSP, repeatedly
        while end > start:
            if text[end - 1] in " \t":
                end -= 1
            elif end - start >= 5 and text[end - 5:end].lower() == "(fwd)":
                end -= 5
                refwd = True
            else:
                break
        # (3)-(5) leaders (WSP; blobs then re:/fw:/fwd:) and a blob prefix that does not
        # leave the subject empty, until none remains
        while True:
            while start < end and text[start] in " \t":
                start += 1
            leader = _LEADER.match(text, start, end)
            if leader is not None:
                start = leader.end()
                refwd = True
                continue
            # No leader here, hence none after any blob that starts here either (a subj-refwd
            # never starts with "["): strip those blobs, keeping one that nothing follows.
            while True:
                blob = _BLOB_PREFIX.match(text, start, end)
                if blob is None or blob.end() >= end:
                    break
                start = blob.end()
            break
        # (6) a "[fwd: ... ]" wrapper: unwrap it and start again from (2)
        if end - start >= 6 and text[start:start + 5].lower() == "[fwd:" and text[end - 1] == "]":
            start, end = start + 5, end - 1
            refwd = True
            continue
        return BaseSubject(text[start:end], refwd)


def subject_key(subject: str) -> str:
    """SORT SUBJECT's key: the base subject under i;unicode-casemap."""
    return casemap(base_subject(subject).text)


# --------------------------------------------------------------------------------------------
# Address keys (RFC 5256 §3 SORT, RFC 5957)

EnvAddr = tuple[str | None, str | None, str | None, str | None]
"""(name, adl, mailbox, host) as in the IMAP ENVELOPE; host None marks a group start or end."""


def address_key(addresses: Sequence[EnvAddr], decode: Callable[[str], str]) -> str:
    """CC/FROM/TO: the addr-mailbox of the first address; for a group start that field holds
    the group name (RFC 3501 §7.4.2), which is what sorts. Missing: the empty string."""
    if not addresses:
        return ""
    _name, _adl, mailbox, host = addresses[0]
    if host is None:
        return casemap(decode(mailbox or ""))
    return casemap(mailbox or "")


def display_key(addresses: Sequence[EnvAddr], decode: Callable[[str], str]) -> str:
    """DISPLAYFROM/DISPLAYTO (RFC 5957 §2): the first address's display name, RFC 2047
    decoded, when it is not empty; otherwise its addr-spec. A group shows as its name."""
    if not addresses:
        return ""
    name, _adl, mailbox, host = addresses[0]
    if host is None:
        return casemap(decode(mailbox or ""))
    display = decode(name or "").strip()
    if display:
        return casemap(display)
    spec = f"{mailbox}@{host}" if host else (mailbox or "")
    return casemap(spec)


# --------------------------------------------------------------------------------------------
# THREAD (RFC 5256 §3)


@dataclass(frozen=True, slots=True)
class ThreadMessage:
    """What threading reads of one message. `seq` orders ties (the sequence number); `number`
    is what the response shows (the sequence number, or the UID for UID THREAD); `date` is the
    sent date of §2.2 in any monotonic unit (the caller falls back to INTERNALDATE)."""

    seq: int
    number: int
    date: int
    subject: str
    message_id: str | None = None
    references: Sequence[str] = ()
    in_reply_to: Sequence[str] = ()


@dataclass(eq=False, slots=True)
class Node:
    """A container of the thread tree; `message` None is a dummy (a missing parent)."""

    message: ThreadMessage | None
    children: list[Node] = field(default_factory=list)
    parent: Node | None = None


def _date_key(node: Node) -> tuple[int, int]:
    """Sent date, then sequence number; a dummy sorts as its first child."""
    while node.message is None:
        if not node.children:
            return (0, 0)
        node = node.children[0]
    return (node.message.date, node.message.seq)


def orderedsubject(messages: Iterable[ThreadMessage]) -> list[Node]:
    """THREAD=ORDEREDSUBJECT: sort by base subject then sent date; each run of one base
    subject is a thread whose first message is the parent of all the others; threads are
    ordered by the sent date of their first message."""
    keyed = sorted(((subject_key(m.subject), m.date, m.seq, m) for m in messages),
                   key=lambda t: t[:3])
    threads: list[Node] = []
    last: str | None = None
    for key, _date, _seq, message in keyed:
        if threads and key == last:
            head = threads[-1]
            head.children.append(Node(message, parent=head))
        else:
            threads.append(Node(message))
            last = key
    threads.sort(key=_date_key)
    return threads


def _is_ancestor(node: Node, of: Node) -> bool:
    """Whether `node` is `of` or one of its ancestors."""
    walk: Node | None = of
    while walk is not None:
        if walk is node:
            return True
        walk = walk.parent
    return False


def _link(parent: Node, child: Node) -> None:
    child.parent = parent
    parent.children.append(child)


def _unlink(child: Node) -> None:
    if child.parent is not None:
        child.parent.children.remove(child)
        child.parent = None


def _preorder(roots: list[Node]) -> list[Node]:
    out: list[Node] = []
    stack = list(reversed(roots))
    while stack:
        node = stack.pop()
        out.append(node)
        stack.extend(reversed(node.children))
    return out


def references(messages: Iterable[ThreadMessage]) -> list[Node]:
    """THREAD=REFERENCES, RFC 5256 §3 steps 1 to 6, in the RFC's order."""
    ordered = sorted(messages, key=lambda m: m.seq)
    table: dict[str, Node] = {}
    nodes: list[Node] = []
    # (1) a Message-ID names only the first (lowest sequence number) message that has it;
    # a later one with the same id, or one with none, gets a unique id: it is in no table.
    for message in ordered:
        node = Node(message)
        nodes.append(node)
        if message.message_id and message.message_id not in table:
            table[message.message_id] = node
    dummies: list[Node] = []

    def container(message_id: str) -> Node:
        found = table.get(message_id)
        if found is None:  # no message has it: a dummy, reused for later references
            found = table[message_id] = Node(None)
            dummies.append(found)
        return found

    for node, message in zip(nodes, ordered, strict=True):
        refs = [r for r in message.references if r]
        if not refs:  # no valid References: the first valid In-Reply-To id stands in
            refs = [r for r in message.in_reply_to if r][:1]
        # (1A) each reference is the parent of the next, unless the child already has one
        # or the link would make a loop
        for parent_id, child_id in itertools.pairwise(refs):
            parent, child = container(parent_id), container(child_id)
            if child.parent is None and not _is_ancestor(child, parent):
                _link(parent, child)
        # (1B) the last reference is this message's parent, replacing any link (1A) made
        # from a truncated References of another message; still never a loop
        _unlink(node)
        if refs:
            parent = container(refs[-1])
            if not _is_ancestor(node, parent):
                _link(parent, node)
    # (2) the parentless containers are the root's children
    root = [n for n in (*nodes, *dummies) if n.parent is None]
    # (3) prune dummies: below the root a dummy gives its place to its children; at the root
    # one with no child goes, one with a single child is replaced by it, others stay
    for node in reversed(_preorder(root)):
        kept: list[Node] = []
        for child in node.children:
            if child.message is None:
                for grandchild in child.children:
                    grandchild.parent = node
                kept.extend(child.children)
            else:
                kept.append(child)
        node.children = kept
    top: list[Node] = []
    for node in root:
        if node.message is None and len(node.children) <= 1:
            for child in node.children:
                child.parent = None
            top.extend(node.children)
        else:
            top.append(node)
    # (4) sort the root's children by sent date (a dummy by its earliest child)
    for node in top:
        if node.message is None:
            node.children.sort(key=_date_key)
    top.sort(key=_date_key)
    # (5) gather threads with the same base subject
    top = _gather_subjects(top)
    # (6) sort every set of siblings by sent date, the deepest first
    for node in reversed(_preorder(top)):
        node.children.sort(key=_date_key)
    top.sort(key=_date_key)
    return top


def _thread_subject(node: Node) -> BaseSubject | None:
    subject_of = node.message if node.message is not None else (
        node.children[0].message if node.children else None)
    return None if subject_of is None else base_subject(subject_of.subject)


def _is_refwd(node: Node) -> bool:
    return node.message is not None and base_subject(node.message.subject).reply_or_forward


def _gather_subjects(top: list[Node]) -> list[Node]:
    """RFC 5256 §3 step 5: a subject table of one thread per base subject (B), then every
    other thread of that subject merged into it (C)."""
    subjects: dict[Node, str] = {}
    for node in top:
        found = _thread_subject(node)
        if found is not None and found.text:
            subjects[node] = casemap(found.text)
    table: dict[str, Node] = {}
    for node in top:  # (B)
        key = subjects.get(node)
        if key is None:
            continue
        held = table.get(key)
        if held is None or (held.message is not None and (node.message is None
                                           or (_is_refwd(held) and not _is_refwd(node)))):
            table[key] = node
    result = list(top)
    for node in top:  # (C)
        key = subjects.get(node)
        if key is None:
            continue
        held = table[key]
        if held is node:
            continue
        result.remove(node)
        if held.message is None and node.message is None:
            for child in node.children:
                child.parent = held
            held.children.extend(node.children)
            node.children = []
        elif held.message is None or (_is_refwd(node) and not _is_refwd(held)):
            _link(held, node)
        else:
            dummy = Node(None)
            result[result.index(held)] = dummy
            _link(dummy, held)
            _link(dummy, node)
            table[key] = dummy
    return result


# --------------------------------------------------------------------------------------------
# The THREAD response (RFC 5256 §4)


def render(threads: Sequence[Node]) -> str:
    """The thread-list of each thread: a single child continues the line ("1 2 3"), several
    become nested lists ("1 (2)(3)"), a dummy shows only its children ("((1)(2))")."""
    out: list[str] = []
    # Each stack item is either a node to open (as a thread-list) or a string to emit.
    stack: list[Node | str] = []
    for thread in reversed(threads):
        stack.extend([")", thread, "("])
    pending_space = False
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            out.append(item)
            pending_space = False
            continue
        node = item
        # the run of single children on one line
        while True:
            if node.message is not None:
                if pending_space:
                    out.append(" ")
                out.append(str(node.message.number))
                pending_space = True
            if len(node.children) == 1:
                node = node.children[0]
                continue
            break
        if node.children:
            if pending_space:
                out.append(" ")
            for child in reversed(node.children):
                stack.extend([")", child, "("])
            pending_space = False
    return "".join(out)
