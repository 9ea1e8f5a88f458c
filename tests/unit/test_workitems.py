"""The queue's work items: what older code queued is read back, what is written reads the same,
and the pipeline stands below the services (it imports none of them)."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest

import mailyard.pipeline
from mailyard.core.workitems import (
    Action,
    BadItem,
    FailedRecipient,
    InboundItem,
    OutboundItem,
    SpamFacts,
    Verdict,
)

OLD_SMTP_ITEM: dict[str, Any] = {
    "verdict": {"action": "junk", "reason": "DMARC quarantine policy", "score": 3.5,
                "symbols": {"DMARC_FAIL": 0.0, "SUBJ_ALL_CAPS": 3.5},
                "data": {"auth": {"spf": {"mfrom": "pass"}, "dkim": [], "arc": "none",
                                  "dmarc": "fail", "dmarc_policy": "quarantine",
                                  "from_domain": "remote.test"},
                         "spam": {"sender": "a@remote.test", "scored": False}}},
    "spool": "s01ABC", "mail_from": "a@remote.test", "recipients": ["alice@example.test"],
    "trace_length": 120, "received_at": 1_800_000_000_000, "peer": "192.0.2.1",
    "helo": "mx.remote.test",
}
"""An inbound item as DeliveryService.accept wrote it before the items were typed."""

OLD_SCORED_ITEM: dict[str, Any] = {
    "verdict": {"action": "accept", "reason": "", "score": 1.25, "symbols": {"BAYES": 1.25},
                "data": {"spam": {"fingerprint": "f1", "sender": "b@remote.test",
                                  "p": 0.7, "bayes": 1.25},
                         "policy_allowed": True}},
    "spool": "s01DEF", "mail_from": "", "recipients": ["a@example.test", "b@example.test"],
    "trace_length": 0, "received_at": 1_800_000_000_001, "peer": "", "helo": "",
}

OLD_SUBMISSION_LOCAL: dict[str, Any] = {
    "mail_from": "alice@example.test", "received_at": 1_800_000_000_002, "peer": "127.0.0.1",
    "helo": "client", "account_id": "a1", "submission": "q01SUB", "spool": "s01SUB_1",
    "recipients": ["bob@example.test"], "trace_length": 90,
}
"""A submission's item for its local recipients (services/submission.py)."""

OLD_SUBMISSION_REMOTE: dict[str, Any] = {
    **OLD_SUBMISSION_LOCAL, "spool": "s01SUB_2", "recipients": ["x@remote.test"],
    "domain": "remote.test", "submitted_at": 1_800_000_000.5, "delay_notified": False,
}

OLD_RETRIED_REMOTE: dict[str, Any] = {
    **OLD_SUBMISSION_REMOTE, "recipients": ["y@remote.test"], "delay_notified": True,
    "failed": [{"recipient": "x@remote.test", "reply": "550 5.1.1 no such user",
                "host": "mx.remote.test"}],
}
"""The same after an attempt that failed one recipient for good and deferred another."""

OLD_DSN: dict[str, Any] = {
    "spool": "s01OUT_1_fail1", "mail_from": "", "recipients": ["alice@example.test"],
    "trace_length": 0, "received_at": 1_800_000_000_003, "peer": "", "helo": "",
}


@pytest.mark.parametrize("payload", [OLD_SMTP_ITEM, OLD_SCORED_ITEM, OLD_SUBMISSION_LOCAL,
                                     OLD_DSN], ids=["smtp", "scored", "submission", "dsn"])
def test_an_inbound_item_queued_by_the_old_code_reads_and_writes_back_the_same(
        payload: dict[str, Any]) -> None:
    item = InboundItem.from_json(payload)
    assert item.to_json() == payload
    assert InboundItem.from_json(item.to_json()) == item


def test_the_verdict_of_an_old_item_is_typed() -> None:
    item = InboundItem.from_json(OLD_SMTP_ITEM)
    assert item.recipients == ("alice@example.test",)
    assert item.verdict is not None
    assert item.verdict.action is Action.JUNK and item.verdict.score == 3.5
    assert item.verdict.spam == SpamFacts(sender="a@remote.test", scored=False)
    assert item.verdict.notes["auth"]["dmarc"] == "fail"
    scored = InboundItem.from_json(OLD_SCORED_ITEM).verdict
    assert scored is not None and scored.spam == SpamFacts(
        sender="b@remote.test", fingerprint="f1", p=0.7, bayes=1.25)
    assert InboundItem.from_json(OLD_DSN).verdict is None
    assert InboundItem.from_json({**OLD_DSN, "verdict": {}}).verdict is None


@pytest.mark.parametrize("payload", [OLD_SUBMISSION_REMOTE, OLD_RETRIED_REMOTE],
                         ids=["first", "retried"])
def test_an_outbound_item_queued_by_the_old_code_reads_and_writes_back_the_same(
        payload: dict[str, Any]) -> None:
    item = OutboundItem.from_json(payload)
    assert item.to_json() == payload
    assert OutboundItem.from_json(item.to_json()) == item


def test_an_outbound_retry_written_before_failed_existed() -> None:
    item = OutboundItem.from_json({**OLD_RETRIED_REMOTE, "failed": []})
    assert item.failed == ()
    retried = OutboundItem.from_json(OLD_RETRIED_REMOTE)
    assert retried.failed == (FailedRecipient("x@remote.test", "550 5.1.1 no such user",
                                              "mx.remote.test"),)
    assert retried.delay_notified and retried.submitted_at == 1_800_000_000.5


@pytest.mark.parametrize(("payload", "why"), [
    ({**OLD_DSN, "spool": None}, "'spool'"),
    ({k: v for k, v in OLD_DSN.items() if k != "recipients"}, "'recipients'"),
    ({**OLD_DSN, "recipients": "alice@example.test"}, "'recipients'"),
    ({**OLD_DSN, "trace_length": True}, "'trace_length'"),
    ({**OLD_DSN, "verdict": {"action": "explode"}}, "action"),
])
def test_a_payload_that_is_no_inbound_item_is_refused(payload: dict[str, Any],
                                                        why: str) -> None:
    with pytest.raises(BadItem, match=why):
        InboundItem.from_json(payload)


def test_a_payload_that_is_no_outbound_item_is_refused() -> None:
    with pytest.raises(BadItem, match="'domain'"):
        OutboundItem.from_json(OLD_SUBMISSION_LOCAL)
    with pytest.raises(BadItem, match="'failed'"):
        OutboundItem.from_json({**OLD_SUBMISSION_REMOTE, "failed": [{"reply": "550"}]})


def test_a_verdict_round_trips() -> None:
    verdict = Verdict(Action.QUARANTINE, "virus: Eicar-Test", 0.0, {"VIRUS": 0.0},
                      spam=SpamFacts(sender="a@b"), virus="Eicar-Test")
    assert Verdict.from_json(verdict.to_json()) == verdict
    assert verdict.to_json()["data"] == {"spam": {"fingerprint": "", "sender": "a@b"},
                                         "virus": "Eicar-Test"}


def test_the_pipeline_imports_no_service() -> None:
    """The services use the pipeline (IMAP APPEND stores through it); the pipeline gets what it
    needs of them as ports from the composition root, so the two never import each other."""
    root = Path(mailyard.pipeline.__file__).parent
    found = []
    for path in sorted(root.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            found += [f"{path.name}:{node.lineno}: {n}" for n in names
                      if n == "mailyard.services" or n.startswith("mailyard.services.")]
    assert len(list(root.glob("*.py"))) >= 5
    assert not found, "\n".join(found)
