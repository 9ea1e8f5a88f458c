"""`mailyard`: the server and its administration, all on the same config and data."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import logging
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import orjson

from mailyard import config as configuration
from mailyard.app import Runtime, open_policy_store, serve
from mailyard.config import Config, ConfigError
from mailyard.core import dkim
from mailyard.log import configure as configure_logging
from mailyard.services.checks.policy import parse_entry
from mailyard.services.search import reindex
from mailyard.store.ports import Conflict, DKIMKeyRecord, NotFound, QueryTimeout

_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def parse_size(text: str) -> int:
    """Bytes from "5000", "500K", "10M", "2G"."""
    value = text.strip().upper().removesuffix("B")
    unit = value[-1:] if value[-1:] in _UNITS else ""
    number = value[: len(value) - len(unit)]
    if not number.isdigit():
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (examples: 5000, 500K, 10M, 2G)")
    return int(number) * _UNITS[unit]


def _when(ms_or_s: float) -> str:
    seconds = ms_or_s / 1000 if ms_or_s > 1e11 else ms_or_s
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _read_password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("Password: ")
    if first != getpass.getpass("Repeat password: "):
        raise ValueError("the passwords do not match")
    return first


# ---------------------------------------------------------------------------- commands

async def cmd_domain(rt: Runtime, args: argparse.Namespace) -> None:
    if args.action == "dkim":
        await _dkim(rt, args)
    elif args.action == "add":
        await rt.store.add_domain(args.name)
        print(f"domain {args.name} added")
    elif args.action == "remove":
        await rt.store.remove_domain(args.name)
        print(f"domain {args.name} removed")
    else:
        for name in sorted(await rt.accounts.domains()):
            origin = " (config)" if name in rt.config.domains else ""
            print(name + origin)


async def cmd_user(rt: Runtime, args: argparse.Namespace) -> None:
    if args.action == "add":
        account = await rt.accounts.add_user(args.address, _read_password(args), args.quota)
        print(f"user {account.address} added")
    elif args.action == "list":
        for a in await rt.store.list_accounts():
            print(f"{a.address}\t{a.used}/{a.quota} bytes")
    elif args.action == "remove":
        await rt.store.delete_account(args.address)
        print(f"user {args.address} removed")
    elif args.action == "passwd":
        await rt.accounts.set_password(args.address, _read_password(args))
        print(f"password of {args.address} changed")
    elif args.action == "quota":
        await rt.store.set_quota(args.address, args.bytes)
        print(f"quota of {args.address} set to {args.bytes} bytes")


async def _dkim(rt: Runtime, args: argparse.Namespace) -> None:
    """generate: a new key (first, or beside the current one for a rotation);
    rotate: generate with a dated selector and retire the old keys once the new record is
    published; show: the DNS records to publish."""
    domain = args.name.lower().rstrip(".")
    if args.dkim_action in ("generate", "rotate"):
        existing = await rt.store.dkim_keys(domain)
        old = [k for k in existing if k.active]
        algorithms: list[dkim.Algorithm] = (
            ["rsa-sha256", "ed25519-sha256"] if args.algorithm == "both" else
            ["ed25519-sha256" if args.algorithm == "ed25519" else "rsa-sha256"])
        for algorithm in algorithms:
            if args.selector:
                sel = args.selector + ("e" if algorithm.startswith("ed")
                                       and len(algorithms) > 1 else "")
            else:
                sel = dkim.selector_for_rotation(datetime.now(UTC), algorithm,
                                                 taken=[k.selector for k in existing])
            key = dkim.generate(domain, sel, algorithm)
            await rt.store.add_dkim_key(DKIMKeyRecord(domain, sel, algorithm, key.private_key))
            name, value = dkim.dns_record(key)
            print(f"{name}. IN TXT \"{value}\"")
        if args.dkim_action == "rotate":
            for k in old:
                await rt.store.retire_dkim_key(domain, k.selector)
            if old:
                print(f"retired: {', '.join(k.selector for k in old)} (keep their DNS records a"
                      " few days, until mail signed with them has been delivered)",
                      file=sys.stderr)
        print("publish the TXT record(s) above in DNS; mail is signed from now on",
              file=sys.stderr)
        return
    keys = await rt.store.dkim_keys(domain)
    if not keys:
        print(f"{domain} has no DKIM key: mailyard domain dkim generate {domain}",
              file=sys.stderr)
    for k in keys:
        name, value = dkim.dns_record(dkim.DKIMKey(domain, k.selector, k.algorithm,  # type: ignore[arg-type]
                                                   k.private_key))
        state = "active" if k.active else "retired"
        print(f"; {k.selector} {k.algorithm} {state} since {_when(k.created_at)}")
        print(f"{name}. IN TXT \"{value}\"")


async def cmd_queue(rt: Runtime, args: argparse.Namespace) -> None:
    if args.action == "list":
        items = await rt.queue.pending(limit=args.limit)
        for p in items:
            state = "sending" if p.leased else ("held until " + _when(p.available_at)
                                                if p.available_at > time.time() else "ready")
            rcpts = ", ".join(p.payload.get("recipients", []))
            error = f"\t{p.last_error}" if p.last_error else ""
            print(f"{p.id}\t{p.kind}\t{state}\tattempts {p.attempts}\t"
                  f"{p.payload.get('mail_from') or '<>'} -> {rcpts}{error}")
        if not items:
            print("the queue is empty")
        return
    if args.action == "show":
        found = [p for p in await rt.queue.pending(prefix=args.id, limit=1) if p.id == args.id]
        if not found:
            raise NotFound(f"no queued item {args.id}")
        item = found[0]
        print(f"id: {item.id}\nkind: {item.kind}\nattempts: {item.attempts}\n"
              f"created: {_when(item.created_at)}\nnext: {_when(item.available_at)}\n"
              f"leased: {item.leased}\nlast error: {item.last_error}\n"
              f"payload: {orjson.dumps(item.payload, option=orjson.OPT_INDENT_2).decode()}")
        return
    if args.action == "cancel":
        ids = [p.id for p in await rt.queue.pending(prefix=args.id)
               if p.id == args.id or p.id.startswith(args.id + ".")]
        if not ids:
            raise NotFound(f"nothing queued under {args.id}")
        for item_id in ids:
            if await rt.queue.cancel(item_id):
                print(f"{item_id} cancelled")
            else:
                print(f"{item_id} is being delivered right now; not cancelled",
                      file=sys.stderr)
        return
    stats = await rt.queue.stats()
    print(f"ready {stats.ready}\nleased {stats.leased}\ndelayed {stats.delayed}\n"
          f"dead {stats.dead}")
    for kind, n in sorted(stats.by_kind.items()):
        print(f"  {kind}: {n}")


async def cmd_dlq(rt: Runtime, args: argparse.Namespace) -> None:
    if args.action == "list":
        letters = await rt.queue.dead_letters(limit=args.limit)
        for d in letters:
            rcpts = ",".join(d.payload.get("recipients", []))
            print(f"{d.id}\t{_when(d.died_at)}\t{d.kind}\t{rcpts}\t{d.error}")
        if not letters:
            print("the dead-letter queue is empty")
    elif args.action == "show":
        d = await rt.queue.dead_letter(args.id)
        print(f"id: {d.id}\nkind: {d.kind}\nattempts: {d.attempts}\n"
              f"queued: {_when(d.created_at)}\ndied: {_when(d.died_at)}\nerror: {d.error}\n"
              f"payload: {orjson.dumps(d.payload, option=orjson.OPT_INDENT_2).decode()}")
    elif args.action == "retry":
        n = await rt.queue.revive(None if args.id == "all" else args.id)
        print(f"{n} item(s) back in the queue")
    elif args.action == "drop":
        await rt.queue.drop(args.id)
        print(f"{args.id} dropped")


async def cmd_mail(rt: Runtime, args: argparse.Namespace) -> None:
    account = await rt.mailbox.account(args.address)
    if args.action == "list":
        emails = await rt.mailbox.emails(account, args.label, args.limit)
        if args.json:
            rows = [{
                "id": e.id, "threadId": e.thread_id, "messageId": e.message_id,
                "subject": e.subject, "from": e.from_, "to": e.to, "size": e.size,
                "receivedAt": e.received_at, "mailboxes": e.mailboxes,
                "keywords": e.keywords, "hasAttachment": e.has_attachment,
                "attachments": e.attachments, "preview": e.preview,
                "inReplyTo": e.in_reply_to, "references": e.references,
            } for e in emails]
            sys.stdout.write(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode() + "\n")
            return
        for e in emails:
            sender = e.from_[0]["email"] if e.from_ else "-"
            print(f"{e.id}\t{_when(e.received_at)}\t{sender}\t{e.subject}")
    elif args.action == "show":
        if args.raw:
            sys.stdout.buffer.write(await rt.mailbox.raw(account, args.id))
            sys.stdout.flush()
            return
        e = await rt.mailbox.email(account, args.id)
        print(f"id: {e.id}\nthread: {e.thread_id}\nmessage-id: {e.message_id}\n"
              f"subject: {e.subject}\nfrom: {e.from_}\nto: {e.to}\nsize: {e.size}\n"
              f"received: {_when(e.received_at)}\nmailboxes: {e.mailboxes}\n"
              f"attachments: {e.attachments}\npreview: {e.preview}")


async def cmd_search(rt: Runtime, args: argparse.Namespace) -> None:
    """The query language from the shell: the same service IMAP, JMAP and the web use."""
    account = await rt.mailbox.account(args.address)
    hits = await rt.search.search(account, args.query, limit=args.limit, total=True,
                                  order="relevance" if args.relevance else "newest",
                                  gmail_scope=not args.anywhere)
    records = {r.id: r for r in await rt.mailbox.get_emails(account, hits.ids, brief=True)}
    snippets = {s.email_id: s for s in await rt.search.snippets(account, args.query, hits.ids)}
    rows = [r for e in hits.ids if (r := records.get(e)) is not None]
    if args.json:
        out = {"total": hits.total, "emails": [{
            "id": r.id, "threadId": r.thread_id, "receivedAt": r.received_at,
            "from": r.from_, "subject": r.subject, "size": r.size, "keywords": r.keywords,
            "mailboxes": r.mailboxes, "hasAttachment": r.has_attachment,
            "snippet": {"subject": snippets[r.id].subject, "preview": snippets[r.id].preview},
        } for r in rows]}
        sys.stdout.write(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode() + "\n")
        return
    for r in rows:
        sender = r.from_[0]["email"] if r.from_ else "-"
        print(f"{r.id}\t{_when(r.received_at)}\t{sender}\t{r.subject}")
    print(f"{hits.total} found" + (f", {len(rows)} shown" if len(rows) != hits.total else ""),
          file=sys.stderr)


async def cmd_reindex(rt: Runtime, args: argparse.Namespace) -> None:
    if args.address:
        accounts = [await rt.mailbox.account(args.address)]
    else:
        accounts = await rt.store.list_accounts()
    for account in accounts:
        started = time.monotonic()
        bar = _ProgressBar(account.address)
        done = await reindex(rt.mailbox, account, bar)
        bar.finish(f"{done} messages in {time.monotonic() - started:.1f} s")


class _ProgressBar:
    """One line on stderr, redrawn in place on a terminal, printed every 10 % otherwise."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.tty = sys.stderr.isatty()
        self.shown = -1

    def __call__(self, done: int, total: int) -> None:
        percent = 100 * done // total if total else 100
        if self.tty:
            filled = percent * 30 // 100
            sys.stderr.write(f"\r{self.label} [{'#' * filled}{'.' * (30 - filled)}]"
                             f" {done}/{total} {percent}%")
            sys.stderr.flush()
        elif percent // 10 != self.shown // 10:
            print(f"{self.label}: {done}/{total} ({percent}%)", file=sys.stderr)
        self.shown = percent

    def finish(self, text: str) -> None:
        if self.tty:
            sys.stderr.write("\n")
        print(f"{self.label}: {text}", file=sys.stderr)


