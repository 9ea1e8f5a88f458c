"""`mailyard`: the server and its administration, all on the same config and data."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    from mailyard.app import Runtime
    from mailyard.config import Config
    from mailyard.store.ports import Account, DeadLetter, Mailbox

# Every other import is made by the command that uses it, so that `mailyard search` does not
# load the listeners, the pipeline's checks or the libraries of engines it does not use, and
# `--help` and `--version` load nearly nothing (tests/e2e/test_cli_imports.py).

_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def parse_size(text: str) -> int:
    """Bytes from "5000", "500K", "10M", "2G"."""
    value = text.strip().upper().removesuffix("B")
    unit = value[-1:] if value[-1:] in _UNITS else ""
    number = value[: len(value) - len(unit)]
    if not number.isdigit():
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (examples: 5000, 500K, 10M, 2G)")
    return int(number) * _UNITS[unit]


def _whole(text: str, least: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < least:
        raise argparse.ArgumentTypeError(f"must be {least} or more, not {value}")
    return value


def positive_int(text: str) -> int:
    """A count such as --limit: 0 or less would list nothing and then claim there is more."""
    return _whole(text, 1)


def non_negative_int(text: str) -> int:
    """A count that may be 0 (--workers 0: the pipeline in the serving process)."""
    return _whole(text, 0)


def lifetime_days(text: str) -> float:
    """A token's --days: more than 0 (0 or less would make a token that never worked)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of days: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be more than 0 days, not {text!r}"
                                         " (leave --days out for no expiry)")
    return value


def _size(octets: int) -> str:
    """1.5 KiB, 10 GiB: what `user list` and `user quota` show beside the exact bytes."""
    value, units = float(octets), ["B", "KiB", "MiB", "GiB", "TiB"]
    while value >= 1024 and len(units) > 1:
        value /= 1024
        units.pop(0)
    unit = units[0]
    return f"{value:.0f} {unit}" if unit == "B" or value >= 100 or value == int(value) \
        else f"{value:.1f} {unit}"


def _when(ms_or_s: float) -> str:
    seconds = ms_or_s / 1000 if ms_or_s > 1e11 else ms_or_s
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _read_password(args: argparse.Namespace) -> str:
    """From the terminal, asked twice; or the first line of stdin with --password-stdin.
    Without either, refused: getpass would read the terminal behind a pipe, or echo it."""
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if not sys.stdin.isatty():
        raise ValueError("standard input is not a terminal to ask the password on: give"
                         " --password-stdin and the password on its first line")
    import getpass

    first = getpass.getpass("Password: ")
    if first != getpass.getpass("Repeat password: "):
        raise ValueError("the passwords do not match")
    return first


def _json(value: Any) -> str:
    """`value` as indented JSON (orjson, imported by the commands that print JSON)."""
    import orjson

    return orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()


def _cut(items: list[Any], limit: int, what: str) -> str:
    """Trim `items` (fetched with limit + 1) to `limit`; the note to print when there were
    more, so that a listing cut short never passes for a complete one."""
    if len(items) <= limit:
        return ""
    del items[limit:]
    return f"mailyard: stopped at --limit {limit}: there are more {what} (raise --limit)"


# ---------------------------------------------------------------------------- commands

async def cmd_domain(rt: Runtime, args: argparse.Namespace) -> None:
    from mailyard.config import domain_display, domain_name

    if args.action == "dkim":
        await _dkim(rt, args)
    elif args.action in ("alias", "catchall"):
        from mailyard.cli_routing import cmd_domain_routing

        await cmd_domain_routing(rt, args)
    elif args.action == "add":
        name = domain_name(args.name)
        await rt.store.add_domain(name)
        print(f"domain {domain_display(name)} added")
    elif args.action == "remove":
        name = domain_name(args.name)
        await rt.store.remove_domain(name)
        print(f"domain {domain_display(name)} removed")
    else:
        for name in sorted(await rt.accounts.domains()):
            origin = " (config)" if name in rt.config.domains else ""
            print(domain_display(name) + origin)


async def cmd_user(rt: Runtime, args: argparse.Namespace) -> None:
    if args.action == "add":
        account = await rt.accounts.add_user(args.address, _read_password(args), args.quota)
        from mailyard.config import domain_display

        local, _, domain = account.address.rpartition("@")
        shown = domain_display(domain)  # "xn--... (U-label)" for an IDN, as `domain list`
        print(f"user {account.address}" + (
            f" ({local}@{shown.partition(' (')[2][:-1]})" if shown != domain else "") + " added")
    elif args.action == "list":
        for a in await rt.store.list_accounts():
            share = f"{100 * a.used / a.quota:.0f}%" if a.quota else "-"
            print(f"{a.address}\t{a.used}/{a.quota} bytes\t{_size(a.used)} of"
                  f" {_size(a.quota)} ({share})")
    elif args.action == "remove":
        await rt.store.delete_account(args.address)
        print(f"user {args.address} removed")
    elif args.action == "passwd":
        await rt.accounts.set_password(args.address, _read_password(args))
        print(f"password of {args.address} changed")
    elif args.action == "quota":
        await rt.store.set_quota(args.address, args.bytes)
        print(f"quota of {args.address} set to {args.bytes} bytes ({_size(args.bytes)})")


