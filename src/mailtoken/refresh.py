"""`mailtoken refresh`: renew the access tokens that expire within a window, for timers (systemd, cron).

Every refresh also redeems the refresh token, and Microsoft drops a refresh token after 90 days unused
(AADSTS700082): a timer keeps rarely opened mailboxes signed in, and mail clients always find a fresh token
on the fast path. It never prompts: an account that needs a new sign-in is reported (and notified through
notify_cmd), and the others are still refreshed.
"""

from __future__ import annotations

import sys
import time
import traceback
from dataclasses import dataclass

from . import errors, notify, tokens, ui
from .config import Account
from .deadline import Deadline
from .errors import MailtokenError, SignInRequired

DEFAULT_MIN_VALIDITY = 30 * 60

# When accounts fail differently, the exit code is the first of these that occurred: what needs a human
# (a broken installation, the config, the store, a sign-in) outranks what the next run fixes by itself.
SEVERITY = (errors.EX_SOFTWARE, errors.EX_CONFIG, errors.EX_UNAVAILABLE, errors.EX_NOPERM, errors.EX_TEMPFAIL)


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
    deadline = Deadline(timeout)
    try:
        before = tokens.read_record(acct.name)
        with deadline.enforced(acct.name):
            # serve_stale=False: a timer must report a failed refresh, not fall back to the cached token.
            rec = tokens.get(acct, config_path, deadline, min_validity=min_validity, serve_stale=False)
            if getattr(acct, "send", "smtp") == "graph":  # keep `mailtoken sendmail`'s token fresh too
                tokens.get(acct, config_path, deadline, min_validity=min_validity, serve_stale=False, resource="graph")
    except MailtokenError as exc:
        return Outcome(acct.name, False, None, exc)
    except Exception as exc:  # one broken account must not stop the others being refreshed
        return Outcome(acct.name, False, None, exc)
    return Outcome(acct.name, rec != before, rec.expires)


def run(accounts: list[Account], config_path: str, min_validity: float, timeout: float) -> int:
    """Refresh each account in turn, report failures on stderr (one line each), return the exit code."""
    outcomes = []
    for acct in accounts:
        outcome = refresh_account(acct, config_path, min_validity, timeout)
        outcomes.append(outcome)
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
    codes = {o.exit_code for o in outcomes} - {errors.EX_OK}
    return next((code for code in SEVERITY if code in codes), errors.EX_OK)


def _report(error: BaseException) -> None:
    if ui.verbose and not isinstance(error, MailtokenError):
        # Frames only, as in cli.main: an exception's message can carry a secret.
        sys.stderr.write("".join(traceback.format_tb(error.__traceback__)))
    print(errors.format_error(error, verbose=ui.verbose), file=sys.stderr, flush=True)
