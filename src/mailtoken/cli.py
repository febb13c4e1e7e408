"""The command line: argparse, one `_add_<verb>` (its options) / `_run_<verb>` (options -> commands/) pair per
verb, one renderer for every command's Result, and the only place that turns errors into exit codes and
stderr lines.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass

from . import __version__, errors, ui
from .commands import Result
from .errors import EXIT_CODES, MailtokenError, UsageError
from .fast import optvalues
from .fast.cached import DEFAULT_TIMEOUT


@dataclass(frozen=True)
class Context:
    """What every verb gets besides its own options: resolved once, before the verb runs."""

    config_path: str
    verbose: bool


Run = Callable[[Context, argparse.Namespace], Result]


def _checked(rule: Callable[[str], object]) -> Callable[[str], object]:
    """An argparse type from an optvalues rule: its reason becomes the usage error's text."""

    def convert(text: str) -> object:
        try:
            return rule(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = rule.__name__
    return convert


_SECONDS = _checked(optvalues.seconds)
_PORT = _checked(optvalues.port)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message} (see '{self.prog} --help')")

    def _check_value(self, action: argparse.Action, value: object) -> None:
        # argparse lists every choice; a typo deserves the one it probably meant.
        if action.choices is not None and value not in action.choices and isinstance(value, str):
            import difflib

            close = difflib.get_close_matches(value, [str(c) for c in action.choices], n=1, cutoff=0.6)
            if close:
                raise argparse.ArgumentError(action, f"invalid choice: '{value}' (did you mean '{close[0]}'?)")
        super()._check_value(action, value)


def _exit_codes_text() -> str:
    return "exit codes:\n" + "\n".join(f"  {code:<3} {text}" for code, text in EXIT_CODES.items())


def _timeout_option(p: argparse.ArgumentParser, help: str) -> None:
    p.add_argument("--timeout", type=_SECONDS, default=DEFAULT_TIMEOUT, metavar="SECONDS", help=help)


# --- token, xoauth2, oauthbearer -----------------------------------------------------------------------


def _add_secret(sub: Callable[..., argparse.ArgumentParser], name: str, help: str, sasl: bool) -> None:
    p = sub(name, help, _run_secret)
    p.add_argument("account", help="account name from the config")
    _timeout_option(p, f"give up after this long, all waiting included (default {DEFAULT_TIMEOUT:g})")
    if sasl:
        p.add_argument(
            "--user",
            metavar="ADDR",
            help="mailbox to authenticate as (default: the account's email; a shared mailbox's address goes here)",
        )
        p.add_argument("--raw", action="store_true", help="print the unencoded string (for Python's imaplib etc.)")
    if name == "oauthbearer":
        p.add_argument("--host", help="server host name to put in the string")
        p.add_argument("--port", type=_PORT, help="server port to put in the string")


def _run_secret(ctx: Context, args: argparse.Namespace) -> Result:
    from .commands import token

    opts = token.Options(
        command=args.command,
        account=args.account,
        config_path=ctx.config_path,
        timeout=args.timeout,
        user=getattr(args, "user", None),
        raw=getattr(args, "raw", False),
        host=getattr(args, "host", None),
        port=getattr(args, "port", None),
    )
    return token.run(opts)


# --- login, logout ---------------------------------------------------------------------------------------


def _add_login(sub: Callable[..., argparse.ArgumentParser]) -> None:
    p = sub("login", "sign in (device code by default) and store the grant", _run_login)
    p.add_argument("account", help="account name from the config")
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
        type=_SECONDS,
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


def _run_login(ctx: Context, args: argparse.Namespace) -> Result:
    from .commands import login

    method = "device" if args.device else "browser" if args.browser else "paste" if args.paste else "default"
    return login.run(
        login.Options(
            account=args.account,
            config_path=ctx.config_path,
            method=method,
            timeout=args.login_timeout,
            no_wait=args.no_wait,
            resume=args.resume,
        )
    )


def _add_logout(sub: Callable[..., argparse.ArgumentParser]) -> None:
    p = sub("logout", "remove every stored token of the account", _run_logout)
    p.add_argument("account", help="account name from the config")


def _run_logout(ctx: Context, args: argparse.Namespace) -> Result:
    from .commands import login

    return login.logout(args.account, ctx.config_path)


# --- refresh, systemd ----------------------------------------------------------------------------------------


def _add_refresh(sub: Callable[..., argparse.ArgumentParser]) -> None:
    p = sub(
        "refresh", "refresh access tokens that expire within --min-validity (for timers; never prompts)", _run_refresh
    )
    p.add_argument("accounts", nargs="*", metavar="ACCOUNT", help="accounts to refresh (default: all)")
    p.add_argument("--all", action="store_true", help="every account in the config (the default)")
    p.add_argument(
        "--min-validity",
        default="30m",
        metavar="DURATION",
        help="refresh a token with less than this left, e.g. 90s, 30m, 2h (default 30m)",
    )
    _timeout_option(p, f"give up on an account after this long (default {DEFAULT_TIMEOUT:g})")


