"""The steps every entry point runs, in order: gather facts (:mod:`.gathering`), plan the Item, write
model files (:mod:`.model_files`), build and check. Options are defined in :mod:`.options`.

``export_mlm``, the Lightning callback and the command line are thin callers of these functions.
"""

from __future__ import annotations

import datetime as dt
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pystac
from torch import nn

from . import _artifacts as art
from . import _resolve as resolve
from . import mlm
from ._facts import ArtifactFacts, DataFacts
from ._gathering import Gathered, gather
from ._item import ItemPlan, build_item
from ._model_asset import file_href, is_beside
from ._model_files import format_asset
from ._options import ExportOptions, Validate
from ._sources.constants import forward_constants
from ._sources.evidence import task_evidence
from ._sources.model import call_spec
from ._times import parse_iso
from ._validate import validation_problems
from .errors import ItemValidationError, MLMExportWarning

#: The steps by name, for the entry points (which import them from here).
__all__ = ["ExportOptions", "Gathered", "Validate", "build_checked", "gather", "plan", "write_model_files"]


def plan(
    model: nn.Module, gathered: Gathered, options: ExportOptions, *, warn_datetime: bool = True, provenance: Any = None
) -> ItemPlan:
    """Decide everything the Item says; its model asset is the safetensors file that writing would produce.

    ``provenance`` (:class:`~mlm_export._provenance.ProvenanceFacts`) is gathered from ``model`` when not given.
    """
    from ._provenance import export_lineage, provenance_facts, with_provenance, with_training_data
    from ._sources.libraries import architecture as task_architecture
    from ._sources.training_data import stac_training_data

    given = model
    facts, data = gathered.model, gathered.data
    model = gathered.module if gathered.module is not None else model
    arch = options.architecture or task_architecture(gathered.hyperparameters) or resolve.architecture(model, None)
    name = resolve.mlm_name(options.name, arch)
    item_id = options.item_id or resolve.item_id(name)
    consts = forward_constants(model, call_spec(model, gathered.example))
    if consts.bands and data.bands is None:  # wavelengths passed to forward: the bands, with eo:center_wavelength
        data = replace(data, bands=consts.bands, sources={**data.sources, "bands": consts.bands_source or ""})
    evidence = task_evidence(model, facts, gathered.weights)
    tasks_by_output = resolve.resolve_tasks(facts, data, options.tasks, {k: e.tasks for k, e in evidence.items()})
    inputs = resolve.input_specs(facts, data)
    inputs = _with_provenance(inputs, data.sources.get("example_input"), consts.description)
    outputs = resolve.output_specs(facts, data, tasks_by_output)
    outputs = _described(outputs, evidence, tasks_by_output, gathered.notes)
    weights, aliases = art.weights(model, allow_meta=True)
    size = art.safetensors_size(weights, art.safetensors_metadata(aliases)) if weights else None
    planned = format_asset("safetensors", file_href(f"{item_id}.safetensors"), primary=True, size=size)
    accelerator, summary = resolve.accelerator(facts.device)
    w = gathered.weights
    hyperparameters = options.hyperparameters if options.hyperparameters is not None else facts.hyperparameters
    if consts.hyperparameters:  # what forward needs besides tensors, unless the user states those keys
        hyperparameters = {**consts.hyperparameters, **(hyperparameters or {})}
    extra = dict(options.properties or {})
    links: list[dict[str, Any]] = []
    extra_assets: dict[str, Any] = {}
    pretrained, pretrained_source = options.pretrained, options.pretrained_source
    if w is not None:
        hyperparameters = {**w.hyperparameters, **(hyperparameters or {})} or None
        pretrained = True if pretrained is None else pretrained
        pretrained_source = pretrained_source or w.dataset
        extra.setdefault("torchgeo:weights", w.name)
        links, sci = _publication(w.publication)
        for k, v in sci.items():
            extra.setdefault(k, v)
        if w.repo:
            extra_assets["source_code"] = {
                "href": w.repo, "type": mlm.MEDIA_HTML, "title": "Source code",
                "roles": [mlm.ROLE_SOURCE_CODE, mlm.ROLE_CODE],
            }  # fmt: skip
        if w.url:  # until files are written, the Item points at the published weights
            planned = replace(
                planned, href=w.url, media_type=mlm.MEDIA_PYTORCH, title=f"Published weights ({w.name})",
                artifact_type=mlm.ARTIFACT_TORCH_SAVE,
            )  # fmt: skip
    if options.artifacts is not None and is_beside(planned.href):  # name the file writing would make
        planned = _planned_primary(planned, item_id, options)
    inputs = tuple(replace(i, resize_type=w.resize_type) for i in inputs) if w and w.resize_type else inputs
    item_plan = ItemPlan(
        id=item_id,
        name=name,
        architecture=arch,
        tasks=tuple(dict.fromkeys(t for ts in tasks_by_output.values() for t in ts)),
        inputs=inputs,
        outputs=outputs,
        framework_version=_framework_version(),
        total_parameters=facts.parameters.total,
        memory_size=facts.parameters.memory_bytes,
        artifacts=(planned,),
        links=(*(data.links or ()), *links),
        extra_assets=extra_assets,
        accelerator=accelerator,
        accelerator_summary=summary,
        description=options.description,
        bands=data.bands,
        pretrained=pretrained,
        pretrained_source=pretrained_source,
        batch_size_suggestion=data.batch_size,
        hyperparameters=hyperparameters,
        license=options.license or (w.license if w else None),
        bbox=data.bbox,
        datetime=_when(options.datetime, data, warn_datetime),
        start_datetime=parse_iso(data.start_datetime),
        end_datetime=parse_iso(data.end_datetime),
        created=dt.datetime.now(dt.UTC).replace(microsecond=0),
        extra_properties=extra,
    )
    prov = provenance or provenance_facts(given, doi=options.doi, citation=options.citation)
    item_plan = with_provenance(item_plan, prov, lineage=export_lineage(facts, w), version=options.version)
    return with_training_data(item_plan, stac_training_data(options.training_data))


