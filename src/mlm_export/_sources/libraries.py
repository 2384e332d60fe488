"""The model libraries whose tasks say what they do (TorchGeo, TerraTorch): one door for the rest of the package."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..mlm import Task
from . import terratorch, torchgeo


def inference_module(model: Any) -> Any:
    """The network that does inference for a library task (see each library's ``inference_module``)."""
    return terratorch.inference_module(torchgeo.inference_module(model))


def mlm_tasks(qualified_name: str) -> tuple[Task, ...] | None:
    """MLM tasks a library's task class does, by its qualified name, or None."""
    return torchgeo.mlm_tasks(qualified_name) or terratorch.mlm_tasks(qualified_name)


def architecture(hparams: Mapping[str, Any] | None) -> str | None:
    """A library task's architecture from its hyperparameters, or None."""
    return torchgeo.architecture(hparams) or terratorch.architecture(hparams)