async def _dkim(rt: Runtime, args: argparse.Namespace) -> None:
    """generate: a new key (first, or beside the current one for a rotation);
    rotate: generate with a dated selector and retire the old keys once the new record is
    published; show: the DNS records to publish."""
    from mailyard.config import domain_name
    from mailyard.core import dkim
    from mailyard.store.ports import DKIMKeyRecord

    domain = domain_name(args.name)
    if args.dkim_action in ("generate", "rotate"):
        local = domain in await rt.accounts.domains()  # if not: a typo, or not added yet
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
            print(dkim.zone_line(name, value))
        if args.dkim_action == "rotate":
            for k in old:
                await rt.store.retire_dkim_key(domain, k.selector)
            if old:
                print(f"retired: {', '.join(k.selector for k in old)} (keep their DNS records a"
                      " few days, until mail signed with them has been delivered)",
                      file=sys.stderr)
        print("publish the TXT record(s) above in DNS; " + (
            "mail is signed from now on" if local else f"mail is signed once {domain} is a"
            f" local domain (mailyard domain add {domain}; it is not one now)"), file=sys.stderr)
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
        print(dkim.zone_line(name, value))


async def cmd_queue(rt: Runtime, args: argparse.Namespace) -> None:
    from mailyard.store.ports import NotFound

    if args.action == "list":
        from mailyard.core.workitems import try_decode

        items = await rt.queue.pending(limit=args.limit + 1)
        more = _cut(items, args.limit, "queued items")
        for p in items:
            state = "sending" if p.leased else ("held until " + _when(p.available_at)
                                                if p.available_at > time.time() else "ready")
            work = try_decode(p.kind, p.payload)
            rcpts = ", ".join(work.recipients) if work else "(damaged item)"
            error = f"\t{p.last_error}" if p.last_error else ""
            print(f"{p.id}\t{p.kind}\t{state}\tattempts {p.attempts}\t"
                  f"{(work.mail_from if work else '') or '<>'} -> {rcpts}{error}")
        if not items:
            print("the queue is empty")
        if more:
            print(more, file=sys.stderr)
        return
    if args.action == "show":
        found = [p for p in await rt.queue.pending(prefix=args.id, limit=1) if p.id == args.id]
        if not found:
            raise NotFound(f"no queued item {args.id}")
        item = found[0]
        print(f"id: {item.id}\nkind: {item.kind}\nattempts: {item.attempts}\n"
              f"created: {_when(item.created_at)}\nnext: {_when(item.available_at)}\n"
              f"leased: {item.leased}\nlast error: {item.last_error}\n"
              f"payload: {_json(item.payload)}")
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
    from mailyard.core.workitems import try_decode

    if args.action == "list":
        letters = await rt.queue.dead_letters(limit=args.limit + 1)
        more = _cut(letters, args.limit, "dead items")
        for d in letters:
            dead = try_decode(d.kind, d.payload)
            rcpts = ",".join(dead.recipients) if dead else "(damaged item)"
            print(f"{d.id}\t{_when(d.died_at)}\t{d.kind}\t{rcpts}\t{d.error}")
        if not letters:
            print("the dead-letter queue is empty")
        if more:
            print(more, file=sys.stderr)
    elif args.action == "show":
        d = await rt.queue.dead_letter(args.id)
        print(f"id: {d.id}\nkind: {d.kind}\nattempts: {d.attempts}\n"
              f"queued: {_when(d.created_at)}\ndied: {_when(d.died_at)}\nerror: {d.error}\n"
              f"payload: {_json(d.payload)}")
    elif args.action == "retry":
        if args.id != "all" and _held_spam(await rt.queue.dead_letter(args.id)):
            raise ValueError(f"{args.id} is spam held from remote targets: retry would hold"
                             f" it again; `mailyard dlq release {args.id}` forwards it")
        n = await rt.queue.revive(None if args.id == "all" else args.id)
        print(f"{n} item(s) back in the queue")
    elif args.action == "release":
        from mailyard.services.routing_delivery import release_held
        from mailyard.store.ports import NotFound

        try:
            letter = await rt.queue.dead_letter(args.id)
        except NotFound:
            raise NotFound(f"no dead letter {args.id} (already released or dropped?)")\
                from None
        sent = await release_held(rt.delivery, rt.routing, letter)
        print(f"{args.id} released: {len(sent)} send(s) queued ({', '.join(sent)})")
    elif args.action == "drop":
        await rt.queue.drop(args.id)
        print(f"{args.id} dropped")


