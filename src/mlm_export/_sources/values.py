"""Turn the shapes people use for bands, classes, colors and normalization into facts."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import torch
from pydantic import ValidationError

from .. import mlm
from .._facts import BandFacts
from ..errors import InvalidOptionError
from ..mlm import SCALING_TYPES, ClassObject, ValueScaling, is_scaling_type


def coerce_bands(value: Any, *, what: str = "bands") -> tuple[BandFacts, ...]:
    """Bands from a list of names, dicts (``name``, ``common_name``, ``center_wavelength``) or BandFacts."""
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise InvalidOptionError(f"{what} must be a list of band names or band dicts, not {type(value).__name__}")
    bands = []
    for b in value:
        if isinstance(b, BandFacts):
            bands.append(b)
        elif isinstance(b, str) and b:
            bands.append(BandFacts(name=b))
        elif isinstance(b, Mapping) and b.get("name"):
            bands.append(
                BandFacts(
                    name=str(b["name"]),
                    common_name=b.get("common_name") or b.get(mlm.EO_COMMON_NAME),
                    center_wavelength=b.get("center_wavelength") or b.get(mlm.EO_CENTER_WAVELENGTH),
                    description=b.get("description"),
                )
            )
        else:
            raise InvalidOptionError(f"{what}: each band must be a non-empty name or a dict with 'name', got {b!r}")
    names = [b.name for b in bands]
    if len(set(names)) != len(names):
        raise InvalidOptionError(f"{what}: band names must be unique, got {names}")
    return tuple(bands)


def coerce_classes(value: Any, colors: Any = None, *, what: str = "classes") -> tuple[ClassObject, ...]:
    """Classes from a list of names (value = index), a {value: name} mapping, dicts or ClassObject."""
    if isinstance(value, Mapping):
        items: list[tuple[int, Any]] = [(int(k), v) for k, v in value.items()]
    elif isinstance(value, Iterable) and not isinstance(value, str):
        items = list(enumerate(value))
    else:
        raise InvalidOptionError(f"{what} must be a list of class names or a {{value: name}} dict")
    classes = []
    for index, c in items:
        if isinstance(c, ClassObject):
            classes.append(c)
        elif isinstance(c, Mapping):
            classes.append(
                ClassObject(
                    value=int(c.get("value", index)),
                    name=str(c["name"]),
                    description=c.get("description"),
                    color_hint=color_hex(c.get("color_hint") or c.get("color")),
                )
            )
        else:
            classes.append(ClassObject(value=index, name=str(c)))
    if colors is not None:
        classes = [_with_color(c, colors) for c in classes]
    return tuple(classes)


def _with_color(c: ClassObject, colors: Any) -> ClassObject:
    if c.color_hint is not None:
        return c
    color = None
    if isinstance(colors, Mapping):
        color = colors.get(c.value, colors.get(c.name))
    elif isinstance(colors, Sequence) and 0 <= c.value < len(colors):
        color = colors[c.value]
    hexed = color_hex(color)
    return ClassObject(c.value, c.name, c.description, hexed) if hexed else c


def color_hex(color: Any) -> str | None:
    """'RRGGBB' from '#rrggbb', an (r, g, b[, a]) tuple of 0-255 ints or 0-1 floats, or None."""
    if color is None:
        return None
    if isinstance(color, str):
        h = color.lstrip("#")
        if len(h) in (6, 8) and all(ch in "0123456789abcdefABCDEF" for ch in h):
            return h[:6].upper()
        return None
    if isinstance(color, torch.Tensor):
        color = color.tolist()
    if isinstance(color, Sequence) and len(color) >= 3:
        rgb = list(color[:3])
        if all(isinstance(v, float) for v in rgb) and all(0.0 <= v <= 1.0 for v in rgb):
            rgb = [round(v * 255) for v in rgb]
        if all(0 <= int(v) <= 255 for v in rgb):
            return "".join(f"{int(v):02X}" for v in rgb)
    return None


def normalizer_params(obj: Any) -> tuple[list[float], list[float]] | None:
    """(mean, std) of a Normalize-like transform: torchvision v1/v2, kornia, TerraTorch (``means``/``stds``), or
    any object with mean/std. A transform that undoes a normalization (``denormalize``) is none."""
    if getattr(obj, "denormalize", False) is True:
        return None
    flags = getattr(obj, "flags", None)
    for holder in (obj, flags if isinstance(flags, Mapping) else None):
        if holder is None:
            continue
        mean, std = _attribute(holder, "mean", "means"), _attribute(holder, "std", "stds")
        if mean is not None and std is not None and not callable(mean) and not callable(std):
            try:
                return _floats(mean), _floats(std)
            except (TypeError, ValueError):
                return None
    return None


def _attribute(holder: Any, *names: str) -> Any:
    """The first of ``names`` that ``holder`` (a mapping or an object) has, or None."""
    for name in names:
        value = holder.get(name) if isinstance(holder, Mapping) else getattr(holder, name, None)
        if value is not None:
            return value
    return None


def walk_transforms(obj: Any, depth: int = 0) -> Iterator[Any]:
    """A transform and, in order, the transforms it chains (Compose, Sequential, AugmentationSequential)."""
    if obj is None or depth > 8:
        return
    yield obj
    children: Any = getattr(obj, "transforms", None)
    if children is None and isinstance(obj, torch.nn.Module):
        children = list(obj.children())
    if isinstance(obj, Sequence) and not isinstance(obj, str):
        children = obj
    if isinstance(children, Sequence | torch.nn.ModuleList) and not isinstance(children, str):
        for c in children:
            yield from walk_transforms(c, depth + 1)


def _floats(v: Any) -> list[float]:
    if isinstance(v, torch.Tensor):
        return [float(x) for x in v.detach().flatten().tolist()]
    if isinstance(v, int | float):
        return [float(v)]
    return [float(x) for x in v]


def compose_zscores(steps: Sequence[tuple[list[float], list[float]]], bands: int | None) -> tuple[ValueScaling, ...]:
    """Fold successive (x - mean) / std steps into one z-score per band (or one for all bands)."""
    n = max([len(m) for m, _ in steps] + [len(s) for _, s in steps] + [1])
    if bands is not None and n not in (1, bands):
        raise InvalidOptionError(f"the normalization has {n} values per band but the input has {bands} bands")
    mean = [0.0] * n
    std = [1.0] * n
    for m, s in steps:
        m_b, s_b = _broadcast(m, n), _broadcast(s, n)
        mean = [mean[i] + m_b[i] * std[i] for i in range(n)]
        std = [std[i] * s_b[i] for i in range(n)]
    for x in (*mean, *std):
        if not math.isfinite(x):
            raise InvalidOptionError("the normalization has a non-finite mean or std")
    return tuple(ValueScaling(type="z-score", mean=mean[i], stddev=std[i]) for i in range(n))


def _broadcast(v: list[float], n: int) -> list[float]:
    if len(v) == n:
        return v
    if len(v) == 1:
        return v * n
    raise InvalidOptionError(f"normalization values {v} do not broadcast to {n} bands")


def coerce_scaling(value: Any) -> tuple[ValueScaling, ...]:
    """Value scaling from MLM dicts ({'type': 'z-score', 'mean': .., 'stddev': ..}), ValueScaling, or a Normalize."""
    params = normalizer_params(value)
    if params is not None:
        return compose_zscores([params], None)
    if isinstance(value, Mapping):
        value = [value]
    out = []
    for v in value:
        if isinstance(v, ValueScaling):
            out.append(v)
        elif isinstance(v, Mapping) and "type" in v:
            known = {"type", "mean", "stddev", "minimum", "maximum", "value"}
            extra = set(v) - known
            if extra:
                raise InvalidOptionError(f"value_scaling entry has unknown keys {sorted(extra)}: {dict(v)}")
            if not is_scaling_type(str(v["type"])):
                raise InvalidOptionError(f"value_scaling type {v['type']!r} is not one of {', '.join(SCALING_TYPES)}")
            try:
                out.append(ValueScaling(**{k: v[k] for k in known & set(v)}))
            except ValidationError as e:  # a parameter that is not a number
                why = "; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors())
                raise InvalidOptionError(
                    f"value_scaling entry {dict(v)} is not valid: {why}. Pass numbers for its parameters"
                ) from e
        else:
            raise InvalidOptionError(f"value_scaling entries must be dicts with a 'type', got {v!r}")
    return tuple(out)
