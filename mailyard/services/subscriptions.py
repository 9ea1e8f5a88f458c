"""Subscriptions: the account's list of mailbox names its clients want shown (RFC 3501
§6.3.6-6.3.9, RFC 9051 §6.3.7, RFC 5258): IMAP SUBSCRIBE/LSUB/LIST (SUBSCRIBED) and JMAP's
Mailbox isSubscribed read and write it through here."""

from __future__ import annotations

from mailyard.store.ports import Account, EventBus, Mailbox, MailStore


class Subscriptions:
    def __init__(self, store: MailStore, bus: EventBus) -> None:
        self.store = store
        self.bus = bus

    async def subscribe(self, account: Account, mailbox: Mailbox, subscribed: bool) -> None:
        """IMAP SUBSCRIBE / UNSUBSCRIBE (not a JMAP-visible change by itself)."""
        await self.store.set_subscribed(account.id, mailbox.id, subscribed)

    async def set_subscription(self, account: Account, mailbox: Mailbox,
                               subscribed: bool) -> None:
        """`subscribe` that also tells the push listeners: a JMAP client sees isSubscribed
        in Mailbox/get, so its change is a Mailbox change to push (IMAP's LSUB is not)."""
        await self.store.set_subscribed(account.id, mailbox.id, subscribed)
        state = (await self.store.get_account_by_id(account.id)).modseq
        await self.bus.publish(account.id, state)