def _held_spam(letter: DeadLetter) -> bool:
    """Spam held from an alias's remote targets (services/routing_delivery.py)."""
    from mailyard.core.workitems import INBOUND, BadItem, InboundItem
    from mailyard.services.routing_delivery import HELD_FORWARDS

    try:
        held = InboundItem.from_json(letter.payload) if letter.kind == INBOUND else None
    except BadItem:
        return False
    return bool(held and held.verdict and held.verdict.notes.get(HELD_FORWARDS))


def _no_mailbox(asked: str, account: Account, name: str, boxes: list[Mailbox]) -> ValueError:
    """A mailbox or label the account does not have (a typo, most likely): said, with the
    ones it has, rather than "0 found" or an empty listing."""
    names = sorted(b.name for b in boxes)
    return ValueError(f'{asked}: {account.address} has no mailbox or label "{name}" (it has'
                      f' {", ".join(names[:12])}'
                      + (f" and {len(names) - 12} more" if len(names) > 12 else "") + ")")


async def cmd_mail(rt: Runtime, args: argparse.Namespace) -> None:
    account = await rt.mailbox.account(args.address)
    if args.action == "list" and args.label is not None:
        from mailyard.model.mailboxes import named

        boxes = await rt.mailbox.mailboxes(account)
        if not named(boxes, args.label):
            raise _no_mailbox(f"--label {args.label}", account, args.label, boxes)
    if args.action == "list":
        emails = await rt.mailbox.emails(account, args.label, args.limit + 1)
        more = _cut(emails, args.limit, "emails")
        if more:  # on stderr, so that stdout (the JSON too) stays what was asked
            print(more, file=sys.stderr)
        if args.json:
            rows = [{
                "id": e.id, "threadId": e.thread_id, "messageId": e.message_id,
                "subject": e.subject, "from": e.from_, "to": e.to, "size": e.size,
                "receivedAt": e.received_at, "mailboxes": e.mailboxes,
                "keywords": e.keywords, "hasAttachment": e.has_attachment,
                "attachments": e.attachments, "preview": e.preview,
                "inReplyTo": e.in_reply_to, "references": e.references,
            } for e in emails]
            sys.stdout.write(_json(rows) + "\n")
            return
        for e in emails:
            sender = e.from_[0]["email"] if e.from_ else "-"
            print(f"{e.id}\t{_when(e.received_at)}\t{sender}\t{e.subject}")
        if not emails:  # on stderr, as search's "0 found": stdout stays the listing
            print(f"{account.address} has no emails"
                  + (f" in {args.label}" if args.label else ""), file=sys.stderr)
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
    from mailyard.core import query as q

    account = await rt.mailbox.account(args.address)
    boxes = await rt.mailbox.mailboxes(account)
    for term in q.unknown_mailboxes(q.parse(args.query), boxes):
        raise _no_mailbox(term.written or "label:" + term.name, account, term.name, boxes)
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
        sys.stdout.write(_json(out) + "\n")
        return
    for r in rows:
        sender = r.from_[0]["email"] if r.from_ else "-"
        print(f"{r.id}\t{_when(r.received_at)}\t{sender}\t{r.subject}")
    print(f"{hits.total} found" + (f", {len(rows)} shown" if len(rows) != hits.total else ""),
          file=sys.stderr)


async def cmd_reindex(rt: Runtime, args: argparse.Namespace) -> None:
    from mailyard.services.search import reindex

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

