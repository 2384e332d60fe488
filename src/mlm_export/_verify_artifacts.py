"""``verify`` for every runnable model file of an Item: load it safely, run it at the sizes the Item allows, and
compare it with a reference (the eager model given with ``--model``, else the ``mlm:model`` file).

Cases, from ``mlm:input`` alone: dynamic dims at 64 px, batch 1 and 3, then 96 px and 32 px where the Item
allows any size. The printed figure per file is the largest absolute difference from the reference.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from . import _artifact_safety as artifact_safety
from . import _parity as parity
from . import mlm
from ._artifacts import FORMATS, RUNNABLE

__all__ = [
    "RUNNABLE",
    "WEIGHTS_KINDS",
    "format_of",
    "load_checked",
    "local_file",
    "parity_checks",
    "read_once",
    "read_runnable",
    "runnable_assets",
]
from ._exporters import leaves, load_module
from ._facts import TensorFacts
from ._model_bytes import ModelBytes, read_model_file
from .errors import MLMExportError

#: Dim names that mean height and width (the spec's and openEO's).
_ROLES = {"batch": "batch", "height": "height", "y": "height", "width": "width", "x": "width", "time": "time"}


def format_of(asset: Mapping[str, Any]) -> str | None:
    """The format of a model file asset: by ``mlm:artifact_type``, else its media type, else its suffix."""
    kind = asset.get(mlm.ARTIFACT_TYPE)
    for name, f in FORMATS.items():
        if kind and kind == f.artifact_type:
            return name
    media = asset.get("type")
    for name, f in FORMATS.items():
        if media and media == f.media_type and name in RUNNABLE:
            return name
    href = str(asset.get("href", ""))
    return next((n for n in ("torchscript", "pt2", "onnx") if href.endswith(FORMATS[n].suffix)), None)


def runnable_assets(item: Mapping[str, Any]) -> list[tuple[str, str, Mapping[str, Any]]]:
    """(key, format, asset) of each file that runs without the code, the ``mlm:model`` first."""
    found = []
    for key, asset in (item.get("assets") or {}).items():
        fmt = format_of(asset)
        if fmt in RUNNABLE:
            found.append((key, fmt, asset))
    return sorted(found, key=lambda t: mlm.ROLE_MODEL not in (t[2].get("roles") or []))


def local_file(base: Path, href: str) -> Path:
    """The asset's file, which must be inside the Item's folder (no URL, no path out of it)."""
    if "://" in href or href.startswith("/"):
        raise MLMExportError(f"'{href}' is not a file beside the Item; verify loads only local files")
    path = (base / href).resolve()
    if not path.is_relative_to(base.resolve()):
        raise MLMExportError(f"'{href}' points outside the Item's folder; verify does not load it")
    return path


#: ``mlm:artifact_type`` of weights files verify loads into a rebuilt model (read once, like runnable files).
WEIGHTS_KINDS = (mlm.ARTIFACT_SAFETENSORS, mlm.ARTIFACT_TORCH_SAVE)


def read_runnable(
    item: Mapping[str, Any], base: Path, *, allow_outside: bool = False
) -> dict[str, ModelBytes | MLMExportError]:
    """The bytes of each local model file verify may load (runnable files, and an ``mlm:model`` of weights),
    read once (or why it could not be read), by key: they are hashed, checked and loaded from memory, never
    reopened by name."""
    keys = [key for key, _, _ in runnable_assets(item)]
    keys += [
        key
        for key, asset in (item.get("assets") or {}).items()
        if isinstance(asset, Mapping)
        and key not in keys
        and asset.get(mlm.ARTIFACT_TYPE) in WEIGHTS_KINDS
        and mlm.ROLE_MODEL in (asset.get("roles") or [])
    ]
    out: dict[str, ModelBytes | MLMExportError] = {}
    for key in keys:
        href = str(item["assets"][key].get("href", ""))
        if "://" in href and not href.startswith("file://"):
            continue  # remote: verify loads only local files
        out[key] = read_once(base, href, allow_outside=allow_outside)
    return out


def read_once(base: Path, href: str, *, allow_outside: bool = False) -> ModelBytes | MLMExportError:
    """One model file's bytes (:func:`read_model_file`), or the one-line reason it could not be read."""
    try:
        return read_model_file(base, href, allow_outside=allow_outside)
    except MLMExportError as e:
        return e
    except OSError as e:
        return MLMExportError(f"cannot read {href}: {e.strerror or e}")


