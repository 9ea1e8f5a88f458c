"""The services are the protocols' only door to mail: no protocol module reaches a store.

Read from the source, not by running it: every module under mailyard/protocols is parsed and
walked, and these are refused:

- any attribute named `store` (`service.store.get(...)`, `self.store = ...`): a service's store
  reached through it, or a protocol object holding one;
- an import of any store module but the ports (an engine: mailyard.store.sqlite, .postgres,
  .redis, .s3, .fs, .local, .nats; or what engines share: .subscription, .sqlsort, ...) or
  of a store port (MailStore, BlobStore, SearchIndex, PushSubscriptionStore, Queue) from
  mailyard.store.ports or one of its role modules (mailyard.store.ports.mailstore, ...). The
  rest of the ports (Account, Mailbox, NotFound, the records) is the vocabulary services
  speak, and is allowed.
"""

from __future__ import annotations

import ast
from pathlib import Path

import mailyard.protocols

PROTOCOLS = Path(mailyard.protocols.__file__).parent
STORE_PORTS = frozenset({"MailStore", "BlobStore", "SearchIndex", "PushSubscriptionStore",
                         "Queue"})


def _engine(module: str) -> bool:
    """A store module other than the ports: an engine, or a piece the engines share
    (store/subscription.py, store/sqlsort.py, store/emailrows.py)."""
    parts = module.split(".")
    return parts[:2] == ["mailyard", "store"] and len(parts) > 2 and parts[2] != "ports"


def reaches(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, what) for every way `tree` reaches a store."""
    hits: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr == "store":
            hits.append((node.lineno, f"{ast.unparse(node)}"))
        elif isinstance(node, ast.Import):
            hits += [(node.lineno, f"import {a.name}") for a in node.names if _engine(a.name)]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [a.name for a in node.names]
            if _engine(node.module):
                hits.append((node.lineno, f"from {node.module} import ..."))
            elif node.module == "mailyard.store":
                hits += [(node.lineno, f"from mailyard.store import {n}") for n in names
                         if n != "ports"]
            elif node.module == "mailyard.store.ports" \
                    or node.module.startswith("mailyard.store.ports."):
                hits += [(node.lineno, f"from mailyard.store.ports import {n}") for n in names
                         if n in STORE_PORTS]
    return sorted(hits)


def test_no_protocol_module_reaches_a_store() -> None:
    modules = sorted(PROTOCOLS.rglob("*.py"))
    assert len(modules) > 50  # the walk found the protocols
    found = [f"{path.relative_to(PROTOCOLS.parent.parent)}:{line}: {what}"
             for path in modules
             for line, what in reaches(ast.parse(path.read_text(), str(path)))]
    assert not found, "protocols reach a store; call a service instead:\n" + "\n".join(found)


def test_each_way_of_reaching_a_store_is_seen() -> None:
    """The check itself: each form it refuses is found, and the port's vocabulary is not."""
    source = """
from mailyard.store.ports import Account, NotFound, StoredObject
from mailyard.store.ports import PushSubscriptionStore
from mailyard.store.ports.mailstore import MailStore
from mailyard.store.ports.records import Mailbox
from mailyard.store.sqlite.pushsubs import SqlitePushSubscriptionStore
from mailyard.store import postgres
import mailyard.store.redis.counters
x = service.store.get_objects(1)
self.store = store
from mailyard.store.subscription import Subscription
from mailyard.store import ports
"""
    assert [line for line, _ in reaches(ast.parse(source))] == [3, 4, 6, 7, 8, 9, 10, 11]


def _model_imports(tree: ast.AST) -> list[int]:
    """Lines of `tree` that import the mail model (mailyard.model...)."""
    lines: list[int] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            lines += [node.lineno for a in node.names
                      if a.name == "mailyard.model" or a.name.startswith("mailyard.model.")]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and (
                node.module == "mailyard.model" or node.module.startswith("mailyard.model.")):
            lines.append(node.lineno)
    return lines


def test_the_model_is_reached_through_the_store_port_only() -> None:
    """The mail model is what the engines' MailStores run (model/writes.py, model/reads.py):
    services, the pipeline and the protocols call the port, so no one runs a model function
    on a transaction of their own making (an import batch is MailStore.store_imports)."""
    package = PROTOCOLS.parent
    found = [f"{path.relative_to(package.parent)}:{line}"
             for part in ("services", "pipeline", "protocols")
             for path in sorted((package / part).rglob("*.py"))
             for line in _model_imports(ast.parse(path.read_text(), str(path)))]
    assert _model_imports(ast.parse("from mailyard.model.writes import MailWrites\n"
                                    "import mailyard.model.labels\n")) == [1, 2]
    assert not found, "the model reached around the store port:\n" + "\n".join(found)
