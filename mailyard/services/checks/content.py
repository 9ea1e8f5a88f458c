"""Layer 3: what a message says. Content rules, the statistical classifier, collaborative
reports, and optionally rspamd and clamd, added up into the verdict at the end of DATA.

The message is scored with the global model once; `SpamPlacement` then decides per recipient in
the pipeline, where the user's own allow list and model can still take a mail out of Junk or put
it there. When the score is taken depends on what it can change: with a reject threshold (or
rspamd, whose answer may carry one) it must be known before the reply to DATA; otherwise the
score only chooses between Inbox and Junk, so the check leaves it to the pipeline worker
(`SpamPlacement.complete`) and the SMTP listener spends no CPU on it. The 20-session ingest
bench measured the difference (docs/BENCHMARKS.md).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from mailyard.core import spam, spamrules, workitems
from mailyard.core.mime import ParsedMessage, parse_message
from mailyard.core.spampolicy import SpamPolicy
from mailyard.core.workitems import MessageLoader, SpamFacts
from mailyard.services.checks import Action, SMTPEnvelope, Verdict
from mailyard.services.checks.clamd import ClamdError, scan
from mailyard.services.checks.rspamd import Rspamd, RspamdError
from mailyard.store.ports import NotFound, SpamModel

log = logging.getLogger("mailyard.checks.content")


@dataclass(slots=True)
class Analysis:
    """The CPU part of a content check, done once per message off the event loop."""

    content: spam.Content
    token_ids: list[int]
    symbols: dict[str, float]
    fingerprint: str


def analyse(raw: bytes, parsed: ParsedMessage, now: datetime | None = None) -> Analysis:
    c = spam.content(raw, parsed)
    return Analysis(c, spam.token_ids(c), spamrules.rules(c, parsed, now or datetime.now(UTC)),
                    spam.fingerprint(c))


INLINE_ANALYSIS = 16 * 1024
"""A message up to this size has its spam analysis (content, tokens, rules, fingerprint) done
on the event loop's thread: ~0.25 ms for a 5 KB mail, against a hop to a thread and back of
35-50 µs plus the loop's wake-up (issue 24); the costliest 16 KiB shapes tried (4,000 distinct
words, 800 URLs) took 1.6-2.3 ms, under one GIL switch interval, which a thread doing the same
pure-Python work would have held from the loop as well."""


async def analysed(raw: bytes, parsed: ParsedMessage) -> Analysis:
    """`analyse`, on this thread for a message up to INLINE_ANALYSIS octets, else in one."""
    if len(raw) <= INLINE_ANALYSIS:
        return analyse(raw, parsed)
    return await asyncio.to_thread(analyse, raw, parsed)


def sender_of(parsed: ParsedMessage, envelope_from: str = "") -> str:
    """The sender a user sees and would allow: the From address, else the reverse-path."""
    return (parsed.from_[0].email if parsed.from_ else envelope_from).lower()


async def bayes(model: SpamModel, policy: SpamPolicy, ids: list[int],
                account_id: str | None = None) -> tuple[float, float] | None:
    """(probability, score) from the global model, combined with the account's when given;
    None while the models have not learnt enough to be trusted."""
    counts = await model.counts("", ids)
    if account_id is not None:
        user = await model.counts(account_id, ids)
        counts = spam.combine(counts, user, policy.user_weight)
    if counts.nspam < policy.min_spam or counts.nham < policy.min_ham:
        return None
    p = await asyncio.to_thread(spam.spam_probability, ids, counts) if len(ids) > 500 \
        else spam.spam_probability(ids, counts)
    return p, spamrules.bayes_score(p)


async def score(model: SpamModel, policy: SpamPolicy, raw: bytes, parsed: ParsedMessage,
                sender: str, verdict: Verdict) -> None:
    """Rules, the global classifier and collaborative reports, added to `verdict`; what the
    pipeline needs later (sender, fingerprint, the classifier's part) goes in its `spam`."""
    analysis = await analysed(raw, parsed)
    for symbol, value in analysis.symbols.items():
        verdict.add(symbol, value)
    facts = SpamFacts(sender=sender, fingerprint=analysis.fingerprint)
    result = await bayes(model, policy, analysis.token_ids)
    if result is not None:
        facts = SpamFacts(sender=sender, fingerprint=analysis.fingerprint, p=result[0],
                          bayes=result[1])
        verdict.add("BAYES", result[1])
    since = time.time() - policy.collab_window
    if sender and await model.reporters("sender", sender, since) >= policy.collab_reporters:
        verdict.add("COLLAB_SENDER", policy.collab_score)
    if await model.reporters("content", analysis.fingerprint, since) >= policy.collab_reporters:
        verdict.add("COLLAB_CONTENT", policy.collab_score)
    verdict.spam = facts


def _junk_if_over(verdict: Verdict, policy: SpamPolicy) -> None:
    if verdict.score >= policy.junk_threshold:
        verdict.ask(Action.JUNK, f"spam score {verdict.score:.1f}")


def status_headers(verdict: Verdict, threshold: float) -> list[tuple[str, str]]:
    """X-Spam-Score and X-Spam-Status in SpamAssassin's familiar form."""
    tests = ",".join(sorted(s for s in verdict.symbols if s != "BAYES")
                     + (["BAYES"] if "BAYES" in verdict.symbols else []))
    flag = "Yes" if verdict.score >= threshold else "No"
    return [("X-Spam-Score", f"{verdict.score:.2f}"),
            ("X-Spam-Status", f"{flag}, score={verdict.score:.2f} required={threshold:.1f}"
                              f" tests={tests or 'none'}")]


class ContentCheck:
    name = "content"

    def __init__(self, model: SpamModel, policy: SpamPolicy) -> None:
        self.model = model
        self.policy = policy
        self.rspamd = Rspamd(policy.rspamd_url, timeout=policy.rspamd_timeout) \
            if policy.rspamd_url else None

    @property
    def scores_at_data(self) -> bool:
        """Whether the score can change the reply to DATA, so must be known before it."""
        return self.policy.reject_threshold > 0 or self.rspamd is not None

    async def check(self, envelope: SMTPEnvelope, raw: bytes, parsed: ParsedMessage,
                    verdict: Verdict) -> None:
        if not self.policy.enabled or envelope.authenticated:
            return
        if self.policy.clamd:
            await self._virus(raw, verdict)
            if verdict.action >= Action.QUARANTINE:
                return
        sender = sender_of(parsed, envelope.mail_from)
        if not self.scores_at_data:
            verdict.spam = SpamFacts(sender=sender, scored=False)
            return
        full = await asyncio.to_thread(parse_message, raw)
        await score(self.model, self.policy, raw, full, sender, verdict)
        if self.rspamd is not None:
            try:
                answer = await self.rspamd.check(envelope, raw)
            except RspamdError as e:
                log.warning("%s; scoring without it", e)
                verdict.add("RSPAMD_FAIL", 0.0)
            else:
                verdict.add("RSPAMD", answer.score)
        verdict.headers.extend(status_headers(verdict, self.policy.junk_threshold))
        reject = self.policy.reject_threshold
        if reject > 0 and verdict.score >= reject:
            verdict.ask(Action.REJECT, f"message content rejected as spam (score"
                        f" {verdict.score:.1f})", "550 5.7.1 Message content rejected as spam")
        else:
            _junk_if_over(verdict, self.policy)

    async def _virus(self, raw: bytes, verdict: Verdict) -> None:
        try:
            result = await scan(self.policy.clamd, raw, timeout=self.policy.clamd_timeout)
        except ClamdError as e:
            # Unscanned is not clean: the sender's server keeps the mail and tries again.
            log.warning("%s", e)
            verdict.ask(Action.TEMPFAIL, "virus scanner unavailable",
                        "451 4.7.1 Virus scanner unavailable, try again later")
            return
        if result.infected:
            verdict.add("VIRUS", 0.0)
            verdict.virus = result.name
            verdict.ask(Action.QUARANTINE, f"virus: {result.name}")

    async def close(self) -> None:
        if self.rspamd is not None:
            await self.rspamd.close()


class SpamPlacement:
    """Per recipient, in the pipeline: does this user's copy go to the Inbox or to Junk?

    The SMTP-time verdict (global model) stands unless the user has a say: a sender on the
    user's allow list takes the mail out of Junk; a user who has trained their own model gets
    the classifier's part of the score recomputed with their model combined with the global
    one. Quarantine and rejection are not the user's to override."""

    def __init__(self, model: SpamModel, policy: SpamPolicy) -> None:
        self.model = model
        self.policy = policy

    async def complete(self, verdict: workitems.Verdict, message: MessageLoader
                       ) -> tuple[workitems.Verdict, bytes]:
        """Score a message the SMTP check left unscored (`ContentCheck.scores_at_data`):
        the verdict with the score, and the X-Spam-* fields to prepend to the stored copy.
        Anything else comes back as it is."""
        if verdict.spam is None or verdict.spam.scored:
            return verdict, b""
        try:
            raw, parsed = await message()
        except NotFound:
            return verdict, b""  # delivered already, spool gone: the store dedupes anyway
        done = Verdict.from_record(verdict)
        await score(self.model, self.policy, raw, parsed, verdict.spam.sender, done)
        _junk_if_over(done, self.policy)
        added = b"".join(f"{name}: {value}\r\n".encode()
                         for name, value in status_headers(done, self.policy.junk_threshold))
        return done.record(), added

    async def junk(self, account_id: str, verdict: workitems.Verdict,
                   message: MessageLoader) -> bool:
        """Whether this account's copy belongs in Junk, from the SMTP-time checks' `verdict`;
        `message` loads the raw and parsed message when needed."""
        facts = verdict.spam or SpamFacts()
        was_junk = verdict.action is Action.JUNK
        sender = facts.sender
        if not sender:
            try:
                sender = sender_of((await message())[1])
            except NotFound:
                return was_junk  # delivered already, spool gone: the store dedupes anyway
        if sender and await self.model.sender_allowed(account_id, sender):
            return False
        score = verdict.score
        if was_junk and score < self.policy.junk_threshold:
            return True  # Junk for another reason than the score (DMARC p=quarantine)
        nspam, nham = await self.model.totals(account_id)
        if not (nspam or nham) or not self.policy.enabled:
            return was_junk
        try:
            raw, parsed = await message()
        except NotFound:
            return was_junk
        analysis = await analysed(raw, parsed)
        result = await bayes(self.model, self.policy, analysis.token_ids, account_id)
        if result is not None:
            score += result[1] - facts.bayes
        return score >= self.policy.junk_threshold
