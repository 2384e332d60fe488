"""Look inside a model file from a stranger before loading it: refuse what loading would unpickle or run.

``torch.export.load`` unpickles weights and constants marked ``use_pickle`` with ``weights_only=False``, custom
objects with the full unpickler, and sample inputs with ``weights_only=False`` when the safe load fails: a
tampered ``.pt2`` runs code. TorchScript archives hold pickles and TorchScript code; ONNX files can point at
external data files anywhere on the disk. Each check reads the archive as data only (``zipfile``,
``pickletools``, ``onnx.load`` without external data) and raises :class:`UnsafeArtifactError` on anything
beyond plain tensors and the stock operator sets; ``trust=True`` (``--trust-checkpoint``) skips the checks.
"""

from __future__ import annotations

import io
import json
import pickletools
import re
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any

import torch

from ._sources.unpickle import opcode_globals
from .errors import MLMExportError
from .errors import UnsafeArtifactError as UnsafeArtifactError

#: Suffixes of members that would be loaded as native code or Python (AOTInductor libraries, scripts).
CODE_SUFFIXES = (".so", ".dll", ".dylib", ".pyd", ".py", ".pkl", ".pickle")
#: Globals a TorchScript archive's pickles may name: tensor rebuilding, storages, ordered dicts.
TORCHSCRIPT_GLOBALS = re.compile(
    r"^(torch\._utils\._rebuild_\w+|torch\.\w+Storage|collections\.OrderedDict|torch\.jit\._pickle\.\w+"
    r"|__torch__(\.[\w$]+)+|torch\.device|torch\.Size)$"
)
#: Operator namespaces TorchScript code may call (PyTorch's own, and torchvision's detection ops).
TORCHSCRIPT_OPS = {"aten", "prim", "quantized", "torchvision", "_caffe2"}
#: ONNX operator domains onnxruntime ships.
ONNX_DOMAINS = {"", "ai.onnx", "ai.onnx.ml", "com.microsoft", "ai.onnx.preview.training", "pkg.onnxscript.torch_lib"}


def check(fmt: str, path: Path, base: Path) -> None:
    """Refuse ``path`` (of format ``fmt``) if loading it could run code or read outside ``base``."""
    if fmt == "pt2":
        check_pt2(path)
    elif fmt == "torchscript":
        check_torchscript(path)
    elif fmt == "onnx":
        check_onnx(path, base)


def _zip(path: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except zipfile.BadZipFile as e:
        raise UnsafeArtifactError(path, f"is not a zip archive ({e})") from e
    except OSError as e:
        raise MLMExportError(f"cannot read {path.name}: {e}") from e


def check_pt2(path: Path) -> None:
    """A ``torch.export`` archive whose weights, constants and sample inputs all load without unpickling code."""
    with _zip(path) as z:
        names = z.namelist()
        for name in names:
            if name.lower().endswith(CODE_SUFFIXES):
                raise UnsafeArtifactError(path, f"holds '{name}', which would be loaded as code")
        for name in names:
            parts = PurePosixPath(name).parts
            legacy = len(parts) >= 3 and parts[-3:-1] in (("data", "weights"), ("data", "constants"))
            if legacy and name.endswith(".pt"):  # the legacy layout: one pickle of everything
                raise UnsafeArtifactError(path, f"holds the legacy pickled '{name}'")
            if (
                name.endswith(("model_weights_config.json", "model_constants_config.json"))
                or ("/data/weights/" in name or "/data/constants/" in name)
                and name.endswith("_config.json")
            ):
                _check_payload_config(path, name, json.loads(z.read(name)))
            if "/data/sample_inputs/" in name:
                _check_weights_only(path, name, z.read(name))


def _check_payload_config(path: Path, name: str, config: Any) -> None:
    for fqn, meta in (config.get("config") or {}).items():
        if meta.get("use_pickle"):
            raise UnsafeArtifactError(path, f"stores '{fqn}' as a pickle ({name})")
        file = str(meta.get("path_name", ""))
        if file.startswith(("custom_obj", "opaque_obj")):
            raise UnsafeArtifactError(path, f"stores '{fqn}' as a pickled object ({file})")


def _check_weights_only(path: Path, name: str, data: bytes) -> None:
    """torch.export.load retries a failed ``weights_only=True`` load with ``weights_only=False``: fail first."""
    if not data:
        return
    try:
        torch.load(io.BytesIO(data), weights_only=True)
    except Exception as e:
        raise UnsafeArtifactError(path, f"'{name}' is not plain tensors (weights_only load: {type(e).__name__})") from e


def check_torchscript(path: Path) -> None:
    """A TorchScript archive whose pickles name only tensor types and whose code calls only stock operators."""
    with _zip(path) as z:
        for name in z.namelist():
            if name.lower().endswith((".so", ".dll", ".dylib", ".pyd")):
                raise UnsafeArtifactError(path, f"holds '{name}', which would be loaded as code")
            if name.endswith(".pkl"):
                for ref in pickle_globals(z.read(name)):
                    if not TORCHSCRIPT_GLOBALS.match(ref):
                        raise UnsafeArtifactError(path, f"'{name}' names the Python object '{ref}'")
            elif "/code/" in name and name.endswith(".py"):
                text = z.read(name).decode("utf-8", "replace")
                for ns in re.findall(r"\bops\.(\w+)\.", text):
                    if ns not in TORCHSCRIPT_OPS:
                        raise UnsafeArtifactError(path, f"its code calls operators of '{ns}' ({name})")


def pickle_globals(data: bytes) -> list[str]:
    """The ``module.name`` globals a pickle would import, read from its opcodes without running it."""
    found: list[str] = []
    try:
        found += opcode_globals(pickletools.genops(data))
    except Exception as e:  # noqa: BLE001 - a stranger's malformed pickle is reported, never raised
        found.append(f"<unreadable pickle: {type(e).__name__}>")
    return found


def check_onnx(path: Path, base: Path) -> None:
    """An ONNX model whose external data stays in ``base`` and whose operators are onnxruntime's own."""
    try:
        import onnx
    except ImportError as e:
        raise MLMExportError("checking an ONNX file needs onnx: pip install 'mlm-export[onnx]'") from e
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:
        raise UnsafeArtifactError(path, f"is not a readable ONNX model ({type(e).__name__})") from e
    root = base.resolve()
    for tensor in _initializers(model.graph):
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            location = next((e.value for e in tensor.external_data if e.key == "location"), "")
            target = (path.parent / location).resolve()
            if not target.is_relative_to(root):
                raise UnsafeArtifactError(path, f"reads external data from '{location}', outside {root}")
    for op in model.opset_import:
        if op.domain not in ONNX_DOMAINS and op.domain not in {f.domain for f in model.functions}:
            raise UnsafeArtifactError(path, f"uses operators of the custom domain '{op.domain}'")


def _initializers(graph: Any) -> list[Any]:
    out = list(graph.initializer)
    for node in graph.node:
        for attr in node.attribute:
            if attr.g is not None and attr.g.ByteSize():
                out += _initializers(attr.g)
            for g in attr.graphs:
                out += _initializers(g)
    return out
