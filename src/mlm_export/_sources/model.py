"""Facts from the model itself: trace a dummy batch (on the meta device when possible) and count parameters.

The user's model is never modified: weights are swapped for meta tensors only for the duration of a call,
train/eval flags and RNG state are restored, and no gradient is recorded (see :mod:`mlm_export._model_state`).
How the example is passed is :mod:`.call`, the tracing :mod:`.trace`, what came out :mod:`.outputs`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import nn

from .._facts import ModelFacts, ParameterFacts, TensorFacts
from .._model_state import eval_copy
from ..errors import InvalidOptionError
from .call import CallSpec as CallSpec
from .call import call_spec as call_spec
from .call import dtype_name
from .layers import first_layer
from .outputs import Observed
from .outputs import observe_outputs as observe_outputs
from .trace import spatial_dims, spatial_sizes, trace


def count_parameters(model: nn.Module) -> ParameterFacts:
    """Count parameters (shared tensors once), trainable ones, buffers, and the bytes they take."""
    params = list(model.parameters())
    for p in params:
        if isinstance(p, nn.parameter.UninitializedParameter):
            raise InvalidOptionError(
                "the model has uninitialized lazy parameters; run one forward pass on real data before exporting"
            )
    buffers = list(model.buffers())
    return ParameterFacts(
        total=sum(_numel(p) for p in params),
        trainable=sum(_numel(p) for p in params if p.requires_grad),
        buffers=sum(b.numel() for b in buffers),
        memory_bytes=sum(t.numel() * t.element_size() for t in (*params, *buffers)),
    )


def _numel(p: torch.Tensor) -> int:
    """Elements of a parameter at full size: DeepSpeed ZeRO-3 keeps it in ``ds_numel`` (a DTensor's numel is
    already global)."""
    full = getattr(p, "ds_numel", None)
    return int(full) if isinstance(full, int) else p.numel()


def inspect_model(model: nn.Module, example_input: Any, *, use_meta: bool = True) -> ModelFacts:
    """Trace ``model`` on ``example_input`` and return its inputs, outputs, dynamic dims and parameter counts.

    The first trace runs on the meta device (no weights copied, no compute); a model that does data-dependent
    work there is traced again for real at batch size 1 on its own device. A second trace with larger spatial
    dims tells any-size (fully convolutional) models from fixed-size ones.
    """
    spec = call_spec(model, example_input)
    parameters = count_parameters(model)
    device = _model_device(model)
    # the passes run on an eval-mode copy (the model keeps its flags); the RNG state is put back after
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        traced_on, base, probe, batch = trace(eval_copy(model), spec, device, use_meta)
    inputs = _input_facts(spec, batch, probe is not None, _channels_first_5d(model))
    in_spatial = spatial_sizes(spec, None)
    outputs = _output_facts(base, probe, batch, in_spatial)
    hparams = hyperparameters_of(model)
    return ModelFacts(
        class_name=type(model).__name__,
        qualified_name=qualified_name(model),
        inputs=inputs,
        outputs=outputs,
        input_structure=spec.structure,
        output_structure=base.structure,
        parameters=parameters,
        device=device.type,
        traced_on=traced_on,
        num_classes=_num_classes(model, hparams),
        hyperparameters=hparams,
    )


def _channels_first_5d(model: nn.Module) -> int | None:
    """Input channels of a model whose first layer is a ``Conv3d`` (video: ``[batch, channel, time, H, W]``)."""
    layer = first_layer(model)
    return layer.in_channels if isinstance(layer, nn.Conv3d) else None


def _input_facts(
    spec: CallSpec, batch: int, any_size: bool, conv3d_channels: int | None = None
) -> tuple[TensorFacts, ...]:
    facts = []
    for name, t in zip(spec.names, spec.tensors, strict=True):
        roles: list[str | None] = [None] * t.ndim
        shape = list(t.shape)
        if t.ndim:
            roles[0], shape[0] = "batch", -1
        if t.ndim == 5 and conv3d_channels is not None and t.shape[1] == conv3d_channels:
            roles[1], roles[2] = "channel", "time"  # the first layer convolves time: channels come first
        elif t.ndim == 5:
            roles[1] = "time"
        spatial = spatial_dims(t.ndim)
        if len(spatial) == 2:
            roles[spatial[0]], roles[spatial[1]] = "height", "width"
        if any_size:
            for d in spatial:
                shape[d] = -1
        observed = (batch, *t.shape[1:]) if t.ndim else ()
        facts.append(TensorFacts(name, tuple(shape), tuple(roles), dtype_name(t.dtype), tuple(observed)))
    return tuple(facts)


def _output_facts(
    base: Observed, probe: Observed | None, batch: int, in_spatial: tuple[int, ...]
) -> tuple[TensorFacts, ...]:
    facts = []
    detection = base.structure == "list_of_mappings"
    for name, (shape, dtype) in base.tensors.items():
        alt = probe.tensors.get(name, (None, None))[0] if probe is not None else None
        if alt is not None and len(alt) != len(shape):
            alt = None
        roles: list[str | None] = [None] * len(shape)
        out = list(shape)
        if shape and shape[0] == batch:
            roles[0], out[0] = "batch", -1
        if detection and len(shape) >= 2:
            roles[1], out[1] = "item", -1  # how many objects an image holds depends on the image
        n = len(shape)
        for d in range(1, n):
            if roles[d] is not None:
                continue
            moved = alt is not None and alt[d] != shape[d]
            if moved or shape[d] == -1:
                out[d] = -1
            # trailing dims that follow the input's height and width (same size, or moving with it)
            trailing = n >= 3 and d >= n - 2 and len(in_spatial) == 2
            if trailing and (moved or shape[d] == in_spatial[d - (n - 2)]):
                roles[d] = "height" if d == n - 2 else "width"
        facts.append(TensorFacts(name, tuple(out), tuple(roles), dtype_name(dtype), shape))
    return tuple(facts)


def _model_device(model: nn.Module) -> torch.device:
    first = next(_named_tensors(model), None)
    return first[1].device if first is not None else torch.device("cpu")


def _named_tensors(model: nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    yield from model.named_parameters()
    yield from model.named_buffers()


def qualified_name(model: Any) -> str:
    """``module.Class`` of a model (what tells a TorchGeo task from any other module)."""
    return f"{type(model).__module__}.{type(model).__qualname__}"


def hyperparameters_of(model: nn.Module) -> dict[str, Any] | None:
    """A LightningModule's ``hparams`` as a dict, or None."""
    hparams = getattr(model, "hparams", None)
    if isinstance(hparams, Mapping) and hparams:
        return dict(hparams)
    return None


def _num_classes(model: nn.Module, hparams: Mapping[str, Any] | None) -> int | None:
    for value in (getattr(model, "num_classes", None), (hparams or {}).get("num_classes")):
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None
