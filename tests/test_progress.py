"""genrec.progress: a bar in a terminal, one plain line per step in a log."""

from __future__ import annotations

import io

from genrec.progress import Progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_one_line_per_step_in_a_log():
    log = io.StringIO()
    with Progress(3, "train GPT-2", "epochs", stream=log) as bar:
        bar.update(loss=1.23456, epoch_name="a")
        bar.update(2, loss=0.5)
    lines = log.getvalue().splitlines()
    assert len(lines) == 2 and "\r" not in log.getvalue()
    assert lines[0].startswith("train GPT-2: 1/3 epochs, loss 1.2346, epoch_name a (")
    assert lines[1].startswith("train GPT-2: 3/3 epochs, loss 0.5000 (") and "epochs/s)" in lines[1]


def test_a_bar_in_a_terminal():
    terminal = Terminal()
    with Progress(4, "rra on the test users", "users", stream=terminal) as bar:
        bar.update(2)
        bar.update(2)
    assert "\r" in terminal.getvalue() and "4/4" in terminal.getvalue()
