"""The steps every entry point runs, in order: gather facts, plan the Item, write artifacts, build and check.

``export_mlm``, the Lightning callback and the command line are thin callers of these functions.
"""

from __future__ import annotations

import datetime as dt
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import pystac
from torch import nn

from . import artifacts as art
from . import mlm, resolve
from .errors import InvalidOptionError, ItemValidationError, MLMExportWarning
from .facts import ArtifactFacts, DataFacts, ModelFacts
from .item import ItemPlan, build_item
from .model_asset import file_href
from .sources.constants import forward_constants
from .sources.datamodule import datamodule_facts
from .sources.dummy import DEFAULT_IMAGE_SIZE, fixed_image_size, stated_example
from .sources.evidence import classes_from_config, feature_module, task_evidence
from .sources.model import call_spec, hyperparameters_of, inspect_model, qualified_name
from .sources.values import coerce_bands, coerce_classes, coerce_scaling
from .times import iso_utc, parse_iso
from .validate import validation_problems

Validate = Literal["raise", "warn"]

MEDIA_SAFETENSORS = "application/octet-stream; application=safetensors"
MEDIA_PT2 = "application/zip; application=pytorch"
MEDIA_CHECKPOINT = "application/octet-stream; application=pytorch"


@dataclass(frozen=True)
class ExportOptions:
    """What the user states about a model: everything that cannot be observed, and overrides of what was.

    The fields are the keyword options of :func:`mlm_export.export_mlm`.
    """

    name: str | None = None
    item_id: str | None = None
    description: str | None = None
    architecture: str | None = None
    tasks: str | Sequence[str] | Mapping[str, Sequence[str]] | None = None
    bands: Sequence[Any] | None = None
    classes: Sequence[Any] | Mapping[int, str] | None = None
    value_scaling: Any = None
    batch_size: int | None = None
    license: str | None = None
    pretrained: bool | None = None
    pretrained_source: str | None = None
    hyperparameters: Mapping[str, Any] | None = None
    bbox: Sequence[float] | None = None
    datetime: dt.datetime | None = None
    start_datetime: dt.datetime | None = None
    end_datetime: dt.datetime | None = None
    properties: Mapping[str, Any] = field(default_factory=dict)
    weights: Any = None
    validate: Validate = "raise"
    #: "openeo": an Item openEO's ML back-end runs (TorchScript model, y/x dims, fixed sizes); see openeo.py.
    profile: str = "default"
    #: The http(s)/s3 folder the files are published under: hrefs become absolute (the openEO profile needs it).
    base_url: str | None = None
    #: "huggingface": the folder ``save_pretrained`` writes, with ``mlm.json`` beside it; see huggingface.py.
    layout: str = "flat"
    #: The model's ``version`` (a run's checkpoints add their epoch and step to it).
    version: str | None = None
    #: ``sci:doi`` and ``sci:citation`` of the model (else from a CITATION.cff of the training project).
    doi: str | None = None
    citation: str | None = None
    #: Mark every Item of a run but the latest ``deprecated: true``.
    deprecate_superseded: bool = False
    #: STAC Collection(s) or Item(s) the model was trained on (or a mapping train/validate/test -> one).
    training_data: Any = None
    #: Model files to write (see :data:`mlm_export.artifacts.ARTIFACT_NAMES`); None: as ``export_program`` says.
    artifacts: str | Sequence[str] | None = None
    #: The one of ``artifacts`` that is the ``mlm:model`` asset (default: the first).
    primary: str | None = None
    #: Seconds one model file's export may take (None: ``MLM_EXPORT_ARTIFACT_TIMEOUT``, else 300; 0: no bound).
    artifact_timeout: float | None = None

    def __post_init__(self) -> None:
        if self.validate not in ("raise", "warn"):
            raise InvalidOptionError(f"validate= must be 'raise' or 'warn', not {self.validate!r}")
        from .huggingface import check_layout
        from .openeo import check_options
        from .provenance import user_doi
        from .sources.training_data import stac_training_data

        check_options(self.profile, self.base_url, self.pretrained)
        check_layout(self.layout, self.profile, self.base_url)
        if self.artifacts is not None or self.primary is not None:
            art.artifact_choice(self.artifacts, self.primary)
        t = self.artifact_timeout
        if t is not None and (isinstance(t, bool) or not isinstance(t, int | float) or t < 0):
            raise InvalidOptionError(f"artifact_timeout= must be a number of seconds >= 0, got {t!r}")
        user_facts(self)  # check bands, classes, bbox, dates now: errors at construction name the option
        user_doi(self.doi)
        stac_training_data(self.training_data)  # reads a local STAC file, never a URL


