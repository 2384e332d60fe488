"""Tracing a model on its example input: on the meta device when possible, for real at batch 1 otherwise, and
again at a larger spatial size to tell any-size models from fixed-size ones.

Every pass runs on a scoped copy of the model (see :mod:`mlm_export._model_state`): the model is left as it
was, and nobody sees it change meanwhile; no gradient is recorded.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import torch
from torch import nn

from .._model_state import scoped_copy
from ..errors import MLMExportWarning, TraceError, UnsupportedOutputError, first_line
from .call import CallSpec, dtype_name
from .outputs import Observed, observe_outputs

#: Batch size of the meta trace: 2, so that a batch dim is never confused with a squeezed dim of size 1.
META_BATCH = 2


#: Batch size of the real (CPU or model-device) trace, for models that do data-dependent work.
REAL_BATCH = 1


#: The larger sizes tried in the second trace that tells fixed-size models from any-size ones, in order, until
#: one runs: +32 px (keeps sizes divisible by the strides of common encoders: U-Net, FPN, ResNet), twice and one
#: and a half times the example's (a model that needs multiples of 64 runs at x2).
SPATIAL_PROBES: tuple[str, ...] = ("+32", "x2", "x1.5")


def trace(
    model: nn.Module, spec: CallSpec, device: torch.device, use_meta: bool
) -> tuple[str, Observed, Observed | None, int]:
    probe_dims = _has_spatial(spec)
    meta_error: BaseException | None = None
    on_meta = device.type == "meta"  # a model built on meta (weights not loaded) traces as it is
    if use_meta or on_meta:
        try:
            base = _run(model, spec, _meta_inputs(spec, META_BATCH, None), meta=not on_meta)
        except UnsupportedOutputError:
            raise
        except Exception as e:  # noqa: BLE001 - data-dependent work (.item(), nonzero) or a CPU-only op: trace for real
            meta_error = e
        else:
            if not on_meta and _integer_inputs(spec) and _float_weights(model):
                _check_dtypes(model, spec, device)  # meta kernels do not check dtypes; one real pass does
            probe = None
            if probe_dims:
                meta = not on_meta
                probe = _probe(
                    lambda how: _run(model, spec, _meta_inputs(spec, META_BATCH, how), meta=meta), spec, model
                )
            return "meta", base, probe, META_BATCH
    if on_meta:
        raise TraceError(_describe(spec, META_BATCH), meta_error or RuntimeError("the model's weights are on meta"))
    copy = scoped_copy(model, own_buffers=True)  # real passes may update buffers: the copy's own
    real = _real_inputs(spec, REAL_BATCH, None, device)
    try:
        base = _run(copy, spec, real, meta=False)
    except UnsupportedOutputError:
        raise
    except Exception as e:
        raise TraceError(_describe(spec, REAL_BATCH), _with_dtype_hint(e, model, spec)) from e
    probe = None
    if probe_dims:
        probe = _probe(
            lambda how: _run(copy, spec, _real_inputs(spec, REAL_BATCH, how, device), meta=False), spec, model
        )
    return device.type, base, probe, REAL_BATCH


def _probe(run: Callable[[str], Observed], spec: CallSpec, model: nn.Module) -> Observed | None:
    """The first larger size the model runs at (see :data:`SPATIAL_PROBES`); a warning with the reasons when none
    does, since the Item then states the example's height and width as the only size (no warning when the
    model itself states that size: a ViT's ``img_size``)."""
    reasons = []
    for how in SPATIAL_PROBES:
        try:
            return run(how)
        except UnsupportedOutputError:
            raise
        except Exception as e:  # noqa: BLE001 - each size's failure is listed in the one error raised
            tried = "x".join(str(v) for v in spatial_sizes(spec, how))
            reasons.append(f"{tried}: {type(e).__name__}: {first_line(e, 160)}")
    sizes = spatial_sizes(spec, None)
    if len(sizes) < 2 or _stated_size(model) in (sizes, sizes[:1] * len(sizes)):
        return None  # a sequence's last dim is often its features, not a size; or the model states its size
    example = "x".join(str(v) for v in sizes)
    warnings.warn(
        f"the model ran only at the example's size {example}, so the Item states it fixed; larger sizes failed "
        f"({'; '.join(reasons)}). If the model takes other sizes, pass an example_input= of a size it is built for.",
        MLMExportWarning,
        stacklevel=5,
    )
    return None


def _stated_size(model: nn.Module) -> tuple[int, ...] | None:
    """The one image size the model states it is built for (ViT ``img_size``/``image_size``), or None."""
    from .dummy import fixed_image_size

    size = fixed_image_size(model)
    return (size, size) if size is not None else None


