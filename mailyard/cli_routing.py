"""`mailyard alias`, `mailyard domain alias` and `mailyard domain catchall`: the routing rules
(services/routing.py). They take effect at the running server's next RCPT: the server reads
the rules from the store on every look-up."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mailyard.app import Runtime

Command = Callable[..., argparse.ArgumentParser]


def add_alias_parser(sub: Any, command: Command, actions: Callable[..., Any],
                     wanted: bool) -> None:
    p = command(sub, "alias", "addresses delivered to other addresses (local or remote)",
                description="An alias delivers mail for its address to one or more targets:"
                            " local accounts, other aliases, or remote addresses (forwarded"
                            " with SRS so SPF passes at the receiver).")
    if not wanted:
        return
    acts = actions(p)
    q = command(acts, "add", "make an alias, or give it more targets")
    q.add_argument("address", help="the alias, e.g. team@example.org (in a local domain)")
    q.add_argument("targets", nargs="*", metavar="TARGET",
                   help="where its mail goes: user@example.org, friend@elsewhere.example")
    q.add_argument("--keep-copy", action="store_true",
                   help="also keep the mail in the address's own mailbox (when forwarding an"
                        " account's mail)")
    q = command(acts, "remove", "remove an alias, or only some of its targets")
    q.add_argument("address", help="the alias")
    q.add_argument("targets", nargs="*", metavar="TARGET", help="only these targets")
    command(acts, "list", "every alias with its targets")


def add_domain_actions(ds: Any, command: Command, actions: Callable[..., Any]) -> None:
    q = command(ds, "alias", "alias domains: every address at one is the same at another")
    das = actions(q, "alias_action")
    r = command(das, "add", "make ALIAS an alias of DOMAIN: x@ALIAS is delivered as x@DOMAIN")
    r.add_argument("alias", help="e.g. example.net (not a local domain itself)")
    r.add_argument("domain", help="a local domain, e.g. example.org")
    r = command(das, "remove", "stop accepting mail for an alias domain")
    r.add_argument("alias", help="the alias domain")
    command(das, "list", "every alias domain and its domain")
    q = command(ds, "catchall", "the address that gets a domain's mail no other rule takes")
    q.add_argument("name", help="the local domain")
    q.add_argument("address", nargs="?", help="where such mail goes (omit to show it)")
    q.add_argument("--off", action="store_true", help="remove the domain's catch-all")


async def cmd_alias(rt: Runtime, args: argparse.Namespace) -> None:
    routing = rt.routing
    if args.action == "add":
        targets = await routing.add_alias(args.address, args.targets, keep_copy=args.keep_copy)
        print(f"alias {args.address.lower()} -> {', '.join(targets)}")
    elif args.action == "remove":
        await routing.remove_alias(args.address, args.targets)
        what = f" to {', '.join(args.targets)}" if args.targets else ""
        print(f"alias {args.address.lower()}{what} removed")
    else:
        by_source: dict[str, list[str]] = {}
        for row in await routing.routes("alias"):
            by_source.setdefault(row.source, []).append(row.target)
        for source, targets in by_source.items():
            shown = [t + " (own mailbox)" if t == source else t for t in targets]
            print(f"{source}\t{', '.join(shown)}")


async def cmd_domain_routing(rt: Runtime, args: argparse.Namespace) -> None:
    from mailyard.config import domain_name
    from mailyard.services.routing import RouteError

    routing = rt.routing
    if args.action == "catchall":
        name = domain_name(args.name)
        if args.off:
            if args.address:
                raise RouteError("give an address or --off, not both")
            if not await routing.set_catchall(name, None):
                raise RouteError(f"{name} has no catch-all")
            print(f"catch-all of {name} removed")
        elif args.address:
            await routing.set_catchall(name, args.address)
            print(f"catch-all of {name} -> {args.address.lower()}")
        else:
            targets = [r.target for r in await routing.routes("catchall") if r.source == name]
            print(f"{name}\t{targets[0] if targets else '(none)'}")
    elif args.alias_action == "add":
        await routing.add_domain_alias(args.alias, args.domain)
        print(f"domain alias {domain_name(args.alias)} -> {domain_name(args.domain)}")
    elif args.alias_action == "remove":
        await routing.remove_domain_alias(args.alias)
        print(f"domain alias {domain_name(args.alias)} removed")
    else:
        for row in await routing.routes("domain"):
            print(f"{row.source}\t{row.target}")
