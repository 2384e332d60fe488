"""``export_mlm``: one call that describes a model as a schema-valid MLM Item, and optionally writes it."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pystac
from torch import nn

from .faults import all_or_nothing
from .pipeline import ExportOptions, Validate, build_checked, gather, plan, write_model_files
from .write import atomic_write_json


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
    weights: Any = None,
    export_program: bool = True,
    validate: Validate = "raise",
) -> pystac.Item:
    """Describe ``model`` as a schema-valid STAC Item with the MLM extension; write it under ``out_dir`` if given.

    Shapes, dtypes, dynamic dims, parameter counts and tasks come from tracing the model on ``example_input``
    (or one batch of ``datamodule``); bands, normalization, classes and batch size from the datamodule. The
    keyword options state what cannot be observed, and override what was. ``weights=`` (a TorchGeo or
    torchvision weights enum member, or its name) adds what the weights know: bands, normalization, input
    size, license, publication, code and pretraining dataset, read offline from ``.meta`` and ``.transforms``.

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
    options = ExportOptions(
        name=name,
        item_id=item_id,
        description=description,
        architecture=architecture,
        tasks=tasks,
        bands=bands,
        classes=classes,
        value_scaling=value_scaling,
        batch_size=batch_size,
        license=license,
        pretrained=pretrained,
        pretrained_source=pretrained_source,
        hyperparameters=hyperparameters,
        bbox=bbox,
        datetime=datetime,
        start_datetime=start_datetime,
        end_datetime=end_datetime,
        properties=dict(properties or {}),
        weights=weights,
        validate=validate,
    )
    gathered = gather(model, datamodule, example_input, options)
    item_plan = plan(model, gathered, options)
    item = build_checked(item_plan, options.validate)  # fail before writing anything
    if out_dir is None:
        return item
    out = Path(out_dir)
    path = out / f"{item_plan.id}.json"
    outputs = [out / f"{item_plan.id}{suffix}" for suffix in (".safetensors", ".pt2")] + [path]
    with all_or_nothing(out, outputs):  # a full disk or read-only folder: one line, no half Item left
        item_plan = write_model_files(model, gathered, item_plan, out, item_plan.id, export_program=export_program)
        item = build_checked(item_plan, options.validate)
        item.set_self_href(str(path.resolve()))
        atomic_write_json(path, item.to_dict(include_self_link=False, transform_hrefs=False))
    return item