class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error: a usage mistake prints one line naming the command and
    its --help, with exit status 2, like every other user error of mailyard."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class _Version(argparse.Action):
    """--version, read from the installed package's metadata only when asked."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS,
                         nargs=0, help="print the version and exit")

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        from importlib.metadata import PackageNotFoundError, version

        try:
            number = version("mailyard")
        except PackageNotFoundError:
            number = "unknown (not installed)"
        sys.stdout.write(f"mailyard {number}\n")
        parser.exit(0)


class _LogLevels:
    """config.LOG_LEVELS as argparse `choices`, read only when --log-level is given or its help
    shown: the config module (and the parsers it imports) stays out of `--help`."""

    def __iter__(self) -> Iterator[str]:
        from mailyard.config import LOG_LEVELS

        return iter(LOG_LEVELS)

    def __contains__(self, value: object) -> bool:
        return value in list(self)


def _log_level(text: str) -> str:
    from mailyard.config import LOG_LEVELS

    if text.upper() not in LOG_LEVELS:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a log level (one of {', '.join(LOG_LEVELS)})")
    return text.upper()


def _global_options(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """--config and --data-dir, which may stand before or after the subcommand. Below the top
    level their default is SUPPRESS: a subparser writes the default of every option it knows
    into the namespace, which silently replaced a value given before the subcommand."""
    default = None if top else argparse.SUPPRESS
    parser.add_argument("--config", metavar="FILE", default=default,
                        help="config file (default: $MAILYARD_CONFIG, then ./mailyard.toml,"
                             " then built-in defaults)")
    parser.add_argument("--data-dir", metavar="DIR", default=default,
                        help="use this data directory instead of the config's data_dir")


def build_parser(*, admin: bool = True, only: str | None = None) -> argparse.ArgumentParser:
    """All the subcommands; with admin=False, not those of cli_transfer and cli_ops (import,
    export, fsck, gc), whose modules `serve` then never imports (tqdm and the rest: megabytes
    a long-running listener would hold for nothing). With `only` (the command on the command
    line), that command alone: each parser costs argparse a few gettext look-ups for its
    translations (each a search of the locale directories), and building all of them was a
    tenth of `mailyard search`'s start-up. A word that is no command gets every command
    back, for argparse's "invalid choice ... (choose from ...)"."""
    parser, names = _build_parser(admin=admin, only=only)
    if only is not None and only not in names:
        parser, _ = _build_parser(admin=admin, only=None)
    return parser


