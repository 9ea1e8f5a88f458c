"""Three `mailyard serve` nodes over shared engines (issue 21), with real clients.

The engines: a private 3-server NATS cluster with JetStream started here on free ports (queue
with replicas = 3, events), two PostgreSQL shard databases on a private server, a private
redis-server for the counters, and one blob directory every node's data_dir links to (one
machine standing in for an S3 bucket; the S3 adapter has its own suites). Each node has its
own data_dir, ports and node name, and nothing else of its own.

What is proven: a delivery through node A wakes IMAP IDLE on node B; the message is visible
over IMAP on every node; a JMAP push subscription made through one node is verified, listed,
delivered to and destroyed through the others; and under SMTP load spread over the nodes,
with senders that resend on another node whatever got no 250, a SIGKILL of node A loses no
acknowledged message and duplicates none.
"""

from __future__ import annotations

import asyncio
import contextlib
import imaplib
import json
import re
import smtplib
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.contract.test_counters_fallback import start_redis
from tests.e2e.server import Server, free_port
from tests.natsserver import NatsCluster

if TYPE_CHECKING:
    from tests.faults import PrivatePostgres

pytestmark = pytest.mark.slow

PASSWORD = "secret-password"
DEADLINE = 120.0
"""Generous: every wait below is on a condition, this only bounds a failure."""


class Cluster:
    def __init__(self, root: Path, postgres: PrivatePostgres | None = None,
                 **server: Any) -> None:
        """`postgres`: a server of the caller's (set up its own way), else one started here;
        `server`: more tests.e2e.server.Server options for every node (limits, dns)."""
        from tests.faults import PrivatePostgres

        self.root = root
        self.nats = NatsCluster(root / "nats", size=3).start()
        # A PostgreSQL of the cluster's own: three nodes' pools over two shards would take a
        # good share of the machine's server's connections from the suites beside it.
        self.postgres = postgres or PrivatePostgres()
        dsns = self.dsns = [self.postgres.database(f"mailyard_cluster_shard{i}")
                            for i in (0, 1)]
        self.redis_port = free_port()
        self.redis = start_redis(self.redis_port, root)
        blobs = root / "shared-blobs"
        blobs.mkdir()
        prefix = self.prefix = f"mycluster{int(time.time() * 1000) % 10**10}"
        self.nodes: dict[str, Server] = {}
        for name in ("a", "b", "c"):
            node = Server(root / name, metadata="", blobs="",
                          store={"metadata": dsns, "search": "postgresql",
                                 "counters": f"redis://127.0.0.1:{self.redis_port}/0"},
                          queue={"lease_seconds": 5.0}, **server)
            with node.config_path.open("a") as f:
                f.write("[cluster]\n"
                        f'node = "{name}"\n'
                        "nats = [" + ", ".join(f'"{u}"' for u in self.nats.urls) + "]\n"
                        'queue = "nats"\nevents = "nats"\nreplicas = 3\n'
                        f'prefix = "{prefix}"\n')
            node.data_dir.mkdir(parents=True)
            (node.data_dir / "blobs").symlink_to(blobs, target_is_directory=True)
            self.nodes[name] = node
        try:
            for user in ("alice", "bob", "carol"):
                self.nodes["a"].add_user(f"{user}@example.test", PASSWORD)
            for node in self.nodes.values():
                node.start()
        except BaseException:
            self.stop()  # a node that does not start leaves no engine of the cluster running
            raise

    def stop(self) -> None:
        for node in self.nodes.values():
            node.stop()
        self.nats.stop()
        self.redis.kill()
        self.redis.wait()
        self.postgres.remove()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    # Push subscriptions to a receiver of the test's own on loopback (plain http)
    c = Cluster(tmp_path_factory.mktemp("cluster"), limits={"push_loopback_http": True})
    try:
        yield c
    finally:
        c.stop()


def message(subject: str, to: str = "alice@example.test") -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "sender@remote.test"
    msg["To"] = to
    msg["Subject"] = subject
    msg["Message-ID"] = f"<{subject}@remote.test>"
    msg.set_content(f"body of {subject}\n")
    return msg


def send(node: Server, msg: EmailMessage, timeout: float = 30.0) -> None:
    with smtplib.SMTP("127.0.0.1", node.smtp_port, timeout=timeout) as smtp:
        smtp.send_message(msg)


def imap(node: Server, user: str) -> imaplib.IMAP4:
    client = imaplib.IMAP4("127.0.0.1", node.imap_port, timeout=30)
    client.login(user, PASSWORD)
    return client


