"""How the callback sees checkpoints come and go: through Lightning's public ``CheckpointIO`` plugin API.

Lightning saves every checkpoint with ``trainer.strategy.checkpoint_io.save_checkpoint(checkpoint, path)`` and
removes one with ``remove_checkpoint(path)``; only global rank zero calls them (DDP's other ranks never do).
:class:`ObservedCheckpointIO` wraps whichever IO the strategy has (Lightning's ``TorchCheckpointIO``, an
``AsyncCheckpointIO``, a user's own) and calls the callback before and after each, with the exact path:

- Lightning's own ``TorchCheckpointIO`` (that class exactly, a local path, no ``storage_options``): the wrapper
  writes the same bytes itself (``torch.save`` into memory, as Lightning's ``_atomic_save`` does, then an
  atomic rename) and hashes those bytes, so a checkpoint is never read back for its checksum: a large one on
  a second thread while it is serialised (:data:`HASH_WHILE_SAVING`), a small one later, on the callback's
  worker thread, only if it is still current (a ``last.ckpt`` replaced within the linger is never hashed).
- Any other IO is called as it is (wrapped, never replaced). The callback gets the file's identity from before
  the save; the checksum is read once, when the file has changed: right away for a synchronous IO, when the
  write lands for ``AsyncCheckpointIO`` (whose thread writes after ``save_checkpoint`` returns).
- ``save_last="link"`` makes ``last.ckpt`` a symlink (or a copy) without any IO: :class:`LinkWatcher` notices
  it by comparing each such ``ModelCheckpoint``'s public ``last_model_path`` with the file it saw there last.
- FSDP and DeepSpeed sharded checkpoints are directories the strategy writes itself, past any IO: they get no
  Item (:meth:`LinkWatcher.directories` lets the callback say so once).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins import CheckpointIO, TorchCheckpointIO
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.strategies import Strategy

from ._write import Written, atomic_save_hashed, file_key

#: A checkpoint larger than this is hashed on a second thread while ``torch.save`` serialises it (the hash
#: then costs the training loop almost nothing, and the end of ``fit`` does not wait for it).
HASH_WHILE_SAVING = 64 << 20
#: Smaller ones wait in memory for the callback's worker, which hashes them only if they are still current
#: (a ``last.ckpt`` replaced within the linger never is), up to this many bytes in all; beyond, at once.
HELD_BYTES = 1 << 30
#: A checkpoint path as Lightning passes it (its ``_PATH``).
PathLike = str | Path
#: ``on_saving(path)``: before a save; returns what ``on_saved`` gets back, or None to leave the save alone.
Saving = Callable[[Path], object | None]
#: ``on_saved(ticket, written)``: after it; ``written`` is the size and checksum when this wrapper wrote it.
Saved = Callable[[object, Written | None], None]
#: ``on_removing(path)``: before a removal (an Item goes before its checkpoint).
Removing = Callable[[Path], None]


class ObservedCheckpointIO(CheckpointIO):
    """A CheckpointIO around another: every save and removal passes through the callback's hands."""

    def __init__(self, inner: CheckpointIO, on_saving: Saving, on_saved: Saved, on_removing: Removing) -> None:
        self.checkpoint_io = inner
        self._on_saving, self._on_saved, self._on_removing = on_saving, on_saved, on_removing
        #: Set once the wrapped IO is torn down: every write it was asked for has landed (or failed).
        self.closed = threading.Event()
        #: Checkpoints whose bytes are kept in memory until the callback's worker hashes (or skips) them.
        self._held: list[Written] = []

    def _keep(self, size: int) -> bool:
        """Whether a checkpoint's bytes may stay in memory for a later checksum, within :data:`HELD_BYTES`."""
        self._held = [w for w in self._held if w.held_bytes]
        return sum(w.held_bytes for w in self._held) + size <= HELD_BYTES

    def save_checkpoint(self, checkpoint: dict[str, Any], path: PathLike, storage_options: Any | None = None) -> None:
        local = _local(path)
        ticket = self._on_saving(local) if local is not None else None
        if ticket is None:
            self.checkpoint_io.save_checkpoint(checkpoint, path, storage_options=storage_options)
            return
        assert local is not None
        written = None
        if type(self.checkpoint_io) is TorchCheckpointIO and storage_options is None:
            save = lambda f: torch.save(checkpoint, f)  # noqa: E731
            written = atomic_save_hashed(local, save, keep=self._keep, hash_from=HASH_WHILE_SAVING)
            self._held.append(written)
        else:
            self.checkpoint_io.save_checkpoint(checkpoint, path, storage_options=storage_options)
        self._on_saved(ticket, written)

    def remove_checkpoint(self, path: PathLike) -> None:
        local = _local(path)
        if local is not None:
            self._on_removing(local)
        self.checkpoint_io.remove_checkpoint(path)

    def load_checkpoint(
        self, path: PathLike, map_location: Any | None = None, weights_only: bool | None = None
    ) -> dict[str, Any]:
        if map_location is None:  # the wrapped IO's own default (TorchCheckpointIO keeps tensors where they were)
            return self.checkpoint_io.load_checkpoint(path, weights_only=weights_only)
        return self.checkpoint_io.load_checkpoint(path, map_location=map_location, weights_only=weights_only)

    def teardown(self) -> None:
        try:
            self.checkpoint_io.teardown()  # AsyncCheckpointIO waits for its pending writes here
        finally:
            self.closed.set()


