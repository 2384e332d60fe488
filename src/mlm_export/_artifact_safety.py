"""Look inside a model file from a stranger before loading it: refuse what loading would unpickle or run.

``torch.export.load`` unpickles weights and constants marked ``use_pickle`` with ``weights_only=False``, custom
objects with the full unpickler, and sample inputs with ``weights_only=False`` when the safe load fails: a
tampered ``.pt2`` runs code. TorchScript archives hold pickles and TorchScript code; ONNX files can point at
external data files anywhere on the disk; a ``.pt2``'s symbolic sizes and guards are Python to torch, and its
TorchScript code can call operators that read and write files. Each check reads the bytes of the archive as
data only (``zipfile``, ``json``, ``ast``, ``pickletools``, ``onnx`` without external data), holds what would
run to the allowlists of :mod:`._model_code`, and raises :class:`UnsafeArtifactError` on anything beyond
plain tensors and pure tensor operators; ``trust=True`` (``--trust-checkpoint``) skips the checks.
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

from . import _model_code as code
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
#: Members a ``torch.export.save`` archive may hold, below its one root folder: the program (every member
#: under ``models/`` is read as one), its weights, constants and sample inputs, and the bookkeeping files.
#: Anything else (AOTInductor or ExecuTorch libraries and sources, which would be loaded or compiled) is refused.
PT2_LAYOUT = re.compile(
    r"^(archive_format|archive_version|byteorder|\.data/version|\.data/serialization_id"
    r"|models/[\w.-]+\.json|data/(weights|constants)/[\w.-]+|data/sample_inputs/[\w.-]+\.pt|extra/[\w.-]+)$"
)
#: Largest JSON or code member of an archive read for the checks (bytes): a program's description, not weights.
MAX_MEMBER = 256 << 20
#: ONNX operator domains onnxruntime ships.
ONNX_DOMAINS = {"", "ai.onnx", "ai.onnx.ml", "com.microsoft", "ai.onnx.preview.training", "pkg.onnxscript.torch_lib"}


def check(fmt: str, path: Path, base: Path, data: bytes | None = None) -> None:
    """Refuse ``path`` (of format ``fmt``) if loading it could run code or read outside ``base``; ``data``: the
    file's bytes, already read (the file is then not opened again)."""
    source: Path | bytes = path if data is None else data
    if fmt == "pt2":
        check_pt2(source, path)
    elif fmt == "torchscript":
        check_torchscript(source, path)
    elif fmt == "onnx":
        check_onnx(source, base, path)


def _zip(source: Path | bytes, path: Path) -> zipfile.ZipFile:
    """The archive, refused when two members share a name (up to case): torch's reader could load the one
    the checks did not read."""
    try:
        z = zipfile.ZipFile(io.BytesIO(source) if isinstance(source, bytes) else source)
    except zipfile.BadZipFile as e:
        raise UnsafeArtifactError(path, f"is not a zip archive ({e})") from e
    except OSError as e:
        raise MLMExportError(f"cannot read {path.name}: {e}") from e
    seen: set[str] = set()
    for name in z.namelist():
        if name.lower() in seen:
            z.close()
            raise UnsafeArtifactError(path, f"holds '{name}' twice")
        seen.add(name.lower())
    return z


def _member(z: zipfile.ZipFile, path: Path, name: str) -> bytes:
    """A member's bytes, refused when it would inflate past :data:`MAX_MEMBER`."""
    if z.getinfo(name).file_size > MAX_MEMBER:
        raise UnsafeArtifactError(path, f"'{name}' declares {z.getinfo(name).file_size:,} bytes, too large to check")
    with z.open(name) as f:
        data = f.read(MAX_MEMBER + 1)
    if len(data) > MAX_MEMBER:
        raise UnsafeArtifactError(path, f"'{name}' inflates past {MAX_MEMBER:,} bytes, too large to check")
    return data


def check_pt2(source: Path | bytes, path: Path | None = None) -> None:
    """A ``torch.export`` archive whose weights, constants and sample inputs all load without unpickling code,
    and whose JSON members hand torch only sizes, guards and operators of the allowlists."""
    path = path or (source if isinstance(source, Path) else Path("archive.pt2"))
    with _zip(source, path) as z:
        names = z.namelist()
        for name in names:
            if name.lower().endswith(CODE_SUFFIXES):
                raise UnsafeArtifactError(path, f"holds '{name}', which would be loaded as code")
        _check_layout(path, names)
        for name in names:
            parts = PurePosixPath(name).parts
            legacy = len(parts) >= 3 and parts[-3:-1] in (("data", "weights"), ("data", "constants"))
            if legacy and name.endswith(".pt"):  # the legacy layout: one pickle of everything
                raise UnsafeArtifactError(path, f"holds the legacy pickled '{name}'")
            if "/data/sample_inputs/" in name:
                _check_weights_only(path, name, _member(z, path, name))
            if name.lower().endswith(".json"):
                try:
                    doc = json.loads(_member(z, path, name))
                except (ValueError, RecursionError) as e:
                    raise UnsafeArtifactError(path, f"'{name}' is not JSON ({e})") from e
                if ("/data/weights/" in name or "/data/constants/" in name) and name.endswith("_config.json"):
                    _check_payload_config(path, name, doc)
                _check_program(path, name, doc)


