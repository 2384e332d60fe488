"""Loading a ``torch.save`` file without running code: which globals its pickle names, and the allowlist.

torch's own static scan (:func:`torch.serialization.get_unsafe_globals_in_checkpoint`) lists the globals a
zip checkpoint names that ``weights_only`` loading would refuse; the ones that are pretrained-weights enums or
Lightning's ``AttributeDict`` are allowlisted, any other is refused by name before anything is unpickled.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import pathlib
import pickle
import pickletools
import zipfile
from pathlib import Path
from typing import Any, BinaryIO

import torch

from .. import _limits as limits
from ..errors import CheckpointError, InputTooLargeError, UntrustedCheckpointError, first_line
from .archive_limits import pickle_too_large


def safe_types() -> list[Any]:
    """Types that appear in Lightning and TorchGeo checkpoints and are safe to rebuild.

    Weights enums are allowlisted one by one when a checkpoint names them (see :func:`_allowable`), so that
    loading a checkpoint does not import TorchGeo.
    """
    types: list[Any] = [
        pathlib.PosixPath,
        pathlib.WindowsPath,
        pathlib.PurePosixPath,
        pathlib.PureWindowsPath,
        argparse.Namespace,
        torch.torch_version.TorchVersion,
    ]
    with contextlib.suppress(ImportError):
        import numpy as np

        core = getattr(np, "_core", None) or np.core  # numpy 2 renamed numpy.core
        types += [np.dtype, core.multiarray.scalar]
        types += [type(np.dtype(t)) for t in ("float64", "float32", "int64", "int32", "bool")]
    return types


#: Safe classes imported only when a checkpoint names them (importing Lightning or TorchGeo is costly).
ON_DEMAND = (
    "lightning.fabric.utilities.data.AttributeDict",
    "lightning_fabric.utilities.data.AttributeDict",
    "pytorch_lightning.utilities.parsing.AttributeDict",
)
#: Modules whose pretrained-weights enums may be rebuilt from a checkpoint (trainers keep them in hparams).
WEIGHTS_ENUM_MODULES = ("torchgeo.models", "torchvision.models")
#: Globals of the legacy (non-zip) format that torch's weights-only unpickler accepts: its rebuild helpers,
#: storages and containers. Only used to name the culprit in an error; torch's own load is the gate.
LEGACY_TORCH_PREFIXES = ("torch._utils.", "torch.", "collections.OrderedDict", "builtins.")


def _allowable(global_name: str) -> Any:
    """The class a checkpoint names, if it is on the on-demand list or a pretrained-weights enum, else None."""
    module_name, _, attr = global_name.rpartition(".")
    on_demand = global_name in ON_DEMAND
    in_weights_module = any(module_name == m or module_name.startswith(m + ".") for m in WEIGHTS_ENUM_MODULES)
    if not on_demand and (not in_weights_module or not attr.endswith("Weights")):
        return None
    try:
        obj = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError):
        return None
    if on_demand:
        return obj
    try:
        from torchvision.models._api import WeightsEnum
    except ImportError:
        return None
    return obj if isinstance(obj, type) and issubclass(obj, WeightsEnum) else None


def torch_load(path: Path, trust: bool, *, zipped: bool, data: bytes | None = None) -> Any:
    """``torch.load`` of ``path``: with ``weights_only`` and the allowlist unless ``trust``.

    The globals the file names outside torch's defaults are read first, without unpickling: allowlisted when
    :func:`_allowable`, refused by name otherwise. ``data``: the file's bytes, already read; every step reads
    them (no memory map) and ``path`` is never opened.
    """
    if trust:
        return _load(path, zipped, weights_only=False, data=data)
    allowed = safe_types()
    if zipped:
        with torch.serialization.safe_globals(allowed):
            unsafe = _unsafe_globals(path, data)
        extras = {name: _allowable(name) for name in unsafe}
        refused = [name for name, extra in extras.items() if extra is None]
        if refused:
            raise UntrustedCheckpointError(path, "', '".join(refused))
    else:  # torch's scan reads zip files only: a legacy file's globals come from its opcodes; torch refuses the rest
        extras = {name: _allowable(name) for name in dict.fromkeys(_file_globals(path, data))}
    allowed += [extra for extra in extras.values() if extra is not None]  # weights enums, AttributeDict
    try:
        with torch.serialization.safe_globals(allowed):
            return torch.load(_source(path, data), map_location="cpu", weights_only=True, mmap=zipped and data is None)
    except pickle.UnpicklingError as e:
        if not zipped:  # the legacy format: torch's scan reads zip files only
            culprit = _legacy_culprit(path, allowed, data)
            if culprit is not None:
                raise UntrustedCheckpointError(path, culprit) from None
        raise CheckpointError(f"{path.name}: cannot be unpickled ({first_line(e, 240)})") from e
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as e:
        raise CheckpointError(f"{path.name}: truncated or corrupt ({first_line(e, 240)})") from e


def _source(path: Path, data: bytes | None) -> Path | io.BytesIO:
    """What torch reads: the file by name, or the bytes already read from it."""
    return path if data is None else io.BytesIO(data)


def _unsafe_globals(path: Path, data: bytes | None = None) -> list[str]:
    """The globals of a zip checkpoint that a weights-only load would refuse now (torch's static scan)."""
    try:
        return sorted(torch.serialization.get_unsafe_globals_in_checkpoint(_source(path, data)))
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, zipfile.BadZipFile, pickle.UnpicklingError) as e:
        raise CheckpointError(f"{path.name}: truncated or corrupt ({first_line(e, 240)})") from e


