"""``export_mlm``: facts from the model and its data, one builder, one validator, one atomic writer."""

from __future__ import annotations

import datetime as dt
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import pystac
from torch import nn

from . import artifacts as art
from . import mlm, resolve
from .errors import InputRequiredError, InvalidOptionError, ItemValidationError, MLMExportWarning
from .facts import ArtifactFacts, DataFacts, ModelFacts
from .item import ItemPlan, build_item
from .sources.datamodule import datamodule_facts
from .sources.model import call_spec, inspect_model
from .sources.values import coerce_bands, coerce_classes, coerce_scaling
from .validate import validation_problems
from .write import atomic_write_json

Validate = Literal["raise", "warn"]

MEDIA_SAFETENSORS = "application/octet-stream; application=safetensors"
MEDIA_PT2 = "application/zip; application=pytorch"


def export_mlm(
    model: nn.Module,
    datamodule: Any = None,
    *,
    example_input: Any = None,
    out_dir: str | os.PathLike[str] | None = None,
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
    datetime: dt.datetime | None = None,
    start_datetime: dt.datetime | None = None,
    end_datetime: dt.datetime | None = None,
    properties: Mapping[str, Any] | None = None,
    export_program: bool = True,
    validate: Validate = "raise",
) -> pystac.Item:
    """Describe ``model`` as a schema-valid STAC Item with the MLM extension; write it under ``out_dir`` if given.

    Shapes, dtypes, dynamic dims, parameter counts and tasks come from tracing the model on ``example_input``
    (or one batch of ``datamodule``); bands, normalization, classes and batch size from the datamodule. The
    keyword options state what cannot be observed, and override what was.

    With ``out_dir``, the weights are written as safetensors and, when the model exports, a ``torch.export``
    archive (.pt2) that runs without the training code becomes the ``mlm:model`` asset; the Item JSON is
    written last, atomically, as ``<out_dir>/<item id>.json``. Without it nothing is written and the Item's
    model asset names the safetensors file that writing would produce.

    Raises:
        InputRequiredError: neither ``example_input`` nor a datamodule that gives a batch.
        TraceError: the model fails on the example batch.
        TaskInferenceError: the outputs do not tell the task; pass ``tasks=``.
        ItemValidationError: the Item fails the JSON Schemas (``validate="warn"`` warns instead).

    .. versionadded:: 0.1
    """
    if validate not in ("raise", "warn"):
        raise InvalidOptionError(f"validate= must be 'raise' or 'warn', not {validate!r}")
    data = _user_facts(bands, classes, value_scaling, batch_size, bbox, start_datetime, end_datetime)
    if datamodule is not None:
        data = data.merged_over(datamodule_facts(datamodule, load_batch=example_input is None))
    example = example_input if example_input is not None else data.example_input
    if example is None:
        raise InputRequiredError()
    facts = inspect_model(model, example)
    identity = _identity(model, facts, name, item_id, architecture)
    tasks_by_output = resolve.resolve_tasks(facts, data, tasks)
    weights, aliases = art.weights(model) if not _on_meta(model) else ({}, {})
    metadata = art.safetensors_metadata(aliases)
    weights_name = f"{identity['id']}.safetensors"
    planned = (
        ArtifactFacts(
            key="model",
            href=f"./{weights_name}",
            roles=(mlm.ROLE_MODEL, mlm.ROLE_WEIGHTS),
            media_type=MEDIA_SAFETENSORS,
            title="Model weights (safetensors)",
            artifact_type=mlm.ARTIFACT_SAFETENSORS,
            size=art.safetensors_size(weights, metadata) if weights else None,
        ),
    )
    inputs = resolve.input_specs(facts, data)
    outputs = resolve.output_specs(facts, data, tasks_by_output)
    when = _when(datetime, data)
    plan = ItemPlan(
        id=identity["id"],
        name=identity["name"],
        architecture=identity["architecture"],
        tasks=tuple(dict.fromkeys(t for ts in tasks_by_output.values() for t in ts)),
        inputs=inputs,
        outputs=outputs,
        framework_version=resolve.framework_version(),
        total_parameters=facts.parameters.total,
        memory_size=facts.parameters.memory_bytes,
        artifacts=planned,
        accelerator=resolve.accelerator(facts.device)[0],
        accelerator_summary=resolve.accelerator(facts.device)[1],
        description=description,
        bands=data.bands,
        pretrained=pretrained,
        pretrained_source=pretrained_source,
        batch_size_suggestion=data.batch_size,
        hyperparameters=hyperparameters if hyperparameters is not None else facts.hyperparameters,
        license=license,
        bbox=data.bbox,
        datetime=when,
        start_datetime=_parse_time(data.start_datetime),
        end_datetime=_parse_time(data.end_datetime),
        created=dt.datetime.now(dt.UTC).replace(microsecond=0),
        extra_properties=dict(properties or {}),
    )
    item = build_item(plan)
    _check(item, validate)
    if out_dir is None:
        return item
    return _write(model, example, facts, plan, weights, metadata, Path(out_dir), export_program, validate)


