"""Device-code niceties for `login`: the code shown big on a terminal, copied with OSC 52 when enabled, and
`login --no-wait` / `login --resume` for scripts that show the code elsewhere and finish the sign-in later.
"""

from __future__ import annotations

import base64
import json
import shutil
import sys
import time
from typing import Any

from .. import providers, state, tokens, ui
from .. import store as stores
from ..config import Account
from ..errors import SignInRequired, UsageError
from ..fast import fsutil

# A 5-row block font for the characters device codes use (Entra: A-Z and 0-9). Zero is slashed so it
# cannot be read as O; one has a foot so it cannot be read as I.
_FONT = {
    "A": " ### |#   #|#####|#   #|#   #",
    "B": "#### |#   #|#### |#   #|#### ",
    "C": " ####|#    |#    |#    | ####",
    "D": "#### |#   #|#   #|#   #|#### ",
    "E": "#####|#    |#### |#    |#####",
    "F": "#####|#    |#### |#    |#    ",
    "G": " ####|#    |#  ##|#   #| ####",
    "H": "#   #|#   #|#####|#   #|#   #",
    "I": "###| # | # | # |###",
    "J": "  ###|    #|    #|#   #| ### ",
    "K": "#   #|#  # |###  |#  # |#   #",
    "L": "#    |#    |#    |#    |#####",
    "M": "#   #|## ##|# # #|#   #|#   #",
    "N": "#   #|##  #|# # #|#  ##|#   #",
    "O": " ### |#   #|#   #|#   #| ### ",
    "P": "#### |#   #|#### |#    |#    ",
    "Q": " ### |#   #|# # #|#  # | ## #",
    "R": "#### |#   #|#### |#  # |#   #",
    "S": " ####|#    | ### |    #|#### ",
    "T": "#####|  #  |  #  |  #  |  #  ",
    "U": "#   #|#   #|#   #|#   #| ### ",
    "V": "#   #|#   #|#   #| # # |  #  ",
    "W": "#   #|#   #|# # #|## ##|#   #",
    "X": "#   #| # # |  #  | # # |#   #",
    "Y": "#   #| # # |  #  |  #  |  #  ",
    "Z": "#####|   # |  #  | #   |#####",
    "0": " ### |#  ##|# # #|##  #| ### ",
    "1": " # |## | # | # |###",
    "2": " ### |#   #|  ## | #   |#####",
    "3": "#### |    #| ### |    #|#### ",
    "4": "#   #|#   #|#####|    #|    #",
    "5": "#####|#    |#### |    #|#### ",
    "6": " ### |#    |#### |#   #| ### ",
    "7": "#####|    #|   # |  #  |  #  ",
    "8": " ### |#   #| ### |#   #| ### ",
    "9": " ### |#   #| ####|    #| ### ",
    "-": "   |   |###|   |   ",
}
_GAP = "  "


def big(code: str, width: int) -> str | None:
    """The code in block letters, or None if a character has no glyph or the lines would not fit `width`."""
    glyphs = [_FONT.get(c.upper()) for c in code]
    if not code or any(g is None for g in glyphs):
        return None
    rows = [_GAP.join(g.split("|")[row] for g in glyphs if g).replace("#", "\u2588").rstrip() for row in range(5)]
    if max(len(r) for r in rows) + 2 > width:
        return None
    return "\n".join("  " + r for r in rows)


def osc52(text: str) -> str:
    """The escape sequence that asks the terminal to put `text` on the clipboard (xterm, kitty, tmux, ...)."""
    return "\x1b]52;c;" + base64.b64encode(text.encode()).decode() + "\x07"


def show(code: str, copy: bool) -> None:
    """On a terminal: print the code big enough to read from a distance, and copy it if the user enabled it."""
    if not sys.stderr.isatty():
        return
    art = big(code, shutil.get_terminal_size((80, 24)).columns)
    if art:
        sys.stderr.write("\n" + art + "\n\n")
    if copy:
        # Copy silently: terminals that do not support OSC 52 ignore it, so claim only that we asked.
        sys.stderr.write(osc52(code))
        sys.stderr.write("mailtoken: the code was sent to the terminal's clipboard (OSC 52)\n")
    sys.stderr.flush()


# --- login --no-wait / login --resume ------------------------------------------------------------------


def pending_path(account: str) -> str:
    return state.files(account).pending


def tell(acct: Account, url: str, user_code: str, then: str = "") -> None:
    """Where to sign in and with which code. The URL gets a line of its own: a terminal never wraps it mid-word
    and a double-click selects all of it."""
    ui.say(f"{acct.name}: to sign in as {acct.email}, open this page in a browser on any device:")
    print(url, file=sys.stderr, flush=True)
    ui.say(f"{acct.name}: and enter the code {user_code}{then}")


def start_detached(acct: Account) -> str:
    """Start a device-code sign-in and keep the flow for `login --resume`; returns "URL CODE" for stdout."""
    stores.choose_for_login(acct)  # a grant we could not keep would waste the user's sign-in
    flow = providers.engine_for(acct).start_device_flow(acct, tokens.NET_TIMEOUT).info
    url = flow.get("verification_uri") or flow.get("verification_url")
    saved = {"client_id": acct.client_id, "authority": acct.authority, "tenant": acct.tenant, "flow": flow}
    # The device code redeems the sign-in once the user approves it: private, like a grant.
    fsutil.atomic_write(pending_path(acct.name), json.dumps(saved).encode())
    left = max(0, int(float(flow.get("expires_at") or 0) - time.time())) // 60
    tell(acct, str(url), flow["user_code"], f" (valid {left} min), then run 'mailtoken login {acct.name} --resume'")
    show(flow["user_code"], acct.copy_code)
    return f"{url} {flow['user_code']}"


def load_pending(acct: Account) -> dict[str, Any]:
    """The flow `login --no-wait` started, if it still belongs to this account's config and has not expired."""
    try:
        data = fsutil.read_private(pending_path(acct.name))
    except PermissionError as exc:
        raise UsageError(str(exc), account=acct.name) from None
    if data is None:
        raise UsageError(
            f"no sign-in to resume: start one with 'mailtoken login {acct.name} --no-wait'", account=acct.name
        )
    try:
        saved = json.loads(data)
        flow = saved["flow"]
        expires_at = float(flow["expires_at"])
        same = (saved["client_id"], saved["authority"], saved["tenant"]) == (
            acct.client_id,
            acct.authority,
            acct.tenant,
        )
    except (ValueError, KeyError, TypeError):
        drop_pending(acct.name)
        raise UsageError(
            f"the saved sign-in is unreadable: start again with 'mailtoken login {acct.name} --no-wait'",
            account=acct.name,
        ) from None
    if not same:
        drop_pending(acct.name)
        raise UsageError(
            f"the account's client_id, tenant or authority changed since 'login --no-wait': "
            f"start again with 'mailtoken login {acct.name} --no-wait'",
            account=acct.name,
        )
    if expires_at <= time.time():
        drop_pending(acct.name)
        raise SignInRequired(
            f"the code from 'login --no-wait' expired: run 'mailtoken login {acct.name} --no-wait' again",
            account=acct.name,
        )
    return dict(flow)


def drop_pending(account: str) -> None:
    fsutil.remove(pending_path(account))
