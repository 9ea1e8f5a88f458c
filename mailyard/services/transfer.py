"""Import and export: mbox, Maildir, .eml files and another IMAP server, over MailboxService.

Import goes through services/importing.import_batch, the delivery path (threads, dedup, index,
quota), one published change per batch, and never the vacation responder.

Idempotent: each message's delivery key is derived from its content and labels, so a second run
finds every key and stores nothing (a cheap lookup per message, no parsing); a message that is
already here under another delivery (same Message-ID, same content) gains the labels instead.
Resumable: a progress record in `state_dir` names the messages in flight: from the first whose
text is not yet in the search index to the end of the batch being stored. After a kill, the next
run sends those through the store again (stored, maybe not yet indexed) and skips the rest by
key. The record is removed when a run completes. The index is written every INDEX_GROUP messages
(or INDEX_GROUP_BYTES of text), not every batch: the search index writes a segment per write and
merges segments as they pile up, and at 10,000 messages a write per 100 wrote search.db and its
WAL several times over (issue 18's writes).

Line ends: a message that comes with bare LFs (Unix mbox and Maildir files often do) is stored
and served in its CRLF form, so IMAP and POP3 send CRLF lines and RFC822.SIZE counts them; the
octets it came with are kept beside it (core/blobkeys.py `original_id`) and export gives them
back.

Export writes the stored octets unchanged (the imported ones, see above). mbox: mboxrd
quoting, and a sidecar JSON index (PATH.mailyard.json) with each message's SHA-256, size,
labels, keywords and receivedAt, because headers added to carry them would break
byte-exactness. Maildir: one folder per label (Maildir++ names, INBOX at the top), flags in
the file names, other keywords as Dovecot keyword letters, the file's mtime = receivedAt (what
Dovecot reads back).
"""

from __future__ import annotations

import hashlib
import imaplib
import os
import re
import ssl
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

import orjson

from mailyard.core import blobkeys
from mailyard.core import mailformats as mf
from mailyard.services.importing import (
    ImportItem,
    import_batch,
    index_documents,
    text_size,
)
from mailyard.services.mailbox import MailboxService
from mailyard.store.ports import Account, Conflict, EmailRecord, IndexDocument, Mailbox, NotFound

SIDECAR = ".mailyard.json"
BATCH_BYTES = 64 * 1024 * 1024
"""A batch ends early once its messages' octets come to this: what one batch holds in memory
whatever `--batch-size` says (a batch of 500 messages of 20 MB each would be 10 GB)."""
INDEX_GROUP = 1000
"""Messages whose index documents an import holds back to write together (see above)."""
INDEX_GROUP_BYTES = 32 * 1024 * 1024
"""...or fewer, once their text comes to this many bytes (the memory they hold)."""
INBOX = "INBOX"

Progress = Callable[[int], None]
"""Told how many more messages were handled."""


@dataclass(frozen=True, slots=True)
class Loaded:
    raw: bytes
    labels: tuple[str, ...]
    """Mailbox names ("INBOX", "Work/Projects") or "role:sent"; () = All Mail only."""
    keywords: tuple[str, ...]
    received_at: int | None


@dataclass(frozen=True, slots=True)
class SourceMessage:
    """One message of a source; `load` reads it only when the import gets to it."""

    load: Callable[[], Loaded]
    origin: str
    """Where it came from, for the failure report ("inbox.mbox #12")."""


@dataclass(slots=True)
class Summary:
    total: int = 0
    imported: int = 0
    duplicates: int = 0
    """Already here: skipped, or an existing email given the labels."""
    failed: list[tuple[str, str]] = field(default_factory=list)
    """(origin, reason)."""
    resumed_at: int | None = None

    def text(self) -> str:
        out = (f"{self.imported} imported, {self.duplicates} skipped as duplicates,"
               f" {len(self.failed)} failed")
        return out + (f" (resumed at message {self.resumed_at})"
                      if self.resumed_at is not None else "")


