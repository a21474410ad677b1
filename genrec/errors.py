"""User-facing errors: one clear paragraph and a non-zero exit, never a traceback."""

from __future__ import annotations

import ctypes
import errno
import functools
import os
import signal
import sys
from typing import Callable

# The one command that brings back the last committed outputs, metrics and params (Makefile).
RESTORE = "make restore"


class UserError(ValueError):
    """A mistake the user can fix: bad params, a bad input file, a broken download, a bad
    argument to the Python API (hence a ValueError).

    The message says which file or parameter, what was wrong and what to do.
    """


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, a scheduler, DVC's own end), handled as Ctrl-C is."""


def terminated(signum: int, frame) -> None:
    """A SIGTERM handler: the signal as a ``Terminated`` exception."""
    raise Terminated


def _end_with_parent() -> None:
    """Under DVC or torchrun, have the kernel send SIGTERM when the parent process ends, so a
    killed `dvc repro` never leaves its stage running on and writing outputs (Linux only)."""
    if not (os.environ.get("DVC_STAGE") or os.environ.get("RANK")):
        return  # a stage started by hand may be detached on purpose (nohup)
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the parent ended before the call
        raise Terminated


def interrupted_message(terminated: bool) -> str:
    what = "terminated" if terminated else "interrupted"
    if os.environ.get("DVC_STAGE"):
        # DVC removes a stage's outputs before running it: there is nothing left to keep.
        return (f"{what}: the stage stopped. DVC had removed its previous outputs before running it; "
                f"`{RESTORE}` brings back the last committed ones")
    return f"{what}: the stage stopped and its previous outputs are left as they were"


def stage_main(main: Callable[[], None]) -> Callable[[], None]:
    """Run a stage's ``main``; turn a ``UserError`` into a message and exit code 2, Ctrl-C and
    SIGTERM into one line and exit codes 130 and 143 (the shell's codes for those signals), and
    a full disk into one line and exit code 1. Outputs are written atomically, so none of these
    leaves a partial output or a temporary behind."""

    @functools.wraps(main)
    def wrapper() -> None:
        try:
            signal.signal(signal.SIGTERM, terminated)
            _end_with_parent()
            main()
        except UserError as error:
            print(f"error: {error}", file=sys.stderr)
            sys.exit(2)
        except KeyboardInterrupt as interruption:
            by_term = isinstance(interruption, Terminated)
            print(interrupted_message(by_term), file=sys.stderr)
            sys.exit(143 if by_term else 130)
        except OSError as error:
            if error.errno != errno.ENOSPC:
                raise
            where = f" writing {error.filename}" if error.filename else ""
            print(f"error: the disk is full{where}; nothing was written: free some space and run the stage again",
                  file=sys.stderr)
            sys.exit(1)

    return wrapper