def _build_parser(*, admin: bool, only: str | None) -> tuple[argparse.ArgumentParser, Any]:
    from mailyard.cli_routing import add_alias_parser, add_domain_actions

    common = _Parser(add_help=False)
    _global_options(common, top=False)
    parser = _Parser(prog="mailyard", description=__doc__,
                     epilog="--config and --data-dir may stand before or after the command."
                            " `mailyard COMMAND --help` tells more.")
    parser.add_argument("--version", action=_Version)
    _global_options(parser, top=True)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    unused: list[argparse.ArgumentParser] = []

    def command(group: Any, name: str, text: str, **kwargs: Any) -> argparse.ArgumentParser:
        if group is sub and not wanted(name):  # a stand-in, never attached
            unused[:] = unused or [argparse.ArgumentParser(add_help=False)]
            return unused[0]
        made: argparse.ArgumentParser = group.add_parser(
            name, parents=[common], help=text, description=kwargs.pop("description", text),
            **kwargs)
        return made

    def actions(p: argparse.ArgumentParser, dest: str = "action") -> Any:
        return p.add_subparsers(dest=dest, required=True, metavar="ACTION")

    def wanted(name: str) -> bool:
        return only is None or only == name

    p = command(sub, "serve", "run the server: every listener, and the pipeline")
    if wanted("serve"):
        p.add_argument("--workers", type=non_negative_int, default=0,
                       help="pipeline worker processes (0: run the pipeline in this process)")
        p.add_argument("--log-level", type=_log_level, default=None, choices=_LogLevels(),
                       metavar="LOG_LEVEL", help="one of %(choices)s (default: [log] level, INFO)")

    p = command(sub, "config", "check the configuration, or print a commented sample")
    if wanted("config"):
        cs = actions(p)
        q = command(cs, "check", "validate a config file and print the configuration it gives"
                    " (TOML, every key, secrets masked)")
        q.add_argument("file", nargs="?", help="the file to check (default: the one every command"
                       " uses: --config, $MAILYARD_CONFIG, ./mailyard.toml)")
        command(cs, "sample", "print every key with its default and what it does (the"
                " repository's mailyard.example.toml)")

    p = command(sub, "domain", "local domains, their DKIM keys, alias domains and catch-alls")
    if wanted("domain"):
        ds = actions(p)
        add_domain_actions(ds, command, actions)
        command(ds, "add", "make a domain local: mail to it is delivered here").add_argument(
            "name", help="e.g. example.org (an internationalised name is stored as xn--...)")
        command(ds, "remove", "stop accepting mail for a domain").add_argument(
            "name", help="a domain added with `domain add`")
        command(ds, "list", "the local domains, from the config and from `domain add`")
        q = command(ds, "dkim", "DKIM signing keys of a domain")
        dk = actions(q, "dkim_action")
        for action, text in (
                ("generate", "make a key (the first, or a second beside the current one) and print"
                             " its DNS record"),
                ("rotate", "make a key with a new dated selector and retire the old ones"),
                ("show", "print the DNS records of a domain's keys")):
            r = command(dk, action, text)
            r.add_argument("name", help="the domain")
            if action != "show":
                r.add_argument("--algorithm", choices=["rsa", "ed25519", "both"], default="rsa",
                               help="rsa (2048 bits, every verifier), ed25519 (RFC 8463), or both"
                                    " (default: rsa)")
                r.add_argument("--selector", help="default: a dated selector like my202611")

    add_alias_parser(sub, command, actions, wanted("alias"))
    from mailyard.cli_sieve import add_sieve_parser

    add_sieve_parser(sub, command, actions, wanted("sieve"))
    p = command(sub, "user", "accounts: add, list, remove, passwd, quota")
    if wanted("user"):
        us = actions(p)
        for action, text in (("add", "create an account"), ("passwd", "set a new password")):
            q = command(us, action, text)
            q.add_argument("address", help="user@domain, in a local domain")
            q.add_argument("--password-stdin", action="store_true",
                           help="read the password from the first line of standard input (needed"
                                " when standard input is not a terminal)")
            if action == "add":
                q.add_argument("--quota", type=parse_size, default=None,
                               help="e.g. 500M, 10G (default: [limits] default_quota)")
        command(us, "list", "every account with its use and quota")
        command(us, "remove", "delete an account and all its mail").add_argument(
            "address", help="the account's address")
        q = command(us, "quota", "set an account's quota")
        q.add_argument("address", help="the account's address")
        q.add_argument("bytes", type=parse_size, help="e.g. 5000, 500K, 10M, 2G")

    p = command(sub, "queue", "the work queue: deliveries, sending, indexing")
    if wanted("queue"):
        qs = actions(p)
        command(qs, "stats", "counts of ready, leased, delayed and dead items")
        command(qs, "list", "the items waiting").add_argument(
            "--limit", type=positive_int, default=1000, help="at most this many (default 1000)")
        command(qs, "show", "one item in full").add_argument("id", help="the item's id")
        command(qs, "cancel", "take back a held or waiting send").add_argument(
            "id", help="an item id, or a submission id (cancels all of its items)")

    p = command(sub, "dlq", "the dead-letter queue: items that failed every attempt")
    if wanted("dlq"):
        dl = actions(p)
        command(dl, "list", "the dead items").add_argument(
            "--limit", type=positive_int, default=100, help="at most this many (default 100)")
        command(dl, "show", "one dead item in full").add_argument("id", help="the item's id")
        command(dl, "drop", "delete a dead item").add_argument("id", help="the item's id")
        command(dl, "retry", "put dead items back in the queue").add_argument(
            "id", help="an item id, or 'all'")
        command(dl, "release", "forward held spam to the remote targets it was held from"
                ).add_argument("id", help="the item's id")

    p = command(sub, "mail", "read mailboxes (for admins and tests)")
    if wanted("mail"):
        ms = actions(p)
        q = command(ms, "list", "an account's emails, newest first")
        q.add_argument("address", help="the account's address")
        q.add_argument("--label", default=None, help="a mailbox name or role (inbox, sent, ...)")
        q.add_argument("--limit", type=positive_int, default=1000,
                       help="at most this many (default 1000; says so when there are more)")
        q.add_argument("--json", action="store_true", help="JMAP-style JSON objects")
        q = command(ms, "show", "one email's fields, or its octets")
        q.add_argument("address", help="the account's address")
        q.add_argument("id", help="the email id (from `mail list`)")
        q.add_argument("--raw", action="store_true", help="the message octets, byte-exact")

    p = command(sub, "search", "search an account with the Gmail-style query language",
                epilog="A query that starts with '-' goes after '--':"
                       " mailyard search -- alice@example.com -has:attachment")
    if wanted("search"):
        p.add_argument("address", help="the account's address")
        p.add_argument("query", help="e.g. 'from:alice has:attachment after:2026/1/1"
                       " \"exact words\"'")
        p.add_argument("--limit", type=positive_int, default=50,
                       help="at most this many (default 50)")
        p.add_argument("--json", action="store_true", help="JSON, with snippets")
        p.add_argument("--relevance", action="store_true", help="best match first, not newest")
        p.add_argument("--anywhere", action="store_true", help="include Spam and Trash")

    p = command(sub, "reindex", "rebuild the full-text index from the stored mail")
    if wanted("reindex"):
        p.add_argument("address", nargs="?", help="one account (default: every account)")

    p = command(sub, "token", "API tokens (JMAP bearer credentials)")
    if wanted("token"):
        ts = actions(p)
        q = command(ts, "create", "make a token; it is printed once")
        q.add_argument("address", help="the account the token acts for")
        q.add_argument("--name", default="", help="what the token is for")
        q.add_argument("--days", type=lifetime_days, default=None,
                       help="lifetime in days, fractions allowed (default: no expiry)")
        command(ts, "list", "an account's tokens").add_argument(
            "address", help="the account's address")
        q = command(ts, "revoke", "make a token stop working")
        q.add_argument("address", help="the account's address")
        q.add_argument("id", help="the token's id (from `token list`)")

    p = command(sub, "policy", "the MX's allow and deny lists of IPs, networks and domains")
    if wanted("policy"):
        ps = actions(p)
        for action, text in (("allow", "let mail from an IP, network or domain skip the checks"),
                             ("deny", "refuse mail from an IP, network or domain")):
            q = command(ps, action, text)
            q.add_argument("entry", help="an IP address, a network (CIDR) or a sender domain")
            q.add_argument("--reason", default="", help="said in the 554 5.7.1 reply (deny)")
        command(ps, "remove", "take an entry off its list").add_argument(
            "entry", help="as it was added")
        command(ps, "list", "both lists")

    if admin and (only is None or only in ("import", "export")):
        from mailyard.cli_transfer import add_parsers as add_transfer_parsers

        add_transfer_parsers(sub, common)
    if admin and (only is None or only in ("fsck", "gc")):
        from mailyard.cli_ops import add_parsers as add_ops_parsers

        add_ops_parsers(sub, common)

    p = command(sub, "account", "where accounts live, with [store] metadata a list of shards")
    if wanted("account"):
        acs = actions(p)
        q = command(acs, "move", "move an account to another shard while it is in use")
        q.add_argument("address", help="the account's address")
        q.add_argument("shard", help='the shard\'s position in [store] metadata: "0", "1", ...')
        command(acs, "shards", "the shards and their account counts")

    p = command(sub, "cluster", "the nodes, queue, shards and engines of a cluster ([cluster])")
    if wanted("cluster"):
        command(actions(p), "status", "nodes seen (heartbeats), queue depth and streams, shard"
                " sizes, each engine's health (exit status 1 when a required one is down)")
    return parser, sub.choices


