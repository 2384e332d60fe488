"""Turn checkpoints that already exist into MLM Items (the engine of ``mlm-export convert``).

Per file: load safely, find the model (embedded Item, LightningCLI class path, ``--model``/``--factory``),
check that the weights fit it, reuse the trace of that architecture across files, hash the file once, and
write ``<stem>.mlm.json`` atomically beside it. A directory also gets a ``collection.json``.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pystac
import torch
from torch import nn

from . import _artifacts as art
from . import _openeo as openeo
from . import mlm
from ._checkpoint_facts import converted_facts, plain
from ._faults import all_or_nothing
from ._guard import Policy
from ._isolate import MAX_MEMORY_CONVERT, TIMEOUT, Child, Limits
from ._item import build_item, checkpoint_item
from ._pipeline import ExportOptions, gather, plan
from ._provenance import INFERENCE_SUFFIX, restate, write_inference_runtime
from ._rebuild import checkpoint_spec
from ._run_facts import kept_properties, monitor_facts, previous_collection, read_json
from ._runs import RunCatalog, checkpoint_stem, item_path_for
from ._sources.checkpoint import ArchitectureError, LoadedCheckpoint, ModelSpec, load, load_weights
from ._sources.dummy import DEFAULT_IMAGE_SIZE  # the one default image size (override with input_shape)
from ._sources.layers import first_layer_channels
from ._validate import check
from ._write import atomic_write_json, file_checksum
from .errors import (
    InputRequiredError,
    InvalidOptionError,
    IsolatedRunError,
    MLMExportError,
    MLMExportWarning,
    first_line,
)


@dataclass
class Result:
    """What happened to one file."""

    path: Path
    status: str  # "converted", "skipped" or "failed"
    item_path: Path | None = None
    model: str | None = None
    parameters: int | None = None
    tasks: list[str] = field(default_factory=list)
    error: str | None = None
    size: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "status": self.status,
            "item": str(self.item_path) if self.item_path else None,
            "model": self.model,
            "parameters": self.parameters,
            "tasks": self.tasks,
            "error": self.error,
        }


@dataclass
class ConvertSettings:
    """How to rebuild models that checkpoints do not describe themselves."""

    model: str | None = None
    #: A TorchGeo weights enum member's name: its architecture, bands and normalization describe the files.
    weights: str | None = None
    init_args: Mapping[str, Any] | None = None
    input_shape: Sequence[int] | None = None
    trust: bool = False
    overwrite: bool = False
    #: Packages (besides the model packages) whose classes a checkpoint may name (``--allow-module``).
    allow_modules: tuple[str, ...] = ()
    #: Let model constructors download pretrained weights (``--download``); off: converting works offline.
    download: bool = False
    #: Memory the child process that rebuilds the models may use beyond its runtime (``--max-memory``).
    max_memory: int = MAX_MEMORY_CONVERT
    #: Wall-clock seconds one checkpoint may take in that child before it is killed (``--timeout``).
    timeout: float = TIMEOUT

    @property
    def policy(self) -> Policy:
        """What rebuilding a model from these files may do."""
        return Policy(trust=self.trust, allow_modules=tuple(self.allow_modules), download=self.download)


class Converter:
    """Convert checkpoint files one by one; what files share (the traced architecture) is computed once."""

    def __init__(self, options: ExportOptions, settings: ConvertSettings) -> None:
        if settings.weights and options.weights is None:
            options = replace(options, weights=settings.weights)
        self.options = options
        self.settings = settings
        self._bases: dict[Any, dict[str, Any]] = {}
        self._catalogs: dict[Path, RunCatalog] = {}

    def convert(self, path: Path, *, catalog_dir: Path | None = None) -> Result:
        """Write the Item of one checkpoint; a failure is reported in the result, nothing is written for it."""
        path = Path(path)
        target = item_path_for(path)
        size = path.stat().st_size if path.exists() else 0
        if target.exists() and not self.settings.overwrite:
            if catalog_dir:  # still counted in the directory's Collection (rebuilt if it was lost)
                self._catalog_for_existing(catalog_dir, target)
            return Result(path, "skipped", target, error="an Item exists; pass --overwrite to replace it", size=size)
        model_files: dict[str, Any] = {}
        try:
            ckpt = load(path, trust=self.settings.trust)
            base, model_name = self._base(ckpt)
            catalog = self._catalog(catalog_dir, base) if catalog_dir else None
            if self.options.profile == "openeo":
                model_files = self._openeo_files(ckpt, path, base)
            elif self.options.artifacts is not None:
                model_files = self._model_files(ckpt, path)
            runtime = write_inference_runtime(path.parent, _runtime_stem(path, target), base, _artifact_type(ckpt))
            model_files = {**model_files, **runtime}
            checksum = file_checksum(path)
            facts = converted_facts(  # what the Item being replaced and the checkpoint's callbacks know is kept
                ckpt, path.absolute(), size=size, checksum=checksum, monitor=monitor_facts(ckpt.callbacks, path),
                kept=kept_properties(read_json(target) if target.exists() else None, checksum),
                files={**_kept_assets(base), **model_files}, catalog=catalog,
            )  # fmt: skip
            model = json.loads(json.dumps(base))  # the model's Item, with the user's doi/citation/version
            o = self.options
            restate(model, doi=o.doi, citation=o.citation, version=o.version)
            template = pystac.Item.from_dict(model, migrate=False, preserve_dict=False)
            data = plain(checkpoint_item(template, facts, copy=False))
            check(data)
            with all_or_nothing(target.parent, [target]):
                if catalog:
                    catalog.put(path.absolute(), data)
                else:
                    atomic_write_json(target, data)
        except (MLMExportError, OSError) as e:
            _remove(path.parent, model_files)
            return Result(path, "failed", error=first_line(e), size=size)
        except Exception as e:  # noqa: BLE001 - the model's own code failed (constructor, forward): this file only
            _remove(path.parent, model_files)
            return Result(path, "failed", error=f"{type(e).__name__}: {first_line(e)}", size=size)
        props = data["properties"]
        return Result(
            path,
            "converted",
            target,
            model=model_name,
            parameters=props.get(mlm.TOTAL_PARAMETERS),
            tasks=list(props.get(mlm.TASKS, [])),
            size=size,
        )

    def write_collections(self) -> list[Path]:
        """Write the Collection of every directory converted (a write that fails is a WriteFailedError)."""
        written = []
        for directory, catalog in self._catalogs.items():
            catalog.adopt()
            with all_or_nothing(directory, [directory / "collection.json"]):
                catalog.write_collection()
            written.append(directory / "collection.json")
        return written

    # ---------------------------------------------------------------------------------------------- internals

    def _base(self, ckpt: LoadedCheckpoint) -> tuple[dict[str, Any], str]:
        """The model's description shared by every checkpoint of it: embedded, or traced once per architecture."""
        described = self.settings.model is None and self.settings.weights is None and self.options.profile == "default"
        if ckpt.embedded_item is not None and described:
            base = ckpt.embedded_item
            props = base.get("properties", {})
            _check_embedded_fits(ckpt, props)
            return base, str(props.get(mlm.ARCHITECTURE, "embedded"))
        spec = self._spec(ckpt)
        key = (repr(spec), tuple(self.settings.input_shape or ()))  # hyperparameters may hold lists
        if key not in self._bases:
            self._bases[key] = self._trace(spec, ckpt)
        model = spec.build(on_meta=True)
        load_weights(model, ckpt.state_dict, spec.target)  # the weights must fit, for every file
        return self._bases[key], spec.target

    def _model_files(self, ckpt: LoadedCheckpoint, path: Path) -> dict[str, Any]:
        """Write the model files ``artifacts=`` names beside the checkpoint, from its weights; their assets."""
        from ._model_files import write_artifacts

        spec = self._spec(ckpt)
        model = spec.build(on_meta=False)
        load_weights(model, ckpt.state_dict, spec.target)
        example = self._example(model, ckpt)
        if isinstance(example, torch.Tensor):
            example = torch.randn(tuple(example.shape))
        gathered = gather(model, None, example, self.options)
        item_plan = plan(model, gathered, self.options, warn_datetime=False)
        chosen, primary = art.artifact_choice(self.options.artifacts, self.options.primary)
        written = write_artifacts(
            model, gathered, item_plan, path.parent, checkpoint_stem(path), artifacts=chosen, primary=primary,
            timeout=self.options.artifact_timeout, checkpoint_exists=True,
        )  # fmt: skip
        assets: dict[str, Any] = plain(build_item(written))["assets"]
        return assets

    def _spec(self, ckpt: LoadedCheckpoint) -> ModelSpec:
        st = self.settings
        return checkpoint_spec(ckpt, model=st.model, init_args=st.init_args, weights=st.weights, policy=st.policy)

    def _trace(self, spec: ModelSpec, ckpt: LoadedCheckpoint) -> dict[str, Any]:
        model = spec.build(on_meta=True)
        example = self._example(model, ckpt)
        try:
            gathered = gather(model, None, example, self.options)
        except MLMExportError:
            # data-dependent models cannot trace on meta: load the (memory-mapped) weights and run for real
            real = spec.build(on_meta=False)
            load_weights(real, ckpt.state_dict, spec.target)
            model, gathered = real, gather(real, None, example, self.options)
        item_plan = plan(model, gathered, self.options, warn_datetime=False)
        if self.options.profile == "openeo":
            item_plan = openeo.adapt(item_plan, gathered, str(self.options.base_url))
        return plain(build_item(item_plan))

    def _openeo_files(self, ckpt: LoadedCheckpoint, path: Path, base: dict[str, Any]) -> dict[str, Any]:
        """profile='openeo': the checkpoint's weights as TorchScript, ``<stem>.torchscript`` beside it."""
        spec = self._spec(ckpt)
        model = spec.build(on_meta=False)
        load_weights(model, ckpt.state_dict, spec.target)
        target = path.parent / f"{checkpoint_stem(path)}{openeo.SUFFIX}"
        return {"model": openeo.torchscript_beside(model, base, target, str(self.options.base_url))}

    def _example(self, model: nn.Module, ckpt: LoadedCheckpoint) -> Any:
        if self.settings.weights and not self.settings.input_shape:
            return None  # the weights enum gives channels and size
        if self.settings.input_shape:
            return torch.empty(tuple(self.settings.input_shape), device="meta")
        example = getattr(model, "example_input_array", None)
        if isinstance(example, torch.Tensor):
            return example.to("meta")
        channels = _in_channels(ckpt.hyper_parameters, model)
        if channels is None:
            raise InputRequiredError()
        size = _image_size(ckpt.hyper_parameters) or DEFAULT_IMAGE_SIZE
        return torch.empty((2, channels, size, size), device="meta")

    def _catalog(self, directory: Path, base: dict[str, Any]) -> RunCatalog:
        directory = directory.absolute()
        if directory not in self._catalogs:
            props = base.get("properties", {})
            self._new_catalog(directory, f"{base['id']}-checkpoints", str(props.get(mlm.NAME, base["id"])))
        return self._catalogs[directory]

    def _catalog_for_existing(self, directory: Path, item_path: Path) -> None:
        """The Collection of a directory whose Items exist already: their collection id and model name."""
        directory = directory.absolute()
        item = read_json(item_path)
        if directory in self._catalogs or not item or not isinstance(item.get("collection"), str):
            return
        self._new_catalog(directory, item["collection"], str(item.get("properties", {}).get(mlm.NAME, item["id"])))

    def _new_catalog(self, directory: Path, collection_id: str, title: str) -> RunCatalog:
        if directory not in self._catalogs:
            previous = previous_collection(directory)  # its license, title, description are kept
            self._catalogs[directory] = RunCatalog(
                directory,
                collection_id=collection_id,
                title=previous.get("title", title),
                license=self.options.license or previous.get("license"),
                description=self.options.description or previous.get("description"),
                version=self.options.version,
                deprecate_superseded=self.options.deprecate_superseded,
            )
            self._catalogs[directory].model_files = False  # convert writes none; adopted Items list theirs
        return self._catalogs[directory]


