"""Tasks from what a training run holds: the targets of a batch, the module's loss, and its hyperparameters.

A target beside the output it trains is evidence as strong as a class count:

- an integer mask ``[B, H, W]`` (or ``[B, 1, H, W]``) whose values are below the output's channel count C, beside
  a ``[B, C, H, W]`` output: semantic segmentation with C classes (a 0/1 mask beside one channel: binary);
- integer labels ``[B]`` below K beside a ``[B, K]`` output: classification; ``[B, K]`` 0/1 targets: multi-label
  classification;
- a float target shaped like the output: regression (per pixel for maps); one shaped like the input as well is
  an image-to-image model (a denoiser) that MLM names no task for, so it is no evidence;
- the module's loss where it is an attribute (``nn.CrossEntropyLoss``, ``BCEWithLogitsLoss``, ``MSELoss``, a
  ``criterion``/``loss_fn``, the functions of ``torch.nn.functional``, segmentation_models_pytorch's losses);
- a ``task`` hyperparameter that names one.

Each is returned as an :class:`~.evidence.Evidence` whose reason the output's description states.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from .._facts import ModelFacts, TensorFacts
from ..mlm import Task
from .evidence import Evidence

#: Keys of a dict batch that hold the training target, best first (TorchGeo's and TerraTorch's first).
TARGET_KEYS = ("mask", "label", "labels", "target", "targets", "y", "masks", "gt", "ground_truth")
#: Values a mask may hold besides class indices: the ignore indices losses are usually given.
IGNORE_VALUES = (-100, -1, 255)
#: Attributes that hold a module's loss, best first.
LOSS_ATTRS = ("criterion", "loss_fn", "loss", "loss_func", "loss_function", "criterion_fn", "train_loss")

_CLASS_LOSSES = ("CrossEntropyLoss", "NLLLoss", "cross_entropy", "nll_loss")
_MULTI_LABEL_LOSSES = (
    "BCEWithLogitsLoss", "BCELoss", "MultiLabelSoftMarginLoss", "binary_cross_entropy_with_logits",
    "binary_cross_entropy", "multilabel_soft_margin_loss",
)  # fmt: skip
_REGRESSION_LOSSES = ("MSELoss", "L1Loss", "SmoothL1Loss", "HuberLoss", "mse_loss", "l1_loss", "smooth_l1_loss",
                      "huber_loss")  # fmt: skip
#: ``task`` hyperparameter values and what they name (maps then mean segmentation).
_TASK_WORDS: dict[str, Task] = {
    "classification": "classification", "multiclass": "classification", "multilabel": "classification",
    "multi-label": "classification", "binary": "classification", "segmentation": "semantic-segmentation",
    "semantic-segmentation": "semantic-segmentation", "semantic_segmentation": "semantic-segmentation",
    "regression": "regression",
}  # fmt: skip


def batch_target(batch: Any) -> tuple[str, torch.Tensor] | None:
    """The training target of one batch, with where it was found: a dict's mask/label, a tuple's second item."""
    if isinstance(batch, Mapping):
        for key in TARGET_KEYS:
            value = batch.get(key)
            if isinstance(value, torch.Tensor):
                return f"batch['{key}']", value
        return None
    pair = isinstance(batch, Sequence) and not isinstance(batch, str) and len(batch) >= 2
    if pair and isinstance(batch[0], torch.Tensor) and isinstance(batch[1], torch.Tensor):
        return "batch[1]", batch[1]
    return None


def run_evidence(module: nn.Module, facts: ModelFacts, target: tuple[str, torch.Tensor] | None) -> dict[str, Evidence]:
    """Tasks per output from the training targets, else the module's loss, else its ``task`` hyperparameter."""
    found: dict[str, Evidence] = {}
    first_input = facts.inputs[0].observed if facts.inputs else ()
    for out in facts.outputs:
        e = _from_target(out, target, first_input) if target is not None else None
        e = e or _from_loss(out, module, first_input) or _from_hparams(out, facts)
        if e is not None:
            found[out.name] = e
    return found


# ------------------------------------------------------------------------------------------- targets