async def cmd_alias(rt: Runtime, args: argparse.Namespace) -> None:
    from mailyard.cli_routing import cmd_alias as run

    await run(rt, args)


async def cmd_sieve(rt: Runtime, args: argparse.Namespace) -> None:
    from mailyard.cli_sieve import cmd_sieve as run

    await run(rt, args)


async def cmd_cluster(rt: Runtime, args: argparse.Namespace) -> None:
    from mailyard.cli_cluster import cmd_cluster as run

    await run(rt, args)


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
    index = ""
    if rt.config.store.search == "postgresql":  # the index is in the shards: it moves too
        from mailyard.store.postgres.search_move import move_with_index
        from mailyard.store.postgres.search_shards import ShardedSearchIndex

        assert isinstance(rt.index, ShardedSearchIndex)
        report, moved = await move_with_index(rt.store, rt.index, args.address, args.shard)
        index = (f"; search index: {moved.copied} documents copied, {moved.caught_up}"
                 " caught up")
    else:
        report = await move_account(rt.store, args.address, args.shard)
    if report.source == report.target:
        print(f"{args.address} is on shard {args.shard}"
              + (f" ({report.cleaned} left-over rows removed)" if report.cleaned else "")
              + index)
        return
    print(f"{args.address} moved from shard {report.source} to {report.target}:"
          f" {report.copied} rows copied, {report.caught_up} caught up, writers held"
          f" {report.final_seconds * 1000:.0f} ms, {report.seconds:.2f} s in all{index}")


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
    "account": cmd_account, "alias": cmd_alias, "sieve": cmd_sieve, "cluster": cmd_cluster,
}


def cmd_policy(config: Config, args: argparse.Namespace) -> None:
    """Takes effect at the running server's next check: it re-reads the lists on change."""
    from mailyard.app import open_policy_store
    from mailyard.services.checks.policy import parse_entry
    from mailyard.store.ports import NotFound

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
    """The command gets a Runtime whose parts are built on first use: `user list` opens the
    MailStore and imports nothing of the services it does not call."""
    from mailyard.app import Runtime
    from mailyard.cli_nats import noticed

    runtime = Runtime(config, make_data_dir=_starts_data(args))
    try:
        await noticed(COMMANDS[args.command](runtime, args), config.cluster.nats)
    finally:
        runtime.close()


_STARTING = frozenset({"add", "generate", "rotate", "allow", "deny"})
"""Actions that may be the first on a new data directory (`domain add`, `user add`, a DKIM
key, a policy entry, an alias) and so make it; so does setting a catch-all."""


