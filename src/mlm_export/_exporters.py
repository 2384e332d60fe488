"""Writers of the runnable model files (TorchScript, ONNX) and the state-dict checkpoint, and their loaders.

Each writer saves atomically and returns size and checksum; each loader gives a callable that runs the file
the way a newcomer would (``torch.jit.load``, ``torch.export.load``, an ``onnxruntime`` session) and returns the
outputs as a flat list of tensors (``torch.utils._pytree`` leaf order, which is ONNX's output order).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar, cast

import torch
from torch import nn
from torch.utils import _pytree as pytree

from ._artifacts import WrittenFile, export_program, save_program
from ._facts import TensorFacts
from ._model_state import eval_copy
from ._sources.call import CallSpec
from ._write import atomic_path, atomic_save, file_checksum
from .errors import ArtifactTimeoutError as ArtifactTimeoutError
from .errors import MLMExportError

#: Seconds one artifact's export may take by default (timm davit_tiny took over 10 minutes in torch.export).
DEFAULT_TIMEOUT = 300.0

T = TypeVar("T")

#: Runs a loaded artifact on (args, kwargs) and returns its outputs as a flat list of tensors.
Runner = Callable[[tuple[Any, ...], dict[str, Any]], list[torch.Tensor]]


def time_bound(
    work: Callable[[], T], seconds: float | None, what: str, *, discard: Callable[[T], None] | None = None
) -> T:
    """``work()`` bounded to ``seconds``: run on a worker thread and waited for, else :class:`ArtifactTimeoutError`.

    Scoped to the work, from any thread (the callback's, a notebook's): no signal handler, no timer. A thread
    cannot be stopped, so a late export is abandoned: it runs on in the background (on a copy of the model, see
    :func:`_eval`) and when it ends its result goes to ``discard`` (which removes the file it wrote). Warnings
    are filtered here, on the waiting thread, so an abandoned thread never restores stale filters.
    """
    with _quiet_warnings():
        if not seconds:
            return work()
        done = threading.Event()
        lock = threading.Lock()
        outcome: list[tuple[bool, Any]] = []
        abandoned = False

        grad = torch.is_grad_enabled()  # thread-local state the work would otherwise lose on a new thread
        device = torch.cuda.current_device() if torch.cuda.is_initialized() else None  # type: ignore[no-untyped-call]

        def run() -> None:
            try:
                with (
                    torch.set_grad_enabled(grad),
                    torch.cuda.device(device) if device is not None else contextlib.nullcontext(),
                ):
                    result: tuple[bool, Any] = (True, work())
            except BaseException as e:  # noqa: BLE001 - handed to the waiting thread, which raises it
                result = (False, e)
            with lock:
                if abandoned:
                    if result[0] and discard is not None:
                        discard(result[1])
                    return
                outcome.append(result)
            done.set()

        threading.Thread(target=run, name=f"mlm-export: {what}", daemon=True).start()
        if not done.wait(seconds):
            with lock:
                if not outcome:  # still running: from now on its result is discarded when it comes
                    abandoned = True
                    raise ArtifactTimeoutError(
                        f"{what} took longer than {seconds:g} s and was abandoned; raise artifact_timeout= (or the "
                        "MLM_EXPORT_ARTIFACT_TIMEOUT variable) to wait longer, or leave this format out of artifacts="
                    )
        ok, value = outcome[0]
        if not ok:
            raise value
        return cast(T, value)


def timeout_from_env(value: float | None) -> float | None:
    """The bound to use: the option, else ``MLM_EXPORT_ARTIFACT_TIMEOUT``, else :data:`DEFAULT_TIMEOUT`."""
    if value is not None:
        return value or None
    env = os.environ.get("MLM_EXPORT_ARTIFACT_TIMEOUT")
    return float(env) or None if env else DEFAULT_TIMEOUT


def _examples(model: nn.Module, spec: CallSpec) -> list[torch.Tensor]:
    device = next((t.device for t in model.state_dict().values()), torch.device("cpu"))
    out = []
    for t in spec.tensors:
        x = t.to(device)
        if x.ndim and x.shape[0] == 1:  # batch 1 would be specialized to a constant 1
            x = torch.cat([x, x])
        out.append(x)
    return out


def _eval(model: nn.Module) -> nn.Module:
    """An eval-mode copy of the model that shares its weights (the model keeps its flags and tables) and owns
    its buffers: tracing and parity runs are real passes, which may update buffers in place."""
    return eval_copy(model, own_buffers=True)


@contextlib.contextmanager
def _quiet_warnings() -> Iterator[None]:
    """Without TorchScript's deprecation notices and the tracer's warnings the caller reports in one line."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.")
        warnings.filterwarnings("ignore", message=r"Converting a tensor with requires_grad")
        warnings.filterwarnings("ignore", message=r"RCNN always returns")
        yield


