"""User-facing errors: one clear paragraph and a non-zero exit, never a traceback."""

from __future__ import annotations

import functools
import sys
from typing import Callable


class UserError(Exception):
    """A mistake the user can fix: bad params, a bad input file, a broken download.

    The message says which file or parameter, what was wrong and what to do.
    """


def stage_main(main: Callable[[], None]) -> Callable[[], None]:
    """Run a stage's ``main``; turn a ``UserError`` into a message and exit code 2, and
    Ctrl-C into one line and exit code 130 (the shell's code for SIGINT)."""

    @functools.wraps(main)
    def wrapper() -> None:
        try:
            main()
        except UserError as error:
            print(f"error: {error}", file=sys.stderr)
            sys.exit(2)
        except KeyboardInterrupt:
            # Outputs are written atomically, so an interrupted stage leaves the previous ones.
            print("interrupted: the stage stopped and its previous outputs are left as they were", file=sys.stderr)
            sys.exit(130)

    return wrapper