def user_facts(options: ExportOptions) -> DataFacts:
    """The facts the user states, checked."""
    sources = {}
    if options.bands is not None:
        sources["bands"] = "bands="
    if options.classes is not None:
        sources["classes"] = "classes="
    if options.value_scaling is not None:
        sources["value_scaling"] = "value_scaling="
    bbox = None
    if options.bbox is not None:
        bbox = tuple(float(v) for v in options.bbox)
        if len(bbox) != 4 or not (-180 <= bbox[0] <= bbox[2] <= 180 and -90 <= bbox[1] <= bbox[3] <= 90):
            raise InvalidOptionError(f"bbox= must be (west, south, east, north) in degrees (EPSG:4326), got {bbox}")
    if (options.start_datetime is None) != (options.end_datetime is None):
        raise InvalidOptionError("pass start_datetime= and end_datetime= together")
    size = options.batch_size
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 1):
        raise InvalidOptionError(f"batch_size= must be a positive integer, got {size!r}")
    return DataFacts(
        bands=coerce_bands(options.bands) if options.bands is not None else None,
        classes=coerce_classes(options.classes) if options.classes is not None else None,
        value_scaling=coerce_scaling(options.value_scaling) if options.value_scaling is not None else None,
        batch_size=size,
        bbox=bbox,  # type: ignore[arg-type]
        start_datetime=_iso(options.start_datetime),
        end_datetime=_iso(options.end_datetime),
        sources=sources,
    )


@dataclass(frozen=True)
class Gathered:
    """Everything observed about one model: facts from tracing, from the data, and the example used."""

    model: ModelFacts
    data: DataFacts
    example: Any = field(repr=False)
    weights: Any = None  # WeightsFacts, when the model came from a pretrained-weights enum
    #: The network described: the model itself, or the part that does inference (an SSL task's backbone).
    module: Any = field(default=None, repr=False, compare=False)
    #: Hyperparameters of the model as given (a task), which its inference network may not have.
    hyperparameters: Any = field(default=None, repr=False, compare=False)
    #: Why the network described differs from the model given (an untrained head left out), for the Item.
    notes: tuple[str, ...] = ()


def gather(model: nn.Module, datamodule: Any, example_input: Any, options: ExportOptions) -> Gathered:
    """Facts from the user, the datamodule, the weights enum and a trace of the model (in that precedence)."""
    from .sources.torchgeo import inference_module

    given = model
    model = inference_module(model)
    data = user_facts(options)
    if datamodule is not None:
        data = data.merged_over(datamodule_facts(datamodule, load_batch=example_input is None))
    wfacts = None
    if options.weights is not None:
        from .sources.weights import weights_facts

        wfacts = weights_facts(options.weights)
        data = data.merged_over(wfacts.data)
    names = classes_from_config(model)  # a Hugging Face classifier's config.id2label
    if names and data.classes is None:
        data = replace(data, classes=coerce_classes(names), sources={**data.sources, "classes": "config.id2label"})
    notes: tuple[str, ...] = ()
    if wfacts is not None:
        model, note = feature_module(model, wfacts)
        notes = (note,) if note else ()
    example = example_input if example_input is not None else data.example_input
    source = "the example_input= batch" if example_input is not None else data.sources.get("example_input")
    if example is None and wfacts is not None:
        example, source = _weights_example(model, wfacts), f"a batch for the weights {wfacts.name}"
    if example is None:
        stated = stated_example(given, model, data, datamodule)
        example, source = stated.value, stated.source
    data = replace(data, sources={**data.sources, "example_input": source or "a batch"})
    facts = inspect_model(model, example)
    hparams = hyperparameters_of(given)
    if model is not given:  # the task's hyperparameters and MLM task describe its inference network too
        facts = replace(facts, hyperparameters=hparams, qualified_name=qualified_name(given))
    return Gathered(facts, data, example, wfacts, module=model, hyperparameters=hparams, notes=notes)


