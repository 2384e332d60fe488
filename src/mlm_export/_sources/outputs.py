"""What a forward pass returned: names, shapes and dtypes of its tensors (tensor, sequence, mapping, list of
mappings), or an error saying which output is not a tensor."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .._facts import Structure
from ..errors import UnsupportedOutputError


@dataclass(frozen=True)
class Observed:
    structure: Structure
    #: name -> (shape, dtype); for list_of_mappings the shape is [len(list), *per-item shape] with -1 where
    #: items differ.
    tensors: dict[str, tuple[tuple[int, ...], torch.dtype]]


def observe_outputs(out: Any) -> Observed:
    """Names, shapes and dtypes of what a forward pass returned (tensor, sequence, mapping, list of mappings)."""
    if isinstance(out, torch.Tensor):
        return Observed("tensor", {"output": _shape_dtype(out)})
    if isinstance(out, Mapping):
        return Observed("mapping", dict(_flatten(out, "")))
    if isinstance(out, list | tuple) and out and all(isinstance(o, Mapping) for o in out):
        return Observed("list_of_mappings", _stack_items(out))
    if isinstance(out, list | tuple):
        names = getattr(out, "_fields", None)  # namedtuple
        prefix = "output" if names is None else ""
        items: dict[str, tuple[tuple[int, ...], torch.dtype]] = {}
        for i, o in enumerate(out):
            key = names[i] if names else f"{prefix}_{i}"
            items.update(_flatten(o, key))
        return Observed("sequence", items)
    raise UnsupportedOutputError(_unsupported(out, "output"))


def _flatten(value: Any, name: str) -> Iterator[tuple[str, tuple[tuple[int, ...], torch.dtype]]]:
    if isinstance(value, torch.Tensor):
        yield name, _shape_dtype(value)
    elif isinstance(value, Mapping):
        for k, v in value.items():
            yield from _flatten(v, f"{name}.{k}" if name else str(k))
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            yield from _flatten(v, f"{name}_{i}" if name else f"output_{i}")
    elif value is None:
        return
    else:
        raise UnsupportedOutputError(_unsupported(value, name))


def _stack_items(items: Sequence[Mapping[str, Any]]) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """Per-image dicts (detection): one entry per key, shape [images, *item shape], -1 where images differ."""
    merged: dict[str, tuple[tuple[int, ...], torch.dtype]] = {}
    for item in items:
        for name, (shape, dtype) in _flatten(item, ""):
            if name not in merged:
                merged[name] = (shape, dtype)
                continue
            prev, _ = merged[name]
            if len(prev) != len(shape):
                raise UnsupportedOutputError(f"output '{name}' changes rank between images ({prev} vs {shape})")
            merged[name] = (tuple(a if a == b else -1 for a, b in zip(prev, shape, strict=True)), dtype)
    return {k: ((len(items), *shape), dtype) for k, (shape, dtype) in merged.items()}


def _shape_dtype(t: torch.Tensor) -> tuple[tuple[int, ...], torch.dtype]:
    return tuple(int(s) for s in t.shape), t.dtype


def _unsupported(value: Any, name: str) -> str:
    return (
        f"output '{name or 'output'}' is a {type(value).__name__}; the model must return a tensor, a tuple/list "
        "or dict of tensors, or a list of dicts of tensors (one per image). Wrap the model so that forward "
        "returns one of these."
    )
