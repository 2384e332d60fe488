"""Provenance of a model as Item fields: software, code, accelerator, lineage, citation and runtime files.

One function gathers the facts (:func:`provenance_facts`), one adds them to a plan (:func:`with_provenance`),
one adds what a Lightning Trainer tells (:func:`with_trainer`), and one writes the runtime files beside an Item
(:func:`write_runtime_files`). Field names come from ``mlm``; the builder (``_item.py``) declares extensions.
"""

from __future__ import annotations

import os
import platform
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from . import mlm
from ._about import __version__
from ._facts import ArtifactFacts
from ._item import ItemPlan
from ._model_asset import file_href
from ._sources.citation import CitationFacts, clean_doi, find_cff, read_cff
from ._sources.runtime import (
    RuntimeFacts,
    accelerator_from_trainer,
    compile_method,
    cpu_name,
    environment,
    inference_pins,
    requirements_text,
    runtime_facts,
)
from ._sources.training_data import StacData, disagreements, split_sizes
from ._sources.vcs import SourceFacts, source_facts
from ._times import iso_utc
from ._write import atomic_write_bytes, multihash
from .errors import InvalidOptionError, MLMExportWarning
from .mlm import ClassObject

INFERENCE_SUFFIX = ".requirements.txt"
TRAINING_SUFFIX = ".environment.txt"
#: The LightningCLI configuration the run was started from, beside each checkpoint (``config.yaml`` of the run).
CONFIG_SUFFIX = ".config.yaml"
#: The asset key of that file.
CONFIG_KEY = "training_config"
RUNTIME_MEDIA = mlm.MEDIA_TEXT


@dataclass(frozen=True)
class ProvenanceFacts:
    """Where a model came from and what it needs."""

    runtime: RuntimeFacts
    source: SourceFacts | None
    citation: CitationFacts
    compile_method: str | None = None
    #: The datamodule's class and its dataset sizes per split (samples, batches), where it knows them.
    datamodule: str | None = None
    splits: Mapping[str, Mapping[str, int]] | None = None


def provenance_facts(
    model: Any, *, doi: str | None = None, citation: str | None = None, datamodule: Any = None
) -> ProvenanceFacts:
    """Software versions, the code defining ``model`` (git), what to cite (the user's, else CITATION.cff), and the
    datamodule's split sizes."""
    inner = getattr(model, "_orig_mod", model)  # torch.compile wraps the module
    source = source_facts(inner)
    cff = find_cff(source.root if source else None)
    found = read_cff(cff) if cff else CitationFacts()
    cited = CitationFacts(
        doi=clean_doi(doi) or found.doi,
        citation=citation or found.citation,
        publications=found.publications,
        source="doi=/citation=" if (doi or citation) else found.source,
    )
    dm_name = splits = None
    if datamodule is not None:
        dm_name = f"{type(datamodule).__module__}.{type(datamodule).__qualname__}"
        splits = split_sizes(datamodule) or None
    return ProvenanceFacts(runtime_facts(inner), source, cited, compile_method(model), dm_name, splits)


def user_doi(doi: str | None) -> str | None:
    """The ``doi=`` option checked: a bare DOI, ``doi:`` form or doi.org URL."""
    if doi is None:
        return None
    clean = clean_doi(doi)
    if clean is None:
        raise InvalidOptionError(f"doi= must be a DOI such as 10.5281/zenodo.1234567, got {doi!r}")
    return clean