def _legacy_culprit(path: Path, allowed: list[Any], data: bytes | None = None) -> str | None:
    """The first global of a legacy-format file that is neither torch's nor allowlisted (for the message)."""
    known = {f"{t.__module__}.{t.__qualname__}" for t in allowed}
    for name in _file_globals(path, data):
        if name not in known and not name.startswith(LEGACY_TORCH_PREFIXES):
            return name
    return None


def _file_globals(path: Path, data: bytes | None = None) -> list[str]:
    """:func:`legacy_globals` of a file (or of ``data``, its bytes already read), as a stream: only its head
    pickles, not the storage bytes; a head over ``_limits.PICKLE_BYTES`` is refused (:class:`InputTooLargeError`)
    as soon as the scan passes it."""
    stream = io.BytesIO(data) if data is not None else path.open("rb")
    with stream:
        try:
            return legacy_globals(stream, limit=limits.PICKLE_BYTES)
        except InputTooLargeError:
            raise pickle_too_large(path.name, stream.tell()) from None


def legacy_globals(data: bytes | BinaryIO, *, limit: int | None = None) -> list[str]:
    """Globals named by the pickles at the head of a legacy ``torch.save`` file (magic, protocol, system
    info, object, storage keys), read from their opcodes without running them, up to byte ``limit``."""
    stream = io.BytesIO(data) if isinstance(data, bytes) else data
    found: list[str] = []
    try:
        for _ in range(5):
            found += opcode_globals(pickletools.genops(stream), limit=limit)
    except InputTooLargeError:
        raise
    except Exception:  # noqa: S110 - the raw storage bytes that follow are not a pickle
        pass
    return found


def opcode_globals(ops: Any, *, limit: int | None = None) -> list[str]:
    """``module.name`` of every global that pickle opcodes (from :func:`pickletools.genops`) import; opcodes
    past byte ``limit`` of the stream are an :class:`InputTooLargeError`."""
    found: list[str] = []
    strings: list[str] = []
    for op, arg, pos in ops:
        if limit is not None and pos is not None and pos > limit:
            raise InputTooLargeError(f"pickle over {limit:,} bytes")
        if op.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE", "BINUNICODE8", "SHORT_BINSTRING", "BINSTRING"):
            strings.append(str(arg))
        elif op.name in ("GLOBAL", "INST"):
            found.append(str(arg).replace(" ", "."))
        elif op.name == "STACK_GLOBAL":
            found.append(".".join(strings[-2:]) if len(strings) >= 2 else "?")
    return found


def _load(path: Path, zipped: bool, *, weights_only: bool, data: bytes | None = None) -> Any:
    try:
        mmap = zipped and data is None
        return torch.load(_source(path, data), map_location="cpu", weights_only=weights_only, mmap=mmap)
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile, pickle.UnpicklingError) as e:
        raise CheckpointError(f"{path.name}: truncated or corrupt ({first_line(e, 240)})") from e
