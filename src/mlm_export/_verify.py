"""Prove that an Item describes its model: files, schema, and a real run on a batch built from ``mlm:input``."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import _artifact_safety as artifact_safety
from . import mlm
from ._checks import STRUCTURE_RULES, consistency_problems
from ._guard import SAFE, Policy
from ._hrefs import read_json
from ._isolate import MAX_MEMORY, TIMEOUT, Child, Limits, out_of_memory
from ._model_bytes import ModelBytes
from ._rebuild import checkpoint_spec
from ._sources.checkpoint import load, load_weights
from ._sources.model import observe_outputs
from ._validate import validation_problems
from ._verify_artifacts import (
    RUNNABLE,
    WEIGHTS_KINDS,
    format_of,
    load_checked,
    local_file,
    parity_checks,
    read_once,
    read_runnable,
    runnable_assets,
)
from .errors import (
    InputTooLargeError,
    IsolatedMemoryError,
    IsolatedRunError,
    ItemValidationError,
    MLMExportError,
    NotJSONError,
    Problem,
)

#: Size given to dynamic (-1) non-batch dims of the synthetic batch; a multiple of 32 suits common encoders.
DYNAMIC_SIZE = 64
#: Batch size of the synthetic batch when the batch dim is dynamic.
BATCH = 2
#: The ``run`` row of ``run=False`` (``--no-run``).
NOT_RUN = "not run (--no-run): the files were checked as data, no model was loaded or run"

_DTYPES = {
    "float16": torch.float16,
    "float32": torch.float32,
    "float64": torch.float64,
    "int8": torch.int8,
    "int16": torch.int16,
    "int32": torch.int32,
    "int64": torch.int64,
    "uint8": torch.uint8,
    "cfloat32": torch.complex64,
    "cfloat64": torch.complex128,
}


@dataclass(frozen=True)
class Check:
    """One verified fact: what was checked, whether it holds, and the detail."""

    name: str
    ok: bool
    detail: str
    #: It holds, but not everywhere: some case did not run (the detail says which and why). Shown as "limited".
    limited: bool = False
    #: Not done (``run=False``, a trusted file not inspected): neither a pass nor a failure.
    skipped: bool = False

    @property
    def status(self) -> str:
        """What the check found, in one word: ``ok``, ``limited`` (holds where it ran), ``skipped`` or ``FAIL``."""
        if self.skipped:
            return "skipped"
        return "FAIL" if not self.ok else "limited" if self.limited else "ok"

    def as_dict(self) -> dict[str, Any]:
        return {"check": self.name, "ok": self.ok, "status": self.status, "detail": self.detail,
                "skipped": self.skipped}  # fmt: skip

    @classmethod
    def from_dict(cls, row: Mapping[str, Any]) -> Check:
        """A row :meth:`as_dict` made (the child's reply)."""
        status = str(row.get("status", ""))
        return cls(str(row["check"]), bool(row["ok"]), str(row["detail"]), status == "limited", status == "skipped")


def verify_item(
    path: str | Path,
    *,
    model: str | None = None,
    init_args: Mapping[str, Any] | None = None,
    trust: bool = False,
    allow_modules: tuple[str, ...] = (),
    allow_outside: bool = False,
    download: bool = False,
    run: bool = True,
    max_memory: int = MAX_MEMORY,
    timeout: float = TIMEOUT,
) -> list[Check]:
    """Check an Item's files, schema and cross-field rules, then run its model and compare the outputs.

    A file that is not JSON is a :class:`NotJSONError`; an Item the schema rejects is still checked as far as
    its fields allow, each unusable field a failed check (never an uncaught ``KeyError``). Models run in a
    limited child process (:mod:`mlm_export._isolate`: ``max_memory`` bytes beyond the runtime, ``timeout``
    seconds, no network); ``run=False`` reads the model files as data and runs nothing.
    """
    path = Path(path)
    try:
        item = read_json(path)  # a regular file only: a FIFO named like an Item would block the read
    except InputTooLargeError:
        raise  # over a cap of _limits (size, nesting): says which, not "not JSON"
    except ValueError as e:
        raise NotJSONError(path, e) from e
    if not isinstance(item, dict):
        return [Check("schema", False, f"{path.name} holds a JSON {type(item).__name__}, not a STAC Item")]
    schema = _schema_problems(item)
    checks = [Check("schema", not schema, _join(schema) or "valid")]
    if not (isinstance(item.get("properties"), dict) and isinstance(item.get("assets"), dict)):
        return [*checks, Check("load model", False, "not loaded: the file has no properties and assets to read")]
    what = f"the model files of {path.name}"
    with Child(Limits(memory=max_memory, timeout=timeout, network=download), what=what) as child:
        if run:
            child.launch()  # it imports torch while the files are hashed here; ended unused if they fail
        found, files_read = _file_checks(item, path.parent, allow_outside=allow_outside)
        checks += found
        if files_read is None:
            return checks
        if not run:
            static = static_checks(item, path.parent, trust=trust, contents=files_read)
            return [*checks, *static, Check("run", True, NOT_RUN, skipped=True)]
        # The child loads and runs the bytes read, hashed and checked here, never a file by name: they travel in
        # the request, out of band, each file in one piece (ModelBytes' pickle), and the child's address-space
        # budget is raised by their size when it is set (Child.call), so --max-memory stays the model's own.
        try:
            rows = child.call(
                "mlm_export._verify:run_models", item, str(path.parent), model=model, init_args=init_args,
                trust=trust, allow_modules=tuple(allow_modules), download=download, what=what, max_memory=max_memory,
                contents=files_read,
            )  # fmt: skip
        except IsolatedRunError as e:
            return [*checks, Check("run", False, str(e))]
    return [*checks, *(Check.from_dict(r) for r in rows)]


def _file_checks(
    item: Mapping[str, Any], base: Path, *, allow_outside: bool
) -> tuple[list[Check], dict[str, ModelBytes] | None]:
    """The rows for the files (sizes, checksums, confinement) and cross-field rules, and the bytes of each model
    file, read once (:func:`read_runnable`); ``None`` when no model may load."""
    try:
        files_read = read_runnable(item, base, allow_outside=allow_outside)  # each model file read once
        read = {k: v if isinstance(v, MLMExportError) else (v.size, v.checksum) for k, v in files_read.items()}
        problems = consistency_problems(item, base, allow_outside=allow_outside, contents=read)
    except (AttributeError, KeyError, TypeError, ValueError) as e:  # a structure the schema check rejects
        return [Check("consistency", False, f"cannot check: {type(e).__name__}: {e} (see 'schema')")], None
    file_rules = {"asset-exists", "asset-size", "asset-checksum", "asset-outside"}
    files = [p for p in problems if p.schema in file_rules]
    rules = [p for p in problems if p.schema not in file_rules]
    checks = [
        Check("files", not files, _join(files) or "every local asset has its stated size and checksum"),
        Check("consistency", not rules, _join(rules) or "bands, classes and model assets agree"),
    ]
    refused = _not_loaded(rules, files)
    if refused:
        return [*checks, Check("load model", False, refused)], None
    # every file read matched the Item (a read that failed is a 'files' problem above): only bytes are left
    return checks, {k: v for k, v in files_read.items() if isinstance(v, ModelBytes)}


def static_checks(
    item: Mapping[str, Any], base: Path, *, trust: bool, contents: Mapping[str, ModelBytes] | None = None
) -> list[Check]:
    """``run=False``: each runnable model file read as data (what loading it would run), none loaded;
    ``contents``: the files' bytes as :func:`read_runnable` read them (files not in it are read once here)."""
    out = []
    for key, fmt, asset in runnable_assets(item):
        name = f"file {key} ({fmt})"
        if trust:
            out.append(Check(name, True, "not inspected (trusted)", skipped=True))
            continue
        try:
            href = str(asset.get("href", ""))
            read = (contents or {}).get(key) or read_once(base, href)
            if isinstance(read, MLMExportError):
                raise read
            artifact_safety.check(fmt, local_file(base, href), base, read.data)
        except MLMExportError as e:
            out.append(Check(name, False, str(e)))
            continue
        out.append(Check(name, True, "holds nothing that loading it would run"))
    return out


def run_models(
    item: Mapping[str, Any],
    base: str,
    *,
    model: str | None,
    init_args: Mapping[str, Any] | None,
    trust: bool,
    allow_modules: tuple[str, ...],
    download: bool,
    what: str,
    max_memory: int,
    contents: Mapping[str, ModelBytes],
) -> list[dict[str, Any]]:
    """In the limited child: load the Item's model, run it, compare its outputs and every model file's.

    ``contents``: the bytes of each model file the parent read, hashed and checked; loaded from memory here,
    never reopened by name (a file swapped since cannot be loaded in their place)."""
    policy = Policy(trust=trust, allow_modules=tuple(allow_modules), download=download)
    checks = _run_checks(
        item, Path(base), model=model, init_args=init_args, trust=trust, policy=policy, contents=contents
    )
    memory = str(IsolatedMemoryError(what, max_memory))  # an allocation that failed is the memory limit
    return [(replace(c, detail=memory) if out_of_memory(c.detail) else c).as_dict() for c in checks]


def _run_checks(
    item: Mapping[str, Any],
    base: Path,
    *,
    model: str | None,
    init_args: Mapping[str, Any] | None,
    trust: bool,
    policy: Policy,
    contents: Mapping[str, ModelBytes | MLMExportError],
) -> list[Check]:
    checks: list[Check] = []
    try:
        module, how = load_model(
            item, base, model=model, init_args=init_args, trust=trust, policy=policy, contents=contents
        )
    except MLMExportError as e:
        checks.append(Check("load model", False, str(e)))
        return checks + _other_files(item, base, trust, contents)
    except (KeyError, TypeError) as e:
        return [*checks, Check("load model", False, _unusable(e, "the mlm:model asset"))]
    checks.append(Check("load model", True, how))
    props = item.get("properties", {})
    try:
        args, kwargs, described = synthetic_batch(props.get(mlm.INPUT, []), module)
    except (ValueError, KeyError, TypeError) as e:
        return [*checks, Check("run", False, _unusable(e, mlm.INPUT))]
    try:
        with torch.no_grad():
            out = module(*args, **kwargs)
    except Exception as e:  # noqa: BLE001 - the model's own error is the check's result
        return [*checks, Check("run", False, f"the model fails on a batch built from mlm:input ({described}): {e}")]
    checks.append(Check("run", True, f"ran on {described}"))
    try:
        checks += compare_outputs(props.get(mlm.OUTPUT, []), out)
    except (KeyError, TypeError) as e:
        return [*checks, Check("outputs", False, _unusable(e, mlm.OUTPUT))]
    names = [i["name"] for i in props.get(mlm.INPUT, [])]
    examples = list(kwargs.values()) if kwargs else list(args)

    def call(m: Any, tensors: Any) -> Any:
        return m(**dict(zip(names, tensors, strict=True))) if kwargs else m(*tensors)

    eager = module if isinstance(module, nn.Module) and not _is_exported(module) else None
    for name, ok, detail, limited in parity_checks(
        item, base, examples, call, trust=trust, eager=eager, contents=contents
    ):
        checks.append(Check(name, ok, detail, limited))
    return checks


def _not_loaded(rules: list[Problem], files: list[Problem]) -> str | None:
    """Why the Item's model is not loaded (its broken rules or files), or None when it may be."""
    broken = [p for p in rules if p.schema in STRUCTURE_RULES]
    if broken:  # a batch built from such an Item, or outputs compared with it, would mean nothing
        return f"not run: mlm:input/mlm:output contradict themselves: {_join(broken)}"
    if any(p.schema == "asset-outside" for p in files):  # nothing is loaded from outside the Item's folder
        return "not loaded: an href leads outside the Item's folder"
    if files:  # a file that is not the one the Item describes is never loaded
        return "not loaded: the files do not match the Item (see 'files')"
    return None


def load_model(
    item: Mapping[str, Any],
    base: Path,
    *,
    model: str | None,
    init_args: Mapping[str, Any] | None,
    trust: bool,
    policy: Policy = SAFE,
    contents: Mapping[str, ModelBytes | MLMExportError] | None = None,
) -> tuple[Any, str]:
    """The Item's ``mlm:model`` artifact as a runnable module, without the training code where its type allows.

    ``contents``: runnable files already read (:func:`read_runnable`), loaded from those bytes.
    """
    assets = item.get("assets", {})
    key, asset = next(((k, a) for k, a in assets.items() if mlm.ROLE_MODEL in (a.get("roles") or [])), (None, None))
    if asset is None:
        raise MLMExportError(f"the Item has no '{mlm.ROLE_MODEL}' asset")
    file = local_file(base, str(asset["href"]))
    kind = asset.get(mlm.ARTIFACT_TYPE)
    fmt = format_of(asset)
    if fmt in RUNNABLE:
        names = [i["name"] for i in item.get("properties", {}).get(mlm.INPUT, [])]
        data = (contents or {}).get(str(key))
        module = load_checked(str(fmt), base, asset, trust=trust, names=names, data=data)
        return module, f"{file.name} ({kind}, no training code)"
    if kind in WEIGHTS_KINDS:
        read = (contents or {}).get(str(key)) or read_once(base, str(asset["href"]))
        if isinstance(read, MLMExportError):
            raise read
        ckpt = load(file, trust=trust, data=read.data)  # the bytes hashed and checked: the file is not reopened
        spec = checkpoint_spec(ckpt, model=model, init_args=init_args, policy=policy)
        module = load_weights(spec.build(on_meta=False), ckpt.state_dict, spec.target)
        return module.eval(), f"{file.name} ({kind}) into {spec.target}"
    raise MLMExportError(f"asset '{key}' has mlm:artifact_type {kind!r}, which verify cannot load")


def synthetic_batch(inputs: list[dict[str, Any]], module: Any) -> tuple[tuple[Any, ...], dict[str, Any], str]:
    """Tensors shaped and typed as ``mlm:input`` says (dynamic dims filled), passed the way forward takes them."""
    if not inputs:
        raise ValueError("the Item has no mlm:input")
    gen = torch.Generator().manual_seed(0)
    tensors = {}
    for inp in inputs:
        s = inp["input"]
        shape = [
            (BATCH if d == "batch" else DYNAMIC_SIZE) if n == -1 else n
            for n, d in zip(s["shape"], s["dim_order"], strict=True)
        ]
        dtype = _DTYPES.get(s["data_type"])
        if dtype is None:
            raise ValueError(f"input '{inp['name']}' has data_type {s['data_type']!r}, which verify cannot make")
        if dtype.is_floating_point or dtype.is_complex:
            x = torch.randn(shape, generator=gen).to(dtype)  # values after value_scaling: about N(0, 1)
        else:
            x = torch.randint(0, 8, shape, generator=gen).to(dtype)
        tensors[inp["name"]] = x
    described = ", ".join(f"{n}: {str(t.dtype).removeprefix('torch.')}{list(t.shape)}" for n, t in tensors.items())
    if len(tensors) == 1:
        return (next(iter(tensors.values())),), {}, described
    params = _forward_params(module)
    if set(tensors) <= set(params):
        return (), tensors, described
    return tuple(tensors.values()), {}, described


def compare_outputs(outputs: list[dict[str, Any]], out: Any) -> list[Check]:
    """Shape, data type and class count of each described output against what the model returned."""
    observed = observe_outputs(out).tensors
    checks = []
    described = {o["name"] for o in outputs}
    for o in outputs:
        name = o["name"]
        if name not in observed:
            checks.append(
                Check(f"output {name}", False, f"the model returns no '{name}' (it returns {sorted(observed)})")
            )
            continue
        shape, dtype = observed[name]
        r = o["result"]
        want = r["shape"]
        issues = []
        if len(want) != len(shape) or any(w not in (-1, s) for w, s in zip(want, shape, strict=False)):
            issues.append(f"shape {list(shape)} vs stated {want}")
        actual_type = mlm.data_type(str(dtype).removeprefix("torch."))
        if actual_type != r["data_type"]:
            issues.append(f"data type {actual_type} vs stated {r['data_type']}")
        classes = o.get(mlm.CLASSES) or []
        dims = r.get("dim_order", [])
        if classes and "class" in dims and len(shape) == len(dims):
            n = shape[dims.index("class")]
            if n != len(classes):
                issues.append(f"{n} classes vs {len(classes)} named")
        ok = not issues
        detail = "; ".join(issues) if issues else f"{actual_type}{list(shape)} as stated"
        checks.append(Check(f"output {name}", ok, detail))
    extra = sorted(set(observed) - described)
    if extra:
        checks.append(Check("outputs", False, f"the model also returns {extra}, which the Item does not describe"))
    return checks


def _other_files(
    item: Mapping[str, Any], base: Path, trust: bool, contents: Mapping[str, ModelBytes | MLMExportError]
) -> list[Check]:
    """When the mlm:model holds weights only (and no --model was given), still check the runnable files."""
    props = item.get("properties", {})
    assets: Mapping[str, Any] = item.get("assets", {})
    model_asset: Mapping[str, Any] = next((a for a in assets.values() if mlm.ROLE_MODEL in (a.get("roles") or [])), {})
    if format_of(model_asset) in RUNNABLE:
        return []  # the mlm:model itself failed to load: the reference is missing
    try:
        args, kwargs, _ = synthetic_batch(props.get(mlm.INPUT, []), None)
    except (ValueError, KeyError, TypeError):
        return []
    names = [i["name"] for i in props.get(mlm.INPUT, [])]
    examples = list(kwargs.values()) if kwargs else list(args)

    def call(m: Any, tensors: Any) -> Any:
        return m(**dict(zip(names, tensors, strict=True))) if kwargs else m(*tensors)

    found = parity_checks(item, base, examples, call, trust=trust, contents=contents)
    return [Check(n, ok, d, limited) for n, ok, d, limited in found]


def _is_exported(module: nn.Module) -> bool:
    """A module loaded from a model file (``torch.export``), not built from the code."""
    return type(module).__module__.startswith("torch.") or "GraphModule" in type(module).__name__


def _forward_params(module: Any) -> list[str]:
    try:
        return list(inspect.signature(module.forward).parameters)
    except (AttributeError, TypeError, ValueError):
        return []


def _schema_problems(item: Mapping[str, Any]) -> list[Problem]:
    """The schema problems of a STAC object; one problem when it is no STAC object at all."""
    try:  # the rules inside mlm:input/mlm:output are reported once, by the consistency check
        return [p for p in validation_problems(item) if p.schema not in STRUCTURE_RULES]
    except ItemValidationError as e:
        return e.problems
    except MLMExportError as e:
        return [Problem("$", str(e), "schema")]


def _unusable(error: Exception, field: str) -> str:
    """A field verify cannot use (the schema check names the rule it breaks)."""
    if isinstance(error, KeyError):
        return f"{field} lacks {error.args[0]!r} (see the schema check)"
    return f"{field} cannot be used: {error} (see the schema check)"


def _join(problems: list[Any]) -> str:
    return "; ".join(str(p) for p in problems)
