"""Running a user's model without changing it: the one place that sets and puts back what a pass may change.

Eval mode for a block (every module's train/eval flag put back after), every buffer and module attribute put
back after real forward passes, and weights swapped for meta tensors for a block. The tracer, the exporters
and the TorchScript writer all use these, so a model leaves mlm-export exactly as it came.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode for the block, then every module's train/eval flag as it was, whatever happens.

    Flags are restored module by module: a model whose parts were in different modes (a frozen backbone in
    eval under a training head) gets each part's mode back, which ``model.train(was_training)`` would not do.
    """
    flags = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        yield model
    finally:
        for m, training in flags:
            m.training = training


@contextlib.contextmanager
def state_kept(model: nn.Module) -> Iterator[None]:
    """Put back what real forward passes change: every buffer's values (counters, caches, running stats) and
    every module attribute (set, replaced or deleted), whatever happens."""
    modules = list(model.modules())
    attrs = [dict(m.__dict__) for m in modules]
    tables = [dict(m._buffers) for m in modules]
    values = [
        (b, b.detach().clone())
        for m in modules
        for b in m._buffers.values()
        if isinstance(b, torch.Tensor) and b.device.type != "meta"
    ]
    try:
        yield
    finally:
        for m, d, buffers in zip(modules, attrs, tables, strict=True):
            m.__dict__.clear()
            m.__dict__.update(d)
            m._buffers.clear()
            m._buffers.update(buffers)
        with torch.no_grad():
            for b, saved in values:
                b.copy_(saved)


@contextlib.contextmanager
def on_meta(model: nn.Module) -> Iterator[None]:
    """Swap every parameter and buffer for a meta tensor of the same shape for the block, then put all back.

    Tied tensors map to one meta tensor and modules registered twice are swapped once. Attributes a forward
    pass sets (caches built from meta tensors) are put back too, so the model is exactly as it was.
    """
    modules = list(model.modules())
    saved_dicts = [m.__dict__.copy() for m in modules]
    saved: list[tuple[dict[str, Any], str, Any]] = []
    memo: dict[int, torch.Tensor] = {}
    try:
        for m in modules:
            tables: tuple[dict[str, Any], ...] = (m._parameters, m._buffers)
            for table in tables:
                for name, t in table.items():
                    if t is None:
                        continue
                    saved.append((table, name, t))
                    if id(t) not in memo:
                        memo[id(t)] = _meta_like(t)
                    table[name] = memo[id(t)]
        yield
    finally:
        for table, name, t in reversed(saved):
            table[name] = t
        for m, d in zip(modules, saved_dicts, strict=True):
            # by identity: == on attributes would compare tensors (and fail on meta ones)
            if m.__dict__.keys() != d.keys() or any(v is not d[k] for k, v in m.__dict__.items()):
                m.__dict__.clear()
                m.__dict__.update(d)


def _meta_like(t: torch.Tensor) -> torch.Tensor:
    meta = torch.empty_like(t, device="meta")
    return nn.Parameter(meta, requires_grad=t.requires_grad) if isinstance(t, nn.Parameter) else meta