# ---------------------------------------------------------------------------- sources

def _mtime_ms(path: Path) -> int:
    return path.stat().st_mtime_ns // 1_000_000


def _eml(path: Path, label: str) -> SourceMessage:
    def load() -> Loaded:
        raw = path.read_bytes()
        return Loaded(raw, (label,), (), mf.date_header_ms(raw) or _mtime_ms(path))
    return SourceMessage(load, str(path))


def mbox_messages(path: Path, label: str) -> list[SourceMessage]:
    """An mbox file; with the sidecar our export writes, its labels, keywords and dates."""
    data = path.read_bytes()
    found = list(mf.iter_mbox(data))
    del data
    sidecar = path.with_name(path.name + SIDECAR)
    index: list[dict[str, object]] = []
    if sidecar.exists():
        index = orjson.loads(sidecar.read_bytes()).get("messages", [])
        if len(index) != len(found):
            index = []  # not this file's index: fall back to the mbox alone
    out = []
    for i, m in enumerate(found):
        raw = m.raw
        if index:
            entry = index[i]
            if hashlib.sha256(raw).hexdigest() != entry["sha256"] and raw.endswith(b"\n") \
                    and hashlib.sha256(raw[:-1]).hexdigest() == entry["sha256"]:
                raw = raw[:-1]  # the newline mbox had to add to a message without one
            at = entry.get("receivedAt")
            loaded = Loaded(raw, _strings(entry.get("labels")), _strings(entry.get("keywords")),
                            at if isinstance(at, int) else None)
        else:
            loaded = Loaded(raw, (label,), (), m.received_at or mf.date_header_ms(raw))
        out.append(SourceMessage(_constant(loaded), f"{path.name} #{i + 1}"))
    return out


def _constant(loaded: Loaded) -> Callable[[], Loaded]:
    return lambda: loaded


def _strings(value: object) -> tuple[str, ...]:
    return tuple(str(x) for x in value) if isinstance(value, list) else ()


def maildir_messages(folder: Path, label: str) -> list[SourceMessage]:
    """One Maildir folder (cur/ and new/): flags from the names, date from the mtime."""
    custom: dict[str, str] = {}
    keywords_file = folder / "dovecot-keywords"
    if keywords_file.exists():
        custom = mf.parse_dovecot_keywords(keywords_file.read_text("utf-8", "replace"))
    out = []
    for sub in ("new", "cur"):
        directory = folder / sub
        if not directory.is_dir():
            continue
        for path in sorted(directory.iterdir()):
            if path.is_file() and not path.name.startswith("."):
                keywords = tuple(mf.maildir_keywords(path.name, custom) if sub == "cur" else [])
                out.append(SourceMessage(_maildir_file(path, label, keywords), str(path)))
    return out


def _maildir_file(path: Path, label: str, keywords: tuple[str, ...]) -> Callable[[], Loaded]:
    return lambda: Loaded(path.read_bytes(), (label,), keywords, _mtime_ms(path))


def _is_maildir(path: Path) -> bool:
    return (path / "cur").is_dir() and (path / "new").is_dir()


