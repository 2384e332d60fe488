"""``export_mlm``: one call that describes a model as a schema-valid MLM Item, and optionally writes it."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pystac
from torch import nn

from . import _openeo as openeo
from ._artifacts import FORMATS
from ._faults import all_or_nothing
from ._model_asset import unwritten
from ._options import ExportOptions, Validate
from ._pipeline import build_checked, gather, plan, write_model_files
from ._provenance import provenance_facts, with_runtime_files
from ._runs import MODEL_FILE_SUFFIXES
from ._write import atomic_write_json


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
    datetime: dt.datetime | str | None = None,
    start_datetime: dt.datetime | str | None = None,
    end_datetime: dt.datetime | str | None = None,
    properties: Mapping[str, Any] | None = None,
    weights: Any = None,
    export_program: bool = True,
    artifacts: str | Sequence[str] | None = None,
    primary: str | None = None,
    artifact_timeout: float | None = None,
    validate: Validate = "raise",
    profile: str = "default",
    base_url: str | None = None,
    layout: str = "flat",
    version: str | None = None,
    doi: str | None = None,
    citation: str | None = None,
    training_data: Any = None,
) -> pystac.Item:
    """Describe ``model`` as a schema-valid STAC Item with the MLM extension; write it under ``out_dir`` if given.

    Shapes, dtypes, dynamic dims, parameter counts and tasks come from tracing the model on ``example_input``
    (or one batch of ``datamodule``); bands, normalization, classes and batch size from the datamodule. The
    keyword options state what cannot be observed, and override what was. ``weights=`` (a TorchGeo or
    torchvision weights enum member, or its name) adds what the weights know: bands, normalization, input
    size, license, publication, code and pretraining dataset, read offline from ``.meta`` and ``.transforms``.

    ``profile="openeo"`` shapes the Item for openEO's ML back-end: a TorchScript ``mlm:model`` (``<id>.torchscript``),
    dims named ``bands``/``t``/``y``/``x``, every non-batch size fixed, hrefs under ``base_url=`` (required).
    ``base_url=`` alone makes the written files' hrefs absolute. ``layout="huggingface"`` writes the folder
    ``save_pretrained`` writes (``model.safetensors``, ``config.json``, ``README.md`` card) plus ``mlm.json``.

    With ``out_dir``, the model files ``artifacts=`` names are written (any of ``"pt2"``, ``"torchscript"``,
    ``"onnx"``, ``"safetensors"``, ``"checkpoint"``; default ``("pt2", "safetensors")``, or
    ``("safetensors",)`` with ``export_program=False``), each loaded back and checked against the eager
    model; ``primary=`` (default: the first) is the ``mlm:model`` asset. The Item JSON is written last,
    atomically, as ``<out_dir>/<item id>.json``; if that fails, the model files are removed again. Without
    ``out_dir`` nothing is written and the Item's model asset names the safetensors file writing would produce.
    ``artifact_timeout=`` bounds each file's export in seconds (default 300).

    Provenance: ``processing:software`` (exact versions), ``processing:lineage``/``processing:datetime``, the
    code defining the model's class as an ``mlm:source_code`` asset (git remote, commit, dirty), ``version=``,
    and ``doi=``/``citation=`` (else the training project's ``CITATION.cff``) as ``sci:doi``/``sci:citation``
    with a ``cite-as`` link. With ``out_dir``, ``<id>.requirements.txt`` (``mlm:inference-runtime``) and
    ``<id>.environment.txt`` (``mlm:training-runtime``) are written beside the Item. ``training_data=`` (a STAC
    Collection or Item, or a mapping train/validate/test -> one) is linked as ``derived_from``; its label classes
    name the outputs where they fit, and a warning says where its labels disagree with the model.

    Raises:
        InputRequiredError: neither ``example_input`` nor a datamodule that gives a batch.
        TraceError: the model fails on the example batch.
        TaskInferenceError: the outputs do not tell the task; pass ``tasks=``.
        ItemValidationError: the Item fails the JSON Schemas (``validate="warn"`` warns instead).

    .. versionadded:: 0.1
    """
    options = ExportOptions.from_keywords(locals())  # the keywords above are ExportOptions' fields (a test checks)
    gathered = gather(model, datamodule, example_input, options)
    prov = provenance_facts(model, doi=options.doi, citation=options.citation, datamodule=datamodule)
    item_plan = plan(model, gathered, options, provenance=prov)
    if options.profile == "openeo":
        item_plan = openeo.adapt(item_plan, gathered, str(base_url))
    if out_dir is None:  # nothing written: the Item names the model file without file:* fields, and says so
        return build_checked(unwritten(item_plan), options.validate)
    item = build_checked(item_plan, options.validate)  # fail before writing anything
    out = Path(out_dir)
    path = out / f"{item_plan.id}.json"
    suffixes = {f.suffix for f in FORMATS.values()} | set(MODEL_FILE_SUFFIXES)
    outputs = [out / f"{item_plan.id}{suffix}" for suffix in sorted(suffixes)] + [path]
    if options.layout == "huggingface":
        from ._huggingface import write_folder

        return write_folder(model, gathered, item_plan, out, export_program=export_program, validate=options.validate)
    existed = {p for p in outputs if p.exists()}
    with all_or_nothing(out, outputs):  # a full disk or read-only folder: one line, no half Item left
        if options.profile == "openeo":
            item_plan = openeo.write_files(model, gathered, item_plan, out, str(base_url))
        else:
            item_plan = write_model_files(
                model, gathered, item_plan, out, item_plan.id, export_program=export_program,
                artifacts=options.artifacts, primary=options.primary, timeout=options.artifact_timeout,
            )  # fmt: skip
        try:
            item_plan = with_runtime_files(item_plan, prov, out, item_plan.id, training=True)
            if base_url is not None:
                item_plan = openeo.absolute_hrefs(item_plan, base_url)
            item = build_checked(item_plan, options.validate)
            item.set_self_href(str(path.resolve()))
            atomic_write_json(path, item.to_dict(include_self_link=False, transform_hrefs=False))
        except BaseException:  # no model file without its Item (files of an earlier export are left)
            for p in outputs:
                if p not in existed:
                    p.unlink(missing_ok=True)
            raise
    return item
