"""A dummy batch from what the objects state, for exports without ``example_input=``.

Each fact comes from an object that states it, and the batch records where each came from:

- the whole batch: a LightningModule's ``example_input_array``;
- input channels: the model's first convolution, a task's ``in_channels``, timm's or a Hugging Face config,
  the datamodule's bands;
- height and width: the datamodule's ``patch_size``, its dataset's documented image size, timm's
  ``pretrained_cfg["input_size"]``, a Hugging Face config's ``image_size``, the crop size of the torchvision
  weights built for the model's class, or a size the model is built for (ViT ``image_size``);
- frames of a video model (first layer a ``Conv3d``): the clip length torchvision's weights document.

When a fact is missing the error names it and how to state it.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .._facts import DataFacts
from ..errors import InputRequiredError
from .layers import first_layer

#: Batch size of a built example: 2, so that the batch dim is never confused with a squeezed dim.
BATCH = 2
#: The one image size used when nothing states one (a weights enum without a crop size, a checkpoint without
#: ``img_size``): ImageNet's, which most published backbones are built for. A model that then runs only at this
#: size is reported by the size probe's warning; any-size models are described with -1 whatever it is.
DEFAULT_IMAGE_SIZE = 224

#: Image sizes documented by TorchGeo datasets (their docs' "image size"/"patch size"), by class name.
DATASET_IMAGE_SIZES: dict[str, int] = {
    "EuroSAT": 64,
    "EuroSAT100": 64,
    "EuroSATSpatial": 64,
    "LandCoverAI": 512,
    "LandCoverAI100": 512,
    "UCMerced": 256,
    "RESISC45": 256,
    "PatternNet": 256,
    "So2Sat": 32,
    "BigEarthNet": 120,
    "ETCI2021": 256,
    "LoveDA": 1024,
    "FireRisk": 320,
    "SSL4EOS12": 264,
}


@dataclass(frozen=True)
class StatedExample:
    """A batch built from stated facts, and a sentence saying where each fact came from."""

    value: Any
    source: str


def stated_example(given: Any, model: nn.Module, data: DataFacts, datamodule: Any = None) -> StatedExample:
    """One batch for ``model`` (the inference network of ``given``) from what the objects state.

    Raises:
        InputRequiredError: naming each missing fact and how to state it.
    """
    array = getattr(given, "example_input_array", None)
    if array is not None:
        return StatedExample(array, f"{type(given).__name__}.example_input_array")
    channels, c_from = _channels(given, model, data)
    size, s_from = _size(model, data, datamodule)
    frames, f_from = _frames(model) if _is_video(model) else (None, "")
    missing = []
    if channels is None:
        missing.append(
            "the number of input channels (no convolution, in_channels hyperparameter, model config or datamodule "
            "bands states it)"
        )
    if size is None:
        missing.append(
            "the input's height and width (no datamodule patch_size, documented dataset image size, timm/Hugging "
            "Face config, torchvision weights or model image_size states it)"
        )
    if _is_video(model) and frames is None:
        missing.append("the number of frames of the video input")
    if missing:
        raise InputRequiredError(missing)
    dtype, device = _float_dtype_device(model)
    assert channels is not None and size is not None  # noqa: S101 - narrowed by the checks above
    if frames is not None:  # torchvision video models: [batch, channel, time, height, width]
        shape: tuple[int, ...] = (BATCH, channels, frames, size[0], size[1])
        why = f"{c_from}, {f_from}, {s_from}"
    else:
        shape = (BATCH, channels, size[0], size[1])
        why = f"{c_from}, {s_from}"
    return StatedExample(torch.zeros(shape, dtype=dtype, device=device), f"zeros {list(shape)}: {why}")


# ------------------------------------------------------------------------------------------------ channels


def _channels(given: Any, model: nn.Module, data: DataFacts) -> tuple[int | None, str]:
    first = first_layer(model)
    if first is not None:
        return first.in_channels, f"{first.in_channels} channels from the first layer ({type(first).__name__})"
    hparams = getattr(given, "hparams", None)
    if isinstance(hparams, Mapping) and _positive(hparams.get("in_channels")):
        return hparams["in_channels"], f"{hparams['in_channels']} channels from hparams['in_channels']"
    cfg = _timm_cfg(model)
    if cfg and isinstance(cfg.get("input_size"), tuple | list) and len(cfg["input_size"]) == 3:
        return int(cfg["input_size"][0]), "channels from timm pretrained_cfg['input_size']"
    hf = _hf_config(model)
    if hf is not None and _positive(getattr(hf, "num_channels", None)):
        return hf.num_channels, f"{hf.num_channels} channels from config.num_channels"
    if data.bands:
        where = data.sources.get("bands", "the bands")
        return len(data.bands), f"{len(data.bands)} channels from {where}"
    return None, ""


def _is_video(model: nn.Module) -> bool:
    return isinstance(first_layer(model), nn.Conv3d)


# ------------------------------------------------------------------------------------------------ size


def _size(model: nn.Module, data: DataFacts, datamodule: Any) -> tuple[tuple[int, int] | None, str]:
    if data.patch_size:
        where = data.sources.get("patch_size", "the datamodule's patch size")
        return data.patch_size, f"{data.patch_size[0]}x{data.patch_size[1]} px from {where}"
    dataset = getattr(datamodule, "dataset_class", None) if datamodule is not None else None
    name = getattr(dataset, "__name__", None)
    if name in DATASET_IMAGE_SIZES:
        s = DATASET_IMAGE_SIZES[name]
        return (s, s), f"{s}x{s} px, {name}'s documented image size"
    cfg = _timm_cfg(model)
    if cfg and isinstance(cfg.get("input_size"), tuple | list) and len(cfg["input_size"]) == 3:
        h, w = int(cfg["input_size"][1]), int(cfg["input_size"][2])
        return (h, w), f"{h}x{w} px from timm pretrained_cfg['input_size']"
    hf = _hf_config(model)
    if hf is not None and _positive(_first(getattr(hf, "image_size", None))):
        s = _first(hf.image_size)
        return (s, s), f"{s}x{s} px from config.image_size"
    found = _torchvision_crop(model)
    if found is not None:
        (h, w), where = found
        return (h, w), f"{h}x{w} px, the crop size of {where}"
    fixed = fixed_image_size(model)
    if fixed is not None:
        return (fixed, fixed), f"{fixed}x{fixed} px, the image size the model is built for"
    return None, ""


def _timm_cfg(model: nn.Module) -> Mapping[str, Any] | None:
    for m in (model, getattr(model, "model", None), getattr(model, "backbone", None)):
        cfg = getattr(m, "pretrained_cfg", None) or getattr(m, "default_cfg", None)
        if isinstance(cfg, Mapping) and type(m).__module__.startswith("timm."):
            return cfg
    return None


def _hf_config(model: nn.Module) -> Any:
    """A Hugging Face model's config (duck-typed: ``config.model_type``), without importing transformers."""
    cfg = getattr(model, "config", None)
    return cfg if isinstance(getattr(cfg, "model_type", None), str) else None


