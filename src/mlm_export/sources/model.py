"""Facts from the model itself: trace a dummy batch (on the meta device when possible) and count parameters.

The user's model is never modified: weights are swapped for meta tensors only for the duration of a call
(``torch.func.functional_call``), train/eval flags and RNG state are restored, and no gradient is recorded.
"""

from __future__ import annotations

import contextlib
import inspect
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..errors import InvalidOptionError, MLMExportWarning, TraceError, UnsupportedOutputError, first_line
from ..facts import ModelFacts, ParameterFacts, Structure, TensorFacts

#: Batch size of the meta trace: 2, so that a batch dim is never confused with a squeezed dim of size 1.
META_BATCH = 2
#: Batch size of the real (CPU or model-device) trace, for models that do data-dependent work.
REAL_BATCH = 1
#: The larger sizes tried in the second trace that tells fixed-size models from any-size ones, in order, until
#: one runs: +32 px (keeps sizes divisible by the strides of common encoders: U-Net, FPN, ResNet), twice and one
#: and a half times the example's (a model that needs multiples of 64 runs at x2).
SPATIAL_PROBES: tuple[str, ...] = ("+32", "x2", "x1.5")


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
    params = _forward_parameter_names(model)
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
        constants = tuple((k, v) for k, v in items if not isinstance(v, torch.Tensor))
        _check_some(tensors)
        return CallSpec(tuple(k for k, _ in tensors), tuple(v for _, v in tensors), "mapping", as_kwargs, constants)
    if isinstance(example_input, tuple):
        named = [(params[i] if i < len(params) else f"input_{i}", v) for i, v in enumerate(example_input)]
        tensors = [(n, v) for n, v in named if isinstance(v, torch.Tensor)]
        constants = tuple((i, v) for i, v in enumerate(example_input) if not isinstance(v, torch.Tensor))
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
    with _preserved(model, device):
        traced_on, base, probe, batch = _trace(model, spec, device, use_meta)
    inputs = _input_facts(spec, batch, probe is not None, _channels_first_5d(model))
    in_spatial = _spatial_sizes(spec, None)
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


# ----------------------------------------------------------------------------------------------- tracing


@dataclass(frozen=True)
class Observed:
    structure: Structure
    #: name -> (shape, dtype); for list_of_mappings the shape is [len(list), *per-item shape] with -1 where
    #: items differ.
    tensors: dict[str, tuple[tuple[int, ...], torch.dtype]]