# ---------------------------------------------------------------------------- parser

def build_parser(*, admin: bool = True) -> argparse.ArgumentParser:
    """All the subcommands; with admin=False, not those of cli_transfer and cli_ops (import,
    export, fsck, gc), whose modules `serve` then never imports (tqdm and the rest: megabytes
    a long-running listener would hold for nothing)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", help="config file (default: $MAILYARD_CONFIG, then"
                        " ./mailyard.toml, then built-in defaults)")
    common.add_argument("--data-dir", help="override data_dir")
    parser = argparse.ArgumentParser(prog="mailyard", description=__doc__, parents=[common])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", parents=[common], help="run the server")
    p.add_argument("--workers", type=int, default=0,
                   help="pipeline worker processes (0: run the pipeline in this process)")
    p.add_argument("--log-level", default=None, help="default: [log] level (INFO)")

    p = sub.add_parser("domain", parents=[common], help="local domains")
    ds = p.add_subparsers(dest="action", required=True)
    for action in ("add", "remove"):
        ds.add_parser(action, parents=[common]).add_argument("name")
    ds.add_parser("list", parents=[common])
    q = ds.add_parser("dkim", parents=[common], help="DKIM signing keys of a domain")
    dk = q.add_subparsers(dest="dkim_action", required=True)
    for action in ("generate", "rotate", "show"):
        r = dk.add_parser(action, parents=[common])
        r.add_argument("name")
        if action != "show":
            r.add_argument("--algorithm", choices=["rsa", "ed25519", "both"], default="rsa")
            r.add_argument("--selector", help="default: a dated selector like my202611")

    p = sub.add_parser("user", parents=[common], help="accounts")
    us = p.add_subparsers(dest="action", required=True)
    for action in ("add", "passwd"):
        q = us.add_parser(action, parents=[common])
        q.add_argument("address")
        q.add_argument("--password-stdin", action="store_true",
                       help="read the password from the first line of standard input")
        if action == "add":
            q.add_argument("--quota", type=parse_size, default=None)
    us.add_parser("list", parents=[common])
    us.add_parser("remove", parents=[common]).add_argument("address")
    q = us.add_parser("quota", parents=[common])
    q.add_argument("address")
    q.add_argument("bytes", type=parse_size)

    p = sub.add_parser("queue", parents=[common], help="the work queue")
    qs = p.add_subparsers(dest="action", required=True)
    qs.add_parser("stats", parents=[common])
    qs.add_parser("list", parents=[common]).add_argument("--limit", type=int, default=1000)
    qs.add_parser("show", parents=[common]).add_argument("id")
    qs.add_parser("cancel", parents=[common]).add_argument(
        "id", help="an item id, or a submission id (cancels all of its items)")

    p = sub.add_parser("dlq", parents=[common], help="the dead-letter queue")
    dl = p.add_subparsers(dest="action", required=True)
    dl.add_parser("list", parents=[common]).add_argument("--limit", type=int, default=100)
    for action in ("show", "drop"):
        dl.add_parser(action, parents=[common]).add_argument("id")
    dl.add_parser("retry", parents=[common]).add_argument("id", help="an item id, or 'all'")

    p = sub.add_parser("mail", parents=[common], help="read mailboxes (for admins and tests)")
    ms = p.add_subparsers(dest="action", required=True)
    q = ms.add_parser("list", parents=[common])
    q.add_argument("address")
    q.add_argument("--label", default=None, help="a mailbox name or role (inbox, sent, ...)")
    q.add_argument("--limit", type=int, default=1000)
    q.add_argument("--json", action="store_true")
    q = ms.add_parser("show", parents=[common])
    q.add_argument("address")
    q.add_argument("id")
    q.add_argument("--raw", action="store_true", help="the message octets, byte-exact")

    p = sub.add_parser("search", parents=[common],
                       help="search an account with the Gmail-style query language",
                       epilog="A query that starts with '-' goes after '--':"
                              " mailyard search -- alice@example.com -has:attachment")
    p.add_argument("address")
    p.add_argument("query", help='e.g. \'from:alice has:attachment after:2026/1/1 "exact words"\'')
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--json", action="store_true")
    p.add_argument("--relevance", action="store_true", help="best match first, not newest")
    p.add_argument("--anywhere", action="store_true", help="include Spam and Trash")

    p = sub.add_parser("reindex", parents=[common],
                       help="rebuild the full-text index from the stored mail")
    p.add_argument("address", nargs="?", help="one account (default: every account)")

    p = sub.add_parser("token", parents=[common], help="API tokens (JMAP bearer credentials)")
    ts = p.add_subparsers(dest="action", required=True)
    q = ts.add_parser("create", parents=[common])
    q.add_argument("address")
    q.add_argument("--name", default="", help="what the token is for")
    q.add_argument("--days", type=float, default=0, help="lifetime (default: no expiry)")
    ts.add_parser("list", parents=[common]).add_argument("address")
    q = ts.add_parser("revoke", parents=[common])
    q.add_argument("address")
    q.add_argument("id")

    p = sub.add_parser("policy", parents=[common],
                       help="the MX's allow and deny lists of IPs, networks and domains")
    ps = p.add_subparsers(dest="action", required=True)
    for action in ("allow", "deny"):
        q = ps.add_parser(action, parents=[common])
        q.add_argument("entry", help="an IP address, a network (CIDR) or a sender domain")
        q.add_argument("--reason", default="", help="said in the 554 5.7.1 reply (deny)")
    ps.add_parser("remove", parents=[common]).add_argument("entry")
    ps.add_parser("list", parents=[common])

    if admin:
        from mailyard.cli_ops import add_parsers as add_ops_parsers
        from mailyard.cli_transfer import add_parsers as add_transfer_parsers

        add_transfer_parsers(sub, common)
        add_ops_parsers(sub, common)

    p = sub.add_parser("account", parents=[common],
                       help="where accounts live, with [store] metadata a list of shards")
    acs = p.add_subparsers(dest="action", required=True)
    q = acs.add_parser("move", parents=[common],
                       help="move an account to another shard while it is in use")
    q.add_argument("address")
    q.add_argument("shard", help='the shard\'s position in [store] metadata: "0", "1", ...')
    acs.add_parser("shards", parents=[common], help="the shards and their account counts")
    return parser


async def cmd_account(rt: Runtime, args: argparse.Namespace) -> None:
    """Only a sharded PostgreSQL MailStore has shards; any other store refuses."""
    from mailyard.store.postgres.move import move_account
    from mailyard.store.postgres.sharded import ShardedMailStore

    if not isinstance(rt.store, ShardedMailStore):
        raise ValueError("accounts have no shards: [store] metadata is not a list of"
                         " PostgreSQL DSNs")
    if args.action == "shards":
        counts = {name: 0 for name in rt.store.shards}
        for account in await rt.store.list_accounts():
            entry = await rt.store.lookup(account.id)
            counts[entry.shard if entry else "0"] += 1
        for name, count in counts.items():
            print(f"{name}\t{count} accounts")
        return
    report = await move_account(rt.store, args.address, args.shard)
    if report.source == report.target:
        print(f"{args.address} is on shard {args.shard}"
              + (f" ({report.cleaned} left-over rows removed)" if report.cleaned else ""))
        return
    print(f"{args.address} moved from shard {report.source} to {report.target}:"
          f" {report.copied} rows copied, {report.caught_up} caught up, writers held"
          f" {report.final_seconds * 1000:.0f} ms, {report.seconds:.2f} s in all")


async def cmd_token(rt: Runtime, args: argparse.Namespace) -> None:
    """create prints the token once (only its hash is kept); list and revoke by token id."""
    account = await rt.store.get_account(args.address)
    if args.action == "create":
        lifetime = args.days * 86400 if args.days else None
        token, info = await rt.tokens.create(account, args.name, lifetime)
        print(token)
        print(f"token {info.id} for {account.address}"
              + (f", expires {_when(info.expires)}" if info.expires else ", no expiry"),
              file=sys.stderr)
    elif args.action == "list":
        for t in await rt.tokens.list(account):
            expires = _when(t.expires) if t.expires else "never"
            print(f"{t.id}\t{t.name or '-'}\tcreated {_when(t.created)}\texpires {expires}")
    else:
        await rt.tokens.revoke(account, args.id)
        print(f"token {args.id} revoked")


async def cmd_import(rt: Runtime, args: argparse.Namespace) -> None:
    from mailyard.cli_transfer import cmd_import as run

    await run(rt, args)


async def cmd_export(rt: Runtime, args: argparse.Namespace) -> None:
    from mailyard.cli_transfer import cmd_export as run

    await run(rt, args)


async def cmd_fsck(rt: Runtime, args: argparse.Namespace) -> None:
    from mailyard.cli_ops import cmd_fsck as run

    await run(rt, args)


async def cmd_gc(rt: Runtime, args: argparse.Namespace) -> None:
    from mailyard.cli_ops import cmd_gc as run

    await run(rt, args)


COMMANDS: dict[str, Callable[[Runtime, argparse.Namespace], Awaitable[None]]] = {
    "import": cmd_import, "export": cmd_export,
    "fsck": cmd_fsck, "gc": cmd_gc,
    "domain": cmd_domain, "user": cmd_user, "queue": cmd_queue, "dlq": cmd_dlq,
    "mail": cmd_mail, "search": cmd_search, "reindex": cmd_reindex, "token": cmd_token,
    "account": cmd_account,
}


def cmd_policy(config: Config, args: argparse.Namespace) -> None:
    """Takes effect at the running server's next check: it re-reads the lists on change."""
    store = open_policy_store(config)
    try:
        if args.action in ("allow", "deny"):
            entry = parse_entry(args.entry)
            store.put(entry, args.action, args.reason)
            print(f"{args.action} {entry}")
        elif args.action == "remove":
            entry = parse_entry(args.entry)
            if not store.remove(entry):
                raise NotFound(f"{entry} is on no list")
            print(f"removed {entry}")
        else:
            for entry, kind, reason, added in store.entries():
                print(f"{kind}\t{entry}\t{_when(added)}\t{reason}")
    finally:
        store.close()


