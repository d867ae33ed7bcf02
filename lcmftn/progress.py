"""Progress bars and end-of-run summaries for the jobs' default (quiet) output (pure, no Ray).

Issue 10 ("quiet runs, visible progress"): a job shows one bar per stage (frames decoded, steps
trained, frames coloured) and a short summary; everything else is behind ``-v``.

- On a TTY the bar redraws one line in place (``\\r``), at most every ``min_interval_s``.
- Elsewhere (a log file, a pipe, CI) it prints a *few* plain lines, never one per item: the
  start, each crossed quarter (25/50/75 %) and the end, i.e. at most ``2 + milestones`` lines.
- The bar writes to ``stream`` (default stderr), so a job's stdout stays its JSON summary line.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from typing import TextIO

BAR_WIDTH = 24
MIN_TOTAL_FOR_MILESTONES = 8
"""Off a TTY, bars over fewer items print only their start and end lines."""


def _fmt_s(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f}s"
    m, s = divmod(int(seconds), 60)
    return f"{m}m{s:02d}s" if m < 60 else f"{m // 60}h{m % 60:02d}m"


def _fmt_extra(extra: Mapping[str, object]) -> str:
    parts = []
    for k, v in extra.items():
        parts.append(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}")
    return ", ".join(parts)


class Progress:
    """A progress bar over ``total`` items named ``unit`` (``total=0``: unknown, counts only).

    ``update(n, **extra)`` adds ``n`` done items (``extra``: a few figures shown after the bar,
    e.g. ``loss=0.12``); ``set(done)`` sets the count; ``close(note)`` ends the bar with one
    final line. ``tty``: force the mode (default: ``stream.isatty()``); ``enabled=False``
    writes nothing (``-v`` runs, whose logs say it all)."""

    def __init__(self, label: str, total: int, unit: str = "items", stream: TextIO | None = None,
                 tty: bool | None = None, enabled: bool = True, min_interval_s: float = 0.2,
                 milestones: tuple[float, ...] = (0.25, 0.5, 0.75)) -> None:
        self.label = label
        self.total = max(0, int(total))
        self.unit = unit
        self.stream = stream if stream is not None else sys.stderr
        isatty = getattr(self.stream, "isatty", None)
        self.tty = bool(isatty()) if tty is None and callable(isatty) else bool(tty)
        self.enabled = enabled
        self.min_interval_s = min_interval_s
        self.milestones = sorted(milestones)
        self.done = 0
        self.extra: dict[str, object] = {}
        self.t0 = time.monotonic()
        self._last_draw = float("-inf")  # the first update draws (monotonic() may be small)
        self._next_milestone = 0
        self._closed = False
        self.lines_written = 0
        if self.enabled and not self.tty:
            self._line(f"{label}: 0/{self.total or '?'} {unit}")

    # -- public --------------------------------------------------------------------------------
    def update(self, n: int = 1, **extra: object) -> None:
        self.set(self.done + n, **extra)

    def set(self, done: int, **extra: object) -> None:
        self.done = int(done)
        self.extra.update(extra)
        if not self.enabled or self._closed:
            return
        if self.tty:
            now = time.monotonic()
            if now - self._last_draw >= self.min_interval_s or (self.total and self.done >= self.total):
                self._last_draw = now
                self._draw()
            return
        if not self.total or self.total < MIN_TOTAL_FOR_MILESTONES:
            return
        crossed = False
        while (self._next_milestone < len(self.milestones)
               and self.done / self.total >= self.milestones[self._next_milestone]):
            self._next_milestone += 1
            crossed = True
        if crossed and self.done < self.total:
            self._line(self.text())

    def close(self, note: str = "") -> None:
        """End the bar: one final line (``note`` appended, e.g. ``"2 failed"``)."""
        if self._closed:
            return
        self._closed = True
        if not self.enabled:
            return
        text = self.text(final=True) + (f" — {note}" if note else "")
        if self.tty:
            self.stream.write("\r\x1b[2K" + text + "\n")
            self.stream.flush()
            self.lines_written += 1
        else:
            self._line(text)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close("interrupted" if exc[0] is not None else "")

    def text(self, final: bool = False) -> str:
        elapsed = time.monotonic() - self.t0
        if self.total:
            frac = min(1.0, self.done / self.total)
            filled = int(round(frac * BAR_WIDTH))
            bar = "█" * filled + "·" * (BAR_WIDTH - filled)
            head = f"{self.label} [{bar}] {self.done}/{self.total} {self.unit} {frac * 100:3.0f}%"
        else:
            head = f"{self.label}: {self.done} {self.unit}"
        timing = f"{_fmt_s(elapsed)}"
        if not final and self.total and 0 < self.done < self.total:
            timing += f", eta {_fmt_s(elapsed / self.done * (self.total - self.done))}"
        extra = _fmt_extra(self.extra)
        return f"{head} ({timing})" + (f" {extra}" if extra else "")

    # -- internals -----------------------------------------------------------------------------
    def _draw(self) -> None:
        self.stream.write("\r\x1b[2K" + self.text())
        self.stream.flush()

    def _line(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()
        self.lines_written += 1


def summary_block(title: str, rows: Mapping[str, object], stream: TextIO | None = None) -> str:
    """A short, aligned end-of-run summary (``title`` then ``key: value`` rows); written to
    ``stream`` when given. Returns the text."""
    width = max((len(k) for k in rows), default=0)
    lines = [title] + [f"  {k.ljust(width)}  {v}" for k, v in rows.items()]
    text = "\n".join(lines) + "\n"
    if stream is not None:
        stream.write(text)
        stream.flush()
    return text
