"""``MLMExportCallback``: a valid MLM Item next to every checkpoint Lightning keeps, and a run Collection.

The model is traced once, in ``setup`` (before any sharding); per checkpoint only what changes is recomputed
(metrics, checksum, files). Saves and removals are seen through the Trainer's CheckpointIO (``_checkpoint_io``,
``_checkpoint_events``); Items are built on one background thread from the bytes written (a checkpoint is
never read back), and every pending write finishes before ``fit`` returns. Only global rank zero writes. An
export error never stops training (it is a warning) unless ``strict=True``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pystac
from lightning.pytorch import LightningDataModule, LightningModule, Trainer
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from . import _openeo as openeo
from . import mlm
from ._about import __version__
from ._background import Versions, Worker
from ._checkpoint_events import CheckpointEvents, Snapshot
from ._checkpoint_facts import is_model_file, plain, remove_runtime_files, saved_facts
from ._item import ItemPlan, build_item, checkpoint_item
from ._options import Validate
from ._pipeline import ExportOptions, Gathered, gather, plan, write_model_files
from ._provenance import Prepared, provenance_facts, runtime_files, with_trainer, write_prepared
from ._run_flush import commit, flush
from ._runs import ITEM_SUFFIX, RunCatalog, checkpoint_stem, item_path_for
from ._schema_cache import quick_check
from ._sources.checkpoint import EMBED_KEY
from ._sources.datamodule import model_input
from ._sources.runtime import cli_config
from ._write import json_bytes
from .errors import InputRequiredError, MLMExportWarning


class MLMExportCallback(Callback):
    """Write a STAC Item with the MLM extension next to every checkpoint any ``ModelCheckpoint`` saves.

    Items are named after their checkpoint: ``epoch=3-step=40.ckpt`` gets ``epoch=3-step=40.mlm.json``; each
    checkpoint directory gets a ``collection.json`` linking every live Item, with the latest and the best (by
    the monitored metric). When a checkpoint is removed (top-k pruning, a replaced ``last.ckpt``), its Item is
    removed before it.

    Args:
        example_input: a batch to trace the model with; else ``pl_module.example_input_array``, else one batch
            of the datamodule or the training dataloader.
        write_weights: also write ``<checkpoint stem>.safetensors`` beside each checkpoint.
        export_program: also write ``<checkpoint stem>.pt2`` (``torch.export``), the ``mlm:model`` asset.
            Both are shorthands: ``artifacts=`` (an option of :func:`mlm_export.export_mlm`) names the model files
            to write beside each checkpoint (``"pt2"``, ``"torchscript"``, ``"onnx"``, ``"safetensors"``;
            ``"checkpoint"`` is the checkpoint itself) and ``primary=`` the ``mlm:model`` one.
        strict: raise export errors instead of warning (training stops).
        collection_id: id of the run Collection (default: ``<model id>-checkpoints``).
        name, license, tasks, ...: what cannot be observed, as for :func:`mlm_export.export_mlm` (every option
            of it, with the same name, type and default), and ``deprecate_superseded`` (mark every Item of the run
            but the latest ``deprecated: true``). Checked here, so that a bad option fails before training.

    .. versionadded:: 0.1
    """

    def __init__(
        self,
        *,
        example_input: Any = None,
        write_weights: bool = False,
        export_program: bool = False,
        strict: bool = False,
        collection_id: str | None = None,
        # The options of ExportOptions, each by name, type and default (a test compares them): LightningCLI and
        # jsonargparse read these hints to check a YAML config's init_args.
        name: str | None = None,
        item_id: str | None = None,
        description: str | None = None,
        architecture: str | None = None,
        tasks: str | Sequence[str] | Mapping[str, Sequence[str]] | None = None,
        bands: Sequence[Any] | None = None,
        classes: Sequence[Any] | Mapping[int, str] | None = None,
        value_scaling: Any = None,
        batch_size: int | None = None,
        license: str | None = None,  # noqa: A002 - the STAC field's name
        pretrained: bool | None = None,
        pretrained_source: str | None = None,
        hyperparameters: Mapping[str, Any] | None = None,
        bbox: Sequence[float] | None = None,
        datetime: dt.datetime | str | None = None,
        start_datetime: dt.datetime | str | None = None,
        end_datetime: dt.datetime | str | None = None,
        properties: Mapping[str, Any] | None = None,
        weights: Any = None,
        validate: Validate = "raise",
        profile: str = "default",
        base_url: str | None = None,
        layout: str = "flat",
        version: str | None = None,
        doi: str | None = None,
        citation: str | None = None,
        deprecate_superseded: bool = False,
        training_data: Any = None,
        artifacts: str | Sequence[str] | None = None,
        primary: str | None = None,
        artifact_timeout: float | None = None,
    ) -> None:
        given = locals()
        self.options = ExportOptions.from_keywords(given)
        self.example_input = example_input
        self.write_weights = write_weights
        self.export_program = export_program
        self.strict = strict
        self.collection_id = collection_id
        self._gathered: Gathered | None = None
        self._plan: ItemPlan | None = None
        self._provenance: Any = None
        self._embedded: dict[str, Any] | None = None
        self._base: dict[str, Any] = {}
        #: The run's model Item, built once; each checkpoint's Item is built from a copy of it.
        self._template: pystac.Item | None = None
        self._worker: Worker | None = None
        self._catalogs: dict[Path, RunCatalog] = {}
        self._events: CheckpointEvents | None = None
        self._lock = threading.Lock()
        self._versions = Versions()
        self._failed = False
        self._warned: set[str] = set()
        #: Runtime files per set of artifact types: the same bytes for every checkpoint, computed once.
        self._runtime: dict[tuple[str | None, ...], Prepared] = {}
        #: The runtime files last written per directory and set of types: the next ones are hard links to them.
        self._runtime_copies: dict[tuple[Path, tuple[str | None, ...]], dict[str, Path]] = {}
        #: The YAML of the LightningCLI that built the Trainer, kept beside every checkpoint (None without one).
        self._config: bytes | None = None

    def __getstate__(self) -> dict[str, Any]:
        """Picklable for ``ddp_spawn``: threads, locks and the CheckpointIO wrapper are made again in ``setup``."""
        state = self.__dict__.copy()
        state.update(_worker=None, _lock=None, _catalogs={}, _events=None, _gathered=None, _versions=Versions())
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    @property
    def state_key(self) -> str:
        return self._generate_state_key(collection_id=self.collection_id)

    # ------------------------------------------------------------------------------------------ hooks

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        self._failed = False
        self._events = CheckpointEvents(
            trainer, plan=lambda: self._plan, catalog=self._catalog, describe=self._describe, submit=self._submit,
            fail=self._fail, lock=self._lock, versions=self._versions,
        )  # fmt: skip
        if trainer.is_global_zero:
            self._worker = Worker(self._process, self._fail, self._write_collections)
            self._guard(lambda: self._prepare(trainer, pl_module, from_loader=False))

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.is_global_zero or self._failed:
            return
        if self._plan is None:  # no batch was available in setup; the training dataloader exists now
            self._guard(lambda: self._prepare(trainer, pl_module, from_loader=True))
        if self._plan is not None:
            self._guard(lambda: self._adopt_existing(trainer))

    def on_save_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        if self._embedded is not None:
            checkpoint[EMBED_KEY] = self._embedded

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        if self._events is not None:
            self._events.scan_links()

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._events is not None:
            self._events.scan_links()

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._events is not None:
            self._events.scan_links()  # the last.ckpt link made at the last epoch's end
        self._finish()

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        with contextlib.suppress(Exception):
            self._finish(raise_errors=False)

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage == "fit":
            self._finish(raise_errors=False)
            if self._events is not None:
                self._events.close()
            self._events = None

    # ------------------------------------------------------------------------------------------ preparation

    def _prepare(self, trainer: Trainer, pl_module: LightningModule, *, from_loader: bool) -> None:
        """Trace the model once and plan the run's Item; returns quietly when no batch is available yet."""
        if not from_loader and not any(True for _ in pl_module.parameters()):
            return  # layers made in configure_model do not exist yet: trace at on_train_start
        example = self.example_input
        if example is None:
            example = getattr(pl_module, "example_input_array", None)
        if example is None and from_loader:
            example = _loader_batch(trainer)
        try:
            self._gathered = gather(pl_module, _datamodule(trainer), example, self.options)
        except InputRequiredError:
            if from_loader:
                raise
            return  # try again at on_train_start, when the training dataloader exists
        self._runtime, self._runtime_copies = {}, {}  # a new model may need other pins
        self._provenance = provenance_facts(
            pl_module, doi=self.options.doi, citation=self.options.citation, datamodule=_datamodule(trainer)
        )
        self._config = _cli_config(trainer)
        self._plan = with_trainer(plan(pl_module, self._gathered, self.options, provenance=self._provenance), trainer)
        if self.options.profile == "openeo":
            self._plan = openeo.adapt(self._plan, self._gathered, str(self.options.base_url))
        self._template = build_item(self._plan)
        self._base = plain(self._template)
        # plain JSON types only, so that torch.load(weights_only=True) reads it back without any allowlist
        self._embedded = {"mlm_export_version": __version__, "item": self._base}

    def _adopt_existing(self, trainer: Trainer) -> None:
        """On resume: keep the Items whose checkpoints still exist, drop the others, rebuild the Collections."""
        for cb in trainer.checkpoint_callbacks:
            if isinstance(cb, ModelCheckpoint) and cb.dirpath and Path(cb.dirpath).is_dir():
                catalog = self._catalog(Path(cb.dirpath))
                with self._lock:
                    catalog.adopt()
                self._submit(("collection", catalog))

    # ------------------------------------------------------------------------------------------ checkpoint events

    def _describe(self, snap: Snapshot, catalog: RunCatalog) -> None:
        """Queue the Item of a checkpoint just saved (its model files are written now, from the live module)."""
        if self._model_files and self._events is not None:
            snap = self._write_model_files(self._events.trainer, snap)
        self._submit(("save", catalog, snap))

    def _write_model_files(self, trainer: Trainer, snap: Snapshot) -> Snapshot:
        assert self._gathered is not None and self._plan is not None
        stem = checkpoint_stem(snap.path)
        module = trainer.lightning_module
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", MLMExportWarning)
            if self.options.profile == "openeo":  # TorchScript <stem>.torchscript and safetensors, absolute hrefs
                written = openeo.write_files(
                    module, self._gathered, self._plan, snap.path.parent, str(self.options.base_url), stem=stem
                )
            else:
                written = write_model_files(
                    module, self._gathered, self._plan, snap.path.parent, stem, export_program=self.export_program,
                    artifacts=self.options.artifacts, primary=self.options.primary,
                    timeout=self.options.artifact_timeout, checkpoint_exists=True,
                )  # fmt: skip
        for w in caught:  # the same model gives the same warning at every checkpoint: say each once per run
            if str(w.message) not in self._warned:
                self._warned.add(str(w.message))
                warnings.warn(str(w.message), w.category, stacklevel=2)
        return replace(snap, artifacts=written.artifacts, plan=written)

    def _submit(self, job: tuple[Any, ...]) -> None:
        if self._worker is not None:
            self._worker.put(job)
        elif job[0] == "save" and job[2].written is not None:
            job[2].written.release()  # no Item will be written: no checksum needed

    # ------------------------------------------------------------------------------------------ worker side

    def _process(self, job: tuple[Any, ...]) -> None:
        kind, catalog = job[0], job[1]
        if kind == "save":
            snap: Snapshot = job[2]
            events = self._events
            if snap.pending and (events is None or not events.landed(snap, lambda: self._worker is None)):
                return  # the wrapped IO's write never landed (it failed): nothing to describe
            if self._versions.current(snap.path) != snap.generation:
                if snap.written is not None:
                    snap.written.release()
                return  # saved again or removed since: a newer job (or none) describes it; skip the hashing
            checksum = snap.written.checksum() if snap.written is not None else None
            if snap.written is not None and checksum is not None:  # the bytes written, hashed in memory
                catalog.known_checksum(snap.written.key, snap.written.size, checksum)
            try:
                item = self._checkpoint_item(catalog, snap)
            except FileNotFoundError:
                if self._versions.current(snap.path) != snap.generation or not snap.path.exists():
                    return  # pruned while it was being hashed: nothing to describe, not an error
                raise

            def still_current() -> bool:  # under the lock: a removal or a newer save meanwhile wins
                return self._versions.current(snap.path) == snap.generation and snap.path.exists()

            # encoded and written outside the lock; only the rename under it: the training loop waits little
            target, payload = item_path_for(snap.path), json_bytes(item)
            if not commit(target, payload, self._lock, still_current, lambda: catalog.record(snap.path, item)):
                if not snap.path.exists():  # pruned meanwhile: the runtime files written for it go too
                    remove_runtime_files(snap.path.parent, item)
                return
        catalog.dirty = True  # written once the queue drains (_write_collections), not once per job

    def _write_collections(self) -> None:
        """Write the Collection of every directory whose Items changed; the worker calls it when idle."""
        for catalog in list(self._catalogs.values()):
            if catalog.dirty:
                # the lock only for each rename: the training loop hardly waits; all links right at the end
                flush(catalog, self._lock, final=self._worker is None)

    def _checkpoint_item(self, catalog: RunCatalog, snap: Snapshot) -> dict[str, Any]:
        """The Item of one saved checkpoint, built from the run's model Item and what the save observed."""
        item_plan = snap.plan or self._plan
        assert item_plan is not None
        hashed = snap.link_target or snap.path
        size, checksum = catalog.checksum(hashed)
        template = self._template if item_plan is self._plan else None  # the run's, unless files changed it
        model = template if template is not None else build_item(item_plan)
        # the .pt2/safetensors written for this checkpoint (if any), the source code, the runtime files
        assets = {k: a.to_dict() for k, a in model.assets.items()}
        files = {k: a for k, a in assets.items() if snap.artifacts or not is_model_file(a)}
        types = [a.get(mlm.ARTIFACT_TYPE) for a in files.values()] + [mlm.ARTIFACT_TORCH_SAVE]
        if tuple(types) not in self._runtime:
            self._runtime[tuple(types)] = runtime_files(self._provenance, types, training=True, config=self._config)
        copies = self._runtime_copies.setdefault((snap.path.parent, tuple(types)), {})
        files.update(write_prepared(snap.path.parent, checkpoint_stem(snap.path), self._runtime[tuple(types)], copies))
        facts = saved_facts(
            snap.path, size=size, checksum=checksum, architecture=item_plan.architecture,
            software=item_plan.extra_properties.get(mlm.PROCESSING_SOFTWARE, {}), epoch=snap.epoch,
            global_step=snap.global_step, weights_only=snap.weights_only, monitor=snap.monitor, mode=snap.mode,
            score=snap.score, metrics=snap.metrics, files=files, catalog=catalog,
            compile_method=self._provenance.compile_method, hashed=hashed,
        )  # fmt: skip
        built = checkpoint_item(model, facts, copy=template is not None)  # the template itself stays as it is
        data = built.to_dict(include_self_link=False, transform_hrefs=False)
        quick_check(data, by_shape=True)  # one template for every checkpoint: each new shape checked
        return data

    def _catalog(self, dirpath: Path) -> RunCatalog:
        if dirpath not in self._catalogs:
            assert self._plan is not None
            self._catalogs[dirpath] = RunCatalog(
                dirpath,
                collection_id=self.collection_id or f"{self._plan.id}-checkpoints",
                title=self._plan.name,
                license=self.options.license,
                description=self.options.description,
                version=self.options.version,
                deprecate_superseded=self.options.deprecate_superseded,
            )
            self._catalogs[dirpath].model_files = self._model_files
        return self._catalogs[dirpath]

    @property
    def _model_files(self) -> bool:
        """Whether model files (.pt2, safetensors, TorchScript, ...) are written beside each checkpoint."""
        options = self.options
        return bool(self.write_weights or self.export_program or options.artifacts is not None) or (
            options.profile == "openeo"
        )

    # ------------------------------------------------------------------------------------------ failure

    def _guard(self, fn: Callable[[], None]) -> None:
        """Run a preparation step; on failure warn once, and write no Items this run."""
        try:
            fn()
        except Exception as e:
            self._failed = True
            self._plan = None
            self._fail(e)

    def _fail(self, error: BaseException) -> None:
        if self.strict:
            raise error
        warnings.warn(
            f"MLM export failed, training goes on: {type(error).__name__}: {error}. Pass strict=True to "
            "MLMExportCallback to make this an error.",
            MLMExportWarning,
            stacklevel=2,
        )

    def _finish(self, raise_errors: bool = True) -> None:
        """Wait for pending Items and Collections; re-raise a worker error in strict mode."""
        if self._worker is None:
            return
        worker, self._worker = self._worker, None
        error = worker.close()
        if error is not None and raise_errors and self.strict:
            raise error


def _datamodule(trainer: Trainer) -> LightningDataModule | None:
    """The datamodule passed to ``fit`` (Lightning sets ``trainer.datamodule`` at run time, undeclared)."""
    datamodule = getattr(trainer, "datamodule", None)
    return datamodule if isinstance(datamodule, LightningDataModule) else None


def _cli_config(trainer: Trainer) -> bytes | None:
    """The LightningCLI configuration of the run; a configuration that cannot be written out costs only its file."""
    try:
        return cli_config(trainer)
    except Exception as e:  # noqa: BLE001 - a user's config may hold anything; the Item is worth more than it
        warnings.warn(
            f"The LightningCLI configuration could not be written out ({type(e).__name__}: {e}); the Items do not "
            "include it.",
            MLMExportWarning,
            stacklevel=2,
        )
        return None


def _loader_batch(trainer: Trainer) -> Any:
    with contextlib.suppress(Exception):
        loader = trainer.train_dataloader
        if loader is not None:
            return model_input(next(iter(loader)))
    return None


__all__ = ["EMBED_KEY", "ITEM_SUFFIX", "MLMExportCallback", "item_path_for"]
