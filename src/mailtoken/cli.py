"""The command line: argparse, one `_add_<verb>`/`_run_<verb>` pair per verb, and the only place that turns
errors into exit codes and stderr lines.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass

from . import __version__, errors, ui
from .errors import EXIT_CODES, MailtokenError, UsageError

DEFAULT_TIMEOUT = 30.0


@dataclass(frozen=True)
class Context:
    verbose: bool
    config_path: str
    timeout: float


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message} (see '{self.prog} --help')")


def _exit_codes_text() -> str:
    return "exit codes:\n" + "\n".join(f"  {code:<3} {text}" for code, text in EXIT_CODES.items())


def _load(ctx: Context):
    from . import config

    return config.load(ctx.config_path)


def _account(ctx: Context, name: str):
    return _load(ctx).account(name)


# --- token, xoauth2, oauthbearer -----------------------------------------------------------------------


def _add_secret_options(p: argparse.ArgumentParser, sasl: bool) -> None:
    p.add_argument("account", help="account name from the config")
    p.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"give up after this long (default {DEFAULT_TIMEOUT:g})",
    )
    if sasl:
        p.add_argument(
            "--user",
            metavar="ADDR",
            help="mailbox to authenticate as (default: the account's email; a shared mailbox's address goes here)",
        )
        p.add_argument("--raw", action="store_true", help="print the unencoded string (for Python's imaplib etc.)")


def _token_record(ctx: Context, name: str):
    from . import tokens
    from .deadline import Deadline

    acct = _account(ctx, name)
    deadline = Deadline(ctx.timeout)
    with deadline.enforced(acct.name):
        return tokens.get(acct, ctx.config_path, deadline)


def _run_token(ctx: Context, args: argparse.Namespace) -> str:
    return _token_record(ctx, args.account).token


def _run_xoauth2(ctx: Context, args: argparse.Namespace) -> str:
    from . import sasl

    rec = _token_record(ctx, args.account)
    user = args.user or rec.user
    return sasl.xoauth2_raw(user, rec.token) if args.raw else sasl.xoauth2(user, rec.token)


def _run_oauthbearer(ctx: Context, args: argparse.Namespace) -> str:
    from . import sasl

    rec = _token_record(ctx, args.account)
    user = args.user or rec.user
    encode = sasl.oauthbearer_raw if args.raw else sasl.oauthbearer
    return encode(user, rec.token, args.host, args.port)


# --- login, logout, add, status ---------------------------------------------------------------------------


def _run_login(ctx: Context, args: argparse.Namespace) -> None:
    from . import login

    acct = _account(ctx, args.account)
    login.login(acct, ctx.config_path, "browser" if args.browser else "device", args.login_timeout)


def _run_logout(ctx: Context, args: argparse.Namespace) -> None:
    from . import login

    removed = login.logout(_account(ctx, args.account))
    ui.say(f"{args.account}: removed {', '.join(removed)}" if removed else f"{args.account}: nothing was stored")


def _run_add(ctx: Context, args: argparse.Namespace) -> None:
    from . import accounts

    values = {
        "email": args.email,
        "client_id": args.client_id,
        "tenant": args.tenant,
        "authority": args.authority,
        "store": args.store,
        "cloud": args.cloud,
    }
    acct = accounts.add(ctx.config_path, args.account, values, interactive=sys.stdin.isatty())
    ui.say(f"{acct.name}: added to {ctx.config_path}; next: mailtoken login {acct.name}")


def _run_status(ctx: Context, args: argparse.Namespace) -> str:
    from . import accounts

    rows = accounts.status(_load(ctx), args.accounts)
    if args.json:
        return json.dumps(accounts.as_json(rows), indent=2)
    return accounts.render(rows)


# --- parser ------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="diagnostics on stderr (never a secret)"
    )
    parser = _Parser(
        prog="mailtoken",
        description="OAuth2 access tokens for mail clients (msmtp, mbsync, mutt, offlineimap3, ...).",
        epilog=_exit_codes_text() + "\n\nconfig: $MAILTOKEN_CONFIG, else ~/.config/mailtoken/config.toml",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"mailtoken {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    def verb(name: str, help: str, run: Callable) -> argparse.ArgumentParser:
        p = sub.add_parser(
            name,
            help=help,
            description=help,
            parents=[common],
            epilog=_exit_codes_text(),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        p.set_defaults(run=run)
        return p

    p = verb("token", "print a fresh access token (refreshing silently when needed)", _run_token)
    _add_secret_options(p, sasl=False)
    p = verb("xoauth2", "print the SASL XOAUTH2 initial response, base64", _run_xoauth2)
    _add_secret_options(p, sasl=True)
    p = verb("oauthbearer", "print the SASL OAUTHBEARER (RFC 7628) initial response, base64", _run_oauthbearer)
    _add_secret_options(p, sasl=True)
    p.add_argument("--host", help="server host name to put in the string")
    p.add_argument("--port", type=int, help="server port to put in the string")

    p = verb("login", "sign in (device code by default) and store the grant", _run_login)
    p.add_argument("account")
    how = p.add_mutually_exclusive_group()
    how.add_argument(
        "--device", action="store_true", help="device code flow: open a URL anywhere, enter a code (default)"
    )
    how.add_argument(
        "--browser",
        action="store_true",
        help="authorization code + PKCE with a http://localhost "
        "redirect; opens a browser where there is a display, else prints the URL",
    )
    p.add_argument(
        "--timeout",
        dest="login_timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="give up waiting for the sign-in after this long (default: until the code expires)",
    )

    p = verb("logout", "remove every stored token of the account", _run_logout)
    p.add_argument("account")

    p = verb("add", "add an account to the config (asks for what is missing on a terminal)", _run_add)
    p.add_argument("account")
    p.add_argument("--email")
    p.add_argument("--client-id", dest="client_id")
    p.add_argument("--tenant", help="common (default), organizations, consumers, a domain or a GUID")
    p.add_argument("--authority", help="full authority URL (national clouds, test servers)")
    p.add_argument("--cloud", help="global (default), usgov, usgov-dod or china")
    p.add_argument("--store", choices=("auto", "keyring", "file"))

    p = verb("status", "show accounts, sign-in state, token expiry and store (never a secret)", _run_status)
    p.add_argument("accounts", nargs="*", metavar="ACCOUNT")
    p.add_argument("--json", action="store_true", help="machine-readable output (format_version 1)")
    return parser


def main(argv: list[str]) -> int:
    ctx: Context | None = None
    try:
        args = build_parser().parse_args(argv)
        ui.verbose = bool(getattr(args, "verbose", False))
        from . import paths

        ctx = Context(
            verbose=ui.verbose, config_path=paths.config_path(), timeout=getattr(args, "timeout", DEFAULT_TIMEOUT)
        )
        ui.debug(f"config {ctx.config_path}; records in {paths.record_dir()}; state in {paths.state_dir()}")
        output = args.run(ctx, args)
        if output is not None:
            _emit(output)
        return errors.EX_OK
    except MailtokenError as exc:
        print(errors.format_error(exc, verbose=ui.verbose), file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("mailtoken: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # the one top-level catch: one line, never the exception's text (it may hold a token)
        if ui.verbose:
            # Frames only: an exception's message can carry a secret.
            sys.stderr.write("".join(traceback.format_tb(exc.__traceback__)))
        print(errors.format_error(exc), file=sys.stderr)
        return errors.EX_SOFTWARE


def _emit(text: str) -> None:
    try:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
