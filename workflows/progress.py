"""Progress of work running in Ray workers, shown on the driver (:mod:`lcmftn.progress` bars).

Worker output stays off the driver's console in quiet runs (``log_to_driver=False``,
:mod:`workflows.common`), so a training run's steps travel another way: the driver creates a
tiny :class:`ProgressBoard` actor (0 CPU), hands its handle to the workers in the loop config
(``PROGRESS_KEY``), rank 0 posts ``(step, figures)`` to it fire-and-forget at most every
``StepReporter.min_interval_s``, and a driver thread (:class:`DriverBar`) polls it into a bar.
Colorize actors count the frames they write the same way (:class:`FrameCounter`), each under
its own part of the board (the board's count is the sum of the parts).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from lcmftn.progress import Progress

if TYPE_CHECKING:
    from lcmftn.jobs import RunSettings

PROGRESS_KEY = "progress_board"
"""Key of the board's actor handle in a training loop config (absent: no reporting)."""


class ProgressBoard:
    """Ray actor holding the latest ``(done, figures)`` posted by a worker (``post``), or the
    sum of the counts posted by several workers, one part each (``post_part``)."""

    def __init__(self) -> None:
        self.done = 0
        self.figures: dict[str, Any] = {}
        self.parts: dict[str, int] = {}

    def post(self, done: int, figures: dict[str, Any]) -> None:
        self.done = max(self.done, int(done))
        self.figures.update(figures)

    def post_part(self, part: str, done: int) -> None:
        """``done`` items of worker ``part`` so far (posts may arrive out of order: max)."""
        self.parts[part] = max(self.parts.get(part, 0), int(done))
        self.done = sum(self.parts.values())

    def read(self) -> tuple[int, dict[str, Any]]:
        return self.done, dict(self.figures)


class StepReporter:
    """Worker side: ``step(done, **figures)`` posts to the board (rank 0 only, throttled)."""

    def __init__(self, board: Any | None, rank: int, min_interval_s: float = 1.0) -> None:
        self.board = board if rank == 0 else None
        self.min_interval_s = min_interval_s
        self._last = float("-inf")  # the first call posts (monotonic() may be small after a boot)

    def step(self, done: int, force: bool = False, **figures: Any) -> None:
        if self.board is None:
            return
        now = time.monotonic()
        if force or now - self._last >= self.min_interval_s:
            self._last = now
            self.board.post.remote(done, figures)  # fire and forget


class FrameCounter:
    """Worker side of a counted stage (colorize: frames written). ``add(n)`` may be called from
    any thread (the frame-writing pool); the running count goes to ``post(done)`` at most every
    ``min_interval_s`` and on ``flush()``. ``post`` None: counts, posts nothing."""

    def __init__(self, post: Callable[[int], Any] | None, min_interval_s: float = 1.0) -> None:
        self.post = post
        self.min_interval_s = min_interval_s
        self.done = 0
        self._last = float("-inf")  # the first call posts (monotonic() may be small after a boot)
        self._lock = threading.Lock()

    def add(self, n: int = 1) -> None:
        with self._lock:
            self.done += n
            now = time.monotonic()
            if self.post is not None and now - self._last >= self.min_interval_s:
                self._last = now
                self.post(self.done)

    def flush(self) -> None:
        with self._lock:
            if self.post is not None:
                self.post(self.done)


def board_part(board: Any, part: str) -> Callable[[int], Any]:
    """A :class:`FrameCounter` ``post`` that sends the count to ``board`` as ``part`` (fire and
    forget)."""
    return lambda done: board.post_part.remote(part, done)


class DriverBar:
    """Driver side: create the board, poll it into a :class:`Progress` bar until closed.

        with DriverBar("train", total_steps, "steps") as bar:
            config[PROGRESS_KEY] = bar.board
            trainer.fit()
    """

    def __init__(self, label: str, total: int, unit: str, poll_s: float = 1.0,
                 enabled: bool | None = None) -> None:
        import ray

        from workflows.common import is_verbose

        enabled = not is_verbose() if enabled is None else enabled
        self._ray = ray
        self.board = ray.remote(num_cpus=0)(ProgressBoard).remote()
        self.bar = Progress(label, total, unit, enabled=enabled)
        self.poll_s = poll_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> DriverBar:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._refresh()
        self.bar.close("failed" if exc[0] is not None else "")
        self._ray.kill(self.board)

    def _refresh(self) -> None:
        try:
            done, figures = self._ray.get(self.board.read.remote(), timeout=5)
        except Exception:  # noqa: BLE001 - a progress bar never breaks the job
            return
        self.bar.set(done, **figures)

    def _poll(self) -> None:
        while not self._stop.wait(self.poll_s):
            self._refresh()


def trials_bar(total: int):
    """A Ray Tune callback (runs in the driver's Tune loop) drawing "trials done" as a bar;
    ``bar.close()`` after ``Tuner.fit``."""
    from ray.tune import Callback

    from workflows.common import is_verbose

    class TrialsBar(Callback):
        def __init__(self) -> None:
            self.bar = Progress("tune", total, "trials", enabled=not is_verbose())
            self.errors = 0

        def on_trial_complete(self, iteration, trials, trial, **info) -> None:
            self.bar.update(1)

        def on_trial_error(self, iteration, trials, trial, **info) -> None:
            self.errors += 1
            self.bar.update(1, failed=self.errors)

        def close(self) -> None:
            self.bar.close()

        # NOTE: Tune pickles its run config, callbacks included (tuner.pkl, for Tuner.restore);
        # the bar's stream (sys.stderr) does not pickle. A restored copy draws nothing.
        def __getstate__(self) -> dict:
            return {"errors": self.errors}

        def __setstate__(self, state: dict) -> None:
            self.errors = state["errors"]
            self.bar = Progress("tune", total, "trials", enabled=False)

    return TrialsBar()


class _LocalFramesBar:
    """``--local``: the frames bar fed directly by the in-process writer (thread-safe)."""

    def __init__(self, bar) -> None:
        self.bar = bar
        self._lock = threading.Lock()

    def add(self, n: int = 1) -> None:
        with self._lock:
            self.bar.update(n)

    def __enter__(self) -> _LocalFramesBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.close("failed" if exc[0] is not None else "")


def frames_progress(rs: RunSettings, total: int):
    """The "frames coloured" bar of one run (:mod:`lcmftn.progress`; off with ``-v``), counting
    the frames the actors write (a context manager; ``total``: frames of the pending shots).
    With Ray the actors post to a board the driver polls (:class:`workflows.progress.DriverBar`);
    ``--local`` updates the bar in-process."""
    from workflows.common import is_verbose

    label = f"colorize ({rs.mode})"
    if rs.local:
        return _LocalFramesBar(Progress(label, total, "frames", enabled=not is_verbose()))
    return DriverBar(label, total, "frames")