def _run_refresh(ctx: Context, args: argparse.Namespace) -> Result:
    from .commands import refresh

    opts = refresh.Options(
        config_path=ctx.config_path,
        accounts=tuple(args.accounts),
        all=args.all,
        min_validity=args.min_validity,
        timeout=args.timeout,
    )
    return refresh.run(opts)


def _add_systemd(sub: Callable[..., argparse.ArgumentParser]) -> None:
    p = sub("systemd", "install or remove a user timer running 'mailtoken refresh --all' every 20 min", _run_systemd)
    p.add_argument("action", choices=("install", "uninstall"), help="install (write and enable) or uninstall")
    p.add_argument("--no-enable", action="store_true", help="only write the unit files; do not run systemctl --user")
    p.add_argument("--serve", action="store_true", help="install the bridge's service (mailtoken serve) instead")


def _run_systemd(ctx: Context, args: argparse.Namespace) -> Result:
    from .commands import setup

    return setup.systemd(args.action, enable=not args.no_enable, serve=args.serve)


# --- add, status -----------------------------------------------------------------------------------------------


def _add_add(sub: Callable[..., argparse.ArgumentParser]) -> None:
    p = sub("add", "add an account to the config (asks for what is missing on a terminal)", _run_add)
    p.add_argument("account", help="a name for the account (letters, digits, . _ @ + -)")
    p.add_argument("--email", help="the mailbox's address")
    p.add_argument("--client-id", dest="client_id", help="the app registration's Application (client) ID")
    p.add_argument("--tenant", help="common (default), organizations, consumers, a domain or a GUID")
    p.add_argument("--authority", help="full authority URL (national clouds, test servers)")
    p.add_argument("--cloud", help="global (default), usgov, usgov-dod or china")
    p.add_argument("--store", choices=("auto", "keyring", "file"), help="where the grant is kept (default auto)")


def _run_add(ctx: Context, args: argparse.Namespace) -> Result:
    from .commands import status

    values = {k: getattr(args, k) for k in ("email", "client_id", "tenant", "authority", "store", "cloud")}
    return status.add(status.AddOptions(ctx.config_path, args.account, values, interactive=sys.stdin.isatty()))


def _add_status(sub: Callable[..., argparse.ArgumentParser]) -> None:
    p = sub("status", "show accounts, sign-in state, token expiry and store (never a secret)", _run_status)
    p.add_argument("accounts", nargs="*", metavar="ACCOUNT", help="accounts to show (default: all)")
    p.add_argument("--json", action="store_true", help="machine-readable output (format_version 1)")


def _run_status(ctx: Context, args: argparse.Namespace) -> Result:
    from .commands import status

    return status.run(status.Options(ctx.config_path, tuple(args.accounts), args.json))


# --- config, test ----------------------------------------------------------------------------------------------


def _add_config(sub: Callable[..., argparse.ArgumentParser]) -> None:
    from .clientconf import BRIDGE_CLIENTS, CLIENTS

    p = sub("config", "print a ready config block for a mail client and this account", _run_config)
    p.add_argument(
        "client", help=", ".join(CLIENTS) + "; through the bridge (mailtoken serve): " + ", ".join(BRIDGE_CLIENTS)
    )
    p.add_argument("account", help="account name from the config")


def _run_config(ctx: Context, args: argparse.Namespace) -> Result:
    from .commands import setup

    return setup.client_config(args.client, args.account, ctx.config_path)


def _add_test(sub: Callable[..., argparse.ArgumentParser]) -> None:
    p = sub("test", "sign in to the mail servers with the token (IMAP, POP, SMTP) and explain failures", _run_test)
    p.add_argument("account", help="account name from the config")
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
    _timeout_option(p, f"give up on the token, and on each server, after this long (default {DEFAULT_TIMEOUT:g})")


def _run_test(ctx: Context, args: argparse.Namespace) -> Result:
    from .commands import setup

    opts = setup.TestOptions(
        account=args.account,
        config_path=ctx.config_path,
        protocols={p: getattr(args, p) for p in ("imap", "pop", "smtp")},
        host=args.host,
        user=args.user,
        cafile=args.cafile,
        timeout=args.timeout,
    )
    return setup.test(opts)


# --- sendmail ----------------------------------------------------------------------------------------------