def _starts_data(args: argparse.Namespace) -> bool:
    """`serve`, and a command that adds something, may make the data directory."""
    actions = {getattr(args, dest, None) for dest in ("action", "dkim_action", "alias_action")}
    catchall = args.action == "catchall" and args.address and not args.off \
        if args.command == "domain" else False
    return args.command == "serve" or bool(actions & _STARTING) or bool(catchall)


class NoDataDirectory(ValueError):
    """A command that reads or changes what is there, where nothing is: a mistyped
    --data-dir or the wrong working directory, which used to leave an empty mailyard-data
    behind and answer from it as if the server had no mail."""


def _check_data_dir(config: Config, args: argparse.Namespace) -> None:
    """With the MailStore in data_dir (SQLite, the default) and no cluster, a command that
    does not add anything needs the directory to exist; it is not made for it. (A cluster
    node's queue and bus are in NATS, which `queue stats` reads with no data_dir.)"""
    if config.store.metadata or config.store.shards or config.cluster.nats \
            or _starts_data(args) or config.data_dir.exists():
        return
    where = "" if config.data_dir.is_absolute() else f" (in {os.getcwd()})"
    raise NoDataDirectory(
        f"no data directory {config.data_dir}{where}: nothing has been set up"
        " there; give --data-dir DIR (or the --config that names data_dir), or start with"
        " `mailyard domain add DOMAIN`")


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
            return None  # --help, --version, or something argparse will refuse
    return None


def cmd_config(args: argparse.Namespace) -> None:
    """check: the file loads (every key known, every value of its type and range) and this is
    what the server would run with; sample: the commented defaults."""
    from mailyard import config as configuration
    from mailyard import configdoc

    if args.action == "sample":
        sys.stdout.write(configdoc.sample())
        return
    config = configuration.load(args.file or args.config, data_dir=args.data_dir)
    if config.source is None:
        print("mailyard: no config file (--config, $MAILYARD_CONFIG, ./mailyard.toml):"
              " the built-in defaults", file=sys.stderr)
    _check_tls(config)
    sys.stdout.write(configdoc.effective(config))
    if config.source is not None:
        print(f"mailyard: {config.source}: valid", file=sys.stderr)


def _check_tls(config: Config) -> None:
    """[tls] certificate and private_key, when set, are files that load as a certificate chain
    and its key: `config check` says so, and `serve` stops with the key's name rather than
    "[Errno 2] No such file or directory" or "[SSL] PEM lib" from the middle of start-up."""
    from pathlib import Path

    from mailyard.config import ConfigError

    certificate, key = config.tls.certificate, config.tls.private_key
    for name, path in (("certificate", certificate), ("private_key", key)):
        if path and not Path(path).is_file():
            raise ConfigError(f"tls.{name}: {path} is not a file")
    if not certificate:
        return
    import ssl

    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(certificate, key or None)
    except (ssl.SSLError, OSError) as e:
        raise ConfigError(f"tls.certificate {certificate!r}"
                          + (f" with tls.private_key {key!r}" if key else "")
                          + f": cannot load them as a PEM certificate chain and its key"
                          f" ({getattr(e, 'reason', None) or e})") from None