def _from_target(out: TensorFacts, target: tuple[str, torch.Tensor], input_shape: tuple[int, ...]) -> Evidence | None:
    where, t = target
    if t.is_meta or t.dim() == 0 or not out.observed:
        return None
    shape, ts = out.observed, tuple(t.shape)
    dtype = str(t.dtype).removeprefix("torch.")
    whole = not (t.is_floating_point() or t.is_complex())
    values = _values(t)
    if values is None:
        return None
    lo, hi, binary = values
    source = "the training targets"
    if _is_map(out):
        c, hw = shape[1], shape[2:]
        if ts[1:] == hw or ts[1:] == (1, *hw):  # one class index per pixel
            dims = "[B, H, W]" if ts[1:] == hw else "[B, 1, H, W]"
            if whole and c >= 2 and _indices_below(t, c):
                return Evidence(
                    ("semantic-segmentation",),
                    f"{dtype} mask {dims}, values {lo}..{hi}{_ignored(t, c)}, beside a [B, {c}, H, W] output ({where})",
                    source=source,
                )
            if c == 1 and binary:
                return Evidence(
                    ("semantic-segmentation",), f"{dtype} 0/1 mask {dims} beside a [B, 1, H, W] output ({where})",
                    source=source,
                )  # fmt: skip
        if ts[1:] == shape[1:] and binary:
            return Evidence(
                ("semantic-segmentation",), f"{dtype} 0/1 masks [B, {c}, H, W] beside the output ({where})",
                source=source,
            )  # fmt: skip
        if not whole and (ts[1:] == shape[1:] or (c == 1 and ts[1:] == hw)):
            if input_shape[1:] == shape[1:]:
                return None  # shaped like the input too: an image-to-image model (a denoiser), no MLM task
            return Evidence(
                ("regression",), f"{dtype} target shaped like the [B, {c}, H, W] output, per pixel ({where})",
                source=source,
            )  # fmt: skip
        return None
    if len(shape) == 2 and out.roles[0] == "batch":
        k = shape[1]
        if len(ts) == 1 and whole and k >= 2 and _indices_below(t, k):
            return Evidence(
                ("classification",), f"{dtype} labels [B], values {lo}..{hi}, beside a [B, {k}] output ({where})",
                source=source,
            )  # fmt: skip
        if ts[1:] == (k,) and binary and k >= 2:
            return Evidence(
                ("classification",), f"{dtype} 0/1 targets [B, {k}] beside a [B, {k}] output: multi-label ({where})",
                source=source,
            )  # fmt: skip
        if k == 1 and binary and ts[1:] in ((), (1,)):
            return Evidence(("classification",), f"{dtype} 0/1 labels beside a [B, 1] output: binary ({where})",
                            source=source)  # fmt: skip
        if not whole and (ts[1:] == (k,) or (k == 1 and len(ts) == 1)):
            return Evidence(("regression",), f"{dtype} target shaped like the [B, {k}] output ({where})",
                            source=source)  # fmt: skip
        return None
    if len(shape) == 1 and len(ts) == 1:
        if binary:
            return Evidence(("classification",), f"{dtype} 0/1 labels [B] beside a [B] output ({where})",
                            source=source)  # fmt: skip
        if not whole:
            return Evidence(("regression",), f"{dtype} target [B] beside a [B] output ({where})", source=source)
    return None


def _is_map(out: TensorFacts) -> bool:
    return len(out.observed) == 4 and out.roles[0] == "batch" and out.roles[-2:] == ("height", "width")


def _values(t: torch.Tensor) -> tuple[str, str, bool] | None:
    """Lowest and highest value (as text) and whether every value is 0 or 1."""
    try:
        d = t.detach()
        if d.numel() == 0 or d.is_complex():
            return None
        d = d.to(torch.float64) if d.dtype == torch.bool else d
        lo, hi = d.min().item(), d.max().item()
        binary = bool(((d == 0) | (d == 1)).all().item())
    except (RuntimeError, TypeError):
        return None
    return _text(lo), _text(hi), binary


def _text(v: float | int | bool) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:.4g}"


def _indices_below(t: torch.Tensor, n: int) -> bool:
    d = t.detach()
    kept = d[~_ignore_mask(d, n)]
    return kept.numel() > 0 and bool(((kept >= 0) & (kept < n)).all().item())


def _ignore_mask(d: torch.Tensor, n: int) -> torch.Tensor:
    mask = torch.zeros_like(d, dtype=torch.bool)
    for v in IGNORE_VALUES:
        if not 0 <= v < n:
            mask |= d == v
    return mask


def _ignored(t: torch.Tensor, n: int) -> str:
    present = [v for v in IGNORE_VALUES if not 0 <= v < n and bool((t.detach() == v).any().item())]
    return f" and ignore value {present[0]}" if present else ""


# ------------------------------------------------------------------------------------------- loss and hparams