def with_provenance(plan: ItemPlan, prov: ProvenanceFacts, *, lineage: str, version: str | None = None) -> ItemPlan:
    """``plan`` with ``processing:*``, citation, version, source-code asset and compile method added."""
    props = dict(plan.extra_properties)
    props[mlm.PROCESSING_SOFTWARE] = dict(prov.runtime.software)
    props[mlm.PROCESSING_LINEAGE] = lineage
    if plan.created:
        props[mlm.PROCESSING_DATETIME] = iso_utc(plan.created)
    if version:
        props["version"] = version
    links = list(plan.links)
    _cite(props, links, prov.citation)
    assets = dict(plan.extra_assets)
    if prov.source is not None and prov.source.href:
        key = "source_code" if "source_code" not in assets else "training_source_code"
        assets[key] = source_asset(prov.source)
    if prov.datamodule:
        props[mlm.LIGHTNING_DATAMODULE] = {"class": prov.datamodule, **({"splits": prov.splits} if prov.splits else {})}
    artifacts = tuple(_compiled(a, prov.compile_method) for a in plan.artifacts)
    summary = plan.accelerator_summary
    if plan.accelerator != "cuda" and (not summary or summary.lower() in (platform.machine().lower(), "x86_64")):
        summary = cpu_name() or summary  # the CPU's model name, not its architecture
    return replace(
        plan, extra_properties=props, links=tuple(links), extra_assets=assets, artifacts=artifacts,
        accelerator_summary=summary, accelerator_count=plan.accelerator_count or 1,  # the device it was exported on
    )  # fmt: skip


def export_lineage(facts: Any, weights: Any = None) -> str:
    """``processing:lineage`` of an Item made from a model object: what was described, from what, by what."""
    text = f"Described by mlm-export {__version__} from a {facts.qualified_name}, traced on {facts.traced_on}"
    if weights is not None:
        text += f", with pretrained weights {weights.name}"
    return text + "."


def with_training_data(plan: ItemPlan, data: tuple[StacData, ...]) -> ItemPlan:
    """``derived_from`` links to the STAC data; its label classes carried where they fit, a warning where not."""
    if not data:
        return plan
    links = list(plan.links)
    outputs = list(plan.outputs)
    for stac in data:
        link = stac.link()
        if link and link not in links:
            links.append(link)
        named = next((o.classes for o in outputs if o.classes), None)
        problems = disagreements(stac, plan.tasks, tuple(c.name for c in named) if named else None)
        for i, out in enumerate(outputs):
            if not stac.label_classes or out.classes or "class" not in out.result.dim_order:
                continue
            size = out.result.shape[out.result.dim_order.index("class")]
            if size == len(stac.label_classes):  # the labels name the model's classes
                classes = tuple(ClassObject(value=v, name=n) for v, n in enumerate(stac.label_classes))
                outputs[i] = replace(out, classes=classes)
            else:
                problems.append(f"its {len(stac.label_classes)} label:classes do not fit output '{out.name}' ({size})")
        if problems:
            warnings.warn(
                f"the training data {stac.title} does not agree with the model: {'; '.join(problems)}. Check "
                "training_data= and tasks=/classes=.",
                MLMExportWarning,
                stacklevel=4,
            )
    return replace(plan, links=tuple(links), outputs=tuple(outputs))


def with_trainer(plan: ItemPlan, trainer: Any) -> ItemPlan:
    """The accelerator, its device names and count from the Trainer the model is trained with."""
    accelerator, summary, count = accelerator_from_trainer(trainer)
    return replace(plan, accelerator=accelerator, accelerator_summary=summary, accelerator_count=count)


def source_asset(source: SourceFacts) -> dict[str, Any]:
    """The ``mlm:source_code`` asset: repository at its commit, with the entrypoint and dirty flag."""
    asset: dict[str, Any] = {
        "href": source.href,
        "type": mlm.MEDIA_HTML if (source.href or "").startswith("http") else "inode/directory",
        "title": "Source code of the model's class" + (f" (commit {source.commit[:12]})" if source.commit else ""),
        "roles": [mlm.ROLE_SOURCE_CODE, "code"],
    }
    if source.entrypoint:
        asset[mlm.ENTRYPOINT] = source.entrypoint
    description = []
    if source.commit:
        description.append(f"commit {source.commit}" + (f" on branch {source.branch}" if source.branch else ""))
    if source.dirty is True:
        description.append("the working tree had uncommitted changes to tracked files")
    elif source.dirty is False:
        description.append("the working tree was clean")
    if description:
        text = "; ".join(description)
        asset["description"] = text[0].upper() + text[1:] + "."
    if source.commit:
        asset["vcs:commit"] = source.commit
    if source.dirty is not None:
        asset["vcs:dirty"] = source.dirty
    return asset


