"""The one builder: a resolved plan of what the model is becomes a pystac.Item with MLM v1.5.2 fields."""

from __future__ import annotations

import datetime as dt
import math
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import PurePath
from typing import Any

import pystac
import torch

from . import mlm
from .errors import MLMExportWarning
from .facts import ArtifactFacts, BandFacts, Scaling
from .resolve import InputSpec, OutputSpec
from .times import iso_utc


@dataclass(frozen=True)
class ItemPlan:
    """Everything the Item states, already decided; ``build_item`` only spells it."""

    id: str
    name: str
    architecture: str
    tasks: tuple[str, ...]
    inputs: tuple[InputSpec, ...]
    outputs: tuple[OutputSpec, ...]
    framework_version: str | None
    total_parameters: int
    memory_size: int
    artifacts: tuple[ArtifactFacts, ...]
    links: tuple[Mapping[str, Any], ...] = ()
    #: Assets other than model files (source code, ...), as STAC asset dicts.
    extra_assets: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    accelerator: str | None = None
    accelerator_summary: str | None = None
    accelerator_count: int | None = None
    accelerator_constrained: bool = False
    description: str | None = None
    bands: tuple[BandFacts, ...] | None = None
    pretrained: bool | None = None
    pretrained_source: str | None = None
    batch_size_suggestion: int | None = None
    hyperparameters: Mapping[str, Any] | None = None
    license: str | None = None
    bbox: tuple[float, float, float, float] | None = None
    datetime: dt.datetime | None = None
    start_datetime: dt.datetime | None = None
    end_datetime: dt.datetime | None = None
    created: dt.datetime | None = None
    extra_properties: Mapping[str, Any] = field(default_factory=dict)