def _check_listeners(config: Config) -> None:
    """Bind every configured listener address once, all at the same time, before anything
    starts, so that a port already taken (another server, or two keys on one port) stops
    start-up with the [listen] key that names it rather than a traceback from the middle of
    it. The sockets are closed again; the server binds its own right after."""
    import socket
    from dataclasses import fields

    bound: list[socket.socket] = []
    try:
        for f in fields(config.listen):
            address = getattr(config.listen, f.name)
            if not address:
                continue
            host, _, port = address.rpartition(":")
            if int(port) == 0:
                continue
            try:
                infos = socket.getaddrinfo(host.strip("[]"), int(port),
                                           type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
            except socket.gaierror as e:
                raise ValueError(f'[listen] {f.name} = "{address}": {e.strerror}') from None
            for family, kind, proto, _, sockaddr in infos:
                s = socket.socket(family, kind, proto)
                bound.append(s)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                try:
                    s.bind(sockaddr)
                    s.listen()  # two bound but idle SO_REUSEADDR sockets may share a port
                except OSError as e:
                    raise ValueError(f'[listen] {f.name} = "{address}": cannot listen there:'
                                     f" {e.strerror or e}") from None
    finally:
        for s in bound:
            s.close()


def _bind_error(config: Config, error: OSError) -> str:
    """One line for a listener that failed to bind after the check (a race with another
    program): the [listen] key whose port the error names, when one does."""
    import re
    from dataclasses import fields

    ports = {int(p) for p in re.findall(r"', (\d+)\)", str(error))}
    for f in fields(config.listen):
        address = getattr(config.listen, f.name)
        if address and int(address.rpartition(":")[2]) in ports:
            return f'[listen] {f.name} = "{address}": cannot listen there: {error.strerror}'
    return f"cannot start: {error.strerror or error}"


def _serve(config: Config, args: argparse.Namespace) -> int:
    """Any error but a listener's is the server's own, and keeps its traceback."""
    import asyncio
    import contextlib
    import errno
    import logging

    from mailyard.app import serve
    from mailyard.log import configure as configure_logging

    try:
        _check_listeners(config)
    except ValueError as e:
        print(f"mailyard: {e}", file=sys.stderr)
        return 2
    _check_tls(config)  # a ConfigError: main's one line and status 2
    configure_logging(config.log.format, args.log_level or config.log.level)
    # aiosmtpd logs every command line at INFO: a fifth of the listener's CPU under load.
    logging.getLogger("mail.log").setLevel(max(logging.WARNING, logging.root.level))
    with contextlib.suppress(ImportError):
        import uvloop
        uvloop.install()
    try:
        asyncio.run(serve(config, workers=args.workers))
    except OSError as e:
        if e.errno not in (errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES):
            raise
        print(f"mailyard: {_bind_error(config, e)}", file=sys.stderr)
        return 2
    return 0


_FILE_ERRORS = (FileNotFoundError, FileExistsError, IsADirectoryError, NotADirectoryError,
                PermissionError)


def _refused_login(error: BaseException) -> str | None:
    """A PostgreSQL server that answered but refused the configured database, role or
    password (SQLSTATE 3D000, class 28): the [store] setting is the user's to fix, so one
    line and status 2, not asyncpg's traceback. Read off the error's SQLSTATE, so that asyncpg
    need not be imported to ask."""
    state = getattr(error, "sqlstate", None)
    if not (type(error).__module__.startswith("asyncpg") and isinstance(state, str)):
        return None
    if state == "3D000" or state.startswith("28"):
        return f"the PostgreSQL server refused the [store] settings: {_one_line(error)}"
    return None


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def main(argv: list[str] | None = None) -> int:
    """Exit status 0, or 2 for a user's mistake (usage, config, a name that does not exist,
    a value that does not parse), or 1 when a command ran but failed (fsck found problems it
    left, a search over its time budget, a store that could not be reached); in every case
    one line on stderr, never a traceback."""
    argv = sys.argv[1:] if argv is None else argv
    command = _command_of(argv)
    args = build_parser(admin=command not in ("serve", "config"), only=command).parse_args(argv)
    from mailyard import config as configuration  # not before: --help, --version need none

    try:
        if args.command == "config":
            cmd_config(args)
            return 0
        return _run(configuration.load(args.config, data_dir=args.data_dir), args)
    except configuration.ConfigError as e:
        print(f"mailyard: configuration error: {_one_line(e)}", file=sys.stderr)
        return 2
    except (ValueError, EOFError, *_FILE_ERRORS) as e:  # QueryError: a ValueError
        text = _one_line(e) if not isinstance(e, EOFError) else "no input"
        if isinstance(e, OSError) and e.filename is not None:
            text = f"{e.filename}: {e.strerror}"
            if isinstance(e, FileExistsError) and not os.path.isdir(e.filename):
                text = f"{e.filename}: is a file, not a directory"  # mkdir's "File exists"
        print(f"mailyard: {text}", file=sys.stderr)
        return 2
    except OSError as e:  # the store or a network peer: not the user's doing
        print(f"mailyard: {_one_line(e)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("mailyard: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        if (refused := _refused_login(e)) is None:
            raise
        print(f"mailyard: {refused}", file=sys.stderr)
        return 2


def _run(config: Config, args: argparse.Namespace) -> int:
    """A command on the stores, with their errors (imported here, not by `config`): over its
    time budget or a schema too new to open, 1; anything else a store refuses, 2."""
    import asyncio

    from mailyard.store.ports import QueryTimeout, StoreError
    from mailyard.store.sqlite.db import SchemaTooNew

    _check_data_dir(config, args)
    try:
        if args.command == "serve":
            return _serve(config, args)
        if args.command == "policy":
            cmd_policy(config, args)
        else:
            asyncio.run(_admin(config, args))
    except QueryTimeout as e:  # ran, but over its budget
        print(f"mailyard: {_one_line(e)}", file=sys.stderr)
        return 1
    except StoreError as e:
        print(f"mailyard: {_one_line(e)}", file=sys.stderr)
        return 2
    except SchemaTooNew as e:  # the store is not the user's doing
        print(f"mailyard: {_one_line(e)}", file=sys.stderr)
        return 1
    return int(getattr(args, "exit_code", 0))


if __name__ == "__main__":
    raise SystemExit(main())
