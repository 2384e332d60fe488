"""What the callback does, on the training thread, when a checkpoint comes or goes.

The CheckpointIO wrapper (``_checkpoint_io.py``) reports each save and removal with its path; here each save
becomes a :class:`Snapshot` (what its Item will say beyond the run's plan: epoch, step, metrics, score, the
bytes written) queued for the callback's worker, and each removal drops the checkpoint's Item (and its links
in ``collection.json``) before the file goes. Only global rank zero acts. A per-path version counter makes
every queued snapshot of a file that was saved again or removed meanwhile stale (``_background.Versions``).
"""

from __future__ import annotations

import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint

from ._background import Versions
from ._checkpoint_io import LinkWatcher, ObservedCheckpointIO, identity, install, owner, uninstall
from ._facts import ArtifactFacts
from ._item import ItemPlan
from ._runs import RunCatalog
from ._write import Written
from .errors import MLMExportWarning

#: How long the end of ``fit`` waits for a write the wrapped IO has not landed yet (then its Item is left out).
LANDING_SECONDS = 60.0


@dataclass
class Snapshot:
    """What the Item of one checkpoint says beyond the run's plan, captured when the checkpoint is saved."""

    path: Path
    epoch: int
    global_step: int
    monitor: str | None
    mode: str | None
    score: float | None
    metrics: dict[str, float]
    weights_only: bool
    link_target: Path | None = None
    artifacts: tuple[ArtifactFacts, ...] = ()
    plan: ItemPlan | None = field(default=None, repr=False)
    #: Which version of the file at ``path`` this is; a later save or a removal makes it stale (see Versions).
    generation: int = 0
    #: The file's identity before a save the wrapper did not write itself (AsyncCheckpointIO writes it later):
    #: its Item waits until the file has changed (``pending``).
    replaces: tuple[int, int, int, int] | None = None
    pending: bool = False
    #: The file as the CheckpointIO wrapper wrote it (size, identity, checksum or the bytes to compute it from).
    written: Written | None = field(default=None, repr=False)


def snapshot(trainer: Trainer, cb: ModelCheckpoint, path: Path, plan: ItemPlan | None) -> Snapshot:
    """The trainer's and the ModelCheckpoint's public state now, for the checkpoint at ``path``."""
    return Snapshot(
        path=path,
        epoch=trainer.current_epoch,
        global_step=trainer.global_step,
        monitor=cb.monitor,
        mode=cb.mode if cb.monitor else None,
        score=_score(cb, path),
        metrics=_metrics(trainer),
        weights_only=cb.save_weights_only,
        plan=plan,
    )


