"""Progress that reads well both in a terminal and in a log.

In a terminal it is a tqdm bar. Elsewhere (``dvc queue logs``, CI, a file) a bar's carriage
returns pile up into one unreadable line, so each step prints one plain line instead.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from tqdm import tqdm


class Progress:
    """``update(n, **values)`` after each step (an epoch, a batch of users, a grid point)."""

    def __init__(self, total: int, desc: str, unit: str, stream: TextIO | None = None):
        self.stream = stream or sys.stderr
        self.total, self.desc, self.unit, self.done = total, desc, unit, 0
        self.start = time.perf_counter()
        self.bar = tqdm(total=total, desc=desc, unit=unit, file=self.stream) if self.stream.isatty() else None

    def update(self, n: int = 1, **values: Any) -> None:
        self.done += n
        shown = {key: f"{value:.4f}" if isinstance(value, float) else str(value) for key, value in values.items()}
        if self.bar is not None:
            self.bar.set_postfix(shown, refresh=False)
            self.bar.update(n)
            return
        seconds = time.perf_counter() - self.start
        rate = f"{self.done / seconds:.1f} {self.unit}/s" if seconds > 0 else ""
        fields = "".join(f", {key} {value}" for key, value in shown.items())
        print(f"{self.desc}: {self.done}/{self.total} {self.unit}{fields} ({seconds:.1f} s, {rate})",
              file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