class IsolatedConverter:
    """:class:`Converter` in one limited child process for the whole run (:mod:`mlm_export._isolate`): a
    stranger's checkpoint is rebuilt and traced where it cannot reach the network or the parent's memory.

    A checkpoint that times out, crashes the child or exhausts its memory fails alone; the next one gets a
    new child. Warnings the child raised are raised again here, as :class:`MLMExportWarning`.
    """

    def __init__(self, options: ExportOptions, settings: ConvertSettings) -> None:
        self.options = _absolute_paths(options)
        self.settings = settings
        limits = Limits(memory=settings.max_memory, timeout=settings.timeout, network=settings.download)
        self._child = Child(limits, what="convert")
        self._opened = False
        #: An Item written per Collection folder, kept here: a child that was ended took its catalogs with it.
        self._folders: dict[Path, Path] = {}

    def __enter__(self) -> IsolatedConverter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._child.close()

    def convert(self, path: Path, *, catalog_dir: Path | None = None) -> Result:
        """:meth:`Converter.convert` of one file in the child; a failure of the child fails this file alone."""
        path = Path(path)
        self._child.what = f"rebuilding the model of {path.name}"
        try:
            self._open()
            data = self._child.call(
                "mlm_export._convert:_convert_in_child", str(path.absolute()),
                str(catalog_dir.absolute()) if catalog_dir else None,
            )  # fmt: skip
        except IsolatedRunError as e:
            self._opened = False  # the child was ended: the next file opens a new one
            size = path.stat().st_size if path.exists() else 0
            return Result(path, "failed", error=first_line(e), size=size)
        for message in data.pop("warnings", []):
            warnings.warn(str(message), MLMExportWarning, stacklevel=2)
        item = data.get("item")
        item_path = path.parent / Path(item).name if item else None  # beside the checkpoint, spelled as given
        if catalog_dir is not None and item_path is not None and item_path.is_file():
            self._folders.setdefault(catalog_dir.absolute(), item_path.absolute())
        return Result(
            path, str(data["status"]), item_path, model=data.get("model"), parameters=data.get("parameters"),
            tasks=list(data.get("tasks") or []), error=data.get("error"), size=int(data.get("size") or 0),
        )  # fmt: skip

    def write_collections(self) -> list[Path]:
        """:meth:`Converter.write_collections` in the child, for every folder an Item was written in this run,
        also those a child ended since (a timeout, a crash) had described: their Items are adopted again."""
        if not self._folders:
            return []
        self._child.what = "writing the Collections"
        self._open()
        folders = [(str(d), str(i)) for d, i in self._folders.items()]
        return [Path(p) for p in self._child.call("mlm_export._convert:_collections_in_child", folders)]

    def _open(self) -> None:
        if not self._opened:
            self._child.call("mlm_export._convert:_open_in_child", self.options, self.settings)
            self._opened = True


