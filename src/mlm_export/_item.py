"""The one builder: a resolved plan of what the model is becomes a pystac.Item with MLM v1.5.2 fields."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pystac

from . import mlm
from ._collection import COLLECTION_FILE, RunLink
from ._facts import ArtifactFacts, BandFacts
from ._json_values import json_safe, json_safe_hyperparameters
from ._model_asset import file_href
from ._runs import checkpoint_stem
from ._times import iso_utc

__all__ = ["CheckpointFacts", "ItemPlan", "RunLink", "build_item", "checkpoint_item", "checkpoint_item_id",
           "declared_extensions", "json_safe", "json_safe_hyperparameters", "lightning_properties"]  # fmt: skip


@dataclass(frozen=True)
class ItemPlan:
    """Everything the Item states, already decided; ``build_item`` only spells it.

    Each attribute names the field it becomes and where its value comes from (one hop: ``_pipeline.plan`` reads
    it from the facts named here).
    """

    #: The Item's ``id``: ``item_id=``, else the name made an id (``_resolve.item_id``).
    id: str
    #: ``mlm:name``: ``name=``, else the model class's name (``_sources.model``).
    name: str
    #: ``mlm:architecture``: ``architecture=``, else the model's qualified class name (``_sources.model``).
    architecture: str
    #: ``mlm:tasks``: every output's tasks (``_resolve.output_specs``, from ``_sources.evidence``).
    tasks: tuple[str, ...]
    #: ``mlm:input``: shapes traced from the example batch, bands and scaling (``_resolve.input_specs``).
    inputs: tuple[mlm.ModelInput, ...]
    #: ``mlm:output``: shapes traced from the forward pass, classes (``_resolve.output_specs``).
    outputs: tuple[mlm.ModelOutput, ...]
    #: ``mlm:framework_version``: torch's version as SemVer (``_resolve.framework_version``).
    framework_version: str | None
    #: ``mlm:total_parameters``: parameters counted on the module (``_sources.model``, ``ParameterFacts.total``).
    total_parameters: int
    #: ``mlm:memory_size``: bytes of parameters and buffers (``_sources.model``, ``ParameterFacts.memory_bytes``).
    memory_size: int
    #: Model files (``mlm:model``, ``mlm:weights``) as assets: planned by ``pipeline``, written by ``_model_files``.
    artifacts: tuple[ArtifactFacts, ...]
    #: Links: training data (``_sources.datamodule``), publication (``_sources.weights``), citation (``provenance``).
    links: tuple[Mapping[str, Any], ...] = ()
    #: Assets other than model files (source code, runtime files), as STAC asset dicts (``provenance``).
    extra_assets: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    #: ``mlm:accelerator``: the device the model was traced on (``_resolve.accelerator``).
    accelerator: str | None = None
    #: ``mlm:accelerator_summary``: the device's name (``_resolve.accelerator``, ``_provenance.cpu_name``).
    accelerator_summary: str | None = None
    #: ``mlm:accelerator_count``: devices used (``_provenance.with_trainer``: the Trainer's device count).
    accelerator_count: int | None = None
    #: ``mlm:accelerator_constrained``: a torch.export archive made on a GPU (``_provenance.with_runtime_files``).
    accelerator_constrained: bool = False
    #: ``description``: ``description=`` (never guessed).
    description: str | None = None
    #: ``bands``: ``bands=``, else the datamodule's bands (``_sources.datamodule``, ``_sources.weights``).
    bands: tuple[BandFacts, ...] | None = None
    #: ``mlm:pretrained``: ``pretrained=``, else True for TorchGeo weights (``_sources.weights``).
    pretrained: bool | None = None
    #: ``mlm:pretrained_source``: ``pretrained_source=``, else the weights' dataset (``_sources.weights``).
    pretrained_source: str | None = None
    #: ``mlm:batch_size_suggestion``: ``batch_size=``, else the datamodule's batch size (``_sources.datamodule``).
    batch_size_suggestion: int | None = None
    #: ``mlm:hyperparameters``: ``hyperparameters=``, else the module's saved hparams (``_sources.model``).
    hyperparameters: Mapping[str, Any] | None = None
    #: ``license``: ``license=``, else the weights' license (``_sources.weights``).
    license: str | None = None
    #: ``bbox`` and ``geometry``: ``bbox=``, else the datamodule's datasets' bounds (``_sources.datamodule``).
    bbox: tuple[float, float, float, float] | None = None
    #: ``datetime``: ``datetime=``, else the export time (``pipeline``, with a warning).
    datetime: dt.datetime | None = None
    #: ``start_datetime``: ``start_datetime=``, else the datamodule's datasets' bounds (``_sources.datamodule``).
    start_datetime: dt.datetime | None = None
    #: ``end_datetime``: ``end_datetime=``, else the datamodule's datasets' bounds (``_sources.datamodule``).
    end_datetime: dt.datetime | None = None
    #: ``created``: the export time (``pipeline``).
    created: dt.datetime | None = None
    #: Fields of other extensions, each set by one function: ``processing:*``, ``sci:*``, ``version`` and
    #: ``lightning:datamodule`` (``_provenance.with_provenance``), ``torchgeo:weights`` (``_sources.weights``) and
    #: the user's ``properties=``.
    extra_properties: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CheckpointFacts:
    """One checkpoint file, as its Item states it beyond the model's plan: observed when Lightning saved it
    (``MLMExportCallback``) or read back from it (``convert``)."""

    #: The checkpoint asset's ``href`` (its name, beside the Item) and the end of the Item's ``id``.
    path: Path
    #: ``file:size``: the file's byte count, read with its checksum (``RunCatalog.checksum``, ``os.stat``).
    size: int
    #: ``file:checksum``: sha256 multihash of the file's bytes (``_write.file_checksum``), hashed once.
    checksum: str
    #: ``processing:datetime``: when the file was saved: its modification time (``_times.file_time``).
    saved: dt.datetime
    #: ``processing:lineage``: what saved the file and what described it (``_checkpoint_facts`` lineage).
    lineage: str
    #: Title of the checkpoint asset: what wrote the file (Lightning, a state dict, safetensors).
    title: str = "Checkpoint"
    #: ``lightning:epoch``: ``Trainer.current_epoch`` at the save, or the checkpoint's ``epoch`` key.
    epoch: int | None = None
    #: ``lightning:global_step``: ``Trainer.global_step`` at the save, or the checkpoint's ``global_step`` key.
    global_step: int | None = None
    #: ``lightning:weights_only``: ``ModelCheckpoint.save_weights_only`` at the save.
    weights_only: bool | None = None
    #: ``lightning:monitor``: ``ModelCheckpoint.monitor``, or its state saved in the file (``_run_facts``).
    monitor: str | None = None
    #: ``lightning:mode``: ``ModelCheckpoint.mode`` (``min``/``max``) of the monitored metric.
    mode: str | None = None
    #: ``lightning:score``: the monitored metric for this file (``best_k_models``, else ``current_score``).
    score: float | None = None
    #: ``lightning:metrics``: ``Trainer.callback_metrics`` at the save, finite scalars only.
    metrics: Mapping[str, float] | None = None
    #: ``lightning:*`` fields of the Item this one replaces, when it described this very file
    #: (``_run_facts.kept_properties``); the fields above, when known, win.
    kept: Mapping[str, Any] = field(default_factory=dict)
    #: Assets of the files that go with the checkpoint (model files written beside it, runtime files, source
    #: code); when one is the ``mlm:model``, the checkpoint is only ``mlm:checkpoint``.
    files: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    #: ``mlm:compile_method`` of the checkpoint as model: how training compiled it (``provenance``).
    compile_method: str | None = None
    #: The run Collection the Item belongs to; None: a lone Item, without collection links.
    run: RunLink | None = None


def build_item(plan: ItemPlan, checkpoint: CheckpointFacts | None = None) -> pystac.Item:
    """Spell ``plan`` as a STAC Item with the MLM, file and (when used) classification and eo extensions; with
    ``checkpoint``, the Item of that checkpoint file (see :func:`checkpoint_item`)."""
    item = _model_item(plan)
    return item if checkpoint is None else checkpoint_item(item, checkpoint, copy=False)


def _model_item(plan: ItemPlan) -> pystac.Item:  # noqa: C901 - one flat run of optional fields, each an if
    props: dict[str, Any] = {
        mlm.NAME: plan.name,
        mlm.ARCHITECTURE: plan.architecture,
        mlm.TASKS: list(plan.tasks),
        mlm.FRAMEWORK: mlm.FRAMEWORK_PYTORCH,
        mlm.TOTAL_PARAMETERS: plan.total_parameters,
        mlm.MEMORY_SIZE: plan.memory_size,
        mlm.ACCELERATOR: plan.accelerator,
        mlm.ACCELERATOR_CONSTRAINED: plan.accelerator_constrained,
        mlm.INPUT: [i.dump() for i in plan.inputs],
        mlm.OUTPUT: [o.dump() for o in plan.outputs],
    }
    if plan.framework_version is not None:
        props[mlm.FRAMEWORK_VERSION] = plan.framework_version
    if plan.accelerator_summary:
        props[mlm.ACCELERATOR_SUMMARY] = plan.accelerator_summary
    if plan.accelerator_count:
        props[mlm.ACCELERATOR_COUNT] = plan.accelerator_count
    if plan.pretrained is not None:
        props[mlm.PRETRAINED] = plan.pretrained
        props[mlm.PRETRAINED_SOURCE] = plan.pretrained_source if plan.pretrained else None
    elif plan.pretrained_source:
        props[mlm.PRETRAINED] = True
        props[mlm.PRETRAINED_SOURCE] = plan.pretrained_source
    if plan.batch_size_suggestion:
        props[mlm.BATCH_SIZE_SUGGESTION] = plan.batch_size_suggestion
    if plan.hyperparameters:
        props[mlm.HYPERPARAMETERS] = json_safe_hyperparameters(plan.hyperparameters)
    if plan.description:
        props["description"] = plan.description
    if plan.license:
        props["license"] = plan.license
    if plan.created:
        props["created"] = iso_utc(plan.created)
    if plan.start_datetime and plan.end_datetime:
        props["start_datetime"] = iso_utc(plan.start_datetime)
        props["end_datetime"] = iso_utc(plan.end_datetime)
    if plan.bands:
        props["bands"] = [_band(b) for b in plan.bands]
    props.update(plan.extra_properties)

    extensions = [mlm.MLM_SCHEMA]
    if any(a.size is not None or a.checksum for a in plan.artifacts) or any(
        mlm.FILE_SIZE in a or mlm.FILE_CHECKSUM in a for a in plan.extra_assets.values()
    ):
        extensions.append(mlm.FILE_SCHEMA)
    if any(o.classes for o in plan.outputs):
        extensions.append(mlm.CLASSIFICATION_SCHEMA)
    if plan.bands and any(b.common_name or b.center_wavelength for b in plan.bands):
        extensions.append(mlm.EO_SCHEMA)
    extensions += declared_extensions(props, [dict(link) for link in plan.links])

    geometry = _polygon(plan.bbox) if plan.bbox else None
    when = None if (plan.start_datetime and plan.end_datetime) else plan.datetime
    item = pystac.Item(
        id=plan.id,
        geometry=geometry,
        bbox=list(plan.bbox) if plan.bbox else None,
        datetime=when,
        properties=props,
        stac_extensions=extensions,
    )
    for a in plan.artifacts:
        item.add_asset(a.key, _asset(a, props.get("bands")))
    for key, asset in plan.extra_assets.items():
        item.add_asset(key, pystac.Asset.from_dict(dict(asset)))
    for link in plan.links:
        item.add_link(pystac.Link.from_dict(dict(link)))
    return item


def declared_extensions(props: Mapping[str, Any], links: list[dict[str, Any]]) -> list[str]:
    """The related extensions whose fields ``props`` (or the links) use: each declared only when used."""
    out = []
    if any(k.startswith(mlm.SCI_PREFIX) for k in props):
        out.append(mlm.SCI_SCHEMA)
    if any(k.startswith(mlm.PROCESSING_PREFIX) for k in props):
        out.append(mlm.PROCESSING_SCHEMA)
    if "version" in props or "deprecated" in props:
        out.append(mlm.VERSION_SCHEMA)
    if any(k.startswith(mlm.ML_AOI_PREFIX) for k in props) or any(mlm.ML_AOI_SPLIT in link for link in links):
        out.append(mlm.ML_AOI_SCHEMA)
    return out


def _band(b: BandFacts) -> dict[str, Any]:
    band: dict[str, Any] = {"name": b.name}
    if b.description:
        band["description"] = b.description
    if b.common_name:
        band[mlm.EO_COMMON_NAME] = b.common_name
    if b.center_wavelength:
        band[mlm.EO_CENTER_WAVELENGTH] = b.center_wavelength
    return band


def _asset(a: ArtifactFacts, bands: list[dict[str, Any]] | None) -> pystac.Asset:
    extra: dict[str, Any] = {}
    if mlm.ROLE_MODEL in a.roles:
        extra[mlm.ARTIFACT_TYPE] = a.artifact_type
        if bands:
            extra["bands"] = bands
        method = a.compile_method or ("aot" if a.artifact_type == mlm.ARTIFACT_EXPORT else None)
        if method:  # a torch.export archive is compiled ahead of time
            extra[mlm.COMPILE_METHOD] = method
    if a.size is not None:
        extra[mlm.FILE_SIZE] = a.size
    if a.checksum:
        extra[mlm.FILE_CHECKSUM] = a.checksum
    return pystac.Asset(
        href=a.href,
        title=a.title,
        description=a.description,
        media_type=a.media_type,
        roles=list(a.roles),
        extra_fields=extra,
    )


def _polygon(bbox: tuple[float, float, float, float]) -> dict[str, Any]:
    w, s, e, n = bbox
    return {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]}


def checkpoint_item(model: pystac.Item, facts: CheckpointFacts, *, copy: bool = True) -> pystac.Item:
    """The Item of one checkpoint file: the model's Item (built from a plan, or embedded in the checkpoint) with
    the file as an asset, its ``lightning:*`` and ``processing:*`` fields, its id and its run's links.

    A run builds the model's Item once and calls this per checkpoint (``copy=True`` leaves ``model`` as it is).
    """
    item = model.clone() if copy else model
    item.id = checkpoint_item_id(model.id, facts.path)
    item.properties.update(lightning_properties(facts))
    item.properties[mlm.PROCESSING_DATETIME] = iso_utc(facts.saved)
    item.properties[mlm.PROCESSING_LINEAGE] = facts.lineage
    item.assets.clear()  # the model's files are the checkpoint's only where facts.files says so
    for name, file in facts.files.items():
        item.add_asset(name, pystac.Asset.from_dict(dict(file)))
    key, asset = _checkpoint_asset(facts, item.properties.get("bands"))
    item.add_asset(key, asset)
    model_asset = item.assets.get("model")
    if facts.compile_method and model_asset is not None and mlm.ARTIFACT_TYPE in model_asset.extra_fields:
        model_asset.extra_fields.setdefault(mlm.COMPILE_METHOD, facts.compile_method)  # trained compiled
    links = [link.to_dict() for link in model.links if link.rel not in ("collection", "parent", "root", "self")]
    if facts.run is not None:
        links += [
            {"rel": rel, "href": f"./{COLLECTION_FILE}", "type": mlm.MEDIA_JSON, "title": facts.run.title}
            for rel in ("collection", "parent", "root")
        ]
    item.clear_links()
    for link in links:
        item.add_link(pystac.Link.from_dict(link))
    item.collection_id = facts.run.id if facts.run is not None else None
    extensions = item.stac_extensions
    for ext in (mlm.FILE_SCHEMA, *declared_extensions(item.properties, links)):
        if ext not in extensions:
            extensions.append(ext)
    return item


def checkpoint_item_id(model_id: str, checkpoint: Path) -> str:
    """The id of a checkpoint's Item: ``<model id>-<checkpoint stem>``, or the model id alone for a file named
    after the model (``unet.ckpt`` of ``unet`` is ``unet``, not ``unet-unet``). Distinct stems keep distinct ids."""
    stem = checkpoint_stem(checkpoint)
    same = stem == model_id or re.sub(r"[^a-z0-9_.-]+", "-", stem.lower()).strip("-") == model_id
    return model_id if same else f"{model_id}-{stem}"


def lightning_properties(facts: CheckpointFacts) -> dict[str, Any]:
    """The ``lightning:*`` fields of one checkpoint: those of the Item it replaces, then what is known now
    (each stated only when known; mode and score only with the monitored metric they belong to)."""
    props = {k: v for k, v in facts.kept.items() if k.startswith(mlm.LIGHTNING_PREFIX)}
    if facts.epoch is not None:
        props[mlm.LIGHTNING_EPOCH] = facts.epoch
    if facts.global_step is not None:
        props[mlm.LIGHTNING_GLOBAL_STEP] = facts.global_step
    if facts.weights_only is not None:
        props[mlm.LIGHTNING_WEIGHTS_ONLY] = facts.weights_only
    if facts.monitor:
        props[mlm.LIGHTNING_MONITOR] = facts.monitor
        if facts.mode is not None:
            props[mlm.LIGHTNING_MODE] = facts.mode
        if facts.score is not None:
            props[mlm.LIGHTNING_SCORE] = facts.score
    if facts.metrics:
        props[mlm.LIGHTNING_METRICS] = dict(facts.metrics)
    return props


def _checkpoint_asset(facts: CheckpointFacts, bands: Any) -> tuple[str, pystac.Asset]:
    """The checkpoint as an asset: ``mlm:checkpoint`` beside another ``mlm:model`` file, else the model itself."""
    safetensors = facts.path.name.endswith(".safetensors")
    extra: dict[str, Any] = {mlm.FILE_SIZE: facts.size, mlm.FILE_CHECKSUM: facts.checksum}
    if any(mlm.ROLE_MODEL in a.get("roles", []) for a in facts.files.values()):
        roles, key = [mlm.ROLE_CHECKPOINT], "checkpoint"
    else:
        roles, key = [mlm.ROLE_MODEL, mlm.ROLE_WEIGHTS if safetensors else mlm.ROLE_CHECKPOINT], "model"
        extra[mlm.ARTIFACT_TYPE] = mlm.ARTIFACT_SAFETENSORS if safetensors else mlm.ARTIFACT_TORCH_SAVE
        if bands:
            extra["bands"] = bands
    media = mlm.MEDIA_SAFETENSORS if safetensors else mlm.MEDIA_PYTORCH
    href = file_href(facts.path.name)
    asset = pystac.Asset(href, title=facts.title, media_type=media, roles=roles, extra_fields=extra)
    return key, asset
