"""Configuration: an optional TOML file over the defaults of DESIGN.md.

Every subcommand resolves the same file (`--config`, then `$MAILYARD_CONFIG`, then
`./mailyard.toml`, then built-in defaults) so that admin commands act on the data the server
serves. Unknown keys and bad values stop start-up with a message naming the key: a typo in a
mail server's config must never silently fall back to a default.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any

from mailyard.core.indexlimits import Limits as IndexLimits
from mailyard.core.spampolicy import SpamPolicy


class ConfigError(ValueError):
    """A config file that cannot be used; the message names the offending key."""


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
"""What `[log] level` and `serve --log-level` take (any case)."""

_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")


def domain_name(text: str) -> str:
    """`text` as a domain name in its stored form: lower-case, no final dot, every label in
    ASCII (an internationalised label as its A-label, "xn--...", which is what DNS and SMTP
    carry, so that `bücher.example` and `xn--bcher-kva.example` are one domain). Raises
    ValueError saying why `text` is not a domain name: labels are letters, digits and inner
    hyphens, 1 to 63 octets each, 253 in all (RFC 1035 §2.3.1, RFC 5890)."""
    name = text[:-1] if text.endswith(".") else text
    if not name:
        raise ValueError(f"{text!r} is not a domain name: it is empty")
    if not name.isascii():
        import idna  # only for the rare non-ASCII name: admin commands start faster without

        try:
            name = idna.encode(name, uts46=True).decode("ascii")
        except UnicodeError as e:  # idna.IDNAError is one
            raise ValueError(f"{text!r} is not a domain name: {e}") from None
    name = name.lower()
    if len(name) > 253:
        raise ValueError(f"{text!r} is not a domain name: {len(name)} octets, 253 at most")
    labels = name.split(".")
    for label in labels:
        if not label:
            raise ValueError(f"{text!r} is not a domain name: an empty label (\"..\")")
        if len(label) > 63:
            raise ValueError(f"{text!r} is not a domain name: label {label[:20]!r}... has"
                             f" {len(label)} octets, 63 at most")
        if not _LABEL.fullmatch(label):
            raise ValueError(f"{text!r} is not a domain name: label {label!r} (letters, digits"
                             " and hyphens, not at either end)")
        if label.startswith("xn--"):
            import idna

            try:
                idna.decode(label)
            except (idna.IDNAError, UnicodeError) as e:
                raise ValueError(f"{text!r} is not a domain name: {label!r} is no valid"
                                 f" A-label ({e})") from None
    if labels[-1].isdigit():
        raise ValueError(f"{text!r} is not a domain name: it ends in a number (an IP address?)")
    return name


def domain_display(name: str) -> str:
    """A stored domain as an admin reads it: its Unicode form beside an xn-- name."""
    if "xn--" not in name:
        return name
    import idna

    try:
        return f"{name} ({idna.decode(name)})"
    except (idna.IDNAError, UnicodeError):
        return name


@dataclass(frozen=True)
class Listen:
    """Where each listener binds, as "host:port" ("[::1]:port" for IPv6); "" turns it off.
    The defaults are loopback ports above 1024 so that a first run needs no privileges; a
    public server uses 0.0.0.0 (or ::) and the standard ports."""

    smtp: str = "127.0.0.1:2525"
    """SMTP from other servers (the MX; 25 in production)."""
    submission: str = "127.0.0.1:2587"
    """Mail submission with STARTTLS and AUTH (587 in production)."""
    submissions: str = "127.0.0.1:2465"
    """Mail submission over implicit TLS (465 in production, RFC 8314)."""
    imap: str = "127.0.0.1:2143"
    """IMAP with STARTTLS (143 in production)."""
    imaps: str = "127.0.0.1:2993"
    """IMAP over implicit TLS (993 in production)."""
    pop3: str = "127.0.0.1:2110"
    """POP3 with STLS (110 in production)."""
    pop3s: str = "127.0.0.1:2995"
    """POP3 over implicit TLS (995 in production)."""
    http: str = "127.0.0.1:8080"
    """HTTPS: JMAP, its push and WebSocket, the webmail and /metrics."""
    managesieve: str = ""
    """ManageSieve (RFC 5804), STARTTLS then AUTH, for Sieve filter editors: off by
    default; "0.0.0.0:4190" (its port everywhere) turns it on."""


@dataclass(frozen=True)
class Addresses:
    """Role addresses (RFC 2142) of every local domain."""

    postmaster: str = ""
    """The account that receives postmaster@ every local domain (RFC 5321 §4.5.1 requires
    the address to be accepted): mail to postmaster@example.org goes to the account
    postmaster@example.org if there is one, else to this account. "" (or an account that
    does not exist): to the domain's first account, the oldest (on a new server the first
    `user add`, usually the admin's own). A domain with no account at all then has no one
    to receive it: RCPT answers 451 and start-up warns."""
    abuse: str = ""
    """The account that receives abuse@ every local domain, the same way; "": abuse@ only
    where such an account exists."""


@dataclass(frozen=True)
class Routing:
    """Aliases, plus-addressing and forwarding (`mailyard alias`, `mailyard domain alias`)."""

    recipient_delimiter: str = "+"
    """Subaddressing (RFC 5233): alice+news@example.org is delivered to alice@example.org,
    with the address kept in a Delivered-To field (searchable as deliveredto:). "" turns it
    off."""
    srs_domain: str = ""
    """The domain of the envelope sender written on forwarded mail (SRS), whose SPF must
    authorise this server and whose MX must be this server, so bounces come back; "": the
    hostname."""
    srs_secret: str = ""
    """The SRS key; "": one generated on first use, kept in the directory database with
    PostgreSQL metadata (every node of a cluster uses that one) and in data_dir/srs.secret
    otherwise."""
    max_received: int = 100
    """A message with more Received fields than this is looping: it is stopped with a DSN
    (RFC 5321 §6.3: a large threshold, normally at least 100)."""
    hold_spam_forwards: bool = True
    """Spam is never forwarded to a remote address (an alias's target, a Sieve redirect).
    What would have gone there is held in quarantine (`mailyard dlq list`), or with false
    dropped with a log line; an alias's local copy goes to Junk either way."""


@dataclass(frozen=True)
class HTTP:
    """The HTTPS listener (JMAP and the webmail)."""

    allowed_origins: list[str] = field(default_factory=list)
    """Origins (scheme://host[:port]) whose pages may open /jmap/ws or POST with a user's
    browser credentials besides the origin a request is addressed to: the public URL when a
    proxy in front rewrites Host, the webmail's origin when another host serves it. Another
    site's page is refused with 403 (mailyard/protocols/jmap/origin.py)."""


@dataclass(frozen=True)
class Limits:
    """What one message, client or account may take."""

    message_size: int = 36_700_160
    """Bytes (SMTP SIZE, IMAP APPEND, JMAP upload); 35 MB so that a 25 MB attachment fits
    after base64."""
    recipients_per_message: int = 100
    """RCPT TO per inbound message; more get 452 4.5.3."""
    connections_per_ip: int = 20
    """Simultaneous SMTP connections from one client address."""
    messages_per_ip_per_minute: int = 600
    """Inbound messages per minute from one client address; more get 451 4.7.1."""
    smtp_timeout: float = 300.0
    """Seconds of silence before an SMTP connection is closed (RFC 5321 §4.5.3.2)."""
    smtp_line_octets: int = 1_048_576
    """The longest line (octets, without CRLF) an SMTP message may carry, inbound and on
    submission; a longer one gets 500 5.5.2. RFC 5321 says 998, but real senders go past it
    (Outlook, one-line HTML parts, unwrapped base64) and Postfix and Dovecot take such mail,
    so it is stored byte-exact. 1 MiB is a thousand times the RFC's line and ninety times the
    longest in the test corpora (11,677 octets from Outlook), the same bound as a header
    block's; it also bounds what one connection's reader buffers of an unfinished line.
    Raise it as far as message_size to take any line, as Postfix does."""
    default_quota: int = 10 * 1024**3
    """Bytes per account unless `mailyard user add --quota` says otherwise."""
    attachment_dedup_min_size: int = 2048
    """Attachments from this size (bytes) up are stored once however many emails carry them."""
    query_seconds: float = 10.0
    """How long one search or count (IMAP SEARCH/SORT, JMAP Email/query, `mailyard search`) may
    run before it is cancelled and answered with the protocol's "too much" error (IMAP NO
    [LIMIT], JMAP serverUnavailable): one client's query cannot hold the server's reads
    for longer."""
    push_loopback_http: bool = False
    """JMAP PushSubscription urls may be http:// to loopback (a test's receiver); off: https
    to public hosts only."""


@dataclass(frozen=True)
class Queue:
    """The work queue between the listeners and the pipeline (delivery, sending, indexing)."""

    max_attempts: int = 5
    """Tries of one item before it goes to the dead-letter queue (`mailyard dlq`)."""
    spool_tries: int = 3
    """Tries that must each find an accepted message's spooled octets missing before its
    item is buried: an object store that is restarting may answer "no such key" for a
    moment, so it is asked again after the usual backoff. max_attempts still bounds it."""
    backoff_base: float = 30.0
    """Seconds before the first retry; doubles per attempt up to backoff_max."""
    backoff_max: float = 3600.0
    """Longest wait (seconds) between two retries."""
    lease_seconds: float = 60.0
    """Seconds a worker holds an item; one it has not finished by then is taken back."""
    batch_size: int = 32
    """Items a worker takes at once."""
    dead_letter_days: float = 30.0
    """Days a dead letter (`mailyard dlq`: a failed delivery, a quarantined virus, spam held
    from remote targets) is kept; `mailyard gc` deletes older ones, and then their spooled
    message. 0 keeps them until dropped."""
    gc_interval: float = 86400.0
    """Seconds between the runs of `mailyard gc` that `serve` makes on its own (expired dead
    letters, then unreferenced blobs past the grace period), the first one interval after
    start; 0: only when an admin runs `mailyard gc`."""
    poll_interval: float = 0.5
    """Seconds between looks at an empty queue when no event woke the worker."""
    worker_nice: int = 10
    """Niceness of `--workers N` processes (0 = as the listeners). Stored mail waits safely in
    the queue; a client waits for its reply. When the cores are all busy, the listeners go
    first: on a 2-core machine this kept the 20-session SMTP ingest median flat with the
    inbound checks on (docs/BENCHMARKS.md), and workers still get every core a listener does
    not use. On one core a long burst lets the queue grow until the burst ends."""


@dataclass(frozen=True)
class IMAP:
    """The IMAP and IMAPS listeners."""

    max_line: int = 65_536
    """Longest command line (literals not counted); longer gets BAD [TOOBIG]."""
    idle_timeout: float = 1800.0
    """Seconds of silence (outside IDLE: RFC 9051 §5.4 asks at least 30 minutes) before BYE."""
    connections_per_ip: int = 50
    """Simultaneous connections from one client address."""
    connections_per_user: int = 50
    """Simultaneous logged-in connections of one account."""
    fetch_cache: int = 8 * 1024 * 1024
    """Octets of recently fetched messages each IMAP process keeps for the next FETCH of them
    (a client reads the header block, then the text, then again from another device;
    re-assembling a message from its blobs was a fifth of the listener's time under the
    IMAP mix). Messages over 128 KiB are not kept. 0: none kept."""
    processes: int = 1
    """Processes accepting IMAP connections on the same ports (SO_REUSEPORT; the kernel spreads
    new connections over them). One event loop runs Python on one core: on 2 cores the IMAP
    command mix (bench/imap_load.py) measured a median of 1,885 commands/s with 2 against
    1,268 with 1. The per-IP, per-user and auth-failure limits are counted in each process,
    so with N processes a client may get up to N times them."""


@dataclass(frozen=True)
class SMTP:
    """The MX listener (`[listen] smtp`)."""

    processes: int = 1
    """Processes accepting MX connections on the same port (SO_REUSEPORT; the kernel spreads
    new connections over them), each making mail durable in the same queue. One event loop
    runs Python on one core: several let an SMTP burst use every core. `[limits]
    connections_per_ip` and `messages_per_ip_per_minute` are counted in each process, so with
    N processes a client may get up to N times them; the listener's /metrics counts only the
    mail it accepted itself."""


@dataclass(frozen=True)
class POP3:
    """The POP3 and POP3S listeners."""

    dele: str = "trash"
    """What DELE does at QUIT: "trash" moves the message to Trash, "expunge" removes it for
    good (unless a mailbox other than the Inbox still holds it)."""
    max_line: int = 1024
    """Longest command line; RFC 2449 §4 lets clients send 255 octets, longer gets -ERR."""
    idle_timeout: float = 600.0
    """Seconds of silence before the connection is closed (RFC 1939 §3: at least 10 minutes)."""
    connections_per_ip: int = 50
    """Simultaneous connections from one client address."""


@dataclass(frozen=True)
class Auth:
    """Logins on every protocol."""

    plaintext_on_loopback: bool = False
    """Allow LOGIN / AUTH PLAIN without TLS from loopback (127.0.0.0/8, ::1: tests, local tools)."""
    failures_per_network_per_hour: int = 30
    """Failed logins (any protocol) from one IPv4 address or IPv6 prefix before its logins are
    refused, the right password included, until failures age out of the hour; 0 = no limit."""
    failures_per_account_per_hour: int = 100
    """Failed logins to one account from anywhere before its logins are refused the same way
    (a distributed guess); 0 = no limit (services/loginguard.py)."""
    ipv6_prefix: int = 64
    """IPv6 clients are counted by this prefix (one host usually holds a whole /64)."""


@dataclass(frozen=True)
class DNS:
    """The resolver of outbound delivery and the inbound checks."""

    nameservers: list[str] = field(default_factory=list)
    """"host" or "host:port" of the resolvers every lookup of the server uses (MX, A/AAAA,
    TXT for DKIM, SPF, DMARC, MTA-STS); empty: the system's /etc/resolv.conf."""
    timeout: float = 5.0
    """Seconds for one lookup, all nameservers and retries included."""


@dataclass(frozen=True)
class Submission:
    """Mail that users send (the submission ports and JMAP EmailSubmission)."""

    messages_per_hour: int = 500
    """Per authenticated user; more gets 450 4.7.1 until the hour has passed."""
    recipients_per_message: int = 100
    """More gets 452 4.5.3 for the extra recipients (RFC 5321 §4.5.3.1.8)."""
    undo_seconds: int = 0
    """Hold every submitted message this long before it leaves (undo send); 0: off."""


@dataclass(frozen=True)
class Outbound:
    """Delivery to other domains' MX hosts."""

    retry_schedule: list[float] = field(default_factory=lambda: [
        300.0, 600.0, 1200.0, 2400.0, 4800.0, 9600.0, 14400.0])
    """Seconds to wait before each retry of a temporary failure; the last entry repeats."""
    give_up_after: float = 5 * 86400.0
    """Seconds after submission when a message still undelivered bounces."""
    delay_notice_after: float = 4 * 3600.0
    """Seconds after submission when the sender is told once that delivery is delayed."""
    per_domain_per_minute: int = 600
    """Messages per minute to one destination domain: from the whole cluster with `[store]
    counters` (Redis), from this node without it or while Redis is away."""
    connect_timeout: float = 30.0
    """Seconds to connect to a remote MX before trying the next."""
    command_timeout: float = 300.0
    """Seconds to wait for a remote MX's reply to one command."""
    port: int = 25
    """The remote MX port (tests point it at a loopback MX)."""
    require_tls: bool = False
    """Refuse to deliver without STARTTLS (MTA-STS enforce policies require it anyway)."""
    mta_sts: bool = True
    """Honour the MTA-STS policies (RFC 8461) that destination domains publish."""
    mta_sts_port: int = 443
    """Where policies are fetched (tests point it at a loopback HTTPS server)."""
    cafile: str = ""
    """CA bundle for verified TLS (MTA-STS policy hosts, enforced MX); "": the system's."""
    relayhost: str = ""
    """A smarthost every remote message goes through instead of the recipients' MX:
    "smtp://user:password@host:587" (STARTTLS, required), "smtps://user:password@host:465"
    (implicit TLS) or "smtp+insecure://host:25" (no TLS, no AUTH: a relay on a trusted
    network); the certificate must be valid for the host (`cafile` to trust another CA).
    "": deliver by MX."""
    relayhost_by_domain: list[str] = field(default_factory=list)
    """Smarthosts per sender domain, which win over `relayhost`:
    ["example.org=smtps://user:password@smtp.provider.example:465"]."""


@dataclass(frozen=True)
class Checks:
    """The inbound checks of the MX (services/checks): policy, authentication, content."""

    authenticate: bool = True
    """SPF, DKIM, DMARC and ARC on every inbound message, in an Authentication-Results field."""
    enforce_dmarc: bool = True
    """Refuse (550 5.7.1) mail failing DMARC where the domain asks p=reject; off: to Junk."""
    dns_timeout: float = 2.0
    """Seconds for each lookup of the checks in the SMTP dialogue (SPF, DKIM, DMARC, DNSBL):
    short, since the client waits; a lookup that times out is a temperror, never a refusal."""
    spf_cache_seconds: float = 60.0
    """Seconds an SPF result is reused for the next message from the same client IP, HELO
    and MAIL FROM: a mailing list's or a busy sender's burst is evaluated once, not per
    message (the evaluation was a quarter of the MX's Python time under load). A temperror is
    never kept; a changed SPF record counts after at most this long. 0: evaluate every one."""
    dnsbl_zones: list[str] = field(default_factory=list)
    """DNS blocklist zones (e.g. "zen.spamhaus.org"); a listed client gets 554 5.7.1."""
    greylisting: bool = False
    """Answer a first attempt from an unknown (client /24, sender, recipient) with 451."""
    greylist_delay: float = 300.0
    """Seconds before a greylisted (client /24, sender, recipient) may retry successfully."""
    greylist_window: float = 14_400.0
    """Seconds after the first attempt within which the retry must come."""
    greylist_expire: float = 36 * 86_400.0
    """Seconds a triplet that passed is let through without waiting."""


@dataclass(frozen=True)
class Log:
    """Logging of `mailyard serve` and its workers (mailyard/log.py)."""

    format: str = "text"
    """"text": classic lines; "json": one JSON object per line, with the message's queue id
    (`queue_id`) on every line about it, from SMTP acceptance to the mailbox."""
    level: str = "INFO"
    """The default of `serve --log-level`."""


@dataclass(frozen=True)
class S3:
    """`[store.s3]`: the S3 service of `store.blobs = "s3://..."`."""

    endpoint: str = ""
    """"http://host:port" of an S3-compatible service (Ceph radosgw, MinIO); "": AWS."""
    region: str = "us-east-1"
    """The region requests are signed for."""
    access_key: str = ""
    """"" takes the usual AWS chain (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, ~/.aws)."""
    secret_key: str = ""
    """The secret of access_key; "" with the AWS chain."""
    cache_bytes: int = 64 * 1024 * 1024
    """Memory per process for small hot blobs (up to 1 MiB each); 0: no cache."""
    max_attempts: int = 5
    """Tries per request on 5xx, throttling and connection errors (with backoff)."""


@dataclass(frozen=True)
class Store:
    """Which engine holds each port; "" is the embedded default (SQLite + files)."""

    metadata: str = ""
    """The MailStore: "postgresql://user@host:port/db" (PostgreSQL), "": SQLite in data_dir."""
    blobs: str = ""
    """The BlobStore: "s3://bucket" or "s3://bucket/prefix" (with [store.s3]), "": files in
    data_dir/blobs."""
    search: str = ""
    """The SearchIndex: "postgresql" (in the database of `metadata`), "postgresql://..." (its
    own database), "": SQLite FTS5 in data_dir."""
    s3: S3 = field(default_factory=S3)
    counters: str = ""
    """Where the counters, limits and locks live: "redis://host:port/db", shared by every node
    of a cluster (failed logins, per-IP SMTP and POP3 limits, submission's messages_per_hour,
    greylisting, the POP3 maildrop lock, vacation claims; per node while Redis is away), or
    "": failed logins in counters.db in data_dir (shared by the node's processes), the rest in
    each process."""
    shards: tuple[str, ...] = field(default=(), metadata={"key": False})
    """Set from `metadata = ["postgresql://...", ...]`: the MailStore spread over these
    databases (store/postgres/sharded.py); `metadata` is then the first, which holds the
    directory. Empty: one database (or SQLite)."""

    @property
    def search_dsn(self) -> str:
        """The DSN of a PostgreSQL SearchIndex; "" for SQLite."""
        return self.metadata if self.search == "postgresql" else self.search


@dataclass(frozen=True)
class Cluster:
    """`[cluster]`: the engines that let several identical nodes share the work (issue 21).
    Left out, a node keeps its queue and events to itself (SQLite, in-process), as always;
    the MailStore, blobs, search and counters are chosen in [store]."""

    node: str = ""
    """This node's name: its leases in the queue and its heartbeat. "": the host's name and
    data_dir (two nodes on one host differ). Give each node of a cluster its own, kept across
    restarts (a restarted node takes back its own leases at once; other nodes' run out)."""
    nats: list[str] = field(default_factory=list)
    """NATS servers, e.g. ["nats://10.0.0.1:4222", "nats://10.0.0.2:4222"] (the client
    finds the rest of the cluster from any one). Needed by queue = "nats", events = "nats"."""
    queue: str = ""
    """The work queue: "nats" (JetStream streams, shared by every node), "": queue.db in
    data_dir (this node only)."""
    events: str = ""
    """Account change events for IDLE and push: "nats" (every node hears every node), "":
    in-process, relayed between this node's processes."""
    replicas: int = 1
    """Copies JetStream keeps of the queue and dead letters: 3 on a 3-server NATS cluster
    (an acknowledged item then survives the loss of any one server), 1 on a single one."""
    prefix: str = "mailyard"
    """Start of the subjects and stream names, so several installations can share NATS."""


@dataclass(frozen=True)
class TLS:
    """The certificate every TLS listener presents (STARTTLS and implicit TLS alike)."""

    certificate: str = ""
    """PEM file of the certificate chain; "": a self-signed one made in data_dir (tests and
    a first look only: clients will warn)."""
    private_key: str = ""
    """PEM file of the certificate's private key."""


@dataclass(frozen=True)
class Config:
    """Mailyard configuration: every key with its default."""

    data_dir: Path = Path("mailyard-data")
    """Where the SQLite databases, blob files, queue and keys live; a relative path is taken
    from the config file's directory. `--data-dir` overrides it."""
    hostname: str = "localhost"
    """The name this server gives itself: SMTP greeting and EHLO, Received fields, bounces,
    the self-signed certificate."""
    domains: tuple[str, ...] = ()
    """Local domains (mail to them is delivered here), besides those added with `mailyard
    domain add`. Internationalised names are kept in their ASCII (xn--) form."""
    listen: Listen = field(default_factory=Listen)
    addresses: Addresses = field(default_factory=Addresses)
    routing: Routing = field(default_factory=Routing)
    http: HTTP = field(default_factory=HTTP)
    limits: Limits = field(default_factory=Limits)
    queue: Queue = field(default_factory=Queue)
    tls: TLS = field(default_factory=TLS)
    imap: IMAP = field(default_factory=IMAP)
    smtp: SMTP = field(default_factory=SMTP)
    pop3: POP3 = field(default_factory=POP3)
    auth: Auth = field(default_factory=Auth)
    search: IndexLimits = field(default_factory=IndexLimits)
    """What of each message the full-text index holds."""
    dns: DNS = field(default_factory=DNS)
    submission: Submission = field(default_factory=Submission)
    outbound: Outbound = field(default_factory=Outbound)
    checks: Checks = field(default_factory=Checks)
    spam: SpamPolicy = field(default_factory=SpamPolicy)
    store: Store = field(default_factory=Store)
    cluster: Cluster = field(default_factory=Cluster)
    log: Log = field(default_factory=Log)
    source: Path | None = field(default=None, metadata={"key": False})
    """The file this was read from (None: built-in defaults)."""

    @property
    def blob_dir(self) -> Path:
        return self.data_dir / "blobs"


_TABLES: dict[str, type] = {"listen": Listen, "addresses": Addresses, "http": HTTP,
                            "routing": Routing,
                            "limits": Limits, "queue": Queue, "tls": TLS,
                            "imap": IMAP, "smtp": SMTP, "auth": Auth, "search": IndexLimits,
                            "dns": DNS,
                            "submission": Submission, "outbound": Outbound,
                            "checks": Checks, "spam": SpamPolicy,
                            "pop3": POP3, "store": Store, "log": Log, "cluster": Cluster}


def _check_type(key: str, value: Any, expected: type) -> Any:
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if expected is int and isinstance(value, bool):
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if not isinstance(value, expected):
        raise ConfigError(f"{key}: expected {expected.__name__}, got {value!r}")
    if isinstance(value, int | float) and value < 0:
        raise ConfigError(f"{key}: must not be negative, got {value!r}")
    return value


def _check_hostport(key: str, value: str) -> None:
    if value == "":
        return
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"{key}: expected \"host:port\" or \"\" (off), got {value!r}")