# ---------------------------------------------------------------------------------------------- writers


def write_pt2(
    model: nn.Module, spec: CallSpec, inputs: Sequence[TensorFacts], path: Path, *, size_oblivious: bool = False
) -> tuple[WrittenFile, Any]:
    """``torch.export`` with the traced dynamic dims and save; also the input shapes the program accepts."""
    program, accepted = export_program(model, spec, inputs, size_oblivious=size_oblivious)
    return save_program(program, path), accepted


def script_or_trace(
    model: nn.Module, example: Callable[[], tuple[Any, dict[str, Any]]]
) -> tuple[torch.jit.ScriptModule, str]:
    """``torch.jit.script`` (keeps control flow: detection models), else ``torch.jit.trace`` on the arguments
    ``example()`` makes; and which of the two it was. The copy is checked against the model by its caller."""
    try:
        return torch.jit.script(model), "scripted"
    except Exception as scripting:  # noqa: BLE001 - any scripting failure falls back to a trace
        args, kwargs = example()
        try:
            with torch.no_grad():
                traced = torch.jit.trace(  # type: ignore[no-untyped-call]  # untyped in torch
                    model, args, example_kwarg_inputs=kwargs or None, strict=False, check_trace=False
                )
        except Exception as e:
            raise RuntimeError(
                f"torch.jit.script failed ({_short(scripting)}) and so did torch.jit.trace ({_short(e)})"
            ) from e
        return traced, "traced"


def write_torchscript(model: nn.Module, spec: CallSpec, path: Path) -> tuple[WrittenFile, str]:
    """The model as TorchScript (see :func:`script_or_trace`), taking the Item's inputs; then save."""
    model = _eval(model)
    compiled, how = script_or_trace(model, lambda: spec.call_args(_examples(model, spec)))
    if how == "scripted":
        compiled = _as_item_interface(compiled, model, spec)
    atomic_save(path, lambda f: torch.jit.save(compiled, f))  # a full disk: an OSError, not an abort
    return WrittenFile(os.path.getsize(path), file_checksum(path)), how


def _as_item_interface(scripted: Any, model: nn.Module, spec: CallSpec) -> Any:
    """A scripted model that takes a list of images (torchvision detection) wrapped to take the batch tensor."""
    args = scripted.forward.schema.arguments
    if spec.structure != "tensor" or len(args) < 2 or str(args[1].type) != "List[Tensor]":
        return scripted
    from ._script_wrappers import ImageList, ImageListDetections

    returns = scripted.forward.schema.returns
    spelled = str(returns[0].type).replace("(", "[").replace(")", "]") if returns else ""
    detections = spelled.startswith("Tuple[Dict[str, Tensor], List[Dict[str, Tensor]]")
    return torch.jit.script(ImageListDetections(model) if detections else ImageList(model))


def onnx_dim_names(spec: CallSpec, inputs: Sequence[TensorFacts]) -> dict[str, dict[int, str]]:
    """Symbolic names of each input's dynamic dims: ``batch``, ``height``, ``width``, ``time``, else numbered."""
    named: dict[str, dict[int, str]] = {}
    for name, facts in zip(spec.names, inputs, strict=True):
        dims = {}
        for d, (size, role) in enumerate(zip(facts.shape, facts.roles, strict=False)):
            if size == -1:
                dims[d] = role if role in ("batch", "height", "width", "time") else f"{name}_dim{d}"
        named[name] = dims
    return named


def write_onnx(
    model: nn.Module, spec: CallSpec, inputs: Sequence[TensorFacts], path: Path, output_names: Sequence[str] = ()
) -> WrittenFile:
    """``torch.onnx.export`` (the torch.export-based exporter) with the dynamic dims named symbolically."""
    try:
        import onnx
    except ImportError as e:
        raise MLMExportError("ONNX export needs the onnx extra: pip install 'mlm-export[onnx]'") from e
    names = onnx_dim_names(spec, inputs)
    args, kwargs = spec.call_args(_examples(model, spec))
    auto = [dict.fromkeys(names[n], torch.export.Dim.AUTO) or None for n in spec.names]
    dyn_args, dyn_kwargs = spec.call_args(auto, constants=False)
    dynamic: Any = dyn_kwargs if spec.as_kwargs and spec.structure == "mapping" else dyn_args
    copy = _eval(model)
    with torch.no_grad():
        program = torch.onnx.export(
            copy, args, kwargs=kwargs or None, dynamo=True, dynamic_shapes=dynamic, input_names=list(spec.names),
            output_names=list(output_names) or None, optimize=True, verbose=False,
        )  # fmt: skip
    if program is None:  # only the legacy exporter (dynamo=False) returns nothing
        raise RuntimeError("torch.onnx.export returned no program")
    proto = program.model_proto
    _rename_symbols(proto, names)
    with atomic_path(path) as tmp:
        onnx.save_model(proto, str(tmp))
    return WrittenFile(os.path.getsize(path), file_checksum(path))


