"""What the Item of one checkpoint states beyond its model, gathered as :class:`~mlm_export._item.CheckpointFacts`.

Two sources, one record: a save the callback observed (:func:`saved_facts`) and a file ``convert`` read back
(:func:`converted_facts`). The builder (``_item.checkpoint_item``) spells the record; nothing patches an Item
afterwards. The small helpers both entry points share live here too.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pystac

from . import mlm
from ._about import __version__
from ._collection import RunLink
from ._item import CheckpointFacts
from ._provenance import CONFIG_KEY
from ._runs import RunCatalog
from ._sources.checkpoint import LoadedCheckpoint
from ._times import file_time

RUNTIME_ROLES = frozenset({mlm.ROLE_INFERENCE_RUNTIME, mlm.ROLE_TRAINING_RUNTIME})


def saved_facts(
    path: Path,
    *,
    size: int,
    checksum: str,
    architecture: str,
    software: Mapping[str, Any],
    epoch: int,
    global_step: int,
    weights_only: bool,
    monitor: str | None,
    mode: str | None,
    score: float | None,
    metrics: Mapping[str, float],
    files: Mapping[str, Mapping[str, Any]],
    catalog: RunCatalog,
    compile_method: str | None,
    hashed: Path | None = None,
) -> CheckpointFacts:
    """A checkpoint ``ModelCheckpoint`` saved during ``fit`` (``hashed``: the file a ``last.ckpt`` link names)."""
    lightning = software.get("lightning") or software.get("pytorch-lightning")
    config = files.get(CONFIG_KEY)
    lineage = (
        f"Checkpoint of {architecture} saved by Lightning{' ' + lightning if lightning else ''} ModelCheckpoint at "
        f"epoch {epoch}, global step {global_step}"
        + (" (weights only)" if weights_only else "")
        + (f", trained from the LightningCLI configuration {Path(config['href']).name}" if config else "")
        + f"; described by mlm-export {__version__}."
    )
    return CheckpointFacts(
        path=path,
        size=size,
        checksum=checksum,
        saved=file_time((hashed or path).stat().st_mtime),
        lineage=lineage,
        title="Lightning checkpoint" + (" (weights only)" if weights_only else ""),
        epoch=epoch,
        global_step=global_step,
        weights_only=weights_only,
        monitor=monitor,
        mode=mode if monitor else None,
        score=score,
        metrics=metrics,
        files=files,
        compile_method=compile_method,
        run=run_link(catalog),
    )


def converted_facts(
    ckpt: LoadedCheckpoint,
    path: Path,
    *,
    size: int,
    checksum: str,
    monitor: Mapping[str, Any],
    kept: Mapping[str, Any],
    files: Mapping[str, Mapping[str, Any]],
    catalog: RunCatalog | None,
) -> CheckpointFacts:
    """A checkpoint file ``convert`` read: its epoch and step, the ModelCheckpoint state saved in it (``monitor``:
    ``_run_facts.monitor_facts``), and the ``lightning:*`` fields of the Item it replaces (``kept``)."""
    epoch = ckpt.epoch if isinstance(ckpt.epoch, int) else None
    step = ckpt.global_step if isinstance(ckpt.global_step, int) else None
    made = ""
    if ckpt.kind == "lightning":
        made = " saved by Lightning"
        if epoch is not None and step is not None:
            made += f" at epoch {epoch}, global step {step}"
    title = {"lightning": "Lightning checkpoint", "safetensors": "Weights (safetensors)"}.get(ckpt.kind, "State dict")
    return CheckpointFacts(
        path=path,
        size=size,
        checksum=checksum,
        saved=file_time(path.stat().st_mtime),
        lineage=f"Checkpoint {ckpt.path.name}{made}; described afterwards by mlm-export {__version__} (convert).",
        title=title,
        epoch=epoch,
        global_step=step,
        monitor=monitor.get(mlm.LIGHTNING_MONITOR),
        mode=monitor.get(mlm.LIGHTNING_MODE),
        score=monitor.get(mlm.LIGHTNING_SCORE),
        kept=kept,
        files=files,
        run=run_link(catalog) if catalog is not None else None,
    )


def run_link(catalog: RunCatalog) -> RunLink:
    """The run Collection an Item of ``catalog`` links to."""
    return RunLink(catalog.collection_id, catalog.title or catalog.collection_id)


def plain(item: pystac.Item) -> dict[str, Any]:
    """An Item as plain JSON types (a fresh copy, no self link, hrefs as written)."""
    data: dict[str, Any] = json.loads(json.dumps(item.to_dict(include_self_link=False, transform_hrefs=False)))
    return data


def is_model_file(asset: Mapping[str, Any]) -> bool:
    """Whether an asset is a model file (``mlm:model`` or ``mlm:weights``), not code or a runtime file."""
    return bool({mlm.ROLE_MODEL, mlm.ROLE_WEIGHTS} & set(asset.get("roles", [])))


def remove_runtime_files(directory: Path, item: Mapping[str, Any]) -> None:
    """Remove the runtime files an Item that was never written lists beside its (pruned) checkpoint."""
    for asset in item.get("assets", {}).values():
        href = str(asset.get("href", ""))
        if RUNTIME_ROLES & set(asset.get("roles", [])) and href.startswith("./") and "/" not in href[2:]:
            (directory / href[2:]).unlink(missing_ok=True)


__all__ = ["converted_facts", "is_model_file", "plain", "remove_runtime_files", "run_link", "saved_facts"]
