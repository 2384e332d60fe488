"""JSON values for Item fields: hyperparameters and other Python objects as numbers, text, lists and dicts."""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Mapping
from enum import Enum
from pathlib import PurePath
from typing import Any

import torch

from .errors import MLMExportWarning


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
        except Exception:  # noqa: BLE001, S110 - fall through to a description
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