def _rename_symbols(proto: Any, names: dict[str, dict[int, str]]) -> None:
    """Give the exporter's symbols (``s77``) the names of the dims they stand for, everywhere in the graph."""
    mapping: dict[str, str] = {}
    for value in proto.graph.input:
        dims = names.get(value.name, {})
        for d, dim in enumerate(value.type.tensor_type.shape.dim):
            if dim.dim_param and d in dims:
                mapping.setdefault(dim.dim_param, dims[d])
    if not mapping:
        return
    pattern = re.compile(r"\b(" + "|".join(re.escape(k) for k in sorted(mapping, key=len, reverse=True)) + r")\b")
    for value in [*proto.graph.input, *proto.graph.output, *proto.graph.value_info]:
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param:
                dim.dim_param = pattern.sub(lambda m: mapping[m.group(1)], dim.dim_param)


def write_checkpoint(state: dict[str, torch.Tensor], path: Path) -> WrittenFile:
    """``torch.save`` of the state dict alone: plain tensors, so it loads with ``weights_only=True``."""
    plain = {k: v.detach().cpu() for k, v in state.items()}
    with atomic_path(path) as tmp:
        torch.save(plain, str(tmp))
    return WrittenFile(os.path.getsize(path), file_checksum(path))


def _short(e: BaseException) -> str:
    from .errors import first_line

    return f"{type(e).__name__}: {first_line(e, 200)}"


# ---------------------------------------------------------------------------------------------- loaders


def leaves(out: Any) -> list[torch.Tensor]:
    """The tensors of a model's output, in pytree order (dicts in insertion order, as ONNX outputs them)."""
    return [t.detach() for t in pytree.tree_leaves(out) if isinstance(t, torch.Tensor)]


def load_module(
    fmt: str, path: Path, *, input_names: Sequence[str] = (), data: bytes | None = None
) -> Callable[..., Any]:
    """Load a runnable model file as a callable taking the model's arguments (no safety checks: see
    :mod:`mlm_export._artifact_safety`). ONNX returns its outputs by name (one output: the tensor itself).

    ``data``: the file's bytes, already read and checked; they are loaded and ``path`` is not opened again.
    """
    source: Any = str(path) if data is None else io.BytesIO(data)
    if fmt == "pt2":
        return torch.export.load(source).module()
    if fmt == "torchscript":
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"`torch\.jit\.")
            scripted = torch.jit.load(source, map_location="cpu")  # type: ignore[no-untyped-call]  # untyped
        return lambda *args, **kwargs: _detections(scripted(*args, **kwargs))
    if fmt == "onnx":
        return _onnx_module(path, input_names, data)
    raise MLMExportError(f"{fmt} files hold weights only: they need the model's code to run")


def load_runner(fmt: str, path: Path, *, input_names: Sequence[str] = ()) -> Runner:
    """Load a runnable model file and return a function that runs it and gives its outputs' tensors."""
    module = load_module(fmt, path, input_names=input_names)
    return lambda args, kwargs: leaves(module(*args, **kwargs))


def _detections(out: Any) -> Any:
    """torchvision detection models return ``(losses, detections)`` when scripted and ``detections`` otherwise."""
    if isinstance(out, tuple) and len(out) == 2 and isinstance(out[0], dict) and isinstance(out[1], list):
        return out[1]
    return out


def _onnx_module(path: Path, input_names: Sequence[str], data: bytes | None = None) -> Callable[..., Any]:
    try:
        import onnxruntime as ort
    except ImportError as e:
        raise MLMExportError("running an ONNX file needs onnxruntime: pip install 'mlm-export[onnx]'") from e
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if data is not None:  # external data (checked to stay in the folder) is found beside the file, not in cwd
        options.add_session_config_entry("session.model_external_initializers_file_folder_path", str(path.parent))
    model: Any = str(path) if data is None else data
    session = ort.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])
    graph_inputs = [i.name for i in session.get_inputs()]
    graph_outputs = [o.name for o in session.get_outputs()]

    def run(*args: Any, **kwargs: Any) -> Any:
        tensors = leaves((args, kwargs))
        names = list(input_names) if len(input_names) == len(tensors) else graph_inputs
        feed = {n: t.cpu().numpy() for n, t in zip(names, tensors, strict=False) if n in graph_inputs}
        out = [torch.from_numpy(a) for a in session.run(None, feed)]
        return out[0] if len(out) == 1 else dict(zip(graph_outputs, out, strict=True))

    return run