def _framework_version() -> str | None:
    """torch's version as SemVer, or None (and a warning) when it states none: never a placeholder."""
    import torch

    version = resolve.framework_version()
    if version is None:
        warnings.warn(
            f"torch's version {torch.__version__!r} is not major.minor.patch, so the Item leaves out "
            "mlm:framework_version; pass properties={'mlm:framework_version': '<x.y.z>'} to state it.",
            MLMExportWarning,
            stacklevel=4,
        )
    return version


def _described(
    outputs: tuple[mlm.ModelOutput, ...],
    evidence: Mapping[str, Any],
    tasks: Mapping[str, tuple[mlm.Task, ...]],
    notes: tuple[str, ...],
) -> tuple[mlm.ModelOutput, ...]:
    """Outputs that are features are described as embeddings (their dims are named so by ``resolve``); the
    evidence for a task is stated. Output names stay those the model returns, which ``verify`` matches."""
    out = []
    for o in outputs:
        e = evidence.get(o.name)
        if e is None or tasks.get(o.name) != e.tasks:  # the user's tasks= or a TorchGeo task decided
            out.append(o)
            continue
        parts = [o.description] if o.description else []
        if e.embedding:
            parts.append("Embeddings (features) of the input, for similarity search and downstream heads")
        parts += [f"Task from evidence: {e.reason}", *notes]
        out.append(replace(o, description=". ".join(parts) + "."))
    return tuple(out)


def _with_provenance(
    inputs: tuple[mlm.ModelInput, ...], source: str | None, constants: str | None = None
) -> tuple[mlm.ModelInput, ...]:
    """The first input's description says which batch the model was traced with (and where its facts came
    from), and which constant arguments forward needs besides the tensors."""
    if not inputs or not (source or constants):
        return inputs
    first = inputs[0]
    parts = [first.description] if first.description else []
    parts += [f"{constants}"] if constants else []
    parts += [f"Traced with {source}"] if source else []
    return (replace(first, description=". ".join(parts) + "."), *inputs[1:])


def _publication(url: str | None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """A publication as the scientific extension says: a DOI (arXiv papers have one) and a cite-as link."""
    if not url:
        return [], {}
    doi = None
    found = re.search(r"doi\.org/(10\.\d{4,9}/\S+)", url)
    arxiv = re.search(r"arxiv\.org/(?:abs|pdf)/(\d{4}\.\d{4,5})", url)
    if found:
        doi = found.group(1)
    elif arxiv:
        doi = f"10.48550/arXiv.{arxiv.group(1)}"
    if doi:
        return [{"rel": "cite-as", "href": f"https://doi.org/{doi}", "title": "Publication"}], {mlm.SCI_DOI: doi}
    return [{"rel": "describedby", "href": url, "title": "Publication"}], {}


def write_model_files(
    model: nn.Module,
    gathered: Gathered,
    item_plan: ItemPlan,
    out_dir: Path,
    stem: str,
    *,
    export_program: bool = True,
    artifacts: str | Sequence[str] | None = None,
    primary: str | None = None,
    timeout: float | None = None,
    checkpoint_exists: bool = False,
) -> ItemPlan:
    """Write the model files ``artifacts=`` names as ``<stem>.<suffix>``; the plan now points at them.

    ``artifacts=None`` keeps the earlier options: ``.pt2`` (the ``mlm:model`` when it exports) and
    ``.safetensors``, or the safetensors alone with ``export_program=False``. ``primary`` names the
    ``mlm:model`` asset (default: the first of ``artifacts``). See :mod:`mlm_export._model_files`.
    """
    from ._model_files import write_artifacts

    chosen, first = art.artifact_choice(artifacts, primary, export_program=export_program)
    return write_artifacts(
        model, gathered, item_plan, out_dir, stem, artifacts=chosen, primary=first, timeout=timeout,
        checkpoint_exists=checkpoint_exists,
    )  # fmt: skip


def _planned_primary(planned: ArtifactFacts, item_id: str, options: ExportOptions) -> ArtifactFacts:
    """The ``mlm:model`` file ``artifacts=``/``primary=`` would write (its size is known once written)."""
    _, first = art.artifact_choice(options.artifacts, options.primary)
    if first == "safetensors":
        return planned
    return format_asset(first, file_href(f"{item_id}{art.FORMATS[first].suffix}"), primary=True)


def build_checked(item_plan: ItemPlan, mode: Validate) -> pystac.Item:
    """Build the Item and check it against the schemas: raise, or warn, on any violation."""
    item = build_item(item_plan)
    problems = validation_problems(item)
    if problems:
        error = ItemValidationError(problems)
        if mode == "raise":
            raise error
        warnings.warn(str(error), MLMExportWarning, stacklevel=3)
    return item


def _when(datetime: dt.datetime | str | None, data: DataFacts, warn: bool) -> dt.datetime | None:
    if isinstance(datetime, str):  # ExportOptions parses text; a str here is ISO 8601 already checked
        return parse_iso(datetime)
    if datetime is not None or (data.start_datetime and data.end_datetime):
        return datetime
    if warn:
        warnings.warn(
            "no date is known for the model's data; the Item's datetime is the export time. Pass datetime= (or "
            "start_datetime= and end_datetime=) for the time span of the training data.",
            MLMExportWarning,
            stacklevel=4,
        )
    return dt.datetime.now(dt.UTC).replace(microsecond=0)
