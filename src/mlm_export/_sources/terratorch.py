"""TerraTorch tasks: the MLM tasks each one does, its prediction network, its classes, bands and architecture.

TerraTorch's tasks are Lightning modules around a model built by a factory (``model_factory`` + ``model_args``);
the model returns a ``ModelOutput`` whose ``output`` is the prediction and ``auxiliary_heads`` the training-only
heads. Everything here is read from the task object or its saved hyperparameters: TerraTorch is never imported.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from ..mlm import Task

#: TerraTorch task class -> MLM tasks of its prediction.
TASKS: dict[str, tuple[Task, ...]] = {
    "SemanticSegmentationTask": ("semantic-segmentation",),
    "ClassificationTask": ("classification",),
    "MultiLabelClassificationTask": ("classification",),
    "PixelwiseRegressionTask": ("regression",),
    "ScalarRegressionTask": ("regression",),
    "ObjectDetectionTask": ("object-detection",),
}

#: Keys of ``model_args`` that name the bands the backbone is fed, best first.
BAND_ARGS = ("backbone_model_bands", "backbone_bands", "model_bands", "bands")


def task_name(qualified_name: str) -> str | None:
    """The TerraTorch task a class is (by its qualified name), or None."""
    if not qualified_name.startswith("terratorch.tasks"):
        return None
    name = qualified_name.rsplit(".", 1)[-1]
    return name if name in TASKS else None


def mlm_tasks(qualified_name: str) -> tuple[Task, ...] | None:
    """MLM tasks of a TerraTorch task's prediction, or None for any other model."""
    name = task_name(qualified_name)
    return TASKS.get(name) if name else None


class Prediction(nn.Module):
    """A TerraTorch model that returns its prediction tensor (``ModelOutput.output``) and nothing else.

    The auxiliary heads are training-only; the prediction is what a reader runs. Its state dict is the task's
    (``model.`` keys), so a checkpoint of the task loads into it as it is.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        prediction = getattr(out, "output", out)
        if not isinstance(prediction, torch.Tensor):
            raise TypeError(f"a TerraTorch model returned {type(out).__name__} without an 'output' tensor")
        return prediction


def inference_module(model: Any) -> Any:
    """The network a TerraTorch task predicts with (its ``model``, prediction only); any other model as it is."""
    from .model import qualified_name

    if task_name(qualified_name(model)) is None or not isinstance(getattr(model, "model", None), nn.Module):
        return model
    return Prediction(model.model)


def model_args(hparams: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """The factory arguments a TerraTorch task was built with (``model_args``), or an empty mapping."""
    args = (hparams or {}).get("model_args")
    return args if isinstance(args, Mapping) else {}


def architecture(hparams: Mapping[str, Any] | None) -> str | None:
    """``backbone + decoder`` from a TerraTorch task's ``model_args`` (``timm_resnet18 + FCNDecoder``), or None."""
    args = model_args(hparams)
    backbone = args.get("backbone")
    if not isinstance(backbone, str):
        return None
    decoder = args.get("decoder")
    return f"{backbone} + {decoder}" if isinstance(decoder, str) else backbone


def class_names(hparams: Mapping[str, Any] | None) -> list[str] | None:
    """The ``class_names`` a TerraTorch task was given, or None."""
    names = (hparams or {}).get("class_names")
    if isinstance(names, list | tuple) and names and all(isinstance(n, str) for n in names):
        return [str(n) for n in names]
    return None


def band_names(hparams: Mapping[str, Any] | None) -> list[str] | None:
    """The bands the backbone is fed (``model_args`` ``backbone_bands``/``model_bands``/``bands``), or None.

    TerraTorch names bands with its ``HLSBands`` string enum or plain strings; integers (band positions) say no name.
    """
    args = model_args(hparams)
    for key in BAND_ARGS:
        value = args.get(key)
        if isinstance(value, list | tuple) and value and all(isinstance(b, str) for b in value):
            return [str(getattr(b, "value", b)) for b in value]
    return None