def subjects(node: Server, user: str) -> list[str]:
    """The Subject of every message in the user's INBOX, read over IMAP on `node`."""
    client = imap(node, user)
    try:
        typ, data = client.select("INBOX", readonly=True)
        assert typ == "OK", data
        if int(data[0] or 0) == 0:
            return []
        typ, fetched = client.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        assert typ == "OK", fetched
        out = []
        for part in fetched:
            if isinstance(part, tuple):
                m = re.search(rb"Subject: (\S+)", part[1])
                if m:
                    out.append(m.group(1).decode())
        return out
    finally:
        client.logout()


def test_idle_on_node_b_wakes_on_delivery_through_node_a(cluster: Cluster) -> None:
    a, b, c = (cluster.nodes[n] for n in "abc")
    subject = f"idle-{time.time_ns()}"
    client = imap(b, "alice@example.test")
    try:
        typ, data = client.select("INBOX")
        before = int(data[0] or 0)
        tag = client._new_tag().decode()  # type: ignore[attr-defined]
        client.send(f"{tag} IDLE\r\n".encode())
        assert client.readline().startswith(b"+")
        sent = time.monotonic()
        threading.Thread(target=send, args=(a, message(subject)), daemon=True).start()
        client.sock.settimeout(DEADLINE)
        while True:  # untagged responses until the new message's EXISTS
            line = client.readline()
            assert line, "the connection closed while idling"
            m = re.match(rb"\* (\d+) EXISTS", line)
            if m and int(m.group(1)) > before:
                break
        woke = time.monotonic() - sent
        client.send(b"DONE\r\n")
        while not client.readline().startswith(tag.encode()):
            pass
    finally:
        with contextlib.suppress(Exception):
            client.logout()
    print(f"IDLE on node b woke {woke * 1000:.0f} ms after SMTP to node a began")
    for node in (a, b, c):
        assert subject in subjects(node, "alice@example.test"), node.root.name


def test_jmap_eventsource_on_node_c_hears_delivery_through_node_a(cluster: Cluster) -> None:
    """RFC 8620 7.3 push across nodes: an EventSource opened on node C gets a StateChange
    for alice's Email when a message arrives through node A."""
    import httpx

    a, c = cluster.nodes["a"], cluster.nodes["c"]
    url = (f"https://127.0.0.1:{c.http_port}/jmap/eventsource"
           "?types=Email&closeafter=state&ping=0")
    opened, changes = threading.Event(), []

    def listen() -> None:
        with httpx.stream("GET", url, auth=("alice@example.test", PASSWORD), timeout=DEADLINE,
                          verify=False) as r:  # the node's self-signed certificate
            assert r.status_code == 200
            opened.set()
            for line in r.iter_lines():
                if line.startswith("data: "):
                    changes.append(json.loads(line[6:]))

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    assert opened.wait(DEADLINE)
    # The node subscribed before answering 200; its NATS subscription follows one round trip
    # later, far sooner than an SMTP session and the pipeline can publish a delivery.
    send(a, message(f"push-{time.time_ns()}"))
    listener.join(DEADLINE)  # closeafter=state: the stream ends after the first change
    assert not listener.is_alive(), "no push on node c"
    assert changes and changes[0]["@type"] == "StateChange", changes
    [states] = changes[0]["changed"].values()
    assert "Email" in states, changes


def test_push_subscription_made_on_one_node_is_the_same_on_every_node(cluster: Cluster
                                                                      ) -> None:
    """JMAP PushSubscription (RFC 8620 7.2) across nodes: created through node A (whose
    PushVerification reaches the receiver), verified through node C, listed through node B;
    a delivery through node B is then pushed; destroyed through node B, it is gone on A."""
    from tests.e2e.test_jmap_pushsub import Receiver

    a, b, c = (cluster.nodes[n] for n in "abc")
    user = "alice@example.test"

    def call(node: Server, name: str, **args: Any) -> dict[str, Any]:
        return jmap_call(node, user, name, **args)

    receiver = Receiver()
    try:
        path = f"/cluster/{time.time_ns()}"
        created = call(a, "PushSubscription/set", create={"k": {
            "deviceClientId": "phone", "url": receiver.url(path), "types": ["Email"]}})
        assert created["notCreated"] is None, created
        sub_id = created["created"]["k"]["id"]
        [verification] = receiver.wait(path, 1, DEADLINE)
        code = json.loads(verification.body)["verificationCode"]
        updated = call(c, "PushSubscription/set", update={sub_id: {"verificationCode": code}})
        assert sub_id in (updated["updated"] or {}), updated
        listed = call(b, "PushSubscription/get", ids=None)["list"]
        assert [(s["id"], s["verificationCode"]) for s in listed] == [(sub_id, code)], listed

        send(b, message(f"webpush-{time.time_ns()}"))
        pushes = receiver.wait(path, 2, DEADLINE)
        assert len(pushes) >= 2, "no StateChange pushed after a delivery"
        assert json.loads(pushes[1].body)["@type"] == "StateChange", pushes[1].body

        destroyed = call(b, "PushSubscription/set", destroy=[sub_id])
        assert destroyed["destroyed"] == [sub_id], destroyed
        assert call(a, "PushSubscription/get", ids=None)["list"] == []
    finally:
        receiver.close()


