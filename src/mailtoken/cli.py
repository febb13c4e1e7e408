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
    # A sign-in-required failure here is what notify_cmd exists for: clients run these in the background.
    p.set_defaults(notify=True)
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


def _run_login(ctx: Context, args: argparse.Namespace) -> str | None:
    from . import devicecode, login, notify

    acct = _account(ctx, args.account)
    if (args.no_wait or args.resume) and (args.browser or args.paste):
        raise UsageError("--no-wait and --resume work with the device code flow only, not --browser or --paste")
    if args.no_wait and args.resume:
        raise UsageError("--no-wait starts a sign-in and --resume finishes it: give one of them")
    if args.no_wait:
        return devicecode.start_detached(acct)
    # "default": the device code flow, unless the provider refuses it (login.py then picks the browser or --paste).
    method = "resume" if args.resume else "browser" if args.browser else "paste" if args.paste else "default"
    method = "device" if args.device else method
    login.login(acct, ctx.config_path, method, args.login_timeout)
    notify.reset(acct.name)
    return None


def _run_systemd(ctx: Context, args: argparse.Namespace) -> None:
    from . import systemd

    if args.action == "install":
        systemd.install(enable=not args.no_enable, serve=args.serve)
    else:
        systemd.uninstall()


def _run_refresh(ctx: Context, args: argparse.Namespace) -> int:
    from . import config, refresh

    if args.all and args.accounts:
        raise UsageError("give account names or --all, not both")
    try:
        min_validity = config.parse_duration(args.min_validity)
    except ValueError:
        raise UsageError(f"--min-validity: '{args.min_validity}' is not a duration like 30m, 1h or 90s") from None
    cfg = _load(ctx)
    accounts = [cfg.account(name) for name in args.accounts or sorted(cfg.accounts)]
    return refresh.run(accounts, ctx.config_path, min_validity, args.timeout)


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


# --- config, test ----------------------------------------------------------------------------------------------


def _run_config(ctx: Context, args: argparse.Namespace) -> str:
    from . import clientconf

    client = clientconf.client_name(args.client)
    return clientconf.render(client, _account(ctx, args.account))


def _run_test(ctx: Context, args: argparse.Namespace) -> int:
    from . import doctor

    # Prints one line per protocol as it goes; the exit code says whether every one authenticated.
    return doctor.run_cli(_account(ctx, args.account), ctx.config_path, args)


# --- serve (the bridge) --------------------------------------------------------------------------------------


def _run_serve(ctx: Context, args: argparse.Namespace) -> str | int | None:
    from .bridge import cli as bridge_cli

    return bridge_cli.run(ctx, args, _load)


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
    how.add_argument(
        "--paste",
        action="store_true",
        help="the browser flow without a listener here (SSH, no browser, a non-loopback redirect_uri): open the "
        "URL anywhere, then paste the address the browser was sent to",
    )
    p.add_argument(
        "--timeout",
        dest="login_timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="give up waiting for the sign-in after this long (default: until the code expires)",
    )

    p.add_argument(
        "--no-wait",
        action="store_true",
        help="device code flow for scripts: print 'URL CODE' on stdout and return; finish with --resume",
    )
    p.add_argument("--resume", action="store_true", help="finish the sign-in that 'login --no-wait' started")

    p = verb(
        "refresh",
        "refresh access tokens that expire within --min-validity (for timers; never prompts)",
        _run_refresh,
    )
    p.add_argument("accounts", nargs="*", metavar="ACCOUNT", help="accounts to refresh (default: all)")
    p.add_argument("--all", action="store_true", help="every account in the config (the default)")
    p.add_argument(
        "--min-validity",
        default="30m",
        metavar="DURATION",
        help="refresh a token with less than this left, e.g. 90s, 30m, 2h (default 30m)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"give up on an account after this long (default {DEFAULT_TIMEOUT:g})",
    )

    p = verb("systemd", "install or remove a user timer running 'mailtoken refresh --all' every 20 min", _run_systemd)
    p.add_argument("action", choices=("install", "uninstall"))
    p.add_argument("--no-enable", action="store_true", help="only write the unit files; do not run systemctl --user")
    p.add_argument("--serve", action="store_true", help="install the bridge's service (mailtoken serve) instead")

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

    p = verb("config", "print a ready config block for a mail client and this account", _run_config)
    p.add_argument("client", help="msmtp, mbsync, neomutt, mutt, offlineimap3, getmail6, aerc or curl")
    p.add_argument("account")

    p = verb("test", "sign in to the mail servers with the token (IMAP, POP, SMTP) and explain failures", _run_test)
    p.add_argument("account")
    for proto, example in (("imap", "imaps://HOST:993"), ("pop", "pop3s://HOST:995"), ("smtp", "smtp://HOST:587")):
        p.add_argument(
            f"--{proto}",
            nargs="?",
            const="",
            default=None,
            metavar="URL",
            help=f"test {proto.upper()} (all three when none is given); optionally at another server, like {example}",
        )
    p.add_argument("--host", help="use this host instead of the provider's for every protocol (same ports)")
    p.add_argument("--user", metavar="ADDR", help="mailbox to sign in to (default: the account's email)")
    p.add_argument("--cafile", metavar="PEM", help="trust these CA certificates instead of the system's")
    p.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"give up on the token, and on each server, after this long (default {DEFAULT_TIMEOUT:g})",
    )
    p = verb(
        "serve", "run the local IMAP/POP3/SMTP bridge for password-only clients, or manage its passwords", _run_serve
    )
    from .bridge import cli as bridge_cli

    bridge_cli.add_arguments(p, _Parser)
    return parser


def main(argv: list[str]) -> int:
    ctx: Context | None = None
    args: argparse.Namespace | None = None
    try:
        args = build_parser().parse_args(argv)
        ui.verbose = bool(getattr(args, "verbose", False))
        from . import paths

        ctx = Context(
            verbose=ui.verbose, config_path=paths.config_path(), timeout=getattr(args, "timeout", DEFAULT_TIMEOUT)
        )
        ui.debug(f"config {ctx.config_path}; records in {paths.record_dir()}; state in {paths.state_dir()}")
        output = args.run(ctx, args)
        if isinstance(output, int):  # a command that reported its own per-account failures
            return output
        if output is not None:
            _emit(output)
        return errors.EX_OK
    except MailtokenError as exc:
        print(errors.format_error(exc, verbose=ui.verbose), file=sys.stderr)
        if isinstance(exc, errors.SignInRequired) and ctx is not None and getattr(args, "notify", False):
            from . import notify

            notify.after_error(ctx.config_path, exc.account, exc.message)
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