def _from_loss(out: TensorFacts, module: nn.Module, input_shape: tuple[int, ...]) -> Evidence | None:
    found = _loss_of(module)
    if found is None:
        return None
    attr, loss = found
    kind = _loss_name(loss)
    if kind is None:
        return None
    what = f"self.{attr} is {kind}"
    source = "the module's loss"
    if type(loss).__module__.startswith("segmentation_models_pytorch") and _is_map(out):
        return Evidence(("semantic-segmentation",), f"{what} (segmentation_models_pytorch)", source=source)
    shape = out.observed
    if kind.rsplit(".", 1)[-1] in _CLASS_LOSSES:
        if _is_map(out) and shape[1] >= 2:
            return Evidence(("semantic-segmentation",), f"{what}, beside a [B, {shape[1]}, H, W] output", source=source)
        if len(shape) == 2 and out.roles[0] == "batch" and shape[1] >= 2:
            return Evidence(("classification",), f"{what}, beside a [B, {shape[1]}] output", source=source)
    if kind.rsplit(".", 1)[-1] in _MULTI_LABEL_LOSSES:
        if _is_map(out):
            return Evidence(("semantic-segmentation",), f"{what}, beside a [B, {shape[1]}, H, W] output: masks",
                            source=source)  # fmt: skip
        if len(shape) == 2 and out.roles[0] == "batch":
            return Evidence(("classification",), f"{what}, beside a [B, {shape[1]}] output: multi-label",
                            source=source)  # fmt: skip
    if kind.rsplit(".", 1)[-1] in _REGRESSION_LOSSES and out.dtype.startswith(("float", "bfloat")):
        if _is_map(out) and input_shape[1:] == shape[1:]:
            return None  # image in, image out: a denoiser or autoencoder, which MLM names no task for
        return Evidence(("regression",), f"{what}", source=source)
    return None


def _loss_of(module: nn.Module) -> tuple[str, Any] | None:
    """The module's loss: an attribute of a known name, else its one loss submodule."""
    attrs = vars(module)
    children = attrs.get("_modules", {})
    for name in LOSS_ATTRS:
        value = children.get(name, attrs.get(name))
        if value is not None and _loss_name(value) is not None:
            return name, value
    losses = [(n, m) for n, m in children.items() if isinstance(m, nn.modules.loss._Loss)]
    return losses[0] if len(losses) == 1 else None


def _loss_name(loss: Any) -> str | None:
    """``nn.CrossEntropyLoss``, ``F.cross_entropy``, or a segmentation_models_pytorch loss's class name."""
    if isinstance(loss, nn.modules.loss._Loss):
        cls = type(loss)
        if cls.__module__.startswith("torch.nn"):
            return f"nn.{cls.__name__}"
        if cls.__module__.startswith("segmentation_models_pytorch"):
            return cls.__name__
        for base in cls.__mro__[1:]:  # a subclass of a torch loss
            if base.__module__.startswith("torch.nn") and base.__name__ in (
                *_CLASS_LOSSES,
                *_MULTI_LABEL_LOSSES,
                *_REGRESSION_LOSSES,
            ):
                return f"nn.{base.__name__}"
        return None
    if callable(loss) and getattr(loss, "__module__", "") == "torch.nn.functional":
        name = getattr(loss, "__name__", "")
        if name in (*_CLASS_LOSSES, *_MULTI_LABEL_LOSSES, *_REGRESSION_LOSSES):
            return f"F.{name}"
    return None


def _from_hparams(out: TensorFacts, facts: ModelFacts) -> Evidence | None:
    """A ``task`` hyperparameter that names one, else ``num_classes`` equal to the output's class dim."""
    source = "the hyperparameters"
    word = (facts.hyperparameters or {}).get("task")
    task = _TASK_WORDS.get(word.lower()) if isinstance(word, str) else None
    n = facts.num_classes
    if task is None and n is not None and n >= 2:
        if _is_map(out) and out.observed[1] == n:
            return Evidence(
                ("semantic-segmentation",), f"num_classes={n} beside a [B, {n}, H, W] output", source=source
            )
        if len(out.observed) == 2 and out.roles[0] == "batch" and out.observed[1] == n:
            return Evidence(("classification",), f"num_classes={n} beside a [B, {n}] output", source=source)
    if task is None:
        return None
    if task in ("classification", "semantic-segmentation"):
        if _is_map(out):
            return Evidence(("semantic-segmentation",), f"task={word!r} beside a per-pixel output", source=source)
        if len(out.observed) == 2 and out.roles[0] == "batch":
            return Evidence(("classification",), f"task={word!r} beside a [B, K] output", source=source)
        return None
    return Evidence(("regression",), f"task={word!r}", source=source)
