"""MLM rules the JSON Schema cannot express: bands vs channels, classes vs outputs, local files vs checksums."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from . import mlm
from ._hrefs import UnsafeHrefError, bounded_checksum, local_path, regular_size
from ._write import SHA256_MULTIHASH_PREFIX
from .errors import InputTooLargeError, Problem


def consistency_problems(
    item: Mapping[str, Any], base_dir: Path | None = None, *, allow_outside: bool = False
) -> list[Problem]:
    """Cross-field problems of an MLM Item; local assets are checked relative to ``base_dir`` when given
    (only inside its folder tree unless ``allow_outside``)."""
    problems: list[Problem] = []
    props = item.get("properties", {})
    defined = _defined_bands(item)
    for i, inp in enumerate(props.get(mlm.INPUT, []) or []):
        where = f"$.properties['{mlm.INPUT}'][{i}]"
        bands = [b if isinstance(b, str) else b.get("name") for b in inp.get("bands", []) or []]
        size = _dim_size(inp.get("input", {}), "bands")
        if bands and size not in (None, -1, len(bands)):
            problems.append(Problem(where, f"lists {len(bands)} bands but its 'bands' dim is {size}", "bands-vs-shape"))
        if bands and defined is not None:
            unknown = [b for b in bands if b not in defined]
            if unknown:
                problems.append(Problem(where, f"bands {unknown} are not defined in the Item's bands", "bands-defined"))
        scaling = inp.get("value_scaling") or []
        if bands and len(scaling) not in (0, 1, len(bands)):
            problems.append(
                Problem(where, f"has {len(scaling)} value scalings for {len(bands)} bands", "value-scaling-count")
            )
    for i, out in enumerate(props.get(mlm.OUTPUT, []) or []):
        where = f"$.properties['{mlm.OUTPUT}'][{i}]"
        classes = out.get(mlm.CLASSES) or []
        size = _dim_size(out.get("result", {}), "class")
        if classes and size not in (None, -1, len(classes)):
            problems.append(
                Problem(where, f"names {len(classes)} classes but its 'class' dim is {size}", "classes-vs-shape")
            )
    models = [k for k, a in item.get("assets", {}).items() if mlm.ROLE_MODEL in (a.get("roles") or [])]
    if len(models) != 1:
        problems.append(
            Problem("$.assets", f"has {len(models)} '{mlm.ROLE_MODEL}' assets; readers expect exactly one", "one-model")
        )
    if base_dir is not None:
        problems += asset_problems(item, base_dir, allow_outside=allow_outside)
    return problems


def _dim_size(structure: Mapping[str, Any], dim: str) -> int | None:
    """The size a structure states for a named dim (-1 if dynamic), or None if it has no such dim."""
    dims, shape = structure.get("dim_order", []), structure.get("shape", [])
    return shape[dims.index(dim)] if dim in dims and len(dims) == len(shape) else None


def asset_problems(item: Mapping[str, Any], base_dir: Path, *, allow_outside: bool = False) -> list[Problem]:
    """Each local asset must exist with the ``file:size`` and ``file:checksum`` the Item states.

    Hrefs are followed only inside ``base_dir``'s tree (unless ``allow_outside``), only to regular files, and
    no more bytes are read than the stated size.
    """
    problems = []
    for key, asset in item.get("assets", {}).items():
        where = f"$.assets['{key}']"
        href = str(asset.get("href", ""))
        try:
            path = local_path(href, base_dir, allow_outside=allow_outside)
            if path is None:
                continue  # remote: not checked here
            if not path.exists():
                problems.append(Problem(where, f"file {href} does not exist", "asset-exists"))
                continue
            actual_size = regular_size(path)
        except (UnsafeHrefError, OSError) as e:
            problems.append(
                Problem(where, str(e), "asset-outside" if isinstance(e, UnsafeHrefError) else "asset-exists")
            )
            continue
        size = asset.get(mlm.FILE_SIZE)
        if isinstance(size, int) and size != actual_size:
            problems.append(Problem(where, f"file:size {size} but {href} has {actual_size} bytes", "asset-size"))
            continue
        checksum = asset.get(mlm.FILE_CHECKSUM)
        if isinstance(checksum, str):
            if not checksum.startswith(SHA256_MULTIHASH_PREFIX):
                continue  # another hash function: not checked
            try:
                actual = bounded_checksum(path, actual_size)
            except (UnsafeHrefError, OSError, InputTooLargeError) as e:
                problems.append(Problem(where, str(e), "asset-checksum"))
                continue
            if actual != checksum:
                problems.append(
                    Problem(where, f"file:checksum does not match {href} (it is {actual})", "asset-checksum")
                )
    return problems


def _defined_bands(item: Mapping[str, Any]) -> set[str] | None:
    names: set[str] = set()
    found = False
    sources = [item.get("properties", {}).get("bands"), item.get("properties", {}).get(mlm.EO_BANDS)]
    for asset in item.get("assets", {}).values():
        sources += [asset.get("bands"), asset.get(mlm.RASTER_BANDS), asset.get(mlm.EO_BANDS)]
    for bands in sources:
        if isinstance(bands, list):
            found = True
            names |= {str(b["name"]) for b in bands if isinstance(b, Mapping) and b.get("name")}
    return names if found else None