def _cite(props: dict[str, Any], links: list[Any], cited: CitationFacts) -> None:
    """Put the DOI the user or CITATION.cff names first; a DOI already there (the weights') becomes a publication."""
    publications = [dict(p) for p in props.get(mlm.SCI_PUBLICATIONS, [])]
    existing = props.get(mlm.SCI_DOI)
    if cited.doi and existing and cited.doi != existing:
        publications.append({"doi": existing})
        links[:] = [link for link in links if dict(link).get("rel") != "cite-as"]
    if cited.doi:
        props[mlm.SCI_DOI] = cited.doi
    if cited.citation:
        props[mlm.SCI_CITATION] = cited.citation
    for pub in cited.publications:
        if pub not in publications:
            publications.append(dict(pub))
    if publications:
        props[mlm.SCI_PUBLICATIONS] = publications
    doi = props.get(mlm.SCI_DOI)
    if doi and not any(dict(link).get("rel") == "cite-as" for link in links):
        links.append({"rel": "cite-as", "href": f"https://doi.org/{doi}", "title": "Citation (DOI)"})


def restate(item: dict[str, Any], *, doi: str | None, citation: str | None, version: str | None) -> None:
    """Apply the user's ``doi=``, ``citation=`` and ``version=`` to an Item made earlier (an embedded one)."""
    from ._item import declared_extensions
    from ._versions import revision

    props = item.setdefault("properties", {})
    links = item.setdefault("links", [])
    if doi or citation:
        _cite(props, links, CitationFacts(doi=clean_doi(doi), citation=citation))
    own = revision(props, version)
    if own:
        props["version"] = own
    exts = item.setdefault("stac_extensions", [])
    exts += [e for e in declared_extensions(props, links) if e not in exts]


def _compiled(a: ArtifactFacts, method: str | None) -> ArtifactFacts:
    if mlm.ROLE_MODEL not in a.roles:
        return a
    return replace(a, compile_method=method) if method else a


def write_runtime_files(
    out_dir: Path, stem: str, prov: ProvenanceFacts, artifact_types: list[str | None], *, training: bool
) -> dict[str, dict[str, Any]]:
    """Write ``<stem>.requirements.txt`` (and, for a training run, ``<stem>.environment.txt``) atomically.

    Returns their assets (roles ``mlm:inference-runtime`` / ``mlm:training-runtime``) with size and checksum.
    """
    return write_prepared(out_dir, stem, runtime_files(prov, artifact_types, training=training))


#: Runtime files ready to write: asset key -> (file suffix, bytes, asset without its href).
Prepared = dict[str, tuple[str, bytes, dict[str, Any]]]


def runtime_files(
    prov: ProvenanceFacts, artifact_types: list[str | None], *, training: bool, config: bytes | None = None
) -> Prepared:
    """The runtime files' bytes and assets, hashed once: the same for every checkpoint of a run, so the callback
    computes them once per set of artifact types (reading package metadata is slow) and writes them per stem.
    ``config``: the YAML a LightningCLI started the run from, kept as a training-runtime file too."""
    files = {"inference_runtime": _inference_file(inference_pins(prov.runtime, artifact_types))}
    if training:
        files["training_runtime"] = (
            TRAINING_SUFFIX,
            requirements_text(dict(environment()), "The whole Python environment the model was trained in."),
            mlm.ROLE_TRAINING_RUNTIME,
            "Training runtime (every installed distribution)",
        )
    out = _prepare(files)
    if config is not None:
        asset = {"type": mlm.MEDIA_YAML, "title": "Training configuration (LightningCLI config.yaml)",
                 "roles": [mlm.ROLE_TRAINING_RUNTIME], mlm.FILE_SIZE: len(config),
                 mlm.FILE_CHECKSUM: _checksum(config)}  # fmt: skip
        out[CONFIG_KEY] = (CONFIG_SUFFIX, config, asset)
    return out


def _inference_file(pins: dict[str, str]) -> tuple[str, str, str, str]:
    return (
        INFERENCE_SUFFIX,
        requirements_text(pins, "What loading and running this model takes, pinned to the versions used."),
        mlm.ROLE_INFERENCE_RUNTIME,
        "Inference runtime (pip requirements)",
    )