def build_item(plan: ItemPlan) -> pystac.Item:
    """Spell ``plan`` as a STAC Item with the MLM, file and (when used) classification and eo extensions."""
    props: dict[str, Any] = {
        mlm.NAME: plan.name,
        mlm.ARCHITECTURE: plan.architecture,
        mlm.TASKS: list(plan.tasks),
        mlm.FRAMEWORK: mlm.FRAMEWORK_PYTORCH,
        mlm.TOTAL_PARAMETERS: plan.total_parameters,
        mlm.MEMORY_SIZE: plan.memory_size,
        mlm.ACCELERATOR: plan.accelerator,
        mlm.ACCELERATOR_CONSTRAINED: plan.accelerator_constrained,
        mlm.INPUT: [_input(i) for i in plan.inputs],
        mlm.OUTPUT: [_output(o) for o in plan.outputs],
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
    hparams = json_safe_hyperparameters(plan.hyperparameters or {})
    if hparams:
        props[mlm.HYPERPARAMETERS] = hparams
    if plan.description:
        props["description"] = plan.description
    if plan.license:
        props["license"] = plan.license
    if plan.created:
        props["created"] = iso_utc(plan.created)
    if plan.start_datetime and plan.end_datetime:
        props["start_datetime"] = iso_utc(plan.start_datetime)
        props["end_datetime"] = iso_utc(plan.end_datetime)
    stac_bands = [_band(b) for b in plan.bands] if plan.bands else None
    if stac_bands:
        props["bands"] = stac_bands
    props.update(plan.extra_properties)

    extensions = [mlm.MLM_SCHEMA]
    if any(a.size is not None or a.checksum for a in plan.artifacts) or any(
        "file:size" in a or "file:checksum" in a for a in plan.extra_assets.values()
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
        item.add_asset(a.key, _asset(a, stac_bands))
    for key, asset in plan.extra_assets.items():
        item.add_asset(key, pystac.Asset.from_dict(dict(asset)))
    for link in plan.links:
        item.add_link(pystac.Link.from_dict(dict(link)))
    return item


def declared_extensions(props: Mapping[str, Any], links: list[dict[str, Any]]) -> list[str]:
    """The related extensions whose fields ``props`` (or the links) use: each declared only when used."""
    out = []
    if any(k.startswith("sci:") for k in props):
        out.append(mlm.SCI_SCHEMA)
    if any(k.startswith("processing:") for k in props):
        out.append(mlm.PROCESSING_SCHEMA)
    if "version" in props or "deprecated" in props:
        out.append(mlm.VERSION_SCHEMA)
    if any(k.startswith("ml-aoi:") for k in props) or any("ml-aoi:split" in link for link in links):
        out.append(mlm.ML_AOI_SCHEMA)
    return out


def _input(spec: InputSpec) -> dict[str, Any]:
    return mlm.ModelInput(
        name=spec.name,
        bands=list(spec.bands),
        input=mlm.Structure(shape=list(spec.shape), dim_order=list(spec.dim_order), data_type=spec.data_type),
        description=spec.description,
        value_scaling=[_scaling(s) for s in spec.value_scaling] if spec.value_scaling else None,
        resize_type=spec.resize_type,
    ).dump()


def _output(spec: OutputSpec) -> dict[str, Any]:
    classes = None
    if spec.classes:
        classes = [
            mlm.ClassObject(value=c.value, name=c.name, description=c.description or c.name, color_hint=c.color_hint)
            for c in spec.classes
        ]
    return mlm.ModelOutput(
        name=spec.name,
        tasks=list(spec.tasks),
        result=mlm.Structure(shape=list(spec.shape), dim_order=list(spec.dim_order), data_type=spec.data_type),
        description=spec.description,
        classes=classes,
    ).dump()


def _scaling(s: Scaling) -> mlm.ValueScaling:
    return mlm.ValueScaling(
        type=s.type, mean=s.mean, stddev=s.stddev, minimum=s.minimum, maximum=s.maximum, value=s.value
    )


def _band(b: BandFacts) -> dict[str, Any]:
    band: dict[str, Any] = {"name": b.name}
    if b.description:
        band["description"] = b.description
    if b.common_name:
        band["eo:common_name"] = b.common_name
    if b.center_wavelength:
        band["eo:center_wavelength"] = b.center_wavelength
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
        extra["file:size"] = a.size
    if a.checksum:
        extra["file:checksum"] = a.checksum
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


def json_safe_hyperparameters(hparams: Mapping[str, Any]) -> dict[str, Any]:
    """Hyperparameters as JSON: keys made valid for MLM, paths and enums as text, small tensors as lists."""
    out: dict[str, Any] = {}
    original: dict[str, str] = {}
    for key, value in hparams.items():
        safe_key = base = re.sub(r"[^0-9a-zA-Z_.-]", "_", str(key)) or "_"
        n = 2
        while safe_key in out:  # two keys that spell the same: keep both values, numbered
            safe_key, n = f"{base}_{n}", n + 1
        if safe_key != base:
            warnings.warn(
                f"hyperparameters {original[base]!r} and {str(key)!r} both become {base!r} as mlm:hyperparameters "
                f"keys (only letters, digits, '_', '.', '-'); {str(key)!r} is kept as {safe_key!r}. Pass "
                "hyperparameters= with distinct names to choose them.",
                MLMExportWarning,
                stacklevel=3,
            )
        original.setdefault(base, str(key))
        original.setdefault(safe_key, str(key))
        out[safe_key] = json_safe(value)
    return out


def json_safe(value: Any, depth: int = 0) -> Any:
    """A JSON value for ``value``: numbers, text, lists and dicts as they are, anything else described."""
    if depth > 6:
        return _describe(value)
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, Enum):
        return f"{type(value).__name__}.{value.name}"
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, torch.Tensor):
        small = value.numel() <= 64 and value.device.type != "meta"  # a meta tensor has a shape but no values
        return json_safe(value.tolist(), depth + 1) if small else _describe(value)
    if isinstance(value, torch.dtype | torch.device):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): json_safe(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [json_safe(v, depth + 1) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        try:
            return json_safe(value.item(), depth + 1)
        except Exception:  # noqa: S110 - fall through to a description
            pass
    return _describe(value)


def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        where = ", meta" if value.device.type == "meta" else ""
        return f"tensor({str(value.dtype).removeprefix('torch.')}{list(value.shape)}{where})"
    if isinstance(value, type):
        return f"{value.__module__}.{value.__qualname__}"
    text = repr(value)
    return text if len(text) <= 200 else text[:197] + "..."