def _check_layout(path: Path, names: list[str]) -> None:
    """Every member in one root folder, each where ``torch.export.save`` puts it (:data:`PT2_LAYOUT`)."""
    root = names[0].split("/", 1)[0] if names else ""
    for name in names:
        top, _, rest = name.partition("/")
        if top != root or not PT2_LAYOUT.match(rest):
            raise UnsafeArtifactError(path, f"holds '{name}', which is not part of an exported program's layout")


def _check_program(path: Path, name: str, doc: Any) -> None:
    """Every string of a JSON member that torch would evaluate: ``expr_str`` (sympy), ``guards_code`` (Python
    source it compiles), node ``target`` (an attribute path from ``torch``), ``range_constraints`` keys."""
    for key, value in _walk(doc):
        problem = None
        try:
            if key == "expr_str":
                code.check_size_expression(_text(value))
            elif key == "guards_code":
                for guard in value if isinstance(value, list) else [value]:
                    code.check_guard(_text(guard))
            elif key == "range_constraints" and isinstance(value, dict):
                for sym in value:
                    code.check_size_expression(sym)
            elif key == "target" and isinstance(value, str):
                problem = code.export_target_problem(value)
        except code.GrammarError as e:
            problem = f"has {key} {e}, outside the grammar of sizes"
        if problem:
            raise UnsafeArtifactError(path, f"'{name}' {problem}")


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise code.GrammarError(f"a {type(value).__name__} where a string was expected")
    return value


def _walk(doc: Any) -> list[tuple[str, Any]]:
    """(key, value) of every mapping entry in a JSON document, without recursion (a deep document cannot
    exhaust the stack)."""
    found: list[tuple[str, Any]] = []
    stack = [doc]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for k, v in node.items():
                found.append((str(k), v))
                stack.append(v)
        elif isinstance(node, list):
            stack.extend(node)
    return found


def _check_payload_config(path: Path, name: str, config: Any) -> None:
    """Weights and constants stored as tensors, never as pickles."""
    entries = config.get("config") if isinstance(config, dict) else None
    if not isinstance(entries, dict) or not all(isinstance(m, dict) for m in entries.values()):
        raise UnsafeArtifactError(path, f"'{name}' is not a payload description (a 'config' of objects)")
    for fqn, meta in entries.items():
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


def check_torchscript(source: Path | bytes, path: Path | None = None) -> None:
    """A TorchScript archive whose pickles name only tensor types and whose code (every method of every class
    and function in ``code/``) calls only the allowlisted operators, read without loading the module."""
    path = path or (source if isinstance(source, Path) else Path("archive.torchscript"))
    files: dict[str, str] = {}
    with _zip(source, path) as z:
        for name in z.namelist():
            if name.lower().endswith((".so", ".dll", ".dylib", ".pyd")):
                raise UnsafeArtifactError(path, f"holds '{name}', which would be loaded as code")
            if name.endswith(".pkl"):
                for ref in pickle_globals(_member(z, path, name)):
                    if not TORCHSCRIPT_GLOBALS.match(ref):
                        raise UnsafeArtifactError(path, f"'{name}' names the Python object '{ref}'")
            elif name.endswith(".py"):
                if "/code/" not in name:
                    raise UnsafeArtifactError(path, f"holds the code file '{name}' outside code/")
                try:
                    files[name] = _member(z, path, name).decode("utf-8")
                except UnicodeDecodeError as e:
                    raise UnsafeArtifactError(path, f"its code file '{name}' is not text") from e
    for problem in code.script_code_problems(files):
        raise UnsafeArtifactError(path, f"its code {problem.replace(': ', ' ', 1)}")


def pickle_globals(data: bytes) -> list[str]:
    """The ``module.name`` globals a pickle would import, read from its opcodes without running it."""
    found: list[str] = []
    try:
        found += opcode_globals(pickletools.genops(data))
    except Exception as e:
        found.append(f"<unreadable pickle: {type(e).__name__}>")
    return found


def check_onnx(source: Path | bytes, base: Path, path: Path | None = None) -> None:
    """An ONNX model whose external data stays in ``base`` and whose operators are onnxruntime's own."""
    try:
        import onnx
    except ImportError as e:
        raise MLMExportError("checking an ONNX file needs onnx: pip install 'mlm-export[onnx]'") from e
    path = path or (source if isinstance(source, Path) else base / "model.onnx")
    try:
        if isinstance(source, bytes):
            model = onnx.load_model_from_string(source)
        else:
            model = onnx.load(str(source), load_external_data=False)
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
