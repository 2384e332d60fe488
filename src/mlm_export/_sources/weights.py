"""Facts from a pretrained-weights enum (TorchGeo, torchvision): bands, normalization, input size, provenance.

Only ``.meta`` and ``.transforms`` are read; nothing is downloaded. :func:`build_model` builds the
architecture a weights member needs (its channels and classes) with the builder TorchGeo registers, handing it
a stand-in for the member whose state dict is empty.
"""

from __future__ import annotations

import contextlib
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from .._facts import BandFacts, DataFacts
from ..errors import InvalidOptionError, MLMExportError, option
from ..mlm import ResizeType
from .dummy import DEFAULT_IMAGE_SIZE  # noqa: F401 - the one default image size, re-exported
from .layers import first_layer_channels as first_layer_channels
from .values import compose_zscores, normalizer_params, walk_transforms

# name -> (eo:common_name, center wavelength in micrometres), per sensor. Sources: ESA Sentinel-2 and USGS
# Landsat band designations.
SENTINEL2 = {
    "B1": ("coastal", 0.443), "B2": ("blue", 0.49), "B3": ("green", 0.56), "B4": ("red", 0.665),
    "B5": ("rededge071", 0.704), "B6": ("rededge075", 0.74), "B7": ("rededge078", 0.783), "B8": ("nir", 0.842),
    "B8A": ("nir08", 0.865), "B9": ("nir09", 0.945), "B10": ("cirrus", 1.375), "B11": ("swir16", 1.61),
    "B12": ("swir22", 2.19),
}  # fmt: skip
LANDSAT_OLI = {
    "B1": ("coastal", 0.443), "B2": ("blue", 0.482), "B3": ("green", 0.561), "B4": ("red", 0.655),
    "B5": ("nir08", 0.865), "B6": ("swir16", 1.609), "B7": ("swir22", 2.201), "B8": ("pan", 0.59),
    "B9": ("cirrus", 1.373), "B10": ("lwir11", 10.9), "B11": ("lwir12", 12.0),
}  # fmt: skip
LANDSAT_TM = {
    "B1": ("blue", 0.485), "B2": ("green", 0.56), "B3": ("red", 0.66), "B4": ("nir08", 0.83),
    "B5": ("swir16", 1.65), "B6": ("lwir", 11.45), "B7": ("swir22", 2.215),
}  # fmt: skip
LANDSAT_ETM = {**LANDSAT_TM, "B8": ("pan", 0.71)}
NAIP = {"R": ("red", 0.635), "G": ("green", 0.555), "B": ("blue", 0.465), "NIR": ("nir", 0.82)}
RGB = {"R": ("red", None), "G": ("green", None), "B": ("blue", None), "RED": ("red", None),
       "GREEN": ("green", None), "BLUE": ("blue", None)}  # fmt: skip
#: Enum member name prefixes -> band table.
SENSORS = (
    ("SENTINEL2", SENTINEL2),
    ("LANDSAT_OLI", LANDSAT_OLI),
    ("LANDSAT_ETM", LANDSAT_ETM),
    ("LANDSAT_TM", LANDSAT_TM),
    ("NAIP", NAIP),
)


@dataclass(frozen=True)
class WeightsFacts:
    """What a weights member says about the model and its input."""

    name: str
    data: DataFacts
    member: Any = field(default=None, repr=False, compare=False)
    in_channels: int | None = None
    num_classes: int | None = None
    image_size: int | None = None
    resize_type: ResizeType | None = None
    url: str | None = None
    license: str | None = None
    dataset: str | None = None
    publication: str | None = None
    repo: str | None = None
    hyperparameters: dict[str, Any] = field(default_factory=dict)


def resolve(weights: Any) -> Any:
    """A weights enum member from itself or its name (``"ResNet50_Weights.SENTINEL2_ALL_MOCO"``)."""
    if isinstance(weights, str):
        try:
            from torchgeo.models import get_weight
        except ImportError as e:
            raise InvalidOptionError(
                f"{option('weights')} names a TorchGeo weights enum: pip install 'mlm-export[torchgeo]'"
            ) from e
        try:
            return get_weight(weights)
        except (KeyError, ValueError, AttributeError) as e:
            raise InvalidOptionError(
                f"{option('weights', repr(weights), str(weights))} is not a TorchGeo weights enum member ({e})"
            ) from e
    if not hasattr(weights, "meta") or not hasattr(weights, "transforms"):
        raise InvalidOptionError(
            f"{option('weights')} must be a weights enum member (with .meta and .transforms), not {weights!r}"
        )
    return weights


