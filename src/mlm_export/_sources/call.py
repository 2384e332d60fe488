"""How the example input is passed to ``forward``: its tensors by name, and how to rebuild the call with others.

A tensor, a tuple (positional arguments), a list (one argument) or a dict (keywords when its keys are
``forward``'s parameters, else one argument); non-tensor values are kept as constant arguments.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .._facts import Structure
from ..errors import InvalidOptionError


@dataclass(frozen=True)
class CallSpec:
    """How the example input is passed to ``forward``: its tensors by name, and how to rebuild the call."""

    names: tuple[str, ...]
    tensors: tuple[torch.Tensor, ...]
    structure: Structure
    as_kwargs: bool = False
    #: Non-tensor arguments passed as they are (a list of wavelengths, a flag): (position or name, value).
    constants: tuple[tuple[int | str, Any], ...] = ()

    def call_args(self, tensors: Sequence[Any], *, constants: bool = True) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Positional and keyword arguments for ``forward`` with ``tensors`` in place of the example's.

        With ``constants=False`` the non-tensor arguments are None (the shape of ``dynamic_shapes``).
        """
        fixed = {k: (v if constants else _no_dims(v)) for k, v in self.constants}
        if self.structure == "tensor":
            return (tensors[0],), {}
        if self.structure == "mapping":
            mapping = dict(zip(self.names, tensors, strict=True))
            if self.as_kwargs:
                return (), {**mapping, **{str(k): v for k, v in fixed.items()}}
            return (mapping,), {}
        if self.as_kwargs:  # a tuple: positional arguments, constants at their positions
            args: list[Any] = list(tensors)
            for position in sorted(k for k in fixed if isinstance(k, int)):
                args.insert(position, fixed[position])
            return tuple(args), {}
        return (list(tensors),), {}  # a list: one argument


def _no_dims(value: Any) -> Any:
    """``dynamic_shapes`` for a constant argument: None, in the same structure (a list of wavelengths: Nones)."""
    if isinstance(value, list | tuple):
        return type(value)(_no_dims(v) for v in value)
    if isinstance(value, Mapping):
        return {k: _no_dims(v) for k, v in value.items()}
    return None


def call_spec(model: nn.Module, example_input: Any) -> CallSpec:
    """Describe how ``example_input`` is passed to ``model``: a tensor, a tuple (positional args), a list or a dict."""
    spec = _call_spec(model, example_input)
    for name, t in zip(spec.names, spec.tensors, strict=True):
        if t.ndim == 0:
            raise InvalidOptionError(
                f"example_input '{name}' is a 0-d tensor; every input tensor needs the batch as dim 0. Give it a "
                f"batch dim ({name}.reshape(1) for one value per sample), or pass a Python number in its place "
                "in a tuple or dict to keep it a constant argument."
            )
    return spec


def _call_spec(model: nn.Module, example_input: Any) -> CallSpec:
    params = forward_parameter_names(model)
    if isinstance(example_input, torch.Tensor):
        return CallSpec((params[0] if params else "input",), (example_input,), "tensor")
    if isinstance(example_input, Mapping):
        keys = tuple(str(k) for k in example_input)
        # A dict whose keys are all parameters of forward is passed as keywords; any other as one argument.
        as_kwargs = bool(params) and set(keys) <= set(params) and not _var_positional_only(model)
        items = list(zip(keys, example_input.values(), strict=True))
        if not as_kwargs:
            _check_tensors(keys, [v for _, v in items])
        tensors = [(k, v) for k, v in items if isinstance(v, torch.Tensor)]
        named_constants: tuple[tuple[int | str, Any], ...] = tuple(
            (k, v) for k, v in items if not isinstance(v, torch.Tensor)
        )
        _check_some(tensors)
        names, values = tuple(k for k, _ in tensors), tuple(v for _, v in tensors)
        return CallSpec(names, values, "mapping", as_kwargs, named_constants)
    if isinstance(example_input, tuple):
        named = [(params[i] if i < len(params) else f"input_{i}", v) for i, v in enumerate(example_input)]
        tensors = [(n, v) for n, v in named if isinstance(v, torch.Tensor)]
        constants: tuple[tuple[int | str, Any], ...] = tuple(
            (i, v) for i, v in enumerate(example_input) if not isinstance(v, torch.Tensor)
        )
        _check_some(tensors)
        return CallSpec(tuple(n for n, _ in tensors), tuple(v for _, v in tensors), "sequence", True, constants)
    if isinstance(example_input, list):
        names = tuple(f"input_{i}" for i in range(len(example_input)))
        _check_tensors(names, example_input)
        return CallSpec(names, tuple(example_input), "sequence", as_kwargs=False)
    raise InvalidOptionError(
        f"example_input must be a tensor, a tuple or list of tensors, or a dict of tensors, not "
        f"{type(example_input).__name__}"
    )


def forward_parameter_names(model: nn.Module) -> list[str]:
    try:
        sig = inspect.signature(model.forward)
    except (TypeError, ValueError):
        return []
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return [p.name for p in sig.parameters.values() if p.kind in kinds]


def _var_positional_only(model: nn.Module) -> bool:
    try:
        sig = inspect.signature(model.forward)
    except (TypeError, ValueError):
        return False
    return all(p.kind == inspect.Parameter.VAR_POSITIONAL for p in sig.parameters.values())


def _check_some(tensors: Sequence[Any]) -> None:
    if not tensors:
        raise InvalidOptionError("example_input holds no tensor; the batch (dim 0) of at least one input is needed")


def _check_tensors(names: Sequence[str], tensors: Sequence[Any]) -> None:
    for n, t in zip(names, tensors, strict=True):
        if not isinstance(t, torch.Tensor):
            raise InvalidOptionError(
                f"example_input '{n}' is a {type(t).__name__}; every input must be a tensor with the batch as dim 0"
            )


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")
