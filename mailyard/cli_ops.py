"""`mailyard fsck` and `mailyard gc`: the operator's checks of the stored data."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mailyard.app import Runtime

# The services are imported by the commands: every admin command builds these parsers.


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    text = "check blobs, counters, UIDs, threads and the index; --repair"
    p = sub.add_parser("fsck", parents=[common], help=text,
                       description=text + " (exit status 1 when a problem is left)")
    p.add_argument("address", nargs="?", help="one account (default: every account)")
    p.add_argument("--repair", action="store_true",
                   help="fix what can be fixed (counters, attachment refs, index documents)")
    text = ("delete dead letters older than [queue] dead_letter_days, then remove blobs no"
            " email, upload or queued message refers to")
    p = sub.add_parser("gc", parents=[common], help=text, description=text)
    p.add_argument("--grace", type=float, default=None, metavar="SECONDS",
                   help="keep anything younger than this (default 24 h), for deliveries in"
                        " flight")
    p.add_argument("--dry-run", action="store_true", help="only list what would be freed")


async def cmd_fsck(rt: Runtime, args: argparse.Namespace) -> None:
    """Exit status 1 when a problem is left (found without --repair, or not repairable)."""
    from mailyard.services.fsck import Fsck

    accounts = [await rt.store.get_account(args.address)] if args.address \
        else await rt.store.list_accounts()
    report = await Fsck(rt.mailbox, rt.store, repair=args.repair).run(accounts)
    for problem in report.problems:
        print(problem)
    left = report.unresolved
    print(f"{report.accounts} account(s), {report.emails} email(s), {report.blobs} blob(s)"
          f" checked: {len(report.problems)} problem(s), "
          f"{len(report.problems) - len(left)} repaired, {len(left)} left", file=sys.stderr)
    if left:
        args.exit_code = 1


async def cmd_gc(rt: Runtime, args: argparse.Namespace) -> None:
    from mailyard.services.gc import DEFAULT_GRACE, collect

    grace = DEFAULT_GRACE if args.grace is None else args.grace
    days = rt.config.queue.dead_letter_days
    report = await collect(rt.store, rt.blobs, rt.queue, grace=grace, dry_run=args.dry_run,
                           dead_letter_days=days)
    verb = "would free" if args.dry_run else "freed"
    if report.expired:
        print(f"{report.expired} dead letter(s) older than {days:g} days"
              f" {'would be ' if args.dry_run else ''}deleted", file=sys.stderr)
    for info in report.freed:
        print(f"{verb}\t{info.blob_id}\t{info.size}")
    print(f"{report.examined} blob(s): {report.referenced} referenced, {report.young} younger"
          f" than {grace:g} s, {len(report.freed)} {verb} ({report.freed_bytes} bytes)",
          file=sys.stderr)