def weights_facts(weights: Any) -> WeightsFacts:
    """Bands, per-band normalization, input size and provenance of a weights member, offline."""
    weights = resolve(weights)
    meta: Mapping[str, Any] = weights.meta
    name = f"{type(weights).__name__}.{weights.name}"
    transforms = getattr(weights, "transforms", None)
    steps = [p for p in (normalizer_params(t) for t in walk_transforms(transforms)) if p is not None]
    scaling = compose_zscores(steps, None) if steps else None
    size, resize = _size_and_resize(transforms)
    bands = _bands(weights.name, meta.get("bands"))
    in_ch = meta.get("in_chans")
    if scaling and bands and len(scaling) not in (1, len(bands)):
        scaling = None  # normalization over another channel layout than the bands: not per band, not stated
    sources = {"bands": f"{name}.meta['bands']", "value_scaling": f"{name}.transforms"}
    hparams = {k: meta[k] for k in ("ssl_method", "encoder", "architecture") if isinstance(meta.get(k), str)}
    return WeightsFacts(
        name=name,
        data=DataFacts(bands=bands, value_scaling=scaling, sources=sources),
        member=weights,
        in_channels=in_ch if isinstance(in_ch, int) else (len(bands) if bands else None),
        num_classes=meta.get("num_classes") if isinstance(meta.get("num_classes"), int) else None,
        image_size=size or _int(meta.get("img_size")) or _int(meta.get("image_size")),
        resize_type=resize,
        url=getattr(weights, "url", None),
        license=meta.get("license") if isinstance(meta.get("license"), str) else None,
        dataset=meta.get("dataset") if isinstance(meta.get("dataset"), str) else None,
        publication=meta.get("publication") if isinstance(meta.get("publication"), str) else None,
        repo=meta.get("repo") if isinstance(meta.get("repo"), str) else None,
        hyperparameters=hparams,
    )


def _bands(member: str, names: Any) -> tuple[BandFacts, ...] | None:
    if not isinstance(names, Sequence) or isinstance(names, str) or not names:
        return None
    names = [str(n) for n in names]
    table: Mapping[str, tuple[str, float | None]] = next((t for p, t in SENSORS if member.startswith(p)), RGB)
    if member.startswith("SENTINEL1"):
        table = {}
    out = []
    seen: dict[str, int] = {}
    for n in names:
        seen[n] = seen.get(n, 0) + 1
        unique = n if seen[n] == 1 else f"{n}_t{seen[n]}"  # a band repeated for a second date (stacked series)
        key = re.sub(r"^B0(\d)", r"B\1", n.upper())
        common, wavelength = table.get(key, (None, None))
        description = f"{n} polarization" if member.startswith("SENTINEL1") else None
        out.append(BandFacts(unique, common, wavelength, description))
    return tuple(out)


def _size_and_resize(transforms: Any) -> tuple[int | None, ResizeType | None]:
    size = None
    resize: ResizeType | None = None
    for t in walk_transforms(transforms):
        kind = type(t).__name__
        if kind in ("CenterCrop", "RandomCrop", "CenterCrop2d"):
            crop = getattr(t, "size", None)
            size = _int(crop[0] if isinstance(crop, list | tuple) else crop) or size
            resize = resize or "crop"
        elif kind in ("Resize", "Resize2d"):
            mode = str(getattr(t, "interpolation", "bilinear")).lower()
            nearest, cubic = "nearest" in mode, "cubic" in mode
            resize = "interpolation-nearest" if nearest else "interpolation-cubic" if cubic else "interpolation-linear"
    return size, resize


def _int(v: Any) -> int | None:
    if isinstance(v, list | tuple) and v:
        v = v[0]
    return v if isinstance(v, int) and not isinstance(v, bool) and v > 0 else None


# ------------------------------------------------------------------------------------------ building models


def builder_name(weights: Any) -> str:
    """The name TorchGeo registers the builder of this weights enum under."""
    from torchgeo.models import get_model_weights, list_models

    for name in list_models():
        with contextlib.suppress(Exception):
            if get_model_weights(name) is type(weights):
                return name
    raise MLMExportError(f"no TorchGeo model builder takes {type(weights).__name__}")


class _EmptyState(dict[str, Any]):
    """The state dict handed to builders instead of a download: empty, and empty again for any part of it."""

    def __missing__(self, key: str) -> _EmptyState:
        return _EmptyState()

    def pop(self, key: str, *default: Any) -> Any:
        return super().pop(key, *default) if key in self or default else _EmptyState()


