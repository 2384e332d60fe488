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

#: Longest a changed Collection waits to be written while checkpoints keep coming (seconds).
FLUSH_SECONDS = 1.0


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
        self._queue: queue.Queue[tuple[Any, ...] | None] = queue.Queue()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._loop, name="mlm-export-callback", daemon=True)
        self._thread.start()

    def put(self, job: tuple[Any, ...]) -> None:
        self._queue.put(job)

    def _loop(self) -> None:
        pending, last = False, float("-inf")
        while True:
            wait = None if not pending else max(0.0, last + FLUSH_SECONDS - time.monotonic())
            try:
                job = self._queue.get(timeout=wait)
            except queue.Empty:
                job = ()  # quiet for a while: time for the coalesced work
            if job:
                self._attempt(self._run, job)
                pending = True
            due = job is None or (self._queue.empty() and time.monotonic() - last >= FLUSH_SECONDS)
            if pending and due:  # the coalesced work (Collections): when drained, at most once a FLUSH_SECONDS
                self._attempt(self._on_idle)
                pending, last = False, time.monotonic()
            if job is None:
                return

    def _attempt(self, fn: Callable[..., None], *args: Any) -> None:
        try:
            fn(*args)
        except Exception as e:
            self._error = self._error or e
            with contextlib.suppress(Exception):
                self._on_error(e)

    def close(self) -> BaseException | None:
        self._queue.put(None)
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
