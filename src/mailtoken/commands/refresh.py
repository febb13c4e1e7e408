"""`refresh`: renew the access tokens that expire within a window, for timers (systemd, cron).

Every refresh also redeems the refresh token, and Microsoft drops a refresh token after 90 days unused
(AADSTS700082): a timer keeps rarely opened mailboxes signed in, and mail clients always find a fresh token
on the cached path. It never prompts: an account that needs a new sign-in is reported (and notified through
notify_cmd), and the others are still refreshed. Accounts that were never signed in are skipped with a note.
"""

from __future__ import annotations

import sys
import time
import traceback
from dataclasses import dataclass

from .. import config, errors, notify, store, tokens, ui
from ..config import Account
from ..deadline import Deadline
from ..errors import MailtokenError, SignInRequired, UsageError
from . import Result

DEFAULT_MIN_VALIDITY = 30 * 60


@dataclass(frozen=True)
class Options:
    config_path: str
    accounts: tuple[str, ...] = ()
    all: bool = False
    min_validity: str = "30m"
    timeout: float = 30.0


@dataclass
class Outcome:
    account: str
    refreshed: bool
    expires: int | None = None
    error: BaseException | None = None

    @property
    def exit_code(self) -> int:
        return errors.EX_OK if self.error is None else errors.exit_code_for(self.error)


def refresh_account(acct: Account, config_path: str, min_validity: float, timeout: float) -> Outcome:
    """Refresh one account if its token expires within `min_validity` seconds; errors come back in the Outcome."""
    deadline = Deadline(timeout)  # per account: one slow account must not eat the others' time
    try:
        before = tokens.read_record(acct.name)
        with deadline.enforced(acct.name):
            # serve_stale=False: a timer must report a failed refresh, not fall back to the cached token.
            rec = tokens.get(acct, config_path, deadline, min_validity=min_validity, serve_stale=False)
            if getattr(acct, "send", "smtp") == "graph":  # keep `mailtoken sendmail`'s token fresh too
                tokens.get(acct, config_path, deadline, min_validity=min_validity, serve_stale=False, resource="graph")
    except Exception as exc:  # one broken account must not stop the others being refreshed
        return Outcome(acct.name, False, None, exc)
    return Outcome(acct.name, rec != before, rec.expires)


def run(opts: Options) -> Result:
    if opts.all and opts.accounts:
        raise UsageError("give account names or --all, not both")
    try:
        min_validity = config.parse_duration(opts.min_validity)
    except ValueError:
        raise UsageError(f"--min-validity: '{opts.min_validity}' is not a duration like 30m, 1h or 90s") from None
    cfg = config.load(opts.config_path)
    for name in opts.accounts:
        if name not in cfg.names():
            cfg.account(name)  # a name the config does not have: a usage mistake, said once, before any work
    result = Result()
    codes = set()
    for name in opts.accounts or cfg.names():
        try:
            acct = cfg.account(name)
        except MailtokenError as exc:  # a broken table fails this account alone
            codes.add(exc.exit_code)
            result.notes.append(errors.format_error(exc).removeprefix("mailtoken: "))
            continue
        if not opts.accounts and not acct_signed_in(acct):
            result.notes.append(f"{acct.name}: never signed in, skipped (run 'mailtoken login {acct.name}')")
            continue
        outcome = refresh_account(acct, opts.config_path, min_validity, opts.timeout)
        codes.add(outcome.exit_code)
        if outcome.error is None:
            until = time.strftime("%H:%M", time.localtime(outcome.expires)) if outcome.expires else "?"
            ui.debug(f"{acct.name}: {'refreshed' if outcome.refreshed else 'still fresh'}; valid until {until}")
            continue
        _report(outcome.error)
        if isinstance(outcome.error, SignInRequired):
            try:
                notify.signin_required(acct, outcome.error.message)
            except Exception as exc:  # a failed notice must not hide the refresh result
                ui.debug(f"{acct.name}: no notice sent ({type(exc).__name__})")
    result.exit_code = errors.most_severe(codes)
    return result


def acct_signed_in(acct: Account) -> bool:
    """Whether there is anything to refresh: a remembered sign-in, or an app-only account (no sign-in)."""
    from .. import providers

    if providers.engine_for(acct).grantless:
        return True
    try:
        return store.recall(acct.name) is not None
    except MailtokenError:
        return True  # unreadable state: let the refresh say what is wrong


def _report(error: BaseException) -> None:
    if ui.verbose and not isinstance(error, MailtokenError):
        # Frames only, as in cli.main: an exception's message can carry a secret.
        sys.stderr.write("".join(traceback.format_tb(error.__traceback__)))
    print(errors.format_error(error, verbose=ui.verbose), file=sys.stderr, flush=True)
