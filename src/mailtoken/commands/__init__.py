"""One module per verb: an options dataclass in, a Result out.

Commands never see argparse and never print their outcome: cli.py builds the options from the command line
and renders the Result (stdout, stderr notes, exit code) in one place, so the verbs are a library the bridge
and the sendmail command can call too. Progress that a person must see while it happens (a device code, a
countdown, one line per server tested) still goes to stderr as it happens, through ui.say.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import EX_OK


@dataclass
class Result:
    """What a command produced: `stdout` (a secret alone, or a report), `notes` for stderr (each shown as
    "mailtoken: NOTE"), and the exit code (errors.py's table)."""

    stdout: str | None = None
    notes: list[str] = field(default_factory=list)
    exit_code: int = EX_OK
