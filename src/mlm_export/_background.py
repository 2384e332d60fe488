"""The callback's background thread: jobs in order, coalesced Collection writes, and per-file versions.

Checksums and Item writes run here so that the training loop does not wait for them; a version counter per
checkpoint path lets the thread drop work for a file that was saved again or removed meanwhile.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: Shortest time between two writes of a changed Collection while checkpoints keep coming (seconds).
FLUSH_SECONDS = 1.0
#: ...and at least this many times as long as the last write took: a run's Collection write rewrites every
#: Item whose version links changed (all of them, for a new latest checkpoint), so it grows with the run;
#: spacing the writes by their cost keeps them to a small share of the training time (here at most 1/20).
FLUSH_SPACING = 20.0
#: How old a job is before it runs (seconds; none once ``fit`` ends): a checkpoint replaced or pruned within
#: that time (``last.ckpt`` at every step, top-k) is then skipped as stale instead of hashed and described for
#: nothing. Its Item is absent meanwhile, which a kill leaves as consistent as any other moment.
LINGER_SECONDS = 0.5


class Worker:
    """One background thread that runs jobs in order; errors go to ``on_error`` (or are kept for strict mode)."""

    def __init__(
        self,
        run: Callable[[tuple[Any, ...]], None],
        on_error: Callable[[BaseException], None],
        on_idle: Callable[[], None] = lambda: None,
    ) -> None:
        self._run = run
        self._on_error = on_error
        self._on_idle = on_idle
        self._queue: queue.Queue[tuple[float, tuple[Any, ...] | None]] = queue.Queue()
        self._error: BaseException | None = None
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="mlm-export-callback", daemon=True)
        self._thread.start()

    def put(self, job: tuple[Any, ...]) -> None:
        self._queue.put((time.monotonic(), job))

    def _loop(self) -> None:
        pending, last, spacing = False, float("-inf"), FLUSH_SECONDS
        while True:
            wait = None if not pending else max(0.0, last + spacing - time.monotonic())
            try:
                queued, job = self._queue.get(timeout=wait)
            except queue.Empty:
                job = ()  # quiet for a while: time for the coalesced work
            else:
                self._closing.wait(queued + LINGER_SECONDS - time.monotonic())
            if job:
                self._attempt(self._run, job)
                pending = True
            due = job is None or time.monotonic() - last >= spacing  # not only when drained: jobs linger
            if pending and due:  # the coalesced work (Collections), spaced by its cost
                start = time.monotonic()
                self._attempt(self._on_idle)
                pending, last = False, time.monotonic()
                spacing = max(FLUSH_SECONDS, FLUSH_SPACING * (last - start))
            if job is None:
                return

    def _attempt(self, fn: Callable[..., None], *args: Any) -> None:
        try:
            fn(*args)
        except Exception as e:  # noqa: BLE001 - the worker never dies; the error is reported
            self._error = self._error or e
            with contextlib.suppress(Exception):
                self._on_error(e)

    def close(self) -> BaseException | None:
        self._closing.set()
        self._queue.put((time.monotonic(), None))
        self._thread.join()
        return self._error


class Versions:
    """A counter per checkpoint path, bumped by every save and removal: an Item is written only for the
    version of the file it was computed from, so a pruned or replaced checkpoint never gets its Item back."""

    def __init__(self) -> None:
        self._counts: dict[Path, int] = {}

    def bump(self, path: Path, lock: threading.Lock) -> int:
        with lock:
            return self.bump_locked(path)

    def bump_locked(self, path: Path) -> int:
        self._counts[path] = self._counts.get(path, 0) + 1
        return self._counts[path]

    def current(self, path: Path) -> int:
        return self._counts.get(path, 0)
