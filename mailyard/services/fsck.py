"""`mailyard fsck`: does what the stores hold still add up?

Checked per account, through the ports (so every engine can be checked):
- every email's skeleton blob exists and hashes to the SHA-256 its id names (the tail of a
  dated `bodies/YYYY/MM/DD/<sha256>` id, or the whole id in stores older than that layout),
  and so does every attachment blob the skeleton refers to (core/blobkeys.py); the
  re-assembled message has the recorded size (the skeleton's CRC is verified on the way);
- the octets an import kept beside the body (a message that came with bare LFs:
  `original-<sha256>`, core/blobkeys.py) come to the message once their LFs are CRLF, which
  is what export relies on to give them back;
- the attachment references the email's row records (what `mailyard gc` trusts) are the ones
  its skeleton needs;
- UIDs strictly increasing and below UIDNEXT per mailbox; no email or mailbox MODSEQ above the
  account's;
- quota usage = the sum of the sizes; each mailbox's total/unseen/bytes counters;
- thread links: an email and the parents it names (In-Reply-To, References) share a thread;
- index coverage: every email has a search document and no document outlives its email.

`repair` fixes what is derived data (counters, recorded references, index documents) and
reports the rest: a lost blob cannot be made up. What each counter must be is decided here and
only here (`counted`), from what the MailStore port reads; the engine is told the numbers
through the Maintenance port (store.ports.mailstore), as a compare-and-set on the account's MODSEQ,
so a repair on a live server never writes a count some delivery has already made stale.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

from mailyard.core import blobkeys, skeleton
from mailyard.pipeline.inbound import document
from mailyard.services.mailbox import MailboxService
from mailyard.store.ports.errors import NotFound
from mailyard.store.ports.mailstore import MaintainedMailStore
from mailyard.store.ports.records import Account, EmailRecord, MailboxCounters, MailboxSnapshot


@dataclass(slots=True)
class Problem:
    address: str
    kind: str
    """A short stable name: missing-blob, bad-blob, missing-attachment-ref, uid-order, ..."""
    detail: str
    repairable: bool
    repaired: bool = False

    def __str__(self) -> str:
        state = "repaired" if self.repaired else ("repairable" if self.repairable
                                                  else "NOT REPAIRABLE")
        return f"{self.address}\t{self.kind}\t{state}\t{self.detail}"


@dataclass(slots=True)
class Report:
    accounts: int = 0
    emails: int = 0
    blobs: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def unresolved(self) -> list[Problem]:
        return [p for p in self.problems if not p.repaired]


SEEN = "$seen"
ATTEMPTS = 5
"""Times the counters are read again when the account changed while they were read, and
again when it changed before they could be set (a server delivering meanwhile)."""


class Fsck:
    def __init__(self, mailbox: MailboxService, store: MaintainedMailStore, *,
                 repair: bool = False, batch: int = 200) -> None:
        """`store` is the mailbox service's own, seen through the Maintenance port too."""
        self.mailbox = mailbox
        self.store = store
        self.blobs = mailbox.blobs
        self.index = mailbox.index
        self.repair = repair
        self.batch = batch
        self.report = Report()
        self._verified: dict[str, str | None] = {}
        """blob id -> None when present and hashing right, else the problem kind."""

    async def run(self, accounts: Sequence[Account]) -> Report:
        for account in accounts:
            await self.check_account(account)
        return self.report

    def _problem(self, account: Account, kind: str, detail: str, repairable: bool) -> Problem:
        problem = Problem(account.address, kind, detail, repairable)
        self.report.problems.append(problem)
        return problem

    async def _blob(self, blob_id: str) -> tuple[bytes | None, str | None]:
        """The blob's octets if present and hashing to the SHA-256 its id names. An id that
        names none (not content-addressed: no email row should hold one) is a bad blob."""
        try:
            data = await self.blobs.get(blob_id)
        except (NotFound, ValueError):  # ValueError: an id the store cannot even hold
            self._verified[blob_id] = "missing-blob"
            return None, "missing-blob"
        if blob_id not in self._verified:
            self.report.blobs += 1
            expected = blobkeys.content_sha256(blob_id)
            ok = expected is not None and await asyncio.to_thread(
                lambda: hashlib.sha256(data).hexdigest() == expected)
            self._verified[blob_id] = None if ok else "bad-blob"
        kind = self._verified[blob_id]
        return (data if kind is None else None), kind

    async def check_account(self, account: Account) -> None:
        self.report.accounts += 1
        account = await self.store.get_account_by_id(account.id)  # fresh counters
        sizes: dict[str, int] = {}
        records: list[EmailRecord] = []
        after = ""
        while ids := await self.store.email_ids(account.id, after=after, limit=self.batch):
            after = ids[-1]
            batch = await self.store.get_emails(account.id, ids, brief=True)
            recorded = await self.store.blob_refs(account.id, ids)
            for record in batch:
                self.report.emails += 1
                sizes[record.id] = record.size
                records.append(_light(record))
                await self._check_email(account, record, recorded.get(record.id))
        snaps = await self._snapshots(account.id)
        account, sizes, snaps, settled = await self._settle(account, sizes, snaps)
        for record in records:  # read before `account`: none may be above it
            if record.modseq > account.modseq:
                self._problem(account, "modseq", f"email {record.id} has MODSEQ"
                              f" {record.modseq} above the account's {account.modseq}", False)
        self._check_mailboxes(account, snaps, sizes)
        recount = self._check_counters(account, sizes, snaps)
        if not settled:
            for p in recount:
                p.detail += f" (the account changed {ATTEMPTS} times while counted)"
        self._check_threads(account, records)
        await self._check_index(account, records)
        if recount and self.repair:
            if await self._set_counters(account, sizes, snaps):
                for p in recount:
                    p.repaired = True
            else:
                for p in recount:
                    p.detail += f" (the account changed {ATTEMPTS} times before the repair:" \
                                " run again)"

    async def _settle(self, account: Account, sizes: dict[str, int],
                      snaps: list[MailboxSnapshot]
                      ) -> tuple[Account, dict[str, int], list[MailboxSnapshot], bool]:
        """One view of the account's numbers that no write cut through: the account read
        again after the emails and mailboxes were; unchanged, what was read after it is what
        it was then. Changed (a server delivering meanwhile), the sizes and mailboxes are read
        again after it, and so on. False at the end when it never held still."""
        for _ in range(ATTEMPTS):
            latest = await self.store.get_account_by_id(account.id)
            if latest.modseq == account.modseq:
                return latest, sizes, snaps, True
            account, sizes, snaps = await self._counts(account.id)
        return account, sizes, snaps, False

    async def _snapshots(self, account_id: str) -> list[MailboxSnapshot]:
        return [await self.store.snapshot(account_id, box.id)
                for box in await self.store.list_mailboxes(account_id)]

    async def _check_email(self, account: Account, record: EmailRecord,
                           recorded: list[str] | None) -> None:
        skel, kind = await self._blob(record.blob_id)
        if skel is None:
            self._problem(account, kind or "missing-blob",
                          f"email {record.id}: message skeleton {record.blob_id}", False)
            return
        try:
            refs = skeleton.blob_refs(skel)
        except ValueError as e:
            self._problem(account, "bad-blob", f"email {record.id}: skeleton: {e}", False)
            return
        parts: dict[str, bytes] = {}
        for ref in refs:
            data, kind = await self._blob(ref)
            if data is None:
                self._problem(account, kind or "missing-blob",
                              f"email {record.id}: attachment blob {ref}", False)
            else:
                parts[ref] = data
        if len(parts) == len(set(refs)):
            try:
                raw = await asyncio.to_thread(skeleton.assemble, skel, parts.__getitem__)
            except ValueError as e:
                self._problem(account, "bad-blob", f"email {record.id}: {e}", False)
            else:
                if len(raw) != record.size:
                    self._problem(account, "size", f"email {record.id}: {len(raw)} octets,"
                                  f" {record.size} recorded", False)
                await self._check_original(account, record, raw)
        if recorded is not None and sorted(set(recorded)) != sorted(set(refs)):
            missing = sorted(set(refs) - set(recorded))
            detail = f"email {record.id} records attachment refs {sorted(set(recorded))}," \
                     f" its skeleton needs {sorted(set(refs))}"
            if missing:
                detail += f" (missing: {', '.join(missing)})"
            problem = self._problem(account, "missing-attachment-ref" if missing
                                    else "extra-attachment-ref", detail, True)
            if self.repair:
                await self.store.set_blob_refs(account.id, record.id, list(dict.fromkeys(refs)))
                problem.repaired = True

    async def _check_original(self, account: Account, record: EmailRecord, raw: bytes) -> None:
        """The imported octets kept beside the body, if any, must be the message with bare LFs
        (export falls back to the stored octets otherwise, which is not what was imported)."""
        side = blobkeys.original_id(record.blob_id)
        if side is None or side in self._verified:
            return
        try:
            original = await self.blobs.get(side)
        except NotFound:
            return
        self.report.blobs += 1
        same = await asyncio.to_thread(lambda: blobkeys.served_form(original) == raw)
        self._verified[side] = None if same else "bad-original"
        if not same:
            self._problem(account, "bad-original", f"email {record.id}: {side} is not the"
                          " message with bare LFs", False)

    def _check_counters(self, account: Account, sizes: dict[str, int],
                        snaps: list[MailboxSnapshot]) -> list[Problem]:
        """Quota usage and each mailbox's counters against what its rows add up to."""
        problems = []
        used = sum(sizes.values())
        if used != account.used:
            problems.append(self._problem(account, "quota-usage", f"usage {account.used}"
                                          f" recorded, emails sum to {used}", True))
        for snap in snaps:
            box, want = snap.mailbox, counted(snap, sizes)
            if want.uidnext != box.uidnext:
                problems.append(self._problem(
                    account, "uidnext", f"{box.name}: UID {want.uidnext - 1} not below"
                    f" UIDNEXT {box.uidnext}", True))
            if (want.total, want.unseen, want.size) != (box.total, box.unread, box.size):
                problems.append(self._problem(
                    account, "mailbox-counters",
                    f"{box.name}: total/unseen/bytes {box.total}/{box.unread}/{box.size}"
                    f" recorded, {want.total}/{want.unseen}/{want.size} counted", True))
        return problems

    async def _set_counters(self, account: Account, sizes: dict[str, int],
                            snaps: list[MailboxSnapshot]) -> bool:
        """Write the counted numbers unless the account changed since it was read; then
        count again (the emails' sizes and the mailboxes only, not the blobs) and retry."""
        for attempt in range(ATTEMPTS):
            if attempt:
                account, sizes, snaps = await self._counts(account.id)
            used = sum(sizes.values())
            boxes = [want for snap in snaps if not _holds(snap, want := counted(snap, sizes))]
            if used == account.used and not boxes:
                return True
            if await self.store.set_counters(account.id, modseq=account.modseq, used=used,
                                             mailboxes=boxes):
                return True
        return False

    async def _counts(self, account_id: str
                      ) -> tuple[Account, dict[str, int], list[MailboxSnapshot]]:
        """The account, then its emails' sizes and its mailboxes: read in that order, so any
        write after the account was read shows in its MODSEQ."""
        account = await self.store.get_account_by_id(account_id)
        sizes: dict[str, int] = {}
        after = ""
        while ids := await self.store.email_ids(account_id, after=after, limit=self.batch):
            after = ids[-1]
            sizes.update((r.id, r.size) for r in
                         await self.store.get_emails(account_id, ids, brief=True))
        return account, sizes, await self._snapshots(account_id)

    def _check_mailboxes(self, account: Account, snaps: list[MailboxSnapshot],
                         sizes: dict[str, int]) -> None:
        """What a recount cannot mend: UID order, MODSEQs from the future, UIDs of emails
        that are gone."""
        for snap in snaps:
            box = snap.mailbox
            uids = [e.uid for e in snap.entries]
            if any(b <= a for a, b in itertools.pairwise(uids)):
                self._problem(account, "uid-order", f"{box.name}: UIDs not strictly"
                              " increasing", False)
            if box.highest_modseq > account.modseq:
                self._problem(account, "modseq", f"{box.name}: MODSEQ {box.highest_modseq}"
                              f" above the account's {account.modseq}", False)
            dangling = [e.email_id for e in snap.entries if e.email_id not in sizes]
            if dangling:
                self._problem(account, "dangling-uid", f"{box.name}: UIDs of missing emails"
                              f" {dangling[:5]}", False)

    def _check_threads(self, account: Account, records: list[EmailRecord]) -> None:
        by_msgid: dict[str, str] = {}
        for r in records:
            if r.message_id:
                by_msgid.setdefault(r.message_id, r.thread_id)
        for r in records:
            for parent in (*r.in_reply_to, *r.references):
                thread = by_msgid.get(parent)
                if thread is not None and thread != r.thread_id:
                    self._problem(account, "thread-link", f"email {r.id} (thread {r.thread_id})"
                                  f" names parent {parent} in thread {thread}", False)
                    break

    async def _check_index(self, account: Account, records: list[EmailRecord]) -> None:
        """The emails read at the start against the documents indexed now. A server at work
        meanwhile stores an email and then indexes it, or destroys it and then drops its
        document: each difference is checked against the store as it is now, so that a repair
        never drops the document of an email delivered since, nor indexes one destroyed."""
        stored = {r.id: r for r in records}
        indexed = await self.index.indexed_ids(account.id)
        missing = [stored[e] for e in await self._existing(account.id, stored.keys() - indexed)]
        extra = indexed - stored.keys()
        dangling = sorted(extra - set(await self._existing(account.id, extra)))
        problems = [self._problem(account, "index-missing", f"email {r.id} has no search"
                                  " document", True) for r in missing]
        if dangling:
            problems.append(self._problem(account, "index-dangling", f"{len(dangling)} search"
                                          f" documents of no email: {dangling[:5]}", True))
        if not self.repair:
            return
        if dangling:
            await self.index.delete(account.id, dangling)
            problems[-1].repaired = True
        for problem, record in zip(problems, missing, strict=False):
            try:
                raw = await self.mailbox.raw_of(record)
            except (NotFound, ValueError):
                problem.detail += " (its blobs are missing: cannot reindex)"
                continue
            _, text = await asyncio.to_thread(self.mailbox.pipeline.analyse_text, raw)
            await self.index.index([document(account.id, record.id, record.received_at, text)])
            problem.repaired = True

    async def _existing(self, account_id: str, email_ids: set[str]) -> list[str]:
        """Those of the emails the store holds now, in id order."""
        found: set[str] = set()
        wanted = sorted(email_ids)
        for start in range(0, len(wanted), self.batch):
            found.update(r.id for r in await self.store.get_emails(
                account_id, wanted[start:start + self.batch], brief=True))
        return [e for e in wanted if e in found]


def _light(record: EmailRecord) -> EmailRecord:
    """What the account-wide checks keep of each email (the rest is dropped as we go)."""
    record.preview = ""
    record.attachments = []
    return record


def counted(snap: MailboxSnapshot, sizes: dict[str, int]) -> MailboxCounters:
    """What a mailbox's counters must be, from its rows: the one statement of the rule the
    engines keep incrementally (an email is unseen unless its keywords hold $seen, exactly;
    UIDNEXT is above every UID in use and never goes down)."""
    entries = snap.entries
    return MailboxCounters(
        mailbox_id=snap.mailbox.id,
        total=len(entries),
        unseen=sum(1 for e in entries if SEEN not in e.keywords),
        size=sum(sizes.get(e.email_id, 0) for e in entries),
        uidnext=max(snap.mailbox.uidnext, 1 + max((e.uid for e in entries), default=0)))


def _holds(snap: MailboxSnapshot, want: MailboxCounters) -> bool:
    box = snap.mailbox
    return (box.total, box.unread, box.size, box.uidnext) == (
        want.total, want.unseen, want.size, want.uidnext)
