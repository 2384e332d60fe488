"""Tasks from evidence: what the model's own library, class or weights say it does, not what a shape suggests.

- semantic segmentation: a segmentation_models_pytorch or torchvision segmentation model's per-pixel maps (a
  per-pixel map from any other model needs classes, a task or ``tasks=``: it may be an image or features);
- classification: a torchvision classification builder's model (its last linear layer gives the scores), a
  timm model with a classifier head (``get_classifier()``, ``num_classes``), a Hugging Face
  ``...ForImageClassification`` (``config.num_labels``), duck-typed, without importing those libraries;
- features: a model with no classifier (timm ``num_classes=0``) or weights that state a self-supervised method
  or carry no head: described as ``similarity-search`` (the v1.5.2 task list is closed), the output
  described as embeddings with an ``embedding`` dim;
- a head the weights do not cover (a self-supervised or backbone-only timm/torchvision model built with its
  default 1000-way head) is not a trained output: :func:`feature_module` describes the backbone's pooled
  features instead.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from torch import nn

from .._facts import ModelFacts, TensorFacts
from ..mlm import Task

#: torchvision subpackages whose models are not classifiers.
_TV_OTHER = ("torchvision.models.detection", "torchvision.models.segmentation", "torchvision.models.optical_flow")
#: The size of the head timm and torchvision builders add when nobody asks for another (ImageNet-1k).
DEFAULT_HEAD_CLASSES = 1000
#: Where torchvision's classification builders keep their classifier (``fc``, ``head``, ``heads.head``,
#: ``classifier.N``): a last linear layer elsewhere (inside blocks) is not a classifier.
_TV_HEADS = ("fc", "head", "heads", "classifier")


@dataclass(frozen=True)
class Evidence:
    """The tasks of one output and the fact that says so."""

    tasks: tuple[Task, ...]
    reason: str
    #: The output is features/embeddings (a name and description for it).
    embedding: bool = False
    #: What the reason is read from, for the description ("Task from the training targets: ...").
    source: str = "evidence"


def task_evidence(model: nn.Module, facts: ModelFacts, weights: Any = None) -> dict[str, Evidence]:
    """Tasks per output name, where the model or its weights state them; outputs without evidence are absent."""
    found: dict[str, Evidence] = {}
    scores = [o for o in facts.outputs if _is_scores(o)]
    head = _classifier_size(model)
    if head is not None and len(scores) == 1 and scores[0].observed[1] == head[0]:
        found[scores[0].name] = Evidence(("classification",), head[1])
        return found
    segmenter = _segmentation_reason(model)
    if segmenter is not None:
        for o in facts.outputs:
            if len(o.observed) == 4 and o.roles[0] == "batch" and o.roles[-2:] == ("height", "width"):
                found[o.name] = Evidence(("semantic-segmentation",), segmenter)
        if found:
            return found
    feature = _feature_reason(model, weights)
    if feature is not None:
        for o in facts.outputs:
            if len(o.observed) >= 2 and o.roles[0] == "batch" and o.dtype.startswith(("float", "bfloat")):
                found[o.name] = Evidence(("similarity-search",), feature, embedding=True)
    return found


def _is_scores(o: TensorFacts) -> bool:
    return len(o.observed) == 2 and o.roles[0] == "batch" and o.dtype.startswith(("float", "bfloat"))


def _classifier_size(model: nn.Module) -> tuple[int, str] | None:
    """(number of classes, why) when the model's library says it is a classifier."""
    module = type(model).__module__
    if module.startswith("torchvision.models") and not module.startswith(_TV_OTHER):
        path = _last_layer_path(model, (nn.Linear, nn.Conv2d, nn.Conv3d))  # SqueezeNet, S3D: a 1x1 conv head
        if path is not None and path.split(".")[0] in _TV_HEADS:
            layer = model.get_submodule(path)
            outputs = layer.out_features if isinstance(layer, nn.Linear) else _out_channels(layer)
            if outputs is not None:
                return outputs, f"torchvision classification model {type(model).__name__}"
    get_classifier = getattr(model, "get_classifier", None)
    if module.startswith("timm.") and callable(get_classifier):
        classes = getattr(model, "num_classes", None)
        if isinstance(classes, int) and classes > 0 and _has_parameters(get_classifier()):
            return classes, f"timm model with a {classes}-class classifier head"
    if type(model).__name__.endswith("ForImageClassification"):
        labels = getattr(getattr(model, "config", None), "num_labels", None)
        if isinstance(labels, int) and labels > 0:
            return labels, f"{type(model).__name__} with config.num_labels={labels}"
    return None