def jmap_call(node: Server, user: str, name: str, **args: Any) -> dict[str, Any]:
    import httpx

    r = httpx.post(f"https://127.0.0.1:{node.http_port}/jmap/api", auth=(user, PASSWORD),
                   verify=False, timeout=DEADLINE, json={
                       "using": ["urn:ietf:params:jmap:core"],
                       "methodCalls": [[name, args, "c0"]]})
    assert r.status_code == 200, r.text
    [[answer, result, _]] = r.json()["methodResponses"]
    assert answer == name, result
    return result  # type: ignore[no-any-return]


def test_a_change_is_pushed_once_by_the_cluster_and_not_after_destroy(cluster: Cluster
                                                                       ) -> None:
    """Web Push (RFC 8620 7.2) is one cluster's work, not each node's: a subscription that
    nodes A and C both handled (updated through A, verified through C) gets one StateChange
    per delivery, whichever node delivers; destroyed through node B, no node pushes to it
    once the other nodes' reading of the account's subscriptions (webpush.REFRESH) is old."""
    from mailyard.protocols.jmap.webpush import REFRESH
    from tests.e2e.test_jmap_pushsub import Receiver

    a, b, c = (cluster.nodes[n] for n in "abc")
    user = "carol@example.test"
    receiver = Receiver()

    def subscribe(path: str) -> str:
        made = jmap_call(a, user, "PushSubscription/set", create={"k": {
            "deviceClientId": path, "url": receiver.url(path), "types": ["Email"]}})
        sub_id: str = made["created"]["k"]["id"]
        [verification] = receiver.wait(path, 1, DEADLINE)
        code = json.loads(verification.body)["verificationCode"]
        done = jmap_call(c, user, "PushSubscription/set",
                         update={sub_id: {"verificationCode": code}})
        assert sub_id in (done["updated"] or {}), done
        return sub_id

    def states(path: str) -> list[str]:
        """The Email states pushed to `path` (after its PushVerification)."""
        return [state["Email"] for push in receiver.at(path)[1:]
                for state in json.loads(push.body)["changed"].values()]

    try:
        one, other = f"/once/{time.time_ns()}", f"/other/{time.time_ns()}"
        sub_id = subscribe(one)
        subscribe(other)
        renewed = jmap_call(a, user, "PushSubscription/set", update={sub_id: {
            "expires": None}})  # node A has handled it too now
        assert sub_id in (renewed["updated"] or {}), renewed
        for n, node in enumerate((a, b, c, a, b, c)):
            send(node, message(f"push-once-{n}-{time.time_ns()}", to=user))
            assert len(receiver.wait(one, n + 2, DEADLINE)) >= n + 2, "no push"
            receiver.wait(other, n + 2, DEADLINE)
        time.sleep(2.0)  # let a duplicate, if a node were to send one, arrive
        pushed = states(one)
        assert len(pushed) == len(set(pushed)) == 6, pushed

        assert jmap_call(b, user, "PushSubscription/set",
                         destroy=[sub_id])["destroyed"] == [sub_id]
        time.sleep(REFRESH + 1.0)  # the documented bound for the other nodes to notice
        before, seen = len(receiver.at(one)), len(receiver.at(other))
        for n, node in enumerate((a, b, c)):
            send(node, message(f"push-gone-{n}-{time.time_ns()}", to=user))
            assert len(receiver.wait(other, seen + n + 1, DEADLINE)) >= seen + n + 1
        time.sleep(2.0)
        assert len(receiver.at(one)) == before, states(one)
    finally:
        receiver.close()