async def _admin(config: Config, args: argparse.Namespace) -> None:
    runtime = Runtime.open(config)
    try:
        await COMMANDS[args.command](runtime, args)
    finally:
        runtime.close()


def _command_of(argv: list[str]) -> str | None:
    """The subcommand named in `argv` (after the global --config/--data-dir), if any."""
    words = iter(argv)
    for word in words:
        if word in ("--config", "--data-dir"):
            next(words, None)
        elif not word.startswith("-"):
            return word
        elif word.startswith(("--config=", "--data-dir=")):
            continue
        else:
            return None  # --help, or something argparse will refuse
    return None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(admin=_command_of(argv) != "serve").parse_args(argv)
    try:
        config = configuration.load(args.config, data_dir=args.data_dir)
    except ConfigError as e:
        print(f"mailyard: configuration error: {e}", file=sys.stderr)
        return 2
    if args.command == "serve":
        configure_logging(config.log.format, args.log_level or config.log.level)
        # aiosmtpd logs every command line at INFO: a fifth of the listener's CPU under load.
        logging.getLogger("mail.log").setLevel(max(logging.WARNING, logging.root.level))
        with contextlib.suppress(ImportError):
            import uvloop
            uvloop.install()
        asyncio.run(serve(config, workers=args.workers))
        return 0
    try:
        if args.command == "policy":
            cmd_policy(config, args)
        else:
            asyncio.run(_admin(config, args))
    except (NotFound, Conflict, QueryTimeout, ValueError) as e:  # QueryError: a ValueError
        print(f"mailyard: {e}", file=sys.stderr)
        return 1
    return int(getattr(args, "exit_code", 0))




if __name__ == "__main__":
    raise SystemExit(main())