#: The child's converter (:class:`IsolatedConverter`): one per child process, so one per run.
_CHILD_CONVERTER: list[Converter] = []


def _open_in_child(options: ExportOptions, settings: ConvertSettings) -> None:
    _CHILD_CONVERTER[:] = [Converter(options, settings)]


def _convert_in_child(path: str, catalog_dir: str | None) -> dict[str, Any]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", MLMExportWarning)
        result = _CHILD_CONVERTER[0].convert(Path(path), catalog_dir=Path(catalog_dir) if catalog_dir else None)
    said = [str(w.message) for w in caught if issubclass(w.category, MLMExportWarning)]
    return {**result.as_dict(), "size": result.size, "warnings": list(dict.fromkeys(said))}


def _collections_in_child(folders: list[tuple[str, str]]) -> list[str]:
    converter = _CHILD_CONVERTER[0]
    for directory, item in folders:  # a folder this child did not see (an earlier child was ended)
        converter._catalog_for_existing(Path(directory), Path(item))
    return [str(p) for p in converter.write_collections()]


def _absolute_paths(options: ExportOptions) -> ExportOptions:
    """Options naming a local file by a relative path name it absolutely: the child works in its own folder."""
    data = options.training_data
    if isinstance(data, (str, os.PathLike)) and "://" not in str(data) and Path(data).exists():
        return replace(options, training_data=str(Path(data).absolute()))
    return options