def _write(
    model: nn.Module,
    example: Any,
    facts: ModelFacts,
    plan: ItemPlan,
    weights: Mapping[str, Any],
    metadata: Mapping[str, str],
    out_dir: Path,
    export_program: bool,
    validate: Validate,
) -> pystac.Item:
    """Write the artifacts, then the Item that points at them (last, so it never names a missing file)."""
    if not weights:
        raise InvalidOptionError("the model has no weights to write (it is on the meta device); omit out_dir")
    weights_file = out_dir / f"{plan.id}.safetensors"
    written = art.write_safetensors(weights, weights_file, metadata)
    weights_asset = replace(plan.artifacts[0], size=written.size, checksum=written.checksum)
    assets = [weights_asset]
    inputs, outputs = plan.inputs, plan.outputs
    if export_program:
        try:
            program, accepted = art.export_program(model, call_spec(model, example), facts.inputs)
        except Exception as e:  # a model torch.export cannot trace still gets its weights and Item
            warnings.warn(
                f"torch.export could not export {facts.class_name} ({type(e).__name__}: {str(e)[:300]}); the Item's "
                "model asset is the safetensors weights. Pass export_program=False to skip trying.",
                MLMExportWarning,
                stacklevel=3,
            )
        else:
            pt2 = out_dir / f"{plan.id}.pt2"
            saved = art.save_program(program, pt2)
            inputs, outputs, pinned = resolve.pin_to_program(plan.inputs, plan.outputs, facts, accepted)
            if pinned:
                warnings.warn(
                    f"torch.export fixed {', '.join(pinned)} in the exported program, so the Item states those "
                    "sizes; pass export_program=False to describe the model with them dynamic.",
                    MLMExportWarning,
                    stacklevel=3,
                )
            assets = [
                ArtifactFacts(
                    key="model",
                    href=f"./{pt2.name}",
                    roles=(mlm.ROLE_MODEL,),
                    media_type=MEDIA_PT2,
                    title="Model (torch.export archive, runs without the training code)",
                    artifact_type=mlm.ARTIFACT_EXPORT,
                    size=saved.size,
                    checksum=saved.checksum,
                ),
                replace(weights_asset, key="weights", roles=(mlm.ROLE_WEIGHTS,), artifact_type=None),
            ]
    plan = replace(plan, artifacts=tuple(assets), inputs=inputs, outputs=outputs)
    item = build_item(plan)
    _check(item, validate)
    path = out_dir / f"{plan.id}.json"
    item.set_self_href(str(path.resolve()))
    atomic_write_json(path, item.to_dict(include_self_link=False, transform_hrefs=False))
    return item


def _check(item: pystac.Item, mode: Validate) -> None:
    problems = validation_problems(item)
    if not problems:
        return
    error = ItemValidationError(problems)
    if mode == "raise":
        raise error
    warnings.warn(str(error), MLMExportWarning, stacklevel=3)


def _user_facts(bands: Any, classes: Any, scaling: Any, batch_size: Any, bbox: Any, start: Any, end: Any) -> DataFacts:
    sources = {}
    if bands is not None:
        sources["bands"] = "bands="
    if classes is not None:
        sources["classes"] = "classes="
    if scaling is not None:
        sources["value_scaling"] = "value_scaling="
    if bbox is not None:
        bbox = tuple(float(v) for v in bbox)
        if len(bbox) != 4 or not (-180 <= bbox[0] <= bbox[2] <= 180 and -90 <= bbox[1] <= bbox[3] <= 90):
            raise InvalidOptionError(f"bbox= must be (west, south, east, north) in degrees (EPSG:4326), got {bbox}")
    if (start is None) != (end is None):
        raise InvalidOptionError("pass start_datetime= and end_datetime= together")
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
        raise InvalidOptionError(f"batch_size= must be a positive integer, got {batch_size!r}")
    return DataFacts(
        bands=coerce_bands(bands) if bands is not None else None,
        classes=coerce_classes(classes) if classes is not None else None,
        value_scaling=coerce_scaling(scaling) if scaling is not None else None,
        batch_size=batch_size,
        bbox=bbox,
        start_datetime=_iso(start),
        end_datetime=_iso(end),
        sources=sources,
    )


def _identity(
    model: nn.Module, facts: ModelFacts, name: str | None, item_id: str | None, architecture: str | None
) -> dict[str, str]:
    arch = resolve.architecture(model, architecture)
    mlm_name = resolve.mlm_name(name, arch)
    return {"name": mlm_name, "id": item_id or resolve.item_id(mlm_name), "architecture": arch}


def _when(datetime: dt.datetime | None, data: DataFacts) -> dt.datetime | None:
    if datetime is not None or (data.start_datetime and data.end_datetime):
        return datetime
    warnings.warn(
        "no date is known for the model's data; the Item's datetime is the export time. Pass datetime= (or "
        "start_datetime= and end_datetime=) for the time span of the training data.",
        MLMExportWarning,
        stacklevel=3,
    )
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def _iso(t: Any) -> str | None:
    if t is None:
        return None
    if isinstance(t, str):
        return t
    if isinstance(t, dt.datetime):
        return t.isoformat()
    raise InvalidOptionError(f"expected a datetime, got {type(t).__name__}")


def _parse_time(text: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


def _on_meta(model: nn.Module) -> bool:
    return any(t.device.type == "meta" for t in model.state_dict().values())
