"""The entry point of bin/mailtoken (the installed launcher) and of `python -m mailtoken`."""

from __future__ import annotations

import sys


def main() -> int:
    from .fast import cached

    if cached.serve(sys.argv[1:]):
        return 0
    if sys.argv[1:2] == ["sendmail"] and not {"-h", "--help"} & set(sys.argv[2:]):
        # sendmail(8)'s flags are not argparse's (-oi, -FNAME, -odi); a cached send skips the full CLI's imports.
        from .graph import sendmail

        return sendmail.main(sys.argv[2:])
    from . import cli

    return cli.main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