def _weights_example(model: nn.Module, wfacts: Any) -> Any:
    """A batch for a weights member's model: its channels (checked against the model), its image size."""
    import torch

    from .sources.weights import builder_name, example_for, first_layer_channels

    special = example_for(builder_name(wfacts.member), wfacts) if wfacts.member is not None else None
    if special is not None:
        return special

    channels = first_layer_channels(model)
    if wfacts.in_channels and channels and wfacts.in_channels != channels:
        raise InvalidOptionError(
            f"{wfacts.name} is for {wfacts.in_channels}-channel input but the model's first layer takes {channels} "
            "channels: pass the model built for these weights, or weights= that match it"
        )
    size = wfacts.image_size or fixed_image_size(model) or DEFAULT_IMAGE_SIZE
    device = next((t.device for t in model.parameters()), torch.device("cpu"))
    return torch.zeros((2, wfacts.in_channels or channels or 3, size, size), device=device)


def plan(
    model: nn.Module, gathered: Gathered, options: ExportOptions, *, warn_datetime: bool = True, provenance: Any = None
) -> ItemPlan:
    """Decide everything the Item says; its model asset is the safetensors file that writing would produce.

    ``provenance`` (:class:`~mlm_export.provenance.ProvenanceFacts`) is gathered from ``model`` when not given.
    """
    from .provenance import export_lineage, provenance_facts, with_provenance, with_training_data
    from .sources.torchgeo import architecture as task_architecture
    from .sources.training_data import stac_training_data

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
    planned = _weights_asset(f"{item_id}.safetensors", size)
    accelerator, summary = resolve.accelerator(facts.device)
    w = gathered.weights
    hyperparameters = options.hyperparameters if options.hyperparameters is not None else facts.hyperparameters
    if consts.hyperparameters:  # what forward needs besides tensors, unless the user states those keys
        hyperparameters = {**consts.hyperparameters, **(hyperparameters or {})}
    extra = dict(options.properties)
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
                "href": w.repo, "type": "text/html", "title": "Source code", "roles": [mlm.ROLE_SOURCE_CODE, "code"],
            }  # fmt: skip
        if w.url:  # until files are written, the Item points at the published weights
            planned = replace(
                planned, href=w.url, media_type=MEDIA_CHECKPOINT, title=f"Published weights ({w.name})",
                artifact_type=mlm.ARTIFACT_TORCH_SAVE,
            )  # fmt: skip
    if options.artifacts is not None and planned.href.startswith("./"):  # name the file writing would make
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
    outputs: tuple[resolve.OutputSpec, ...],
    evidence: Mapping[str, Any],
    tasks: Mapping[str, tuple[str, ...]],
    notes: tuple[str, ...],
) -> tuple[resolve.OutputSpec, ...]:
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
    inputs: tuple[resolve.InputSpec, ...], source: str | None, constants: str | None = None
) -> tuple[resolve.InputSpec, ...]:
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
        return [{"rel": "cite-as", "href": f"https://doi.org/{doi}", "title": "Publication"}], {"sci:doi": doi}
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
    ``mlm:model`` asset (default: the first of ``artifacts``). See :mod:`mlm_export.model_files`.
    """
    from .model_files import write_artifacts

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
    f = art.FORMATS[first]
    roles = (mlm.ROLE_MODEL, *(r for r in f.roles if r.startswith("mlm:")))
    return ArtifactFacts(
        key="model", href=file_href(f"{item_id}{f.suffix}"), roles=roles, media_type=f.media_type, title=f.title,
        artifact_type=f.artifact_type,
    )  # fmt: skip


def _weights_asset(name: str, size: int | None, checksum: str | None = None) -> ArtifactFacts:
    """The safetensors weights as the model asset (until a .pt2 takes that role)."""
    return ArtifactFacts(
        key="model",
        href=file_href(name),
        roles=(mlm.ROLE_MODEL, mlm.ROLE_WEIGHTS),
        media_type=MEDIA_SAFETENSORS,
        title="Model weights (safetensors)",
        artifact_type=mlm.ARTIFACT_SAFETENSORS,
        size=size,
        checksum=checksum,
    )


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


def _when(datetime: dt.datetime | None, data: DataFacts, warn: bool) -> dt.datetime | None:
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


def _iso(t: Any) -> str | None:
    if t is None or isinstance(t, str):
        return t
    if isinstance(t, dt.datetime):
        return iso_utc(t)
    raise InvalidOptionError(f"expected a datetime, got {type(t).__name__}")