def _segmentation_reason(model: nn.Module) -> str | None:
    """Why the model's per-pixel maps are class scores: it comes from a semantic segmentation library."""
    module = type(model).__module__
    if module.startswith("segmentation_models_pytorch"):
        return f"segmentation_models_pytorch {type(model).__name__} (one map per class)"
    if module.startswith("torchvision.models.segmentation"):
        return f"torchvision segmentation model {type(model).__name__}"
    return None


def _feature_reason(model: nn.Module, weights: Any) -> str | None:
    """Why the model's outputs are features, or None."""
    if weights is not None:
        method = (weights.hyperparameters or {}).get("ssl_method")
        if method:
            return f"{weights.name} are self-supervised ({method}) weights: the outputs are features"
    n = getattr(model, "num_classes", None)
    if type(model).__module__.startswith("timm.") and n == 0:
        return "timm model built without a classifier (num_classes=0): the outputs are features"
    if weights is not None and weights.num_classes is None and _classifier_size(model) is None:
        return f"{weights.name} state no classes and the model has no classifier: the outputs are features"
    return None


def classes_from_config(model: nn.Module) -> list[str] | None:
    """Class names a Hugging Face classifier states in ``config.id2label``, in order."""
    if not type(model).__name__.endswith("ForImageClassification"):
        return None
    labels = getattr(getattr(model, "config", None), "id2label", None)
    if not isinstance(labels, Mapping) or not labels:
        return None
    try:
        ordered = sorted((int(k), str(v)) for k, v in labels.items())
    except (TypeError, ValueError):
        return None
    if [k for k, _ in ordered] != list(range(len(ordered))) or all(v.startswith("LABEL_") for _, v in ordered):
        return None  # the config's placeholder names, not classes
    return [v for _, v in ordered]


# ------------------------------------------------------------------------------------------- untrained heads


def feature_module(model: nn.Module, weights: Any) -> tuple[nn.Module, str | None]:
    """The model without its classifier head when ``weights`` do not cover that head, with the reason.

    TorchGeo builds timm and torchvision models with their default 1000-way head for self-supervised and
    backbone-only weights (MoCo, SatlasPretrain...), whose state dicts have no head: those scores are random.
    The network described is then a shallow copy whose last linear layer is ``nn.Identity``: the pooled
    backbone features. It shares the model's tensors; the model itself is not changed.
    """
    if weights is None or _weights_cover_head(weights):
        return model, None
    if _classifier_size(model) is None:
        return model, None
    path = _last_linear_path(model)
    if path is None:
        return model, None
    head = model.get_submodule(path)
    if not isinstance(head, nn.Linear) or head.out_features != DEFAULT_HEAD_CLASSES:
        return model, None  # a head sized by the user (fine-tuned on their classes) is theirs, not the builder's
    stripped = _replaced(model, path.split("."))
    if isinstance(getattr(stripped, "num_classes", None), int):
        vars(stripped)["num_classes"] = 0  # the copy's own attribute; the model keeps its value
    return stripped, (
        f"The {head.out_features}-class head '{path}' of {type(model).__name__} is not part of {weights.name} "
        "(untrained), so the Item describes the backbone's pooled features and the weights file leaves it out"
    )


def _weights_cover_head(weights: Any) -> bool:
    meta = getattr(getattr(weights, "member", None), "meta", None) or {}
    return weights.num_classes is not None or bool(meta.get("categories")) or bool(meta.get("num_classes"))


def _last_linear_path(model: nn.Module) -> str | None:
    return _last_layer_path(model, (nn.Linear,))


def _last_layer_path(model: nn.Module, kinds: tuple[type[nn.Module], ...]) -> str | None:
    last = None
    for name, m in model.named_modules():
        if isinstance(m, kinds) and name:
            last = name
    return last


def _replaced(module: nn.Module, parts: list[str]) -> nn.Module:
    """A shallow copy of ``module`` with the submodule at ``parts`` replaced by ``nn.Identity``."""
    clone = copy.copy(module)
    clone.__dict__ = dict(module.__dict__)
    clone._modules = dict(module._modules)
    first = parts[0]
    child = module._modules[first]
    assert child is not None  # noqa: S101 - the path came from named_modules
    clone._modules[first] = nn.Identity() if len(parts) == 1 else _replaced(child, parts[1:])
    return clone


def _out_channels(layer: nn.Module) -> int | None:
    return layer.out_channels if isinstance(layer, nn.Conv2d | nn.Conv3d) else None


def _has_parameters(m: Any) -> bool:
    return isinstance(m, nn.Module) and any(True for _ in m.parameters())
