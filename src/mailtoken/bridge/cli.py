"""The `serve` verb: `mailtoken serve` (run the bridge), `serve passwd NAME --account A`, `serve revoke NAME`,
`serve list`. Kept light: the parser imports this module for every command."""

from __future__ import annotations

import argparse
import time

from ..commands import Result


def add_arguments(p: argparse.ArgumentParser, parser_class: type[argparse.ArgumentParser]) -> None:
    sub = p.add_subparsers(
        dest="serve_action",
        metavar="ACTION",
        parser_class=parser_class,
        help="passwd, revoke or list a device's local password; none: run the bridge in the foreground",
    )
    sub.required = False
    q = sub.add_parser("passwd", help="make a new local password for a device (printed once, stored hashed)")
    q.add_argument("name", help="the device, like printer or nas")
    q.add_argument("--account", required=True, help="the account whose mail the device may send or read")
    q = sub.add_parser("revoke", help="remove a device's local password")
    q.add_argument("name", help="the device, as 'mailtoken serve list' shows it")
    sub.add_parser("list", help="list devices with a local password (never the password)")


def run(config_path: str, args: argparse.Namespace) -> Result:
    """The serve verb's actions as a Result (cli.py renders it); `mailtoken serve` itself runs until stopped."""
    from .. import config
    from ..errors import UsageError
    from . import passwords

    action = getattr(args, "serve_action", None)
    if action == "passwd":
        acct = config.load(config_path).account(args.account)
        return Result(stdout=passwords.create(args.name, acct.name))
    if action == "revoke":
        if not passwords.revoke(args.name):
            raise UsageError(f"no device '{args.name}' (see 'mailtoken serve list')")
        return Result(notes=[f"{args.name}: local password removed; a running bridge refuses it from now on"])
    if action == "list":
        devices = passwords.listing()
        if not devices:
            return Result(stdout="no devices: add one with 'mailtoken serve passwd NAME --account ACCOUNT'")
        rows = [f"{'DEVICE':<24} {'ACCOUNT':<24} CREATED"]
        for d in devices:
            rows.append(f"{d.name:<24} {d.account:<24} {time.strftime('%Y-%m-%d %H:%M', time.localtime(d.created))}")
        return Result(stdout="\n".join(rows))
    from . import server

    return Result(exit_code=server.serve(config.load(config_path)))