def fixed_image_size(model: nn.Module) -> int | None:
    """The image size a model is built for (timm ViTs: ``patch_embed.img_size``; torchvision ViT ``image_size``)."""
    embed = getattr(model, "patch_embed", None)
    size = getattr(embed, "img_size", None) or getattr(model, "img_size", None) or getattr(model, "image_size", None)
    size = _first(size)
    return size if _positive(size) else None


def torchvision_weights(model: nn.Module) -> Any:
    """The default weights of the torchvision builder that makes ``model``'s architecture, or None.

    Builders are matched by their return type, then (when several build the class) by the parameter count of
    everything but the last linear layer, which is what ``num_classes`` changes.
    """
    matches = _family_weights(model)
    if len(matches) > 1:
        own = _params_without_head(model)
        matches = [w for w in matches if own is not None and _weights_params_without_head(w, model) == own]
    return matches[0] if len(matches) == 1 else None


def _family_weights(model: nn.Module) -> list[Any]:
    """The default weights of every torchvision builder whose return type is ``model``'s class."""
    if not type(model).__module__.startswith("torchvision.models"):
        return []
    import inspect

    import torchvision.models as tvm

    found = []
    for module in (tvm, tvm.video):
        for name in tvm.list_models(module=module):
            with contextlib.suppress(Exception):
                if inspect.signature(tvm.get_model_builder(name)).return_annotation is type(model):
                    found.append(tvm.get_model_weights(name).DEFAULT)
    return found


def _torchvision_crop(model: nn.Module) -> tuple[tuple[int, int], str] | None:
    weights = torchvision_weights(model)
    if weights is not None and _crop(weights):
        crop = _crop(weights)
        assert crop is not None  # noqa: S101 - checked above
        return (crop[0], crop[-1]), f"torchvision's {type(weights).__name__}.{weights.name}"
    crops = {_crop(w) for w in _family_weights(model)}  # not matched, but every builder of the class agrees
    if len(crops) == 1 and (crop := crops.pop()):
        return (crop[0], crop[-1]), f"every torchvision {type(model).__name__} builder's weights"
    return None


def _crop(weights: Any) -> tuple[int, ...] | None:
    crop = getattr(weights.transforms(), "crop_size", None)
    return tuple(int(c) for c in crop) if isinstance(crop, list | tuple) and crop else None


def _last_linear(model: nn.Module) -> nn.Linear | None:
    last = None
    for m in model.modules():
        if isinstance(m, nn.Linear):
            last = m
    return last


def _params_without_head(model: nn.Module) -> int | None:
    head = _last_linear(model)
    if head is None:
        return None
    total = sum(p.numel() for p in model.parameters())
    return total - sum(p.numel() for p in head.parameters())


def _weights_params_without_head(weights: Any, model: nn.Module) -> int | None:
    head = _last_linear(model)
    meta = getattr(weights, "meta", {})
    n_params, categories = meta.get("num_params"), meta.get("categories")
    if head is None or not isinstance(n_params, int) or not categories:
        return None
    k = len(categories)
    return n_params - head.in_features * k - (k if head.bias is not None else 0)


# ------------------------------------------------------------------------------------------------ frames


def _frames(model: nn.Module) -> tuple[int | None, str]:
    weights = torchvision_weights(model)
    docs = str(getattr(weights, "meta", {}).get("_docs", "")) if weights is not None else ""
    found = re.search(r"clip_len=(\d+)", docs)
    if found:
        return int(found.group(1)), f"{found.group(1)} frames, the clip length {type(weights).__name__} documents"
    return None, ""


# ------------------------------------------------------------------------------------------------ helpers


def _float_dtype_device(model: nn.Module) -> tuple[torch.dtype, torch.device]:
    for p in model.parameters():
        if p.dtype.is_floating_point:
            return p.dtype, p.device if p.device.type != "meta" else torch.device("cpu")
    return torch.float32, torch.device("cpu")


def _first(v: Any) -> Any:
    return v[0] if isinstance(v, tuple | list) and v else v


def _positive(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v > 0
