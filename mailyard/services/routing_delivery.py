"""The durable hand-off of an accepted message when routing rules apply (DeliveryService.accept
with a RoutingService): the envelope's recipients are expanded once, here, before anything is
queued, so the pipeline only ever sees accounts.

- Each account gets one copy, whichever recipients led to it (alice@ and an alias of alice@ in
  one envelope: one copy). Accounts reached by their own address share one queue item with
  the message as it came, exactly as before routing existed; an account reached another way
  (alice+news@, an alias, a domain alias, the catch-all, a role address) gets an item of its
  own whose copy starts with `Delivered-To: <the address the sender used>` (RFC 9228), one
  per envelope address that reached it, which `deliveredto:` searches.
- Remote targets of aliases (forwarding) get one outbound item per domain, with the envelope
  sender rewritten by SRS (core/routing.py) so the receiver's SPF check passes, and a
  Delivered-To naming the local address that forwarded it.
- Spam is never forwarded: when the inbound checks' verdict says Junk (or, when the MX left
  the score to the pipeline, the score taken here says so), the remote targets get nothing;
  the message is held for them in quarantine, or dropped (`RoutingService.hold_spam`). Local
  copies go on to the pipeline, which puts them in Junk.
- Loops are stopped: a message with more than `max_received` Received fields, or one that
  already carries our Delivered-To for the address that would forward it again, is not
  forwarded; the sender gets a DSN (RFC 3464, status 5.4.6) instead, as they do for a
  recipient whose rule was removed between RCPT and now (5.1.1).

All items of one message are enqueued together (Queue.enqueue_many): a crash leaves all of
them or none, and the client saw no 250 in the second case.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from mailyard import metrics
from mailyard.core import dsn, spam
from mailyard.core.addresses import domain_of, normalize
from mailyard.core.mime import parse_message
from mailyard.core.routing import trace_counts
from mailyard.core.workitems import (
    INBOUND,
    OUTBOUND,
    Action,
    InboundItem,
    Message,
    OutboundItem,
    Verdict,
)
from mailyard.store.ports import DeadLetter, NewItem

if TYPE_CHECKING:
    from mailyard.services.delivery import Accepted, DeliveryService
    from mailyard.services.routing import LocalTarget, RemoteTarget, RoutingService

log = logging.getLogger("mailyard.delivery")


HELD_FORWARDS = "held_forwards"
"""The note of a held spam's verdict naming its remote targets ([address, via] pairs), what
`release_held` sends it to; a quarantined virus has none and cannot be released."""


def delivered_to(address: str) -> bytes:
    """A Delivered-To field (RFC 9228) for `address`, safe in a header."""
    clean = "".join(ch for ch in address if ch >= " " and ch != "\x7f")[:320]
    return f"Delivered-To: {clean}\r\n".encode("utf-8", "surrogateescape")


async def accept_routed(service: DeliveryService, routing: RoutingService, *, queue_id: str,
                        mail_from: str, recipients: Sequence[str], raw: bytes,
                        trace_length: int, received_at: int, peer: str, helo: str,
                        verdict: Verdict | None) -> Accepted:
    from mailyard.services.delivery import Accepted, spool_id

    if mail_from.strip("<> ") == "":
        mail_from = ""  # the null reverse-path, which aiosmtpd hands over as "<>"
    plan = await routing.plan(recipients)
    received, _ = trace_counts(raw)
    failed: list[dsn.RecipientStatus] = [
        dsn.RecipientStatus(r, "failed", "5.1.1", diagnostic="smtp; 550 5.1.1 No such user"
                            " here (the address was removed after the message was accepted)")
        for r in plan.unknown]
    if received > service.max_received:
        log.warning("%s: %d Received fields: a mail loop; not delivered", queue_id, received)
        failed += [dsn.RecipientStatus(
            t.delivered_to or t.recipient, "failed", "5.4.6",
            diagnostic=f"smtp; 554 5.4.6 Mail loop: {received} Received fields")
            for t in plan.local]
        failed += [dsn.RecipientStatus(
            t.via or t.address, "failed", "5.4.6",
            diagnostic=f"smtp; 554 5.4.6 Mail loop: {received} Received fields")
            for t in plan.remote]
        plan.local, plan.remote = [], []
    remote: list[RemoteTarget] = []
    for fwd in plan.remote:
        if fwd.via and trace_counts(raw, fwd.via)[1]:
            log.warning("%s: forwarding loop at %s (Delivered-To present)", queue_id, fwd.via)
            failed.append(dsn.RecipientStatus(
                fwd.via, "failed", "5.4.6",
                diagnostic=f"smtp; 554 5.4.6 Mail forwarding loop for {fwd.via}"))
        else:
            remote.append(fwd)
    items: list[tuple[NewItem, bytes]] = []

    def next_id() -> str:
        return queue_id if not items else f"{queue_id}.{len(items) + 1}"

    held = verdict if remote and verdict is not None \
        and verdict.action >= Action.QUARANTINE else None
    if remote and held is None and verdict is not None:
        spam_verdict = await _spam(routing, verdict, raw)
        if spam_verdict is not None:
            where = ", ".join(dict.fromkeys(f.address for f in remote))
            reason = (f"spam (score {spam_verdict.score:.1f}): not forwarded to {where}"
                      if spam_verdict.score else f"{spam_verdict.reason or 'spam'}: not"
                      f" forwarded to {where}")
            if routing.hold_spam:
                held = replace(spam_verdict, action=Action.QUARANTINE, reason=reason,
                               notes={**spam_verdict.notes,
                                      HELD_FORWARDS: [[f.address, f.via] for f in remote]})
            else:
                log.warning("%s: dropped, %s", queue_id, reason,
                            extra={"queue_id": queue_id, "peer": peer})
                remote = []
    if remote and held is not None:
        # Never forwarded, never lost: an inbound item for the forwarding addresses carries
        # the verdict, and the pipeline puts it into quarantine (the dead letters) as it
        # does a local recipient's copy, where an admin finds it with `mailyard dlq list`.
        log.warning("%s: not forwarded to %d remote address(es), quarantined: %s", queue_id,
                    len(remote), held.reason)
        item_id = next_id()
        item = InboundItem(spool=spool_id(item_id), mail_from=mail_from,
                           recipients=tuple(dict.fromkeys(f.via or f.address for f in remote)),
                           trace_length=trace_length, received_at=received_at, peer=peer,
                           helo=helo, verdict=held)
        items.append((NewItem(INBOUND, item.to_json(), item_id=item_id), raw))
        remote = []

    def own(target: LocalTarget) -> bool:
        return all(a == normalize(target.account.address) for a in target.addresses)

    direct = [t.recipient for t in plan.local if own(t)]
    if direct:
        item_id = next_id()
        item = InboundItem(spool=spool_id(item_id), mail_from=mail_from,
                           recipients=tuple(direct), trace_length=trace_length,
                           received_at=received_at, peer=peer, helo=helo, verdict=verdict)
        items.append((NewItem(INBOUND, item.to_json(), item_id=item_id), raw))
    for target in plan.local:
        if own(target):
            continue
        field = b"".join(delivered_to(a) for a in target.addresses)
        item_id = next_id()
        item = InboundItem(spool=spool_id(item_id), mail_from=mail_from,
                           recipients=(target.recipient,),
                           trace_length=trace_length + len(field), received_at=received_at,
                           peer=peer, helo=helo, verdict=verdict)
        items.append((NewItem(INBOUND, item.to_json(), item_id=item_id), field + raw))
    if remote:
        items += await _forwards(routing, remote, next_id, submission=queue_id,
                                 mail_from=mail_from, raw=raw, trace_length=trace_length,
                                 received_at=received_at, peer=peer, helo=helo)
    for new, data in items:
        await service.blobs.put(spool_id(str(new.item_id)), data)
    if items:
        await service.queue.enqueue_many([new for new, _ in items])
        metrics.mail("accepted")
    log.info("accepted %s from <%s> for %d recipient(s): %d account(s), %d forward(s), %d"
             " failed, %d octets", queue_id, mail_from, len(recipients), len(plan.local),
             len(remote), len(failed), len(raw),
             extra={"queue_id": queue_id, "peer": peer, "size": len(raw)})
    if failed:
        await _report(service, queue_id, mail_from, raw[trace_length:], failed)
    return Accepted(queue_id=queue_id)


async def _forwards(routing: RoutingService, remote: Sequence[RemoteTarget],
                    next_id: Callable[[], str], *, submission: str, mail_from: str,
                    raw: bytes, trace_length: int, received_at: int, peer: str, helo: str
                    ) -> list[tuple[NewItem, bytes]]:
    """The sends to remote targets, one outbound item per domain: from the SRS address, with
    a Delivered-To for each local address that forwards, without our Return-Path."""
    from mailyard.services.delivery import spool_id

    sender = await routing.forward_sender(mail_from)
    relayed, relayed_trace = _without_return_path(raw, trace_length)
    by_domain: dict[str, list[RemoteTarget]] = {}
    for fwd in remote:
        by_domain.setdefault(domain_of(fwd.address), []).append(fwd)
    now = time.time()
    items: list[tuple[NewItem, bytes]] = []
    for domain, targets in sorted(by_domain.items()):
        fields = b"".join(delivered_to(v) for v in dict.fromkeys(
            t.via for t in targets if t.via))
        item_id = next_id()
        out = OutboundItem(spool=spool_id(item_id), mail_from=sender,
                           recipients=tuple(t.address for t in targets), domain=domain,
                           submitted_at=now, submission=submission,
                           trace_length=relayed_trace + len(fields),
                           received_at=received_at, peer=peer, helo=helo)
        items.append((NewItem(OUTBOUND, out.to_json(), item_id=item_id), fields + relayed))
    return items


class NotHeldSpam(ValueError):
    """A dead letter that is no spam held for remote targets (a virus, a failed delivery):
    `mailyard dlq retry` or `drop` is for it, not release."""


async def release_held(service: DeliveryService, routing: RoutingService,
                       letter: DeadLetter) -> list[str]:
    """Send held spam to the remote targets it was held for, as if it were not spam (an
    admin's word, `mailyard dlq release`): the outbound items replace the dead letter in one
    step (Queue.release), so a second release finds no letter. The targets are those recorded
    when it was held, not today's rules. The item ids are the letter's with `.rN`; the held
    spool stays until `mailyard gc` finds nothing naming it. Returns the outbound item ids."""
    from mailyard.core.workitems import BadItem
    from mailyard.services.delivery import spool_id
    from mailyard.services.routing import RemoteTarget

    try:
        held = InboundItem.from_json(letter.payload) if letter.kind == INBOUND else None
    except BadItem:
        held = None
    recorded = held.verdict.notes.get(HELD_FORWARDS) if held and held.verdict else None
    if held is None or not isinstance(recorded, list) or not recorded:
        raise NotHeldSpam(f"{letter.id} is not spam held from remote targets ({letter.error});"
                          " use `mailyard dlq retry` or `drop`")
    remote = [RemoteTarget(str(address), str(via)) for address, via in recorded]
    raw = await service.blobs.get(held.spool)
    count = iter(range(1, len(remote) + 1))
    items = await _forwards(routing, remote, lambda: f"{letter.id}.r{next(count)}",
                            submission=letter.id, mail_from=held.mail_from, raw=raw,
                            trace_length=held.trace_length, received_at=held.received_at,
                            peer=held.peer, helo=held.helo)
    for new, data in items:
        await service.blobs.put(spool_id(str(new.item_id)), data)
    await service.queue.release(letter.id, [new for new, _ in items])
    log.warning("%s: released by an admin, forwarded to %s", letter.id,
                ", ".join(dict.fromkeys(t.address for t in remote)),
                extra={"queue_id": letter.id})
    return [str(new.item_id) for new, _ in items]


async def _spam(routing: RoutingService, verdict: Verdict, raw: bytes) -> Verdict | None:
    """The verdict when the message is spam (it would go to Junk), else None. A score the MX
    left to the pipeline is taken now, since the forward leaves before the pipeline runs;
    the local copies are scored again by the pipeline, which writes the X-Spam fields."""
    if verdict.action is Action.JUNK:
        return verdict
    if verdict.spam is None or verdict.spam.scored or routing.spam_score is None:
        return None
    parsed: list[Message] = []

    async def message() -> Message:
        if not parsed:
            parsed.append((raw, await asyncio.to_thread(parse_message, raw,
                                                        text_limit=spam.MAX_TEXT)))
        return parsed[0]

    done, _ = await routing.spam_score(verdict, message)
    return done if done.action is Action.JUNK else None


def _without_return_path(raw: bytes, trace_length: int) -> tuple[bytes, int]:
    """The copy to forward: without the Return-Path our MX put first, which only the final
    delivery writes (RFC 5321 §4.4; the receiver writes its own, the SRS address)."""
    if raw.startswith(b"Return-Path:") and trace_length:
        end = raw.find(b"\n") + 1
        if 0 < end <= trace_length:
            return raw[end:], trace_length - end
    return raw, trace_length


async def _report(service: DeliveryService, queue_id: str, mail_from: str, original: bytes,
                  failed: list[dsn.RecipientStatus]) -> None:
    """A DSN to the sender about recipients that will not get the message (never to the
    null sender, never about a DSN)."""
    if not mail_from or dsn.is_bounce(original):
        log.info("%s: %d recipient(s) failed; no report (null sender or a report)", queue_id,
                 len(failed))
        return
    now = datetime.now(UTC)
    report = dsn.build_dsn(original, reporting_mta=service.hostname, sender=mail_from,
                           postmaster=f"postmaster@{service.hostname}", recipients=failed,
                           arrival=now, envelope_id=queue_id, now=now,
                           message_id_domain=service.hostname)
    metrics.mail("bounced", len(failed))
    await service.accept(queue_id=f"{queue_id}.dsn", mail_from="", recipients=[mail_from],
                         raw=report, trace_length=0, received_at=int(time.time() * 1000))
