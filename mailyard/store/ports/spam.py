"""The SpamModel port: the Bayesian model's token counts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from mailyard.core.spam import Counts


class SpamModel(Protocol):
    """What the content classifier learns: token counts of the global model (model "") and of
    each account (model = account id), the senders each account said are not spam, and the
    reports of many users against one sender or one content (collaborative filtering).

    Tokens are the signed 64-bit ids of core.spam. `learn` is idempotent per (account, message):
    the same lesson twice changes nothing, and the opposite lesson first takes the earlier one
    back, so a user who moves a mail into Junk and out again leaves the model as a single ham
    lesson would, whatever the protocol retried.
    """

    async def counts(self, model: str, tokens: Sequence[int]) -> Counts:
        """The model's totals and the counts of those of `tokens` it has seen."""
        ...

    async def totals(self, model: str) -> tuple[float, float]:
        """(spam, ham) messages the model has learnt."""
        ...

    async def learn(self, account_id: str, message_key: str, tokens: Sequence[int],
                    is_spam: bool, *, global_weight: float) -> bool:
        """Teach the account's model (weight 1) and the global one (`global_weight`) in one
        transaction; returns False when this lesson was already learnt."""
        ...

    async def report(self, kind: str, key: str, account_id: str, at: float) -> None:
        """Account says `key` (a sender address, a content fingerprint) is spam."""
        ...

    async def retract(self, kind: str, key: str, account_id: str) -> None: ...

    async def reporters(self, kind: str, key: str, since: float) -> int:
        """How many distinct accounts reported `key` at or after `since`."""
        ...

    async def allow_sender(self, account_id: str, sender: str) -> None: ...

    async def disallow_sender(self, account_id: str, sender: str) -> None: ...

    async def sender_allowed(self, account_id: str, sender: str) -> bool: ...

    def close(self) -> None: ...
