"""The entry point of bin/mailtoken (the installed launcher) and of `python -m mailtoken`."""

from __future__ import annotations

import sys


def main() -> int:
    from .fast import cached

    if cached.serve(sys.argv[1:]):
        return 0
    from . import cli

    return cli.main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
