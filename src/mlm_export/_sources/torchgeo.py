"""TorchGeo tasks: which MLM tasks each one does, and finding the task class a checkpoint's hyperparameters fit."""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import nn

from ..mlm import Task

#: TorchGeo task class (0.9+ names; 0.8 names end in "Task") -> MLM tasks of its outputs.
TASKS: dict[str, tuple[Task, ...]] = {
    "Classification": ("classification",),
    "MultiLabelClassification": ("classification",),
    "Regression": ("regression",),
    "SemanticSegmentation": ("semantic-segmentation",),
    "PixelwiseRegression": ("regression",),
    "ObjectDetection": ("object-detection",),
    "InstanceSegmentation": ("instance-segmentation",),
    "ChangeDetection": ("semantic-segmentation",),
    "MoCo": ("similarity-search",),
    "SimCLR": ("similarity-search",),
    "BYOL": ("similarity-search",),
}


def task_name(qualified_name: str) -> str | None:
    """The TorchGeo task a class is (by its qualified name), without the 0.8 "Task" suffix, or None."""
    if not qualified_name.startswith(("torchgeo.tasks", "torchgeo.trainers")):
        return None
    name = qualified_name.rsplit(".", 1)[-1].removesuffix("Task")
    return name if name in TASKS else None


def mlm_tasks(qualified_name: str) -> tuple[Task, ...] | None:
    """MLM tasks of a TorchGeo task's outputs, or None for any other model."""
    name = task_name(qualified_name)
    return TASKS.get(name) if name else None


def task_classes() -> Iterator[type]:
    """TorchGeo's task classes, from ``torchgeo.tasks`` (0.9+) or ``torchgeo.trainers`` (0.8)."""
    for module_name in ("torchgeo.tasks", "torchgeo.trainers"):
        with contextlib.suppress(ImportError):
            module = __import__(module_name, fromlist=["_"])
            for name in TASKS:
                for attr in (name, f"{name}Task"):
                    cls = getattr(module, attr, None)
                    if isinstance(cls, type):
                        yield cls
            return


def candidate_tasks(hparams: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Task classes whose arguments take every saved hyperparameter, fewest extra arguments first."""
    keys = {k for k in hparams if not k.startswith("_")}
    found = []
    for cls in task_classes():
        params = set(inspect.signature(cls).parameters) - {"args", "kwargs"}
        if keys and keys <= params:
            found.append((len(params - keys), f"{cls.__module__}:{cls.__qualname__}", cls))
    found.sort(key=lambda t: t[0])
    return [(target, {k: hparams[k] for k in keys}) for _, target, _ in found]


class EarlyFusion(nn.Module):
    """A change-detection network that takes both dates stacked on the channels, fed [batch, time, bands, H, W].

    TorchGeo's ChangeDetection task flattens time into channels in its steps, not in ``forward``; this
    wrapper does it in ``forward``, so that the time dimension is part of the model's described input.
    Its state dict is the task's (``model.`` keys).
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.model(image.flatten(1, 2))
        return out


def inference_module(model: Any) -> Any:
    """The network that does inference: a self-supervised task's backbone (not its projection head or
    momentum copy, used only in training); an early-fusion change detector with its time flattening; any
    other model as it is."""
    from .model import qualified_name

    name = task_name(qualified_name(model))
    if name == "ChangeDetection":
        arch = str(getattr(model, "hparams", {}).get("model", ""))
        if not arch.startswith("fcsiam") and arch != "changevit":
            return EarlyFusion(model.model)
    if name in ("MoCo", "SimCLR"):
        return getattr(model, "backbone", model)
    if name == "BYOL":
        inner = getattr(model, "model", model)
        return getattr(inner, "backbone", inner)
    return model


def runnable_network(model: nn.Module) -> nn.Module:
    """The network a TorchGeo task's own ``forward`` calls (``self.model(*args, **kwargs)``), to export as a
    runnable file: the task's ``forward(*args, **kwargs)`` binds no dynamic dims in ``torch.export`` and its
    Lightning hooks need a Trainer to trace. Any other model (or a task with its own ``forward``) as it is."""
    from .model import qualified_name

    network = getattr(model, "model", None)
    forward = getattr(type(model), "forward", None)
    delegates = getattr(forward, "__qualname__", "") == "BaseTask.forward"
    if task_name(qualified_name(model)) is None or not delegates or not isinstance(network, nn.Module):
        return model
    return network


def architecture(hparams: Mapping[str, Any] | None) -> str | None:
    """A TorchGeo task's architecture from its hyperparameters: ``model`` and, where set, ``(backbone)``."""
    if not hparams or not isinstance(hparams.get("model"), str):
        return None
    backbone = hparams.get("backbone")
    return f"{hparams['model']} ({backbone})" if isinstance(backbone, str) else str(hparams["model"])