def install(strategy: Strategy, on_saving: Saving, on_saved: Saved, on_removing: Removing) -> ObservedCheckpointIO:
    """Wrap the strategy's CheckpointIO (its public ``_checkpoint_io`` property); :func:`uninstall` undoes it."""
    io = ObservedCheckpointIO(strategy.checkpoint_io, on_saving, on_saved, on_removing)
    strategy.checkpoint_io = io
    return io


def uninstall(strategy: Strategy, io: ObservedCheckpointIO) -> None:
    """Give the strategy its own CheckpointIO back (if nothing replaced the wrapper meanwhile)."""
    if strategy.checkpoint_io is io:
        strategy.checkpoint_io = io.checkpoint_io


def identity(path: Path) -> tuple[int, int, int, int] | None:
    """The identity of the file at ``path`` (not following a symlink), or None when there is none."""
    try:
        return file_key(os.lstat(path))
    except OSError:
        return None


def owner(callbacks: Iterable[Callback], path: Path) -> ModelCheckpoint | None:
    """The ModelCheckpoint that saves ``path``: Lightning records the path in its public state (``best_k_models``,
    ``best_model_path``, ``last_model_path``) before it saves; else the one whose ``dirpath`` holds it."""
    checkpoints = [cb for cb in callbacks if isinstance(cb, ModelCheckpoint)]
    name = str(path)  # ModelCheckpoint's dirpath is absolute: its paths are these strings
    for cb in checkpoints:
        if name in cb.best_k_models or name in (cb.best_model_path, cb.last_model_path):
            return cb
    for cb in checkpoints:
        if cb.dirpath and Path(cb.dirpath).absolute() == path.parent:
            return cb
    return None


class LinkWatcher:
    """``last.ckpt`` files that ``save_last="link"`` makes without any IO (a symlink, or a copy where symlinks
    are refused), noticed by comparing ``last_model_path`` with the file last seen there."""

    def __init__(self) -> None:
        self._seen: dict[Path, tuple[int, int, int, int] | None] = {}
        #: The checkpoint paths last looked at by :meth:`directories`: only new ones are stat-ed (it runs per batch).
        self._looked: set[str] = set()

    def note(self, path: Path) -> None:
        """The file now at ``path`` is described (saved through the IO, or a link just seen)."""
        self._seen[path] = identity(path)

    def forget(self, path: Path) -> None:
        """``path`` is no longer described: whatever is there next is new."""
        self._seen.pop(path, None)

    def changed(self, callbacks: Iterable[Callback]) -> list[tuple[ModelCheckpoint, Path, Path | None]]:
        """Each linked ``last_model_path`` that changed since it was seen: its callback, path and link target."""
        out = []
        for cb in callbacks:
            if not isinstance(cb, ModelCheckpoint) or cb.save_last != "link" or not cb.last_model_path:
                continue
            path = Path(cb.last_model_path).absolute()
            now = identity(path)
            if now is None or now == self._seen.get(path) or not path.is_file():
                continue
            self._seen[path] = now
            target = Path(os.path.realpath(path)) if path.is_symlink() else None
            out.append((cb, path, target))
        return out

    def directories(self, callbacks: Iterable[Callback]) -> list[str]:
        """Checkpoints that are directories (FSDP/DeepSpeed sharded): written past any IO, described by no Item.
        A path already seen on disk is not checked again (this runs at every batch); one Lightning names before
        its strategy has written it is checked until it exists."""
        paths: set[str] = set()
        for cb in callbacks:
            if isinstance(cb, ModelCheckpoint):
                paths.update(p for p in (cb.best_model_path, cb.last_model_path) if p and p not in self._looked)
        self._looked |= {p for p in paths if os.path.lexists(p)}
        return sorted(p for p in paths if os.path.isdir(p))


def _local(path: PathLike) -> Path | None:
    """A local file path (absolute), or None for a remote URL (``s3://...``), which gets no Item."""
    text = os.fspath(path)
    if "://" in text and not text.startswith("file://"):
        return None
    return Path(text.removeprefix("file://")).absolute()
