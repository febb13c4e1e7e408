"""The error tree, and the only mapping from an error to an exit code and a message.

Exit codes follow sysexits(3), as mail tools expect them.
"""

from __future__ import annotations

EX_OK = 0
EX_USAGE = 64
EX_DATAERR = 65
EX_NOUSER = 67
EX_UNAVAILABLE = 69
EX_SOFTWARE = 70
EX_TEMPFAIL = 75
EX_NOPERM = 77
EX_CONFIG = 78
EX_INTERRUPTED = 130  # 128 + SIGINT, as shells report it

EXIT_CODES = {
    EX_OK: "success",
    EX_USAGE: "usage error (bad command line)",
    EX_DATAERR: "sendmail: the message cannot be sent as it is (malformed, too large)",
    EX_NOUSER: "sendmail: Graph refused the mailbox (sending as it, or a recipient)",
    EX_UNAVAILABLE: "unavailable: the secret store (locked, no D-Bus), systemd's user manager, or the man pages",
    EX_SOFTWARE: "internal error (rerun with -v)",
    EX_TEMPFAIL: "temporary failure (network, identity platform 5xx, timeout, lock wait): retry later",
    EX_NOPERM: "sign-in required (no grant, revoked, expired, MFA or Conditional Access)",
    EX_CONFIG: "configuration error",
    EX_INTERRUPTED: "interrupted (Ctrl-C)",
}


class MailtokenError(Exception):
    """Base class: `message` is safe to show (it never holds a secret)."""

    exit_code = EX_SOFTWARE

    def __init__(self, message: str, *, account: str | None = None, detail: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.account = account
        # Extra diagnostics (error_description, correlation id) shown only with -v.
        self.detail = detail

    @property
    def message(self) -> str:
        # Advice written where the account is not at hand (a provider's sign-in errors, the catalog) names the
        # bare command; once the error knows its account, the command it advises names it too.
        if self.account and "'mailtoken login'" in self._message:
            return self._message.replace("'mailtoken login'", f"'mailtoken login {self.account}'")
        return self._message

    @message.setter
    def message(self, text: str) -> None:
        self._message = text


class UsageError(MailtokenError):
    exit_code = EX_USAGE


class DataError(MailtokenError):
    exit_code = EX_DATAERR


class NoSuchUser(MailtokenError):
    exit_code = EX_NOUSER


class StoreUnavailable(MailtokenError):
    exit_code = EX_UNAVAILABLE


class TemporaryFailure(MailtokenError):
    exit_code = EX_TEMPFAIL
    # Seconds the identity platform asked us to wait (HTTP Retry-After), when it said so.
    retry_after: int | None = None


class SignInRequired(MailtokenError):
    exit_code = EX_NOPERM
    # True only for the identity platform's authoritative verdict that the grant itself is dead (see tokens.py).
    grant_rejected = False


class ConfigError(MailtokenError):
    exit_code = EX_CONFIG


class NotInstalled(MailtokenError):
    """Something this installation should have (a man page, the man program) is missing: not a store problem."""

    exit_code = EX_UNAVAILABLE


class DeadlineExceeded(TemporaryFailure):
    pass


# When several things failed (accounts in `refresh`, servers in `test`), the exit code is the first of these
# that occurred: what needs a human (a broken installation, the config, the store, a sign-in) outranks what
# the next run fixes by itself.
SEVERITY = (EX_SOFTWARE, EX_CONFIG, EX_UNAVAILABLE, EX_NOPERM, EX_TEMPFAIL)


def most_severe(codes: set[int] | list[int]) -> int:
    """The one exit code for several outcomes (SEVERITY); EX_OK when none failed."""
    found = set(codes) - {EX_OK}
    return next((code for code in SEVERITY if code in found), min(found, default=EX_OK))


def exit_code_for(error: BaseException) -> int:
    if isinstance(error, MailtokenError):
        return error.exit_code
    return EX_SOFTWARE


def one_line(text: str) -> str:
    """`text` with line breaks and other control characters escaped, so a message stays one line."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def format_error(error: BaseException, *, verbose: bool = False) -> str:
    """One line for stderr: `mailtoken: ACCOUNT: what happened: what to do`."""
    if isinstance(error, MailtokenError):
        prefix = f"mailtoken: {one_line(error.account)}: " if error.account else "mailtoken: "
        line = prefix + one_line(error.message)
        if verbose and error.detail:
            line += "\nmailtoken: detail: " + one_line(error.detail)
        return line
    # Never str(error): an unexpected exception may carry a token in its text.
    return f"mailtoken: internal error ({type(error).__name__}): rerun with -v for details"