class _StandIn:
    """A weights member for one builder call: everything as the member says, except its state dict.

    ``get_state_dict`` downloads nothing: it returns an empty state dict, and the modules of the model being
    built (the ``nn.Module`` locals of the builder frame that asks, and their submodules) get a load post-hook
    that accepts it, so that the builder's own ``load_state_dict`` and its checks of missing keys pass. Nothing
    outside this one call changes: no class attribute, no other thread's load, no other model.
    """

    def __init__(self, member: Any) -> None:
        self._member = member
        self._hooks: list[RemovableHandle] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._member, name)

    def __eq__(self, other: object) -> bool:
        return bool(self._member == (other._member if isinstance(other, _StandIn) else other))

    def __hash__(self) -> int:
        return hash(self._member)

    def __repr__(self) -> str:
        return repr(self._member)

    def get_state_dict(self, *args: Any, **kwargs: Any) -> _EmptyState:
        caller = sys._getframe(1).f_locals
        modules = {id(m): m for v in caller.values() if isinstance(v, nn.Module) for m in v.modules()}
        for m in modules.values():
            self._hooks.append(m.register_load_state_dict_post_hook(_accept_empty))  # type: ignore[no-untyped-call]
        return _EmptyState()

    def release(self) -> None:
        """Remove the hooks: the built model then loads state dicts as any other."""
        for hook in self._hooks:
            hook.remove()
        self._hooks.clear()


def _accept_empty(module: nn.Module, incompatible: Any) -> None:  # noqa: ARG001 - torch's hook signature
    """A load post-hook: nothing was missing or unexpected (the load's own lists, cleared in place)."""
    incompatible.missing_keys.clear()
    incompatible.unexpected_keys.clear()


#: Example inputs for builders whose forward takes more than one image tensor (documented choices).
RGB_WAVELENGTHS = [0.665, 0.56, 0.49]


def example_for(builder: str, facts: WeightsFacts) -> Any:
    """A batch for models that take something other than one image: time series, coordinates, wavelengths."""
    channels = facts.in_channels or 3
    if builder.startswith("dofa"):  # any bands, with their wavelengths in micrometres: traced with RGB
        return (torch.zeros(2, len(RGB_WAVELENGTHS), 224, 224), list(RGB_WAVELENGTHS))
    if builder.startswith("satclip"):  # a location encoder: (longitude, latitude) pairs
        return torch.zeros(2, 2)
    if builder.startswith("tessera"):  # pixel time series: [batch, time, bands]
        return torch.zeros(2, 16, channels)
    if builder.startswith("croma"):  # paired Sentinel-1 and Sentinel-2 images
        return {"x_sar": torch.zeros(2, 2, 120, 120), "x_optical": torch.zeros(2, 12, 120, 120)}
    if builder.startswith("panopticon"):  # any bands, each named by its wavelength (nm): traced with RGB
        return {"imgs": torch.zeros(2, 3, 224, 224), "chn_ids": torch.tensor([[665.0, 560.0, 490.0]] * 2)}
    if builder.startswith("presto"):  # 12 monthly steps of 17 channels, Dynamic World classes, coordinates
        return (torch.zeros(2, 12, 17), torch.zeros(2, 12, dtype=torch.long), torch.zeros(2, 2))
    if builder.startswith("copernicusfm"):  # RGB with wavelengths and bandwidths (nm), metadata unknown (NaN)
        return {
            "x": torch.zeros(2, 3, 224, 224),
            "metadata": torch.full((2, 4), float("nan")),
            "wavelengths": [665.0, 560.0, 490.0],
            "bandwidths": [30.0, 35.0, 65.0],
        }
    return None


def build_model(weights: Any, *, on_meta: bool = True) -> nn.Module:
    """The architecture a weights member loads into (its channels, classes, heads), with random weights.

    TorchGeo's builders shape the model from the weights, then load the downloaded state dict. The builder is
    called with a stand-in for the member (see :class:`_StandIn`) that hands out an empty state dict, so no file
    is fetched and nothing process-wide is patched.
    """
    from torchgeo.models import get_model

    weights = resolve(weights)
    name = builder_name(weights)
    device = torch.device("meta") if on_meta else contextlib.nullcontext()
    stand_in = _StandIn(weights)
    try:
        with device:
            model: nn.Module = get_model(name, weights=stand_in)
        return model
    except (AttributeError, KeyError, TypeError, AssertionError) as e:
        # the builder reshapes the downloaded tensors themselves (Panopticon): build the plain architecture,
        # and keep it only if it takes the channels the weights are for
        with device:
            model = get_model(name, weights=None)
        expected, got = weights.meta.get("in_chans"), first_layer_channels(model)
        if isinstance(expected, int) and got is not None and expected != got:
            raise MLMExportError(f"building {name} for {weights} needs its downloaded tensors ({e})") from e
        return model
    finally:
        stand_in.release()