def _remove(directory: Path, assets: Mapping[str, Any]) -> None:
    """Remove model files written for a checkpoint whose Item failed: no file without its Item."""
    for asset in assets.values():
        href = str(asset.get("href", ""))
        if href.startswith("./"):
            (directory / href).unlink(missing_ok=True)


def _check_embedded_fits(ckpt: LoadedCheckpoint, props: Mapping[str, Any]) -> None:
    """An embedded description must still match the weights it travels with (same parameter count)."""
    total = props.get(mlm.TOTAL_PARAMETERS)
    if isinstance(total, int) and ckpt.state_dict:
        counted = sum(t.numel() for t in ckpt.state_dict.values() if t.is_floating_point())
        if counted < total:
            raise ArchitectureError(
                f"{ckpt.path.name}: the embedded Item counts {total:,} parameters but the checkpoint holds "
                f"{counted:,} weights; pass --model to describe it anew"
            )


def _in_channels(hparams: Mapping[str, Any], model: nn.Module) -> int | None:
    for key in ("in_channels", "in_chans", "num_channels", "input_channels"):
        v = hparams.get(key)
        if isinstance(v, int) and v > 0:
            return v
    return first_layer_channels(model)  # the one first-layer rule


def _image_size(hparams: Mapping[str, Any]) -> int | None:
    for key in ("img_size", "image_size", "patch_size", "size"):
        v = hparams.get(key)
        if isinstance(v, int) and v > 0:
            return v
    return None