def _integer_inputs(spec: CallSpec) -> list[tuple[str, torch.Tensor]]:
    return [
        (n, t)
        for n, t in zip(spec.names, spec.tensors, strict=True)
        if not (t.dtype.is_floating_point or t.dtype.is_complex)
    ]


def _float_weights(model: nn.Module) -> torch.dtype | None:
    return next((p.dtype for p in model.parameters() if p.dtype.is_floating_point), None)


def _check_dtypes(model: nn.Module, spec: CallSpec, device: torch.device) -> None:
    """One real pass at batch 1 for an integer example into a float model: an error naming the input if it fails."""
    try:
        _run(scoped_copy(model, own_buffers=True), spec, _real_inputs(spec, REAL_BATCH, None, device), meta=False)
    except UnsupportedOutputError:
        raise
    except Exception as e:
        raise TraceError(_describe(spec, REAL_BATCH), _with_dtype_hint(e, model, spec)) from e


def _with_dtype_hint(error: BaseException, model: nn.Module, spec: CallSpec) -> BaseException:
    weights = _float_weights(model)
    ints = _integer_inputs(spec)
    if weights is None or not ints:
        return error
    named = ", ".join(f"input '{n}' is {dtype_name(t.dtype)}" for n, t in ints)
    message = f"{error} ({named} but the model's weights are {dtype_name(weights)})"
    try:
        return type(error)(message)
    except Exception:  # noqa: BLE001 - an error type that takes other arguments
        return RuntimeError(message)


def _run(model: nn.Module, spec: CallSpec, tensors: Sequence[torch.Tensor], *, meta: bool) -> Observed:
    args, kwargs = spec.call_args(tensors)
    with torch.no_grad():
        out = (scoped_copy(model, meta=True) if meta else model)(*args, **kwargs)
    return observe_outputs(out)


def _meta_inputs(spec: CallSpec, batch: int, how: str | None) -> list[torch.Tensor]:
    return [torch.empty(_probe_shape(t, batch, how), dtype=t.dtype, device="meta") for t in spec.tensors]


def _real_inputs(spec: CallSpec, batch: int, how: str | None, device: torch.device) -> list[torch.Tensor]:
    """The example's own values where they fit (real data keeps data-dependent paths realistic), else random."""
    out = []
    gen = torch.Generator().manual_seed(0)
    for t in spec.tensors:
        shape = _probe_shape(t, batch, how)
        if t.device.type != "meta" and how is None and t.shape[0] >= batch:
            out.append(t[:batch].to(device))
            continue
        if t.dtype.is_floating_point or t.dtype.is_complex:
            lo, hi = _value_range(t)
            x = torch.rand(shape, generator=gen) * (hi - lo) + lo
        elif t.dtype == torch.bool:
            x = torch.rand(shape, generator=gen) > 0.5
        else:
            lo, hi = _value_range(t)
            x = torch.randint(int(lo), int(hi) + 1, shape, generator=gen)
        out.append(x.to(device=device, dtype=t.dtype))
    return out


def _value_range(t: torch.Tensor) -> tuple[float, float]:
    if t.device.type == "meta" or t.numel() == 0:
        return 0.0, 1.0
    tf = t.detach().float()
    return float(tf.min()), float(tf.max())


def _probe_shape(t: torch.Tensor, batch: int, how: str | None) -> tuple[int, ...]:
    shape = list(t.shape)
    if shape:
        shape[0] = batch
    for d in spatial_dims(t.ndim):
        shape[d] = _grown(shape[d], how)
    return tuple(shape)


def _grown(size: int, how: str | None) -> int:
    """A spatial size grown as a probe says: "+32", "x2", "x1.5" (rounded to an even size), or kept."""
    if how is None:
        return size
    if how.startswith("+"):
        return size + int(how[1:])
    grown = round(size * float(how[1:]))
    return grown + grown % 2 if grown > size else size + 2


def spatial_dims(ndim: int) -> tuple[int, ...]:
    """Dims probed for any-size support: the last two of images and time series of images, the last of 3-D."""
    if ndim >= 4:
        return (ndim - 2, ndim - 1)
    if ndim == 3:
        return (2,)
    return ()


def _has_spatial(spec: CallSpec) -> bool:
    return any(spatial_dims(t.ndim) for t in spec.tensors)


def spatial_sizes(spec: CallSpec, how: str | None) -> tuple[int, ...]:
    for t in spec.tensors:
        dims = spatial_dims(t.ndim)
        if dims:
            return tuple(_grown(t.shape[d], how) for d in dims)
    return ()


def _describe(spec: CallSpec, batch: int) -> str:
    parts = [
        f"{n}: {dtype_name(t.dtype)}{list(_probe_shape(t, batch, None))}"
        for n, t in zip(spec.names, spec.tensors, strict=True)
    ]
    return "(" + ", ".join(parts) + ")"
