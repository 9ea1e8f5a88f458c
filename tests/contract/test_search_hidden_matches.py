"""Gmail-scoped counts of metadata queries keep the Spam and Trash emails each query matches
for the states of the mailboxes that answer depends on (SearchService._hidden_matches, issue
18: looking those emails up again took 20-50 ms of every such count at 100,000 emails). A
flag changed on a hidden email, a hidden email given a label or put in the Inbox, and one
taken out of a label: every count on every engine is still what a plain evaluation of the
mailbox as it now is finds."""

from __future__ import annotations

from typing import Any

from mailyard.core import query as q
from mailyard.services.search import SearchService
from mailyard.store.ports import Account
from tests.contract.test_search_counts import Mail, bench_shapes, mailbox, matches

__all__ = ["mailbox"]  # the fixture, used by name below


async def test_hidden_matches_follow_flags_and_labels(
        mailstore: Any, search_index: Any, account: Account,
        mailbox: tuple[list[Mail], dict[str, str]]) -> None:
    mails, labels = mailbox
    service = SearchService(mailstore, search_index)
    shapes = bench_shapes(labels)

    async def agree() -> None:
        newest = sorted(mails, key=lambda m: -m.received_at)
        for node in shapes:
            expected = [m.id for m in newest if matches(node, m, labels)
                        and m.role not in ("junk", "trash")]
            counted = await service.search(account, node, limit=0, total=True)
            assert counted.total == len(expected), q.format(node)

    await agree()
    await agree()  # the kept answers, nothing changed
    assert service.hidden_matches, "metadata counts keep their hidden matches"
    junk = [m for m in mails if m.role == "junk"]
    trash = [m for m in mails if m.role == "trash"]
    # A flag of a hidden email: is:starred's store count and its hidden matches both move.
    starred = next(m for m in trash if "$flagged" not in m.keywords)
    await mailstore.set_keywords(account.id, [starred.id], add=["$flagged"])
    starred.keywords.add("$flagged")
    unread = next(m for m in junk if "$seen" in m.keywords)
    await mailstore.set_keywords(account.id, [unread.id], remove=["$seen"])
    unread.keywords.discard("$seen")
    await agree()
    # A hidden email put in the Inbox and given the Work label (their counters rise, the
    # hidden mailboxes' states do not change), and one taken out of a label.
    await mailstore.add_to_mailbox(account.id, [trash[1].id], labels["inbox"])
    await mailstore.add_to_mailbox(account.id, [trash[2].id, junk[0].id], labels["Work"])
    for m in (trash[2], junk[0]):
        m.labels.add("Work")
    labelled = next((m for m in trash + junk if "Receipts" in m.labels), None)
    if labelled is None:
        labelled = trash[3]
        await mailstore.add_to_mailbox(account.id, [labelled.id], labels["Receipts"])
        labelled.labels.add("Receipts")
        await agree()
    await mailstore.remove_from_mailbox(account.id, labels["Receipts"], [labelled.id])
    labelled.labels.discard("Receipts")
    await agree()
