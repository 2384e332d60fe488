"""Which model a checkpoint's weights belong to: the one rule ``convert`` and ``verify`` share.

In order: the model the user names (``--model``/``--factory`` with ``--init-args``), a TorchGeo weights enum
member (``--weights``), the class LightningCLI recorded (``_class_path``), the TorchGeo task whose arguments the
``hyper_parameters`` are. Every name is checked against the same :class:`~mlm_export._guard.Policy` (allowlist,
offline) before it is imported.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ._guard import SAFE, Policy
from ._sources.checkpoint import (
    ArchitectureError,
    LoadedCheckpoint,
    ModelSpec,
    explicit_spec,
    lightning_spec,
    torchgeo_spec,
)
from .errors import option


def checkpoint_spec(
    ckpt: LoadedCheckpoint,
    *,
    model: str | None = None,
    init_args: Mapping[str, Any] | None = None,
    weights: str | None = None,
    policy: Policy = SAFE,
) -> ModelSpec:
    """How to build the model of ``ckpt``; an :class:`ArchitectureError` naming what to pass when nothing says."""
    if model:
        return explicit_spec(model, init_args, ckpt, policy)
    if weights:
        return ModelSpec(f"weights:{weights}", weights=weights, policy=policy)
    spec = lightning_spec(ckpt, policy) or (torchgeo_spec(ckpt, policy) if ckpt.hyper_parameters else None)
    if spec is not None:
        return spec
    name = ckpt.path.name
    if ckpt.kind == "lightning":
        what = (
            f"{name} is a full Lightning checkpoint whose LightningModule class is not recorded (LightningCLI "
            "records it; TorchGeo tasks are found from hyper_parameters)"
        )
    else:
        what = f"{name} holds weights only ({'safetensors' if ckpt.kind == 'safetensors' else 'a state dict'})"
    model_option = option("model", "'module:Class'", "module:Class")
    raise ArchitectureError(
        f"{what}: name the model with {model_option} (with {option('init_args')}; they default to the "
        "checkpoint's hyper_parameters)"
    )
