"""`mailyard sieve put|list|get|activate|deactivate|delete|rename|check USER [NAME] [FILE]`: an
account's Sieve scripts (the same service as ManageSieve: checked before they are stored).

A user's mistake (a script that does not parse, a name that does not exist, an active script
deleted) is one line on stderr and exit status 2 (cli.main)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mailyard.app import Runtime

Command = Callable[..., argparse.ArgumentParser]


def add_sieve_parser(sub: Any, command: Command, actions: Callable[..., Any],
                     wanted: bool) -> None:
    p = command(sub, "sieve", "an account's Sieve filters (RFC 5228)",
                description="Sieve scripts run on every message delivered to the account;"
                            " at most one is active. The same scripts ManageSieve edits.")
    if not wanted:
        return
    acts = actions(p)
    account = "the account's address"
    script = "the script's name (as ManageSieve lists it)"
    q = command(acts, "put", "check and store a script (from FILE, or - for stdin)")
    q.add_argument("address", help=account)
    q.add_argument("name", help=script)
    q.add_argument("file", help="the script's file; - reads standard input")
    q.add_argument("--activate", action="store_true", help="and make it the active one")
    command(acts, "list", "the account's scripts; * marks the active one").add_argument(
        "address", help=account)
    for name, text in (("get", "print a script"), ("activate", "make a script the active one"),
                       ("delete", "delete a script (not the active one)")):
        q = command(acts, name, text)
        q.add_argument("address", help=account)
        q.add_argument("name", help=script)
    q = command(acts, "rename", "rename a script (the active one stays active)")
    q.add_argument("address", help=account)
    q.add_argument("name", help=script)
    q.add_argument("new_name", metavar="new-name", help="the name it takes")
    command(acts, "deactivate", "no script runs any more").add_argument("address",
                                                                        help=account)
    q = command(acts, "check", "check a script without storing it")
    q.add_argument("address", help=account)
    q.add_argument("file", help="the script's file; - reads standard input")


def _read(file: str) -> str:
    if file == "-":
        return sys.stdin.read()
    return Path(file).read_text(encoding="utf-8")


async def cmd_sieve(rt: Runtime, args: argparse.Namespace) -> None:
    from mailyard.core.sieve import SieveSyntaxError
    from mailyard.services.sieve import ScriptRefused
    from mailyard.store.ports import Conflict, NotFound

    sieve = rt.sieve
    try:
        account = await rt.store.get_account(args.address)
    except NotFound:
        raise ValueError(f"no account {args.address}") from None
    try:
        if args.action == "put":
            await sieve.put(account, args.name, _read(args.file))
            if args.activate:
                await sieve.activate(account, args.name)
            print(f"script {args.name} stored" + (" and active" if args.activate else ""))
        elif args.action == "list":
            for script in await sieve.list(account):
                print(("* " if script.active else "  ") + script.name)
        elif args.action == "get":
            sys.stdout.write((await sieve.get(account, args.name)).content)
        elif args.action == "activate":
            await sieve.activate(account, args.name)
            print(f"script {args.name} is active")
        elif args.action == "deactivate":
            await sieve.activate(account, None)
            print("no script is active")
        elif args.action == "delete":
            await sieve.delete(account, args.name)
            print(f"script {args.name} deleted")
        elif args.action == "rename":
            try:
                await sieve.rename(account, args.name, args.new_name)
            except Conflict:
                raise ValueError(f"{args.address} has a script {args.new_name!r} already"
                                 ) from None
            print(f"script {args.name} renamed to {args.new_name}")
        else:
            sieve.check(_read(args.file))
            print("script is valid")
    except NotFound:
        raise ValueError(f"{args.address} has no script {getattr(args, 'name', '')!r}"
                         ) from None
    except (SieveSyntaxError, ScriptRefused) as e:
        raise ValueError(f"{getattr(args, 'name', None) or args.file}: {e}") from None