def _table(name: str, cls: type, data: Any) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"[{name}]: expected a table")
    known = {f.name: f for f in fields(cls) if f.metadata.get("key", True)}
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key not in known:
            raise ConfigError(f"[{name}] {key}: unknown key (known: {', '.join(known)})")
        default = getattr(cls(), key)
        if is_dataclass(default):  # a sub-table, e.g. [store.s3]
            values[key] = _table(f"{name}.{key}", type(default), value)
            continue
        values[key] = _check_type(f"{name}.{key}", value, type(default))
        if isinstance(default, list):
            item_type = type(default[0]) if default else str
            values[key] = [_check_type(f"{name}.{key}[{n}]", v, item_type)
                           for n, v in enumerate(value)]
        if cls is Listen:
            _check_hostport(f"listen.{key}", value)
        if cls is Outbound and key in ("relayhost", "relayhost_by_domain"):
            from mailyard.core.smarthost import parse_relays

            try:
                parse_relays(value, []) if key == "relayhost" else parse_relays("", value)
            except ValueError as e:
                raise ConfigError(f"outbound.{e}") from None
    return cls(**values)


def _metadata_shards(data: dict[str, Any]) -> tuple[dict[str, Any], tuple[str, ...]]:
    """`[store] metadata` as a list of DSNs (shards): taken out of the table, which holds
    strings, and handed back as a tuple."""
    store = data.get("store")
    if not isinstance(store, dict) or not isinstance(store.get("metadata"), list):
        return data, ()
    shards = store["metadata"]
    if not shards or not all(isinstance(d, str) for d in shards):
        raise ConfigError("store.metadata: expected a DSN or a non-empty list of DSNs")
    if len(set(shards)) != len(shards):
        raise ConfigError("store.metadata: a shard is listed twice")
    rest = {k: v for k, v in store.items() if k != "metadata"}
    return {**data, "store": rest}, tuple(shards)