def _add_sendmail(sub: Callable[..., argparse.ArgumentParser]) -> None:
    """What --help and the man page show; the command reads its sendmail(8) flags itself (graph/message.py)."""
    p = sub("sendmail", 'send the message on stdin with Microsoft Graph (a sendmail(8) for send = "graph")', None)
    p.add_argument("account", nargs="?", help="account name from the config (not with --flush)")
    p.add_argument(
        "recipients", nargs="*", metavar="RECIPIENT", help="envelope recipients (with -t: added to the headers')"
    )
    p.add_argument("-t", action="store_true", help="also send to the To, Cc and Bcc headers' addresses")
    p.add_argument(
        "-i", action="store_true", help="accepted, like -oi: a line with a single dot never ends the message"
    )
    p.add_argument("-f", metavar="ADDR", help="envelope sender; the From address when the message has none")
    p.add_argument("-F", metavar="NAME", help="full name for a From header the message lacks")
    _timeout_option(p, f"one deadline for the whole command, retries included (default {DEFAULT_TIMEOUT:g})")
    p.add_argument("--queue", metavar="DIR", help="keep a message that could not be sent now in DIR (then exit 0)")
    p.add_argument("--flush", action="store_true", help="send the messages kept in --queue DIR")


def _sendmail_argv(argv: list[str]) -> tuple[list[str], bool] | None:
    """`[-v] sendmail ARGS...` without --help: ARGS for graph/sendmail.py, which parses sendmail's flags."""
    at = next((i for i, a in enumerate(argv) if not a.startswith("-")), None)
    if at is None or argv[at] != "sendmail" or not all(a in ("-v", "--verbose") for a in argv[:at]):
        return None
    if {"-h", "--help"} & set(argv[at + 1 :]):
        return None
    return argv[at + 1 :], at > 0


def _add_serve(sub: Callable[..., argparse.ArgumentParser]) -> None:
    from .bridge import cli as bridge_cli

    p = sub(
        "serve", "run the local IMAP/POP3/SMTP bridge for password-only clients, or manage its passwords", _run_serve
    )
    bridge_cli.add_arguments(p, _Parser)


def _run_serve(ctx: Context, args: argparse.Namespace) -> Result:
    from .bridge import cli as bridge_cli

    return bridge_cli.run(ctx.config_path, args)


def _add_man(sub: Callable[..., argparse.ArgumentParser]) -> None:
    p = sub("man", "show a manual page of this installation, wherever its installer put it", _run_man)
    p.add_argument("page", nargs="?", default="mailtoken", choices=("mailtoken", "mailtoken.toml"), help="which page")
    p.add_argument("--path", action="store_true", help="print the folder holding the pages (for MANPATH)")


def _run_man(ctx: Context, args: argparse.Namespace) -> Result:
    from .commands import man

    return man.run(args.page, path_only=args.path)


# --- parser ------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
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
    verbs = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    verbs.required = True

    def sub(name: str, help: str, run: Run) -> argparse.ArgumentParser:
        p = verbs.add_parser(
            name,
            help=help,
            description=help,
            parents=[common],
            epilog=_exit_codes_text(),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        p.set_defaults(run=run)
        return p

    _add_secret(sub, "token", "print a fresh access token (refreshing silently when needed)", sasl=False)
    _add_secret(sub, "xoauth2", "print the SASL XOAUTH2 initial response, base64", sasl=True)
    _add_secret(sub, "oauthbearer", "print the SASL OAUTHBEARER (RFC 7628) initial response, base64", sasl=True)
    _add_login(sub)
    _add_refresh(sub)
    _add_systemd(sub)
    _add_logout(sub)
    _add_add(sub)
    _add_status(sub)
    _add_config(sub)
    _add_sendmail(sub)
    _add_test(sub)
    _add_man(sub)
    _add_serve(sub)
    return parser


def render(result: Result) -> int:
    """The one place a command's outcome reaches the terminal: stdout (the secret or report), then notes."""
    from .fast.cached import emit

    if result.stdout is not None:
        emit(result.stdout)
    for note in result.notes:
        ui.say(note)
    return result.exit_code


def main(argv: list[str]) -> int:
    from . import nodump

    nodump.forbid()  # before any secret is in memory
    sendmail_args = _sendmail_argv(argv)
    if sendmail_args is not None:
        from .graph import sendmail

        return sendmail.main(*sendmail_args)
    try:
        args, extra = build_parser().parse_known_args(argv)
        if extra:  # the verb's own help, not the top level's, says what it takes
            raise UsageError(f"unrecognized arguments: {' '.join(extra)} (see 'mailtoken {args.command} --help')")
        ui.verbose = bool(getattr(args, "verbose", False))
        from . import paths

        ctx = Context(config_path=paths.config_path(), verbose=ui.verbose)
        ui.debug(f"config {ctx.config_path}; records in {paths.record_dir()}; state in {paths.state_dir()}")
        return render(args.run(ctx, args))
    except MailtokenError as exc:
        print(errors.format_error(exc, verbose=ui.verbose), file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("mailtoken: interrupted", file=sys.stderr)
        return errors.EX_INTERRUPTED
    except Exception as exc:  # the one top-level catch: one line, never the exception's text (it may hold a token)
        if ui.verbose:
            # Frames only: an exception's message can carry a secret.
            sys.stderr.write("".join(traceback.format_tb(exc.__traceback__)))
        print(errors.format_error(exc), file=sys.stderr)
        return errors.EX_SOFTWARE
