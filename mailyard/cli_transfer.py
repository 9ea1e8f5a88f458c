"""`mailyard import` and `mailyard export`: the CLI side of services/transfer.py (progress bars
with tqdm, the password kept out of argv, the summary at the end)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mailyard.cli import positive_int

if TYPE_CHECKING:
    from tqdm import tqdm

    from mailyard.app import Runtime

# tqdm, imaplib and services/transfer.py are imported by the commands: every admin command
# builds these parsers.

PASSWORD_ENV = "MAILYARD_IMAP_PASSWORD"


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    text = "bring mail in: mbox, Maildir, .eml files, or another IMAP account"
    p = sub.add_parser("import", parents=[common], help=text, description=text)
    p.add_argument("address", help="the account the mail goes to")
    p.add_argument("path", nargs="?", help="mbox file, Maildir, or a directory of .eml/mbox")
    p.add_argument("--imap", metavar="URL", help="imaps://user@host[:port] (or imap:// with"
                   " STARTTLS); the password from --password-file or $" + PASSWORD_ENV)
    p.add_argument("--password-file", help="file whose first line is the IMAP password")
    p.add_argument("--insecure", action="store_true",
                   help="do not verify the IMAP server's TLS certificate")
    p.add_argument("--no-gmail", action="store_true",
                   help="read every mailbox even if the server has Gmail's X-GM-EXT-1")
    p.add_argument("--label", help="mailbox for messages that come with none (default INBOX)")
    p.add_argument("--batch-size", type=positive_int, default=500,
                   help="messages stored per transaction, fewer once they come to 64 MiB"
                        " (default 500)")
    text = "write an account's mail out, byte-exact"
    p = sub.add_parser("export", parents=[common], help=text, description=text)
    p.add_argument("address", help="the account's address")
    p.add_argument("path", help="the mbox file or Maildir to write")
    p.add_argument("--format", choices=["mbox", "maildir"], default="mbox",
                   help="mboxrd file or Maildir (default mbox)")
    p.add_argument("--label", help="only this mailbox")


def _bar(total: int | None, what: str) -> tqdm[Any]:
    from tqdm import tqdm

    return tqdm(total=total, unit="msg", desc=what, file=sys.stderr, mininterval=0.5,
                disable=None)


def _password(args: argparse.Namespace) -> str:
    if args.password_file:
        return Path(args.password_file).read_text().splitlines()[0]
    if PASSWORD_ENV in os.environ:
        return os.environ[PASSWORD_ENV]
    raise ValueError(f"no IMAP password: give --password-file or set ${PASSWORD_ENV}")


async def cmd_import(rt: Runtime, args: argparse.Namespace) -> None:
    import imaplib

    from mailyard.services import transfer

    account = await rt.mailbox.account(args.address)
    if args.imap:
        source = transfer.ImapSource(args.imap, _password(args), verify_tls=not args.insecure,
                                     gmail=not args.no_gmail)
        print(f"listing {args.imap} ...", file=sys.stderr)
        try:
            messages = source.messages()
        except (OSError, imaplib.IMAP4.error) as e:
            raise ValueError(f"{args.imap}: {e}") from None
        source_id = args.imap
    elif args.path:
        path = Path(args.path).resolve()
        messages = transfer.local_messages(path, args.label)
        source_id = str(path)
    else:
        raise ValueError("give a PATH or --imap URL")
    importer = transfer.Importer(rt.mailbox, account, rt.config.data_dir / "transfer",
                                 source_id, batch_size=args.batch_size)
    with _bar(len(messages), "import") as bar:
        summary = await importer.run(messages, bar.update)
    for origin, reason in summary.failed:
        print(f"failed: {origin}: {reason}", file=sys.stderr)
    print(summary.text())


async def cmd_export(rt: Runtime, args: argparse.Namespace) -> None:
    from mailyard.services import transfer

    account = await rt.mailbox.account(args.address)
    path = Path(args.path)
    export = transfer.export_mbox if args.format == "mbox" else transfer.export_maildir
    with _bar(None, "export") as bar:
        summary = await export(rt.mailbox, account, path, args.label, bar.update)
    for origin, reason in summary.failed:
        print(f"failed: {origin}: {reason}", file=sys.stderr)
    print(summary.text())