def parse(data: dict[str, Any], source: Path | None = None) -> Config:
    """Build a Config from decoded TOML, refusing anything it does not know."""
    config = Config(source=source)
    data, shards = _metadata_shards(data)
    for key, value in data.items():
        if key in _TABLES:
            config = replace(config, **{key: _table(key, _TABLES[key], value)})
        elif key == "data_dir":
            config = replace(config, data_dir=Path(_check_type(key, value, str)))
        elif key == "hostname":
            config = replace(config, hostname=_check_type(key, value, str))
        elif key == "domains":
            if not isinstance(value, list) or not all(isinstance(d, str) for d in value):
                raise ConfigError("domains: expected a list of strings")
            config = replace(config, domains=tuple(_domain(n, d) for n, d in enumerate(value)))
        else:
            raise ConfigError(f"{key}: unknown key")
    for n, origin in enumerate(config.http.allowed_origins):
        from mailyard.protocols.jmap.origin import parse_origin  # the listener's own reading

        if parse_origin(origin) is None:
            raise ConfigError(f"http.allowed_origins[{n}]: expected \"scheme://host[:port]\","
                              f" got {origin!r}")
    if config.limits.message_size < 1024:
        raise ConfigError("limits.message_size: must be at least 1024")
    if config.limits.smtp_line_octets < 998:
        raise ConfigError("limits.smtp_line_octets: must be at least 998 (RFC 5321 4.5.3.1.6)")
    if config.queue.max_attempts < 1:
        raise ConfigError("queue.max_attempts: must be at least 1")
    if config.queue.spool_tries < 1:
        raise ConfigError("queue.spool_tries: must be at least 1")
    if config.queue.gc_interval < 0:
        raise ConfigError("queue.gc_interval: must be at least 0 seconds (0: no automatic gc)")
    if config.queue.dead_letter_days < 0:
        raise ConfigError("queue.dead_letter_days: must be at least 0 (0 keeps them)")
    if config.imap.fetch_cache < 0:
        raise ConfigError("imap.fetch_cache: 0 or more octets (0 keeps none)")
    if not 1 <= config.imap.processes <= 64:
        raise ConfigError("imap.processes: from 1 to 64")
    if not 1 <= config.smtp.processes <= 64:
        raise ConfigError("smtp.processes: from 1 to 64")
    if config.checks.spf_cache_seconds < 0:
        raise ConfigError("checks.spf_cache_seconds: 0 or more (0 evaluates SPF every time)")
    if config.queue.worker_nice > 19:
        raise ConfigError("queue.worker_nice: at most 19 (the lowest priority)")
    if shards:
        config = replace(config, store=replace(config.store, metadata=shards[0],
                                                shards=shards))
    for n, dsn in enumerate(shards):
        if not dsn.startswith(("postgresql://", "postgres://")):
            raise ConfigError(f"store.metadata[{n}]: expected \"postgresql://...\", got {dsn!r}")
    if config.store.metadata and not config.store.metadata.startswith(
            ("postgresql://", "postgres://")):
        raise ConfigError(f"store.metadata: expected \"postgresql://...\" or \"\" (SQLite), "
                          f"got {config.store.metadata!r}")
    if config.store.search == "postgresql" and not config.store.metadata:
        raise ConfigError("store.search: \"postgresql\" uses the database of store.metadata,"
                          " which is not set; give a \"postgresql://...\" DSN instead")
    if config.store.search not in ("", "postgresql") and not config.store.search.startswith(
            ("postgresql://", "postgres://")):
        raise ConfigError(f"store.search: expected \"postgresql\", \"postgresql://...\" or \"\""
                          f" (SQLite), got {config.store.search!r}")
    if config.store.blobs and not (config.store.blobs.startswith("s3://")
                                   and len(config.store.blobs.rstrip("/")) > len("s3://")):
        raise ConfigError(f"store.blobs: expected \"s3://bucket[/prefix]\" or \"\" (files), "
                          f"got {config.store.blobs!r}")
    if config.log.format not in ("text", "json"):
        raise ConfigError(f"log.format: expected \"text\" or \"json\", "
                          f"got {config.log.format!r}")
    if config.log.level.upper() not in LOG_LEVELS:
        raise ConfigError(f"log.level: expected one of {', '.join(LOG_LEVELS)}, "
                          f"got {config.log.level!r}")
    _check_cluster(config.cluster)
    if config.pop3.dele not in ("trash", "expunge"):
        raise ConfigError(f"pop3.dele: expected \"trash\" or \"expunge\", "
                          f"got {config.pop3.dele!r}")
    return config