def load_checked(
    fmt: str,
    base: Path,
    asset: Mapping[str, Any],
    *,
    trust: bool,
    names: Sequence[str],
    data: ModelBytes | MLMExportError | None = None,
) -> Any:
    """Check the file's bytes (unless trusted), then load the same bytes as a callable.

    ``data``: the bytes :func:`read_runnable` read; without them the file is read here, once.
    """
    href = str(asset.get("href", ""))
    path = local_file(base, href)
    if data is None:
        data = read_model_file(base, href)
    if isinstance(data, MLMExportError):
        raise data
    if not trust:
        artifact_safety.check(fmt, path, base, data.data)
    try:
        return load_module(fmt, path, input_names=names, data=data.data)
    except MLMExportError:
        raise
    except Exception as e:
        raise MLMExportError(f"cannot load {path.name} as {fmt}: {type(e).__name__}: {e}") from e


def input_facts(inputs: Sequence[Mapping[str, Any]]) -> list[TensorFacts]:
    """``mlm:input`` as the facts parity cases are made from."""
    facts = []
    for inp in inputs:
        s = inp["input"]
        roles = tuple(_ROLES.get(d) for d in s["dim_order"])
        facts.append(TensorFacts(inp["name"], tuple(s["shape"]), roles, s["data_type"]))
    return facts


def parity_checks(
    item: Mapping[str, Any],
    base: Path,
    examples: Sequence[torch.Tensor],
    call: Callable[[Any, Sequence[torch.Tensor]], Any],
    *,
    trust: bool,
    eager: Any = None,
    size: int = 64,
    contents: Mapping[str, ModelBytes | MLMExportError] | None = None,
) -> list[tuple[str, bool, str, bool]]:
    """(name, ok, detail, limited) per runnable file: its largest difference from the reference over the cases;
    ``limited`` when it holds but some case did not run (a refusal the file documents, a case skipped).

    ``contents``: the files' bytes as :func:`read_runnable` read them (files not in it are read once here).
    """
    props = item.get("properties", {})
    facts = input_facts(props.get(mlm.INPUT, []))
    names = [f.name for f in facts]
    cases = parity.cases(examples, facts, base=size)
    loaded: list[tuple[str, str, Mapping[str, Any], Any]] = []
    out: list[tuple[str, bool, str, bool]] = []
    for key, fmt, asset in runnable_assets(item):
        try:
            data = (contents or {}).get(key)
            loaded.append((key, fmt, asset, load_checked(fmt, base, asset, trust=trust, names=names, data=data)))
        except MLMExportError as e:
            out.append((f"parity {key} ({fmt})", False, str(e), False))
    if not loaded:
        return out
    if eager is not None:
        ref_name, reference = "the eager model", eager
    else:
        ref_name, reference = f"'{loaded[0][0]}'", loaded[0][3]
    ref_call = _as_call(reference, call)
    for key, fmt, asset, module in loaded:
        results = parity.compare(ref_call, _as_call(module, call), cases)
        is_reference = module is reference
        failed = [r for r in results if not r.ok]
        if is_reference:  # its own refusals are the finding: sizes the Item allows that the file does not run
            failed = [r for r in results if r.skipped]
            documented = "Refuses sizes" in str(asset.get("description", ""))
            refusals = "; ".join(f"{r.label}: {r.error}" for r in failed)
            if not failed:
                detail = "the reference; runs at every case"
            elif documented:  # holds, with the limit its description states: said so, never a bare "ok"
                detail = f"the reference; refuses the sizes its description says it refuses: {refusals}"
            else:
                detail = f"the reference; refuses sizes the Item allows: {refusals}"
            out.append((f"parity {key} ({fmt})", not failed or documented, detail, bool(failed) and documented))
            continue
        skipped = any(r.skipped for r in results)
        out.append((f"parity {key} ({fmt})", not failed, f"vs {ref_name}: {parity.summary(results)}", skipped))
    return out


def _as_call(module: Any, call: Callable[[Any, Sequence[torch.Tensor]], Any]) -> parity.Call:
    def run(tensors: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        with torch.no_grad():
            return leaves(call(module, tensors))

    return run