def test_cluster_status_sees_every_node_the_queue_and_the_engines(cluster: Cluster) -> None:
    """`mailyard cluster status` on any node: the three heartbeats, the one JetStream queue
    with its replicas, both shards, every engine up (exit status 0)."""
    deadline = time.monotonic() + DEADLINE
    while True:
        result = cluster.nodes["c"].cli("cluster", "status", check=False)
        out = result.stdout.decode()
        if all(f"\n  {n}\t" in out for n in "abc") or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert result.returncode == 0, out + result.stderr.decode()
    for name in "abc":
        assert f"\n  {name}\tpid " in out, out
    assert "nodes (3 seen in NATS" in out, out
    assert "queue (NATS JetStream): ready" in out, out
    assert "replicas 3 (leader n" in out, out
    for engine in ("nats: ok", "mailstore: ok", "blobs: ok", "redis: ok"):
        assert engine in out, out
    assert out.count("shard ") == 2 and "/mailyard_cluster_shard1" in out, out


def spread_load(nodes: list[Server], total: int, fault: Callable[[], None],
                tag: str) -> tuple[set[str], Counter[str], int]:
    """Four senders spread `total` messages over `nodes`; whatever got no 250 (the node died,
    refused, or the connection broke) is sent again to the next node. `fault` runs once a
    third of them are acknowledged. Returns the acknowledged subjects, what bob's INBOX holds
    of them (subject -> copies, read over IMAP on the last node) and how many sends were
    retried."""
    senders = 4
    run = f"{tag}-{time.time_ns()}"
    acknowledged: set[str] = set()
    resent: list[str] = []
    lock = threading.Lock()
    progress = threading.Semaphore(0)

    def sender(k: int) -> None:
        for i in range(k, total, senders):
            subject = f"{run}-{i}"
            deadline = time.monotonic() + DEADLINE
            for attempt in range(1000):
                node = nodes[(i + attempt) % len(nodes)]
                try:
                    send(node, message(subject, "bob@example.test"), timeout=15)
                except (OSError, smtplib.SMTPException):
                    assert time.monotonic() < deadline, f"{subject} never got a 250"
                    with lock:
                        resent.append(subject)
                    time.sleep(0.05)
                    continue
                with lock:
                    acknowledged.add(subject)
                progress.release()
                break

    threads = [threading.Thread(target=sender, args=(k,)) for k in range(senders)]
    for t in threads:
        t.start()
    for _ in range(total // 3):
        assert progress.acquire(timeout=DEADLINE)
    fault()
    for t in threads:
        t.join(DEADLINE)
    assert len(acknowledged) == total, "every message ends with a 250 from some node"

    reader = nodes[-1]
    deadline = time.monotonic() + DEADLINE
    while True:
        got = Counter(s for s in subjects(reader, "bob@example.test") if s.startswith(run))
        if set(got) >= acknowledged or time.monotonic() > deadline:
            return acknowledged, got, len(resent)
        time.sleep(0.5)


def test_sigkill_of_a_node_under_load_loses_and_duplicates_nothing(cluster: Cluster) -> None:
    """240 messages over the three nodes; node A is SIGKILLed a third of the way in (SMTP
    sessions in DATA, items leased by its worker). Every acknowledged message arrives exactly
    once, and shows alike on another node."""
    nodes = [cluster.nodes[n] for n in "abc"]
    acknowledged, got, resent = spread_load(nodes, 240, nodes[0].kill, "load")
    lost = acknowledged - set(got)
    duplicated = {s: n for s, n in got.items() if n > 1}
    print(f"node a SIGKILLed: {resent} sends retried on another node; {len(got)} distinct"
          f" delivered, lost {len(lost)}, duplicated {len(duplicated)}")
    assert not lost, f"acknowledged but lost: {sorted(lost)[:10]}"
    assert not duplicated, f"delivered twice: {duplicated}"
    on_b = Counter(s for s in subjects(nodes[1], "bob@example.test") if s in got)
    assert on_b == got, "node b shows the same mailbox as node c"


def test_sigkill_of_the_jetstream_leader_under_load(cluster: Cluster) -> None:
    """The NATS server leading the queue's stream is SIGKILLed under load: the other two
    elect a new leader (replicas = 3), clients reconnect; nothing acknowledged is lost,
    nothing is duplicated. The server is started again afterwards."""
    import nats

    from mailyard.store.nats.connection import stream_name

    async def leader() -> str:
        nc = await nats.connect(cluster.nats.urls)
        try:
            info = await nc.jsm().stream_info(stream_name(cluster.prefix, "queue"))
            assert info.cluster is not None and info.cluster.leader
            return str(info.cluster.leader)
        finally:
            await nc.close()

    victim = next(n for n in cluster.nats.nodes if n.name == asyncio.run(leader()))
    nodes = [cluster.nodes[n] for n in "bc" if cluster.nodes[n].process is not None]
    try:
        acknowledged, got, resent = spread_load(nodes, 150, victim.kill, "leader")
    finally:
        victim.start()
        asyncio.run(cluster.nats.wait_ready())
    lost = acknowledged - set(got)
    duplicated = {s: n for s, n in got.items() if n > 1}
    print(f"JetStream leader {victim.name} SIGKILLed (new leader {asyncio.run(leader())}):"
          f" {resent} sends retried; {len(got)} distinct delivered, lost {len(lost)},"
          f" duplicated {len(duplicated)}")
    assert not lost, f"acknowledged but lost: {sorted(lost)[:10]}"
    assert not duplicated, f"delivered twice: {duplicated}"
    nodes[-1].wait_queue_empty(DEADLINE)  # `mailyard queue stats`: the one queue, drained


def readyz(node: Server) -> int:
    import httpx

    try:
        return httpx.get(f"https://127.0.0.1:{node.http_port}/readyz", verify=False,
                         timeout=30).status_code
    except httpx.HTTPError:
        return 0


def test_with_nats_down_smtp_never_says_250_and_readyz_fails(cluster: Cluster) -> None:
    """Every NATS server stopped: a node cannot make mail durable in the queue, so SMTP
    answers 4xx (the sender keeps the message) and /readyz 503 (a load balancer takes the
    node out); when NATS is back, both recover on their own and the mail flows again."""
    b = cluster.nodes["b"]
    deadline = time.monotonic() + DEADLINE  # ready again after the previous test's faults
    while readyz(b) != 200:
        assert time.monotonic() < deadline, "node b never became ready"
        time.sleep(0.5)
    run = time.time_ns()
    for server in cluster.nats.nodes:
        server.kill()
    try:
        with pytest.raises(smtplib.SMTPResponseException) as refused:
            send(b, message(f"outage-{run}", "bob@example.test"), timeout=60)
        assert 400 <= refused.value.smtp_code < 500, refused.value
        assert readyz(b) == 503
        down = b.cli("cluster", "status", check=False)
        assert down.returncode == 1, down.stdout.decode()
        assert "nats: DOWN" in down.stdout.decode(), down.stdout.decode()
    finally:
        for server in cluster.nats.nodes:
            server.start()
    asyncio.run(cluster.nats.wait_ready())
    deadline = time.monotonic() + DEADLINE
    while True:  # the node reconnects by itself; until it has, 4xx again is fine
        try:
            send(b, message(f"after-{run}", "bob@example.test"))
            break
        except smtplib.SMTPResponseException as e:
            assert 400 <= e.smtp_code < 500 and time.monotonic() < deadline, e
            time.sleep(0.5)
    while f"after-{run}" not in subjects(b, "bob@example.test"):
        assert time.monotonic() < deadline, "the message after the outage never arrived"
        time.sleep(0.5)
    assert readyz(b) == 200


def test_with_redis_down_mail_and_logins_go_on_counted_per_node(cluster: Cluster) -> None:
    """Redis only holds counters: stopped, a node logs one warning and counts login failures
    on its own; logins, SMTP and /readyz are not affected. Back, it is used again."""
    b = cluster.nodes["b"]
    cluster.redis.kill()
    cluster.redis.wait()
    run = time.time_ns()
    try:
        send(b, message(f"no-redis-{run}", "bob@example.test"))
        deadline = time.monotonic() + DEADLINE
        while f"no-redis-{run}" not in subjects(b, "bob@example.test"):  # an IMAP login
            assert time.monotonic() < deadline, "no delivery while Redis is down"
            time.sleep(0.5)
        assert readyz(b) == 200
        log = b.log_path.read_text()
        assert log.count("Redis unavailable") == 1, log[-3000:]
    finally:
        cluster.redis = start_redis(cluster.redis_port, cluster.root)
    status = b.cli("cluster", "status", check=False)
    assert status.returncode == 0 and "redis: ok" in status.stdout.decode(), status