def _check_cluster(c: Cluster) -> None:
    for key in ("queue", "events"):
        value = getattr(c, key)
        if value not in ("", "nats"):
            raise ConfigError(f"cluster.{key}: expected \"nats\" or \"\" (this node only),"
                              f" got {value!r}")
        if value == "nats" and not c.nats:
            raise ConfigError(f"cluster.{key}: \"nats\" needs cluster.nats, the servers")
    for n, url in enumerate(c.nats):
        if not url.startswith(("nats://", "tls://")):
            raise ConfigError(f"cluster.nats[{n}]: expected \"nats://host:port\", got {url!r}")
    if not 1 <= c.replicas <= 5:
        raise ConfigError("cluster.replicas: from 1 to 5 (JetStream's limit)")
    if not c.prefix or not all(ch.isalnum() or ch in "-_" for ch in c.prefix):
        raise ConfigError(f"cluster.prefix: letters, digits, - and _ only, got {c.prefix!r}")


def _domain(n: int, value: str) -> str:
    try:
        return domain_name(value)
    except ValueError as e:
        raise ConfigError(f"domains[{n}]: {e}") from None


def locate(explicit: str | None) -> Path | None:
    """The config file every subcommand uses: --config, $MAILYARD_CONFIG, ./mailyard.toml."""
    if explicit:
        return Path(explicit)
    env = os.environ.get("MAILYARD_CONFIG")
    if env:
        return Path(env)
    local = Path("mailyard.toml")
    return local if local.exists() else None


def load(explicit: str | None = None, *, data_dir: str | None = None) -> Config:
    path = locate(explicit)
    config = Config()
    if path is not None:
        import tomllib  # not before: an admin command with no config file needs no parser

        try:
            with path.open("rb") as f:
                data = tomllib.load(f)
        except FileNotFoundError as e:
            raise ConfigError(f"config file {path} not found") from e
        except OSError as e:
            raise ConfigError(f"config file {path}: {e.strerror or e}") from e
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise ConfigError(f"{path}: {e}") from e
        config = parse(data, source=path)
        if not config.data_dir.is_absolute():
            config = replace(config, data_dir=path.parent / config.data_dir)
    if data_dir is not None:
        config = replace(config, data_dir=Path(data_dir))
    return config