def _prepare(files: Mapping[str, tuple[str, str, str, str]]) -> Prepared:
    out: Prepared = {}
    for key, (suffix, text, role, title) in files.items():
        data = text.encode("utf-8")
        asset = {"type": RUNTIME_MEDIA, "title": title, "roles": [role], mlm.FILE_SIZE: len(data),
                 mlm.FILE_CHECKSUM: _checksum(data)}  # fmt: skip
        out[key] = (suffix, data, asset)
    return out


def write_prepared(
    out_dir: Path, stem: str, prepared: Prepared, copies: dict[str, Path] | None = None
) -> dict[str, Any]:
    """Write prepared runtime files as ``<stem><suffix>`` atomically; their assets (fresh copies).

    ``copies``: the file last written for each asset key, kept up to date here. A new file is then a hard link to
    that one (one system call instead of create, write and rename: the callback writes these per checkpoint)
    when it still has the right size, else it is written. Removing one name never touches the others.
    """
    assets = {}
    for key, (suffix, data, asset) in prepared.items():
        name = f"{stem}{suffix}"
        if not (copies is not None and _link_copy(copies.get(key), out_dir / name, len(data))):
            atomic_write_bytes(out_dir / name, data)
        if copies is not None:
            copies[key] = out_dir / name
        assets[key] = {"href": file_href(name), **asset, "roles": list(asset["roles"])}
    return assets


def _link_copy(source: Path | None, target: Path, size: int) -> bool:
    """Make ``target`` a hard link to ``source`` if that is a file of ``size`` bytes and ``target`` is new."""
    if source is None or source == target or source.parent != target.parent:
        return False
    try:
        os.link(source, target)
    except OSError:  # the source was removed (pruned), the name is taken, or the file system has no links
        return False
    if target.stat().st_size != size:  # changed since: write it
        target.unlink()
        return False
    return True


def _write_files(out_dir: Path, stem: str, files: Mapping[str, tuple[str, str, str, str]]) -> dict[str, Any]:
    return write_prepared(out_dir, stem, _prepare(files))


#: ``processing:software`` entries that are not pip distributions.
NOT_DISTRIBUTIONS = ("Python", "CUDA", "cuDNN", "mlm-export")


def write_inference_runtime(out_dir: Path, stem: str, item: Mapping[str, Any], artifact_type: str) -> dict[str, Any]:
    """The inference runtime of an existing description (``convert``): its ``processing:software`` distributions.

    Returns the asset, or nothing when the description names no software.
    """
    software = item.get("properties", {}).get(mlm.PROCESSING_SOFTWARE)
    if not isinstance(software, Mapping) or not software:
        return {}
    pins = {str(k): _public(str(v)) for k, v in software.items() if k not in NOT_DISTRIBUTIONS}
    for name, v in inference_pins(RuntimeFacts({}, {}, ()), [artifact_type]).items():
        pins.setdefault(name, v)
    return _write_files(out_dir, stem, {"inference_runtime": _inference_file(pins)})


def _public(version: str) -> str:
    """``2.14.1+cu130`` -> ``2.14.1``: pip matches a pin without a local label against any build."""
    from packaging.version import InvalidVersion, Version

    try:
        return Version(version).public
    except InvalidVersion:
        return version


def with_runtime_files(plan: ItemPlan, prov: ProvenanceFacts, out_dir: Path, stem: str, *, training: bool) -> ItemPlan:
    """Write the runtime files of ``plan``'s artifacts beside it, add their assets, mark the compile method."""
    types = [a.artifact_type for a in plan.artifacts]
    assets = write_runtime_files(out_dir, stem, prov, types, training=training)
    artifacts = tuple(_compiled(a, prov.compile_method) for a in plan.artifacts)  # the files written now
    # a torch.export archive made on a GPU holds that device's kernels: it runs on that accelerator only
    constrained = plan.accelerator == "cuda" and any(a.artifact_type == mlm.ARTIFACT_EXPORT for a in artifacts)
    return replace(
        plan, extra_assets={**plan.extra_assets, **assets}, artifacts=artifacts, accelerator_constrained=constrained
    )


def _checksum(data: bytes) -> str:
    import hashlib

    return multihash(hashlib.sha256(data).digest())
