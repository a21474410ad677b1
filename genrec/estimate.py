"""How long a long stage will take, said before it starts (docs/performance.md, "Which sizes a
CPU can take").

A stage whose work is large times a small sample of it (one batch of generation, a few
training batches), prints the estimate for the whole and, when it exceeds the limit, stops
with the estimate and what to do, instead of running for a day. The limit is
``GENREC_MAX_HOURS`` (12 unless set): an environment variable rather than a param, because it
changes whether a run starts, never what it computes.
"""

from __future__ import annotations

import os
import sys

from genrec.errors import UserError

LIMIT_VARIABLE = "GENREC_MAX_HOURS"
DEFAULT_HOURS = 12.0


def limit_hours() -> float:
    value = os.environ.get(LIMIT_VARIABLE, "").strip()
    if not value:
        return DEFAULT_HOURS
    try:
        hours = float(value)
    except ValueError:
        hours = float("nan")
    if not hours > 0:  # also NaN
        raise UserError(f"{LIMIT_VARIABLE} is {value!r}; set it to a number of hours above 0 (unset: {DEFAULT_HOURS:g})")
    return hours


def duration(seconds: float) -> str:
    """``seconds`` as a person says it: 40 s, 12 min, 3 h 10 min, 2 days 5 h."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    if minutes < 120:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} days {hours} h" if hours else f"{days} days"


def check(what: str, seconds: float, basis: str, advice: list[str], show: bool = True) -> None:
    """Say that ``what`` takes about ``seconds`` (estimated from ``basis``); stop with ``advice``
    (what to do, most useful first) when that is over the limit. ``show``: say it (one process
    of several says it for all)."""
    hours = limit_hours()
    if seconds > hours * 3600:
        needed = max(hours + 1, -(-seconds // 3600) + 1)
        raise UserError(f"{what} would take about {duration(seconds)} ({basis}), more than {LIMIT_VARIABLE} = "
                        f"{hours:g} h. {'; '.join(advice)}; or set {LIMIT_VARIABLE}={needed:.0f} to run it anyway")
    if show:
        print(f"{what}: about {duration(seconds)} ({basis})", file=sys.stderr, flush=True)
