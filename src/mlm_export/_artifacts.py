"""Model artifacts: the weights as safetensors (hashed while written) and a ``torch.export`` archive (.pt2)."""

from __future__ import annotations

import contextlib
import json
import os
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from . import mlm
from ._facts import TensorFacts
from ._model_state import eval_copy
from ._sources.call import CallSpec
from ._write import HashingWriter, atomic_path, atomic_save, file_checksum
from .errors import InvalidOptionError, option

#: safetensors dtype codes (the format's own names).
SAFETENSORS_DTYPES: dict[torch.dtype, str] = {
    torch.float64: "F64",
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.int16: "I16",
    torch.int8: "I8",
    torch.uint8: "U8",
    torch.bool: "BOOL",
    torch.complex64: "C64",
    torch.uint16: "U16",
    torch.uint32: "U32",
    torch.uint64: "U64",
    torch.float8_e4m3fn: "F8_E4M3",
    torch.float8_e5m2: "F8_E5M2",
}
ALIASES_KEY = "mlm_export.aliases"


@dataclass(frozen=True)
class WrittenFile:
    """Size and sha256 multihash of a file just written."""

    size: int
    checksum: str


def weights(model: nn.Module, *, allow_meta: bool = False) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The state dict with each shared tensor stored once, and {dropped name: kept name} for the tied ones.

    A model whose weights are on the meta device has none: an error, or ``({}, {})`` with ``allow_meta``.
    """
    state = model.state_dict(keep_vars=False)
    if allow_meta and any(t.device.type == "meta" for t in state.values()):
        return {}, {}
    kept: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    seen: dict[tuple[Any, ...], str] = {}
    for name, t in state.items():  # registration order: the first name of a tied tensor is kept
        if t.device.type == "meta":
            raise InvalidOptionError(
                f"weight '{name}' is on the meta device: there are no weights to write; load them first, or call "
                "export_mlm without out_dir for metadata only"
            )
        key = (t.device, t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), t.stride(), t.dtype)
        if t.numel() and key in seen:
            aliases[name] = seen[key]
            continue
        seen[key] = name
        kept[name] = t
    return kept, aliases


def _layout(tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str]) -> tuple[bytes, list[str], int]:
    """The safetensors header (padded to 8 bytes), the write order, and the data size."""
    for name, t in tensors.items():
        if t.dtype not in SAFETENSORS_DTYPES:
            raise InvalidOptionError(f"weight '{name}' has dtype {t.dtype}, which safetensors cannot store")
    order = sorted(tensors, key=lambda n: (-tensors[n].element_size(), n))
    header: dict[str, Any] = {"__metadata__": dict(metadata)} if metadata else {}
    offset = 0
    for name in order:
        t = tensors[name]
        nbytes = t.numel() * t.element_size()
        header[name] = {
            "dtype": SAFETENSORS_DTYPES[t.dtype],
            "shape": list(t.shape),
            "data_offsets": [offset, offset + nbytes],
        }
        offset += nbytes
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)
    return raw, order, offset


def safetensors_size(tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str]) -> int:
    """The exact size of the safetensors file these tensors make, without writing it."""
    header, _, data = _layout(tensors, metadata)
    return 8 + len(header) + data


def safetensors_metadata(aliases: Mapping[str, str]) -> dict[str, str]:
    """File metadata: the torch format marker, and the tied names that were stored once."""
    meta = {"format": "pt"}
    if aliases:
        meta[ALIASES_KEY] = json.dumps(aliases, sort_keys=True)
    return meta


def write_safetensors(
    tensors: Mapping[str, torch.Tensor], path: str | os.PathLike[str], metadata: Mapping[str, str]
) -> WrittenFile:
    """Write a safetensors file atomically, hashing each buffer on a second thread as it is written."""
    header, order, _ = _layout(tensors, metadata)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        writer = HashingWriter(f)
        writer.write(struct.pack("<Q", len(header)))
        writer.write(header)
        for name in order:
            writer.write(_tensor_bytes(tensors[name]))
        checksum = writer.close()
        size = writer.size
    return WrittenFile(size, checksum)


def _tensor_bytes(t: torch.Tensor) -> memoryview:
    t = t.detach()
    if t.device.type != "cpu":
        t = t.cpu()
    t = t.contiguous()
    if t.numel() == 0:
        return memoryview(b"")
    return memoryview(t.reshape(-1).view(torch.uint8).numpy())


def export_program(
    model: nn.Module, spec: CallSpec, inputs: Sequence[TensorFacts], *, size_oblivious: bool = False
) -> tuple[torch.export.ExportedProgram, dict[str, tuple[int, ...]]]:
    """``torch.export`` the model with its dynamic dims; also the input shapes the program really accepts.

    ``size_oblivious``: export under torch's ``backed_size_oblivious`` option, so a dim that reaches size 1 inside
    the model (a ResNet's last feature map at 32 px) is not specialised and the program runs at that size too.
    The option is torch's configuration, set through its own ``patch`` context manager only while this export
    runs and restored when it ends or fails; in torch 2.14 that patch is seen by the exporting thread only.
    """
    device = next((t.device for t in model.state_dict().values()), torch.device("cpu"))
    examples = []
    dims = []
    for t, facts in zip(spec.tensors, inputs, strict=True):
        x = t.to(device)
        if x.ndim and x.shape[0] == 1:  # batch 1 would be specialized to a constant 1
            x = torch.cat([x, x])
        examples.append(x)
        dims.append({d: torch.export.Dim.AUTO for d, s in enumerate(facts.shape) if s == -1} or None)
    args, kwargs = spec.call_args(examples)
    dyn_args, dyn_kwargs = spec.call_args(dims, constants=False)
    dynamic: Any = dyn_kwargs if spec.as_kwargs and spec.structure == "mapping" else dyn_args
    with _size_oblivious(size_oblivious):
        program = torch.export.export(eval_copy(model), args, kwargs or None, dynamic_shapes=dynamic, strict=False)
    return program, _accepted_shapes(program, spec, inputs)


def _size_oblivious(on: bool) -> contextlib.AbstractContextManager[Any]:
    """torch's ``backed_size_oblivious`` export option for the duration of a ``with`` block (or nothing)."""
    if not on:
        return contextlib.nullcontext()
    from torch.fx.experimental import _config as fx_config

    patch: Callable[..., contextlib.AbstractContextManager[Any]] = fx_config.patch  # type: ignore[attr-defined]
    return patch(backed_size_oblivious=True)  # restores the earlier value on exit, also on an error


def _accepted_shapes(
    program: torch.export.ExportedProgram, spec: CallSpec, inputs: Sequence[TensorFacts]
) -> dict[str, tuple[int, ...]]:
    from torch.fx.experimental.symbolic_shapes import is_concrete_int

    users = set(program.graph_signature.user_inputs)
    shapes = [
        tuple(int(s) if is_concrete_int(s) else -1 for s in n.meta["val"].shape)
        for n in program.graph.nodes
        if n.op == "placeholder" and n.name in users and isinstance(n.meta.get("val"), torch.Tensor)
    ]
    accepted = {}
    for name, facts, shape in zip(spec.names, inputs, shapes, strict=False):
        # A dim the trace found dynamic but the program specialized is fixed to the example's size.
        accepted[name] = tuple(s if (f == -1 and s != -1) else f for f, s in zip(facts.shape, shape, strict=False))
    return accepted


def save_program(program: torch.export.ExportedProgram, path: str | os.PathLike[str]) -> WrittenFile:
    """``torch.export.save`` atomically, then size and checksum."""
    atomic_save(path, lambda f: torch.export.save(program, f))  # a full disk: an OSError, not an abort
    return WrittenFile(os.path.getsize(path), file_checksum(path))


# ---------------------------------------------------------------------------------------------- model file formats

#: The model files ``artifacts=`` can name, in the order the docs list them.
ARTIFACT_NAMES = ("pt2", "torchscript", "onnx", "safetensors", "checkpoint")
#: The formats that run without the training code (the others hold weights only).
RUNNABLE = ("pt2", "torchscript", "onnx")


@dataclass(frozen=True)
class Format:
    """How one kind of model file is named, typed and described in the Item."""

    name: str
    #: File name suffix after ``<stem>``.
    suffix: str
    media_type: str
    #: ``mlm:artifact_type`` (stated only on the ``mlm:model`` asset: the schema forbids it elsewhere).
    artifact_type: str
    #: Asset key when this file is not the ``mlm:model`` (which is always under ``model``).
    key: str
    #: Roles besides ``mlm:model`` when primary, and on their own when not.
    roles: tuple[str, ...]
    title: str


FORMATS: dict[str, Format] = {
    "pt2": Format(
        "pt2", ".pt2", mlm.MEDIA_PT2, mlm.ARTIFACT_EXPORT, "program", ("model",),
        "Model (torch.export archive, runs without the training code)",
    ),
    "torchscript": Format(
        "torchscript", ".torchscript", mlm.MEDIA_TORCHSCRIPT, mlm.ARTIFACT_TORCHSCRIPT, "torchscript", ("model",),
        "Model (TorchScript, runs without the training code)",
    ),
    "onnx": Format(
        "onnx", ".onnx", mlm.MEDIA_ONNX, mlm.ARTIFACT_ONNX, "onnx", ("model",),
        "Model (ONNX, runs with onnxruntime)",
    ),
    "safetensors": Format(
        "safetensors", ".safetensors", mlm.MEDIA_SAFETENSORS, mlm.ARTIFACT_SAFETENSORS, "weights",
        (mlm.ROLE_WEIGHTS,), "Model weights (safetensors)",
    ),
    "checkpoint": Format(
        "checkpoint", ".pt", mlm.MEDIA_PYTORCH, mlm.ARTIFACT_TORCH_SAVE, "checkpoint", (mlm.ROLE_CHECKPOINT,),
        "Model weights (torch.save of the state dict, loads with weights_only=True)",
    ),
}  # fmt: skip


def artifact_choice(
    artifacts: str | Sequence[str] | None, primary: str | None, *, export_program: bool = True
) -> tuple[tuple[str, ...], str]:
    """The model files to write and the one that is the ``mlm:model`` asset, checked.

    ``artifacts=None`` keeps the earlier options' meaning: ``("pt2", "safetensors")``, or ``("safetensors",)``
    with ``export_program=False``. ``primary`` defaults to the first name given.
    """
    if artifacts is None:
        chosen: tuple[str, ...] = ("pt2", "safetensors") if export_program else ("safetensors",)
    else:
        names = artifacts.split(",") if isinstance(artifacts, str) else list(artifacts)
        chosen = tuple(dict.fromkeys(str(n).strip().lower() for n in names if str(n).strip()))
        unknown = [n for n in chosen if n not in FORMATS]
        if unknown or not chosen:
            raise InvalidOptionError(
                f"{option('artifacts')} names unknown model file format(s) {unknown or list(names)}; choose from "
                f"{', '.join(ARTIFACT_NAMES)} (e.g. {option('artifacts', repr(('pt2', 'onnx')), 'pt2,onnx')})"
            )
    first = chosen[0] if primary is None else str(primary).strip().lower()
    if first not in chosen:
        raise InvalidOptionError(
            f"{option('primary', repr(primary), str(primary))} is not among {option('artifacts')} {list(chosen)}: "
            "name one of them as the mlm:model asset"
        )
    return chosen, first
