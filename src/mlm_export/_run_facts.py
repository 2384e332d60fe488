"""What a checkpoint folder already knows, kept when ``convert`` rebuilds its Items and Collection.

A folder the callback wrote holds facts a bare checkpoint file does not show at first sight: the monitored
metric, its mode and score (in ``checkpoint["callbacks"]``, ModelCheckpoint's state), the metrics of the
step (in the old Item), the Collection's license, title and description (in the old ``collection.json``).
Rebuilding never loses them; what nothing states stays unstated.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from . import mlm
from ._collection import COLLECTION_FILE
from ._hrefs import read_json as regular_json

_MODE = re.compile(r"'mode':\s*'(min|max)'")


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object from a regular file of bounded size and depth, or None (missing, special, too big, too deep,
    not JSON): a folder's old Items and Collection inform a rebuild, never stop it."""
    try:
        data = regular_json(path)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def previous_collection(directory: Path) -> dict[str, Any]:
    """The fields of the folder's existing ``collection.json`` worth keeping: id, title, description, license."""
    data = read_json(directory / COLLECTION_FILE) or {}
    return {k: data[k] for k in ("id", "title", "description", "license") if isinstance(data.get(k), str)}


def monitor_facts(callbacks: Mapping[str, Any], checkpoint: Path) -> dict[str, Any]:
    """``lightning:monitor``/``mode``/``score`` for one file, from the ModelCheckpoint state saved in it."""
    for key, state in callbacks.items():
        if not str(key).startswith("ModelCheckpoint") or not isinstance(state, Mapping):
            continue
        monitor = state.get("monitor")
        if not isinstance(monitor, str):
            continue
        props: dict[str, Any] = {mlm.LIGHTNING_MONITOR: monitor}
        mode = _MODE.search(str(key))
        if mode:
            props[mlm.LIGHTNING_MODE] = mode.group(1)
        score = _score_for(state, checkpoint)
        if score is not None:
            props[mlm.LIGHTNING_SCORE] = score
        return props
    return {}


def _score_for(state: Mapping[str, Any], checkpoint: Path) -> float | None:
    best_k = state.get("best_k_models")
    if isinstance(best_k, Mapping):
        for path, value in best_k.items():
            if Path(str(path)).name == checkpoint.name:
                return _float(value)
    if Path(str(state.get("last_model_path", ""))).name == checkpoint.name or checkpoint.name.startswith("last"):
        return _float(state.get("current_score"))
    return None


def _float(value: Any) -> float | None:
    if hasattr(value, "item"):
        try:
            value = value.item()
        except (RuntimeError, ValueError):
            return None
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def kept_properties(old_item: Mapping[str, Any] | None, checksum: str) -> dict[str, Any]:
    """The ``lightning:*`` properties of the Item being replaced, when it described this very file."""
    if not old_item:
        return {}
    assets = old_item.get("assets") or {}
    described = any(isinstance(a, Mapping) and a.get(mlm.FILE_CHECKSUM) == checksum for a in assets.values())
    if not described:
        return {}
    props = old_item.get("properties") or {}
    return {k: v for k, v in props.items() if isinstance(k, str) and k.startswith(mlm.LIGHTNING_PREFIX)}