def _starts_with_from(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(5) == b"From "


def local_messages(path: Path, label: str | None = None) -> list[SourceMessage]:
    """Everything under `path`: an mbox file, a .eml file, a Maildir (with Maildir++
    sub-folders or nested Maildirs), a directory of .eml files or of mbox files, or a mix.
    Folder and file names become labels; the top level is INBOX (or `label`)."""
    top = label or INBOX
    if path.is_file():
        if _starts_with_from(path):
            return mbox_messages(path, top)
        return [_eml(path, top)]
    if not path.is_dir():
        raise NotFound(f"{path}: no such file or directory")
    out: list[SourceMessage] = []
    for directory, subdirs, files in os.walk(path):
        here = Path(directory)
        subdirs.sort()
        rel = here.relative_to(path).as_posix()
        name = top if rel == "." else mf.folder_to_label(rel)
        if _is_maildir(here):
            out += maildir_messages(here, name)
            subdirs[:] = [d for d in subdirs if d not in ("cur", "new", "tmp")]
        for filename in sorted(files):
            file = here / filename
            if filename.lower().endswith(".eml"):
                out.append(_eml(file, name))
            elif not filename.endswith(SIDECAR) and not filename.startswith(("dovecot", ".")) \
                    and _starts_with_from(file):
                stem = filename.rsplit(".", 1)[0] if filename.endswith(".mbox") else filename
                box = stem if rel == "." else f"{name}/{stem}"
                out += mbox_messages(file, top if stem.upper() in ("INBOX", "INBOX.MBOX")
                                     else box)
    return out


# ---------------------------------------------------------------------------- IMAP source

@dataclass(slots=True)
class ImapSource:
    """Another account on an IMAP server: imaps://user@host[:port] or imap://... (STARTTLS)."""

    url: str
    password: str
    verify_tls: bool = True
    gmail: bool = True
    """Use X-GM-LABELS over All Mail when the server has X-GM-EXT-1."""
    batch: int = 50

    def connect(self) -> imaplib.IMAP4:
        parts = urlsplit(self.url)
        if parts.scheme not in ("imap", "imaps") or not parts.hostname or not parts.username:
            raise ValueError(f"not an IMAP URL: {self.url} (imaps://user@host[:port])")
        context = ssl.create_default_context()
        if not self.verify_tls:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        conn: imaplib.IMAP4
        if parts.scheme == "imaps":
            conn = imaplib.IMAP4_SSL(parts.hostname, parts.port or 993, ssl_context=context,
                                     timeout=60)
        else:
            conn = imaplib.IMAP4(parts.hostname, parts.port or 143, timeout=60)
            if "STARTTLS" in conn.capabilities:
                conn.starttls(context)
            elif parts.hostname not in ("127.0.0.1", "::1", "localhost"):
                raise ValueError("the server offers no STARTTLS: use imaps://")
        conn.login(unquote(parts.username), self.password)
        return conn

    def messages(self) -> list[SourceMessage]:
        """Lists every message (UIDs first, octets fetched in batches as they are read)."""
        conn = self.connect()
        boxes = _list(conn)
        everything = [b for b in boxes if "\\all" in b.attrs]
        if self.gmail and "X-GM-EXT-1" in conn.capabilities and everything:
            plan = [(everything[0], True)]
        else:
            plan = [(b, False) for b in boxes
                    if "\\noselect" not in b.attrs and "\\nonexistent" not in b.attrs
                    and "\\all" not in b.attrs]
        out: list[SourceMessage] = []
        for box, gmail in plan:
            typ, data = conn.select(_quote(box.raw_name), readonly=True)
            if typ != "OK":
                continue
            typ, data = conn.uid("SEARCH", "ALL")
            uids = [int(u) for u in (data[0] or b"").split()] if typ == "OK" else []
            fetcher = _Fetcher(self, box, gmail, uids)
            out += [fetcher.message(uid) for uid in uids]
        conn.logout()
        return out


@dataclass(slots=True)
class _Box:
    raw_name: str
    name: str
    attrs: set[str]

    def label(self) -> str:
        uses = {"\\sent": "role:sent", "\\drafts": "role:drafts", "\\trash": "role:trash",
                "\\junk": "role:junk", "\\archive": "role:archive"}
        for attr, label in uses.items():
            if attr in self.attrs:
                return label
        return INBOX if self.name.upper() == INBOX else self.name


_LIST = re.compile(rb'^\((?P<attrs>[^)]*)\) (?P<delim>NIL|"(?:\\.|[^"])*") (?P<name>.*)$')


def _list(conn: imaplib.IMAP4) -> list[_Box]:
    _typ, data = conn.list()
    boxes = []
    pending: bytes | None = None
    for item in data:
        if isinstance(item, tuple):  # the name came as a literal
            pending, literal = item[0], item[1]
            line = pending.rsplit(b"{", 1)[0] + b'"' + literal.replace(b'"', b'\\"') + b'"'
        elif item is None:
            continue
        else:
            line = item
        found = _LIST.match(line)
        if found is None:
            continue
        delim = found.group("delim").strip(b'"').replace(b"\\\\", b"\\").decode() \
            if found.group("delim") != b"NIL" else ""
        raw = found.group("name").decode("utf-8", "replace")
        if raw.startswith('"'):
            raw = raw[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        name = mf.mutf7_decode(raw)
        if delim and delim != "/":
            name = name.replace(delim, "/")
        attrs = {a.lower() for a in found.group("attrs").decode().split()}
        boxes.append(_Box(raw, name, attrs))
    return boxes


def _quote(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


_UID = re.compile(rb"UID (\d+)")
_FLAGS = re.compile(rb"FLAGS \(([^)]*)\)")
_DATE = re.compile(rb'INTERNALDATE "([^"]+)"')
_GM = re.compile(rb"X-GM-LABELS \(((?:[^()\"]|\"(?:\\.|[^\"\\])*\")*)\)")
_ATOM = re.compile(rb'"((?:\\.|[^"\\])*)"|([^\s"]+)')


class _Fetcher:
    """Fetches one mailbox's messages in batches of UIDs, on its own connection, when the
    importer first asks for one of them (so a resumed import downloads no more than a batch
    twice, and no more than a batch is held in memory)."""

    def __init__(self, source: ImapSource, box: _Box, gmail: bool, uids: list[int]) -> None:
        self.source, self.box, self.gmail, self.uids = source, box, gmail, uids
        self.cache: dict[int, Loaded] = {}
        self.conn: imaplib.IMAP4 | None = None

    def message(self, uid: int) -> SourceMessage:
        return SourceMessage(lambda: self.get(uid), f"{self.box.name} UID {uid}")

    def get(self, uid: int) -> Loaded:
        if uid not in self.cache:
            self.cache.clear()
            at = self.uids.index(uid)
            self._fetch(self.uids[at:at + self.source.batch])
        return self.cache.pop(uid)

    def _fetch(self, uids: list[int]) -> None:
        if self.conn is None:
            self.conn = self.source.connect()
            self.conn.select(_quote(self.box.raw_name), readonly=True)
        items = "(UID FLAGS INTERNALDATE BODY.PEEK[]" + (" X-GM-LABELS)" if self.gmail else ")")
        typ, data = self.conn.uid("FETCH", ",".join(map(str, uids)), items)
        if typ != "OK":
            raise OSError(f"UID FETCH failed: {data!r}")
        meta, raw = b"", b""
        for part in [*data, None]:
            if isinstance(part, tuple) or part is None:
                if meta:
                    self._one(meta, raw)
                if part is None:
                    break
                meta, raw = part[0], part[1]
            elif isinstance(part, bytes):
                meta += part

    def _one(self, meta: bytes, raw: bytes) -> None:
        uid = _UID.search(meta)
        if uid is None:
            return
        flags = _FLAGS.search(meta)
        keywords = mf.imap_keywords((flags.group(1).decode() if flags else "").split())
        date = _DATE.search(meta)
        labels: list[str] = []
        if self.gmail:
            gm = _GM.search(meta)
            for quoted, atom in _ATOM.findall(gm.group(1) if gm else b""):
                text = (quoted.replace(b'\\"', b'"').replace(b"\\\\", b"\\") if quoted
                        else atom).decode("utf-8", "replace")
                mapped = mf.GMAIL_SYSTEM_LABELS.get(text.lower(), mf.mutf7_decode(text))
                if mapped.startswith("keyword:"):
                    keywords.append(mapped.removeprefix("keyword:"))
                else:
                    labels.append(mapped)
        else:
            labels.append(self.box.label())
        self.cache[int(uid.group(1))] = Loaded(
            raw, tuple(labels), tuple(dict.fromkeys(keywords)),
            mf.parse_internaldate(date.group(1).decode()) if date else None)


# ---------------------------------------------------------------------------- import

@dataclass(frozen=True, slots=True)
class _Prepared:
    item: ImportItem
    digest: str
    """SHA-256 of the octets as they came (the delivery key's and `Importer.seen`'s)."""
    original: bytes | None
    """Those octets when they differ from the served form (bare LFs), else None."""


class Importer:
    """Feeds a source into services/importing.import_batch, with a progress record."""

    def __init__(self, mailbox: MailboxService, account: Account, state_dir: Path,
                 source_id: str, *, batch_size: int = 500) -> None:
        self.mailbox = mailbox
        self.account = account
        self.batch_size = batch_size
        name = hashlib.sha256(f"{account.id}\0{source_id}".encode()).hexdigest()[:24]
        self.record = state_dir / f"import-{name}.json"
        self.boxes: dict[str, Mailbox] = {}
        self.seen: dict[str, str] = {}
        """sha256 of the content -> email id, for a message met again under another label."""

    async def run(self, messages: list[SourceMessage],
                  progress: Progress | None = None) -> Summary:
        summary = Summary(total=len(messages))
        recheck = range(0)
        if self.record.exists():
            state = orjson.loads(self.record.read_bytes())
            recheck = range(int(state["from"]), int(state["to"]))
            summary.resumed_at = recheck.start
        unindexed: list[IndexDocument] = []
        held = 0  # bytes of text in `unindexed`
        indexed_to = 0  # every message before this one has its documents in the index
        start = 0
        while start < len(messages):
            items, end = await self._load_batch(messages, start, recheck, summary)
            self._write_record(indexed_to, end)
            known = len(unindexed)
            results = await import_batch(self.mailbox, self.account,
                                         [p.item for _, p in items], unindexed=unindexed)
            held += sum(text_size(d) for d in unindexed[known:])
            if end - indexed_to >= INDEX_GROUP or held >= INDEX_GROUP_BYTES:
                await index_documents(self.mailbox, unindexed)
                indexed_to, held = end, 0
            originals: dict[str, bytes] = {}
            for (message, prepared), result in zip(items, results, strict=True):
                if result.error:
                    summary.failed.append((message.origin, result.error))
                elif result.created:
                    summary.imported += 1
                else:
                    summary.duplicates += 1
                if result.email_id:
                    self.seen.setdefault(prepared.digest, result.email_id)
                    if prepared.original is not None:
                        originals[result.email_id] = prepared.original
            # Before the record moves on: a kill in between sends this batch through again.
            await self._keep_originals(originals)
            if progress:
                progress(end - start)
            start = end
        await index_documents(self.mailbox, unindexed)
        self.record.unlink(missing_ok=True)
        return summary

    async def _load_batch(self, messages: list[SourceMessage], start: int, recheck: range,
                          summary: Summary) -> tuple[list[tuple[SourceMessage, _Prepared]], int]:
        """The next batch from `start`: up to `batch_size` messages, fewer once their octets
        come to BATCH_BYTES (the memory a batch holds), at least one; and where it ends. A
        message that cannot be read is counted failed here."""
        items: list[tuple[SourceMessage, _Prepared]] = []
        end = start
        size = 0
        while end < len(messages) and end - start < self.batch_size and size < BATCH_BYTES:
            message = messages[end]
            try:
                prepared = await self._item(message, end in recheck)
            except (OSError, ValueError, UnicodeError, Conflict, NotFound) as e:
                summary.failed.append((message.origin, f"{type(e).__name__}: {e}"))
            else:
                items.append((message, prepared))
                size += len(prepared.item.raw)
            end += 1
        return items, end

    async def _item(self, message: SourceMessage, recheck: bool) -> _Prepared:
        """The message in its served form (CRLF), keyed by the octets as they came: the same
        source imported again, before or after bare LFs were served as CRLF, is a no-op."""
        loaded = message.load()
        raw = loaded.raw
        served = blobkeys.served_form(raw)
        boxes = [b for b in [await self._box(n) for n in dict.fromkeys(loaded.labels)] if b]
        received = loaded.received_at or int(time.time() * 1000)
        digest = hashlib.sha256(raw).hexdigest()
        where = hashlib.sha256("\0".join(sorted(b.id for b in boxes)).encode()).hexdigest()
        item = ImportItem(raw=served, mailboxes=boxes, keywords=loaded.keywords,
                          received_at=received,
                          delivery_key=f"import:{digest[:40]}:{where[:12]}",
                          recheck=recheck, existing=self.seen.get(digest))
        return _Prepared(item, digest, raw if served != raw else None)

    async def _keep_originals(self, originals: dict[str, bytes]) -> None:
        """The octets of messages that came with bare LFs, beside their bodies
        (core/blobkeys.py `original_id`), for export to give back."""
        if not originals:
            return
        records = await self.mailbox.get_emails(self.account, list(originals), brief=True)
        for record in records:
            side = blobkeys.original_id(record.blob_id)
            if side is not None:
                await self.mailbox.blobs.put(side, originals[record.id])

    async def _box(self, label: str) -> Mailbox | None:
        """The mailbox of a label, made when missing; None for All Mail (every email is in
        it)."""
        if label not in self.boxes:
            boxes = await self.mailbox.mailboxes(self.account)
            found: Mailbox | None = None
            if label.startswith("role:"):
                role = label.removeprefix("role:")
                found = next((b for b in boxes if b.role == role), None)
                if found is None:
                    found = await self.mailbox.create_mailbox(self.account, role.capitalize())
            else:
                found = next((b for b in boxes if b.name == label or
                              (label.upper() == INBOX and b.role == "inbox")), None)
                if found is None:
                    found = await self.mailbox.create_mailbox(self.account, label)
            self.boxes[label] = found
        box = self.boxes[label]
        return None if box.role == "all" else box

    def _write_record(self, start: int, end: int) -> None:
        """Durably, before the batch is stored: a kill leaves a record naming it."""
        self.record.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.record.with_suffix(".tmp")
        with tmp.open("wb") as f:
            f.write(orjson.dumps({"from": start, "to": end}))
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(self.record)


# ---------------------------------------------------------------------------- export

@dataclass(slots=True)
class ExportSummary:
    exported: int = 0
    files: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)

    def text(self) -> str:
        return f"{self.exported} messages exported ({self.files} files), {len(self.failed)} failed"


async def exported_raw(mailbox: MailboxService, record: EmailRecord) -> bytes:
    """The octets export writes: those the message was imported with when it came with bare
    LFs (its side blob, core/blobkeys.py), else the stored ones. The side blob is used only if
    its CRLF form is the stored message, so an email that shares a body with an import but
    came otherwise (an APPEND of the CRLF form) is never given octets it did not come with."""
    raw = await mailbox.raw_of(record)
    side = blobkeys.original_id(record.blob_id)
    if side is None:
        return raw
    try:
        original = await mailbox.blobs.get(side)
    except NotFound:
        return raw
    return original if blobkeys.served_form(original) == raw else raw


async def all_records(mailbox: MailboxService, account: Account,
                      label: str | None = None) -> list[EmailRecord]:
    """Every email of the account (or with `label`), oldest first."""
    out: list[EmailRecord] = []
    after = ""
    while True:
        ids = await mailbox.store.email_ids(account.id, after=after, limit=500)
        if not ids:
            break
        after = ids[-1]
        records = await mailbox.get_emails(account, ids, brief=True)
        if label is not None:
            records = [r for r in records if label in r.mailboxes
                       or (label.upper() == INBOX and INBOX in r.mailboxes)]
        out += records
    out.sort(key=lambda r: (r.received_at, r.id))
    return out


def _labels(record: EmailRecord, all_name: str) -> list[str]:
    return sorted(n for n in record.mailboxes if n != all_name)


async def export_mbox(mailbox: MailboxService, account: Account, path: Path,
                      label: str | None = None, progress: Progress | None = None
                      ) -> ExportSummary:
    records = await all_records(mailbox, account, label)
    all_name = _all_name(await mailbox.mailboxes(account))
    summary = ExportSummary()
    index = []
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as f:
        for record in records:
            try:
                raw = await exported_raw(mailbox, record)
            except (OSError, NotFound) as e:
                summary.failed.append((record.id, f"{type(e).__name__}: {e}"))
                continue
            sender = record.from_[0]["email"] if record.from_ else "MAILER-DAEMON"
            f.write(mf.write_message(raw, sender, record.received_at))
            index.append({"id": record.id, "sha256": hashlib.sha256(raw).hexdigest(),
                          "size": len(raw), "labels": _labels(record, all_name),
                          "keywords": sorted(record.keywords),
                          "receivedAt": record.received_at})
            summary.exported += 1
            if progress:
                progress(1)
        f.flush()
        os.fsync(f.fileno())
    sidecar = path.with_name(path.name + SIDECAR)
    _write_durably(sidecar, orjson.dumps(
        {"format": "mailyard mbox index", "version": 1, "account": account.address,
         "messages": index}, option=orjson.OPT_INDENT_2))
    tmp.replace(path)
    summary.files = 2
    return summary


def _all_name(boxes: Iterable[Mailbox]) -> str:
    return next((b.name for b in boxes if b.role == "all"), "All Mail")


def _write_durably(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)


async def export_maildir(mailbox: MailboxService, account: Account, path: Path,
                         label: str | None = None, progress: Progress | None = None
                         ) -> ExportSummary:
    """One Maildir++ tree: INBOX at the top, a ".Name" folder per other label (an email in
    three labels is written three times), emails with no label in the All Mail folder."""
    boxes = await mailbox.mailboxes(account)
    all_name = _all_name(boxes)
    inbox = next((b.name for b in boxes if b.role == "inbox"), INBOX)
    records = await all_records(mailbox, account, label)
    letters = mf.dovecot_keywords(k for r in records for k in r.keywords)
    custom = {k: v for k, v in letters.items()}
    summary = ExportSummary()
    folders: set[Path] = set()
    for record in records:
        try:
            raw = await exported_raw(mailbox, record)
        except (OSError, NotFound) as e:
            summary.failed.append((record.id, f"{type(e).__name__}: {e}"))
            continue
        names = _labels(record, all_name) or [all_name]
        if label is not None:
            names = [n for n in names if n == label or (label.upper() == INBOX and n == inbox)]
        for name in names:
            folder = path if name == inbox else path / mf.label_to_folder(name)
            if folder not in folders:
                for sub in ("cur", "new", "tmp"):
                    (folder / sub).mkdir(parents=True, exist_ok=True)
                folders.add(folder)
            seconds = record.received_at // 1000
            filename = f"{seconds}.{record.id}.mailyard" + mf.maildir_info(record.keywords,
                                                                          custom)
            tmp = folder / "tmp" / filename.split(":")[0]
            tmp.write_bytes(raw)
            os.utime(tmp, ns=(record.received_at * 1_000_000,) * 2)
            tmp.replace(folder / "cur" / filename)
            summary.files += 1
        summary.exported += 1
        if progress:
            progress(1)
    if letters:
        text = "".join(f"{ord(v) - ord('a')} {k}\n" for k, v in sorted(letters.items(),
                                                                       key=lambda kv: kv[1]))
        for folder in folders:
            (folder / "dovecot-keywords").write_text(text)
    os.sync()  # one flush for the whole tree rather than an fsync per file
    return summary