class CheckpointEvents:
    """The training thread's side of the callback: installed in ``setup``, removed in ``teardown``.

    ``plan()`` is the run's plan (None: nothing is described), ``catalog(dir)`` the run catalog of a
    directory, ``describe(snapshot, catalog)`` queues an Item, ``submit(job)`` any other job, ``fail(error)``
    reports an error (a warning, or raised in strict mode).
    """

    def __init__(
        self,
        trainer: Trainer,
        *,
        plan: Callable[[], ItemPlan | None],
        catalog: Callable[[Path], RunCatalog],
        describe: Callable[[Snapshot, RunCatalog], None],
        submit: Callable[[tuple[Any, ...]], None],
        fail: Callable[[BaseException], None],
        lock: threading.Lock,
        versions: Versions,
    ) -> None:
        self.trainer = trainer
        self._plan, self._catalog, self._describe, self._submit, self._fail = plan, catalog, describe, submit, fail
        self._lock, self._versions = lock, versions
        self._links = LinkWatcher()
        #: The latest snapshot per checkpoint path: a ``last.ckpt`` link is described as its target was.
        self._snapshots: dict[Path, Snapshot] = {}
        self._warned_directory = False
        # every rank wraps its strategy's IO; only global rank zero's is ever asked to save or remove
        self.io: ObservedCheckpointIO | None = install(trainer.strategy, self.saving, self.saved, self.removing)

    def close(self) -> None:
        """Give the strategy its own CheckpointIO back."""
        if self.io is not None:
            uninstall(self.trainer.strategy, self.io)
        self.io, self._snapshots = None, {}

    def _active(self) -> bool:
        return self.trainer.is_global_zero and self._plan() is not None

    def saving(self, path: Path) -> Snapshot | None:
        """Before a save: what its Item will say, captured now; None to leave the save alone."""
        if not self._active():
            return None
        try:
            self.scan_links()
            cb = owner(self.trainer.checkpoint_callbacks, path)
            if cb is None:
                return None  # a save of the user's own (trainer.save_checkpoint), not a ModelCheckpoint's
            before = identity(path)
            if before is not None:  # overwritten in place (last.ckpt): its Item goes first
                self.removing(path)
            last = Path(cb.last_model_path).absolute() if cb.last_model_path else None
            if cb.save_last == "link" and last is not None and last != path:
                self.removing(last)  # ModelCheckpoint points last.ckpt at this file right after saving it
            snap = snapshot(self.trainer, cb, path, self._plan())
            return replace(snap, generation=self._versions.bump(path, self._lock), replaces=before)
        except Exception as e:  # noqa: BLE001 - export never crashes training; warned
            self._fail(e)
            return None

    def saved(self, ticket: object, written: Written | None) -> None:
        """After a save: queue its Item, with the bytes or checksum the wrapper wrote."""
        assert isinstance(ticket, Snapshot)
        snap = ticket
        try:
            if snap.path.is_dir():
                self._directory(snap.path)
                return
            if written is not None:
                snap = replace(snap, written=written)
            elif identity(snap.path) == snap.replaces:
                snap = replace(snap, pending=True)  # written later (AsyncCheckpointIO): its Item waits for it
            self._links.note(snap.path)
            self._snapshots[snap.path] = snap
            self._describe(snap, self._catalog(snap.path.parent))
        except Exception as e:  # noqa: BLE001 - export never crashes training; warned
            if written is not None:
                written.release()
            self._fail(e)

    def removing(self, path: Path) -> None:
        """Before a removal: the checkpoint's Item (and model files) go first, and its links in the Collection."""
        if not self._active():
            return
        try:
            self.scan_links()
            catalog = self._catalog(path.parent)
            with self._lock:
                self._versions.bump_locked(path)  # a pending Item for this file is now stale
                catalog.forget(path)  # unlinked from collection.json before its file goes
            self._snapshots.pop(path, None)
            self._links.forget(path)
            self._submit(("collection", catalog))
        except Exception as e:  # noqa: BLE001 - export never crashes training; warned
            self._fail(e)

    def scan_links(self) -> None:
        """Describe each ``last.ckpt`` that ``save_last="link"`` linked (or copied) since the last look: at every
        save and removal, and at the callback's batch, validation and end-of-fit hooks."""
        if not self._active():
            return
        try:
            callbacks = self.trainer.checkpoint_callbacks
            for cb, path, target in self._links.changed(callbacks):
                self.removing(path)
                self._links.note(path)
                known = self._snapshots.get(target) if target is not None else None
                snap = known or snapshot(self.trainer, cb, path, self._plan())
                generation = self._versions.bump(path, self._lock)
                link = replace(snap, path=path, link_target=target, generation=generation, pending=False)
                self._describe(replace(link, artifacts=(), plan=self._plan()), self._catalog(path.parent))
            for directory in [] if self._warned_directory else self._links.directories(callbacks):
                self._directory(Path(directory))
        except Exception as e:  # noqa: BLE001 - export never crashes training; warned
            self._fail(e)

    def landed(self, snap: Snapshot, ending: Callable[[], bool]) -> bool:
        """On the worker: wait until a file another thread writes (AsyncCheckpointIO) has replaced what was there
        before; False if it never does (that write failed) or the snapshot went stale."""
        give_up = float("inf")
        while identity(snap.path) == snap.replaces:
            if self._versions.current(snap.path) != snap.generation:
                return False
            io = self.io
            if io is None or io.closed.wait(0.05):  # torn down: every write has landed or failed
                return identity(snap.path) != snap.replaces
            if ending():  # fit is ending (maybe on an exception, before the IO's teardown): wait a while only
                give_up = min(give_up, time.monotonic() + LANDING_SECONDS)
                if time.monotonic() > give_up:
                    return False
        return True

    def _directory(self, path: Path) -> None:
        """A checkpoint that is a directory (sharded): no Item; said once per run."""
        if not self._warned_directory:
            self._warned_directory = True
            warnings.warn(
                f"{path} is a directory (a sharded FSDP/DeepSpeed checkpoint): MLMExportCallback writes Items "
                'for checkpoint files only. Save full checkpoints (e.g. FSDPStrategy(state_dict_type="full")) '
                "to get them, or run mlm-export convert on a consolidated checkpoint.",
                MLMExportWarning,
                stacklevel=3,
            )


def _score(cb: ModelCheckpoint, path: Path) -> float | None:
    value = cb.best_k_models.get(str(path)) if cb.monitor else None
    if value is None and cb.monitor and cb.current_score is not None:
        value = cb.current_score
    return _float(value)


def _metrics(trainer: Trainer) -> dict[str, float]:
    out = {}
    for k, v in trainer.callback_metrics.items():
        f = _float(v)
        if f is not None:
            out[str(k)] = f
    return out


def _float(v: Any) -> float | None:
    if isinstance(v, torch.Tensor):
        if v.numel() != 1:
            return None
        v = v.item()
    if isinstance(v, int | float) and not isinstance(v, bool):
        f = float(v)
        return f if f == f and abs(f) != float("inf") else None
    return None