def _trace(
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
        except Exception as e:  # data-dependent work (.item(), nonzero, ...) or a CPU-only op: trace for real
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
    with _state_kept(model):
        real = _real_inputs(spec, REAL_BATCH, None, device)
        try:
            base = _run(model, spec, real, meta=False)
        except UnsupportedOutputError:
            raise
        except Exception as e:
            raise TraceError(_describe(spec, REAL_BATCH), _with_dtype_hint(e, model, spec)) from e
        probe = None
        if probe_dims:
            probe = _probe(
                lambda how: _run(model, spec, _real_inputs(spec, REAL_BATCH, how, device), meta=False), spec, model
            )
    return device.type, base, probe, REAL_BATCH


@contextlib.contextmanager
def _state_kept(model: nn.Module) -> Iterator[None]:
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


def _probe(run: Any, spec: CallSpec, model: nn.Module) -> Observed | None:
    """The first larger size the model runs at (see :data:`SPATIAL_PROBES`); a warning with the reasons when none
    does, since the Item then states the example's height and width as the only size (no warning when the
    model itself states that size: a ViT's ``img_size``)."""
    reasons = []
    for how in SPATIAL_PROBES:
        try:
            return run(how)
        except UnsupportedOutputError:
            raise
        except Exception as e:
            sizes = "x".join(str(v) for v in _spatial_sizes(spec, how))
            reasons.append(f"{sizes}: {type(e).__name__}: {first_line(e, 160)}")
    sizes = _spatial_sizes(spec, None)
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
        with _state_kept(model):
            _run(model, spec, _real_inputs(spec, REAL_BATCH, None, device), meta=False)
    except UnsupportedOutputError:
        raise
    except Exception as e:
        raise TraceError(_describe(spec, REAL_BATCH), _with_dtype_hint(e, model, spec)) from e


def _with_dtype_hint(error: BaseException, model: nn.Module, spec: CallSpec) -> BaseException:
    weights = _float_weights(model)
    ints = _integer_inputs(spec)
    if weights is None or not ints:
        return error
    named = ", ".join(f"input '{n}' is {_dtype_name(t.dtype)}" for n, t in ints)
    message = f"{error} ({named} but the model's weights are {_dtype_name(weights)})"
    try:
        return type(error)(message)
    except Exception:  # an error type that takes other arguments
        return RuntimeError(message)


def _run(model: nn.Module, spec: CallSpec, tensors: Sequence[torch.Tensor], *, meta: bool) -> Observed:
    args, kwargs = spec.call_args(tensors)
    with torch.no_grad(), _on_meta(model) if meta else contextlib.nullcontext():
        out = model(*args, **kwargs)
    return observe_outputs(out)


@contextlib.contextmanager
def _on_meta(model: nn.Module) -> Iterator[None]:
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
            for table in (m._parameters, m._buffers):
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


def _named_tensors(model: nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    yield from model.named_parameters()
    yield from model.named_buffers()


def _meta_like(t: torch.Tensor) -> torch.Tensor:
    meta = torch.empty_like(t, device="meta")
    return nn.Parameter(meta, requires_grad=t.requires_grad) if isinstance(t, nn.Parameter) else meta


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
    for d in _spatial_dims(t.ndim):
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


def _spatial_dims(ndim: int) -> tuple[int, ...]:
    """Dims probed for any-size support: the last two of images and time series of images, the last of 3-D."""
    if ndim >= 4:
        return (ndim - 2, ndim - 1)
    if ndim == 3:
        return (2,)
    return ()


def _has_spatial(spec: CallSpec) -> bool:
    return any(_spatial_dims(t.ndim) for t in spec.tensors)


def _spatial_sizes(spec: CallSpec, how: str | None) -> tuple[int, ...]:
    for t in spec.tensors:
        dims = _spatial_dims(t.ndim)
        if dims:
            return tuple(_grown(t.shape[d], how) for d in dims)
    return ()


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
        items = {}
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


# ----------------------------------------------------------------------------------------------- facts


def _channels_first_5d(model: nn.Module) -> int | None:
    """Input channels of a model whose first layer is a ``Conv3d`` (video: ``[batch, channel, time, H, W]``)."""
    from .dummy import first_layer

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
        spatial = _spatial_dims(t.ndim)
        if len(spatial) == 2:
            roles[spatial[0]], roles[spatial[1]] = "height", "width"
        if any_size:
            for d in spatial:
                shape[d] = -1
        observed = (batch, *t.shape[1:]) if t.ndim else ()
        facts.append(TensorFacts(name, tuple(shape), tuple(roles), _dtype_name(t.dtype), tuple(observed)))
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
        facts.append(TensorFacts(name, tuple(out), tuple(roles), _dtype_name(dtype), shape))
    return tuple(facts)


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _describe(spec: CallSpec, batch: int) -> str:
    parts = [
        f"{n}: {_dtype_name(t.dtype)}{list(_probe_shape(t, batch, None))}"
        for n, t in zip(spec.names, spec.tensors, strict=True)
    ]
    return "(" + ", ".join(parts) + ")"


# ----------------------------------------------------------------------------------------------- helpers


@contextlib.contextmanager
def _preserved(model: nn.Module, device: torch.device) -> Iterator[None]:
    """Run in eval mode, then put back every module's train/eval flag and the RNG state, whatever happens."""
    flags = [(m, m.training) for m in model.modules()]
    cuda = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        try:
            model.eval()
            yield
        finally:
            for m, training in flags:
                m.training = training


def _model_device(model: nn.Module) -> torch.device:
    first = next(_named_tensors(model), None)
    return first[1].device if first is not None else torch.device("cpu")


def _forward_parameter_names(model: nn.Module) -> list[str]:
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
