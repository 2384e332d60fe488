"""Running a user's model without changing it: passes run on a scoped copy, never on the live model.

The tracer, the exporters and the TorchScript writer run a copy of the module tree that shares the weights
(or stands meta tensors in for them) and has its own attribute tables and train flags, so a model leaves
mlm-export exactly as it came and another thread (the training loop, a logger) never sees it changed.
"""

from __future__ import annotations

import contextlib
import types
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode for the block, then every module's train/eval flag as it was, whatever happens.

    This flips the live model (another thread sees it in eval during the block); the export path uses
    :func:`eval_copy` instead, which changes nothing in the model.
    """
    flags = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        yield model
    finally:
        for m, training in flags:
            m.training = training


#: What every ``nn.Module`` keeps in its ``__dict__`` (tables of parameters, buffers, children, hooks): a copy
#: gets its own tables, so what a pass registers or sets on it stays on the copy.
_MODULE_TABLES = frozenset(k for k, v in nn.Module().__dict__.items() if isinstance(v, dict | set))


def scoped_copy(model: nn.Module, *, meta: bool = False, own_buffers: bool = False) -> nn.Module:
    """A copy of the module tree that shares the weights: new module objects with their own ``__dict__``,
    tables and train flags, so running, tracing or exporting the copy changes nothing another thread can see
    in ``model`` (no weight swapped in, no attribute set, no flag flipped), and an abandoned export never does.

    ``meta``: every parameter and buffer is a meta tensor of the same shape instead (tied tensors stay tied).
    ``own_buffers``: buffers are cloned, so a real forward pass that updates them (counters, caches, running
    stats) leaves the model's own untouched. Parameters are shared, never copied: no memory is doubled.
    """
    copies: dict[int, nn.Module] = {}
    tensors: dict[int, torch.Tensor] = {}

    def tensor(t: Any, buffer: bool) -> Any:
        if not isinstance(t, torch.Tensor):
            return t
        if id(t) not in tensors:
            if meta:
                tensors[id(t)] = _meta_like(t)
            elif buffer and own_buffers and t.device.type != "meta":
                tensors[id(t)] = t.detach().clone()
            else:
                tensors[id(t)] = t
        return tensors[id(t)]

    def value(v: Any) -> Any:
        if isinstance(v, nn.Module):
            return module(v)
        if isinstance(v, types.MethodType) and isinstance(v.__self__, nn.Module):
            return types.MethodType(v.__func__, module(v.__self__))  # a bound method stored as an attribute
        return v

    def module(m: nn.Module) -> nn.Module:
        if id(m) in copies:
            return copies[id(m)]
        cls = type(m)
        new = cls.__new__(cls)
        copies[id(m)] = new
        state = dict(m.__dict__)
        for name in _MODULE_TABLES & state.keys():
            table = state[name]
            if isinstance(table, dict):  # hooks bound to a module of the tree call the copy's (BYOL's projector hook)
                state[name] = type(table)((k, value(v)) for k, v in table.items())
            else:
                state[name] = table.copy()
        state["_parameters"] = {k: tensor(v, False) for k, v in m._parameters.items()}
        state["_buffers"] = {k: tensor(v, True) for k, v in m._buffers.items()}
        state["_modules"] = {k: None if v is None else module(v) for k, v in m._modules.items()}
        new.__dict__.update({k: v if k in _MODULE_TABLES else value(v) for k, v in state.items()})
        return new

    return module(model)


def eval_copy(model: nn.Module, *, meta: bool = False, own_buffers: bool = False) -> nn.Module:
    """:func:`scoped_copy` in eval mode: the model itself keeps each module's train/eval flag."""
    return scoped_copy(model, meta=meta, own_buffers=own_buffers).eval()


def _meta_like(t: torch.Tensor) -> torch.Tensor:
    meta = torch.empty_like(t, device="meta")
    return nn.Parameter(meta, requires_grad=t.requires_grad) if isinstance(t, nn.Parameter) else meta