def _runtime_stem(checkpoint: Path, item_path: Path) -> str:
    """The stem of the checkpoint's runtime file: ``<stem>``, unless a file of that name belongs to another Item
    (``export_mlm`` writes ``<id>.requirements.txt`` beside the weights it exports): then ``<stem>.mlm``."""
    stem = checkpoint_stem(checkpoint)
    existing = checkpoint.parent / f"{stem}{INFERENCE_SUFFIX}"
    if not existing.exists():
        return stem
    old = read_json(item_path) if item_path.exists() else None
    listed = {str(a.get("href")) for a in (old or {}).get("assets", {}).values() if isinstance(a, Mapping)}
    return stem if f"./{existing.name}" in listed else f"{stem}.mlm"


def _kept_assets(base: Mapping[str, Any]) -> dict[str, Any]:
    """Assets of the model's description that stay with every checkpoint: source code (not model files)."""
    drop = {mlm.ROLE_MODEL, mlm.ROLE_WEIGHTS, mlm.ROLE_CHECKPOINT}
    drop |= {mlm.ROLE_INFERENCE_RUNTIME, mlm.ROLE_TRAINING_RUNTIME}
    return {k: dict(a) for k, a in base.get("assets", {}).items() if not drop & set(a.get("roles", []))}


def _artifact_type(ckpt: LoadedCheckpoint) -> str:
    return mlm.ARTIFACT_SAFETENSORS if ckpt.kind == "safetensors" else mlm.ARTIFACT_TORCH_SAVE


def parse_shape(text: str) -> tuple[int, ...]:
    """``1,3,224,224`` -> (1, 3, 224, 224)."""
    try:
        shape = tuple(int(v) for v in text.replace("x", ",").split(",") if v.strip())
    except ValueError as e:
        raise InvalidOptionError(f"--input-shape must be integers separated by commas, got {text!r}") from e
    if not shape or any(s <= 0 for s in shape):
        raise InvalidOptionError(f"--input-shape must be positive integers, got {text!r}")
    return shape
