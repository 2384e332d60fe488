"""MLM rules the JSON Schema cannot express: bands vs channels, classes vs outputs, local files vs checksums."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from . import _limits as limits
from . import mlm
from ._hrefs import UnsafeHrefError, hash_open, local_path, open_confined
from ._write import SHA256_MULTIHASH_PREFIX
from .errors import InputTooLargeError, MLMExportError, Problem

#: Dim names that hold one entry per band (``bands`` is what MLM's examples and this library write).
BAND_DIMS = ("bands", "band", "channel", "channels")
#: Dim names that hold one entry per class.
CLASS_DIMS = ("class", "classes")
#: Names of the rules :func:`structure_problems` checks (a :class:`Problem`'s ``schema``).
STRUCTURE_RULES = (
    "shape-vs-dim-order",
    "bands-vs-shape",
    "value-scaling-count",
    "classes-vs-shape",
)


def structure_problems(item: Mapping[str, Any]) -> list[Problem]:
    """Cross-field problems inside ``mlm:input`` and ``mlm:output`` that no JSON Schema can state: a shape with
    as many entries as its dim_order, bands and value scalings that match the band dim, classes that match the
    class dim. Pure (reads nothing); values of the wrong type are left to the schema check."""
    props = item.get("properties")
    if not isinstance(props, Mapping):
        return []
    problems: list[Problem] = []
    for i, inp in enumerate(_objects(props.get(mlm.INPUT))):
        where = f"$.properties['{mlm.INPUT}'][{i}]"
        structure = inp.get("input")
        problems += _shape_problems(structure, f"{where}.input")
        bands = [b if isinstance(b, str) else b.get("name") for b in _list(inp.get("bands")) if _is_band(b)]
        dim, size = _dim_size(structure, BAND_DIMS)
        if inp.get("pre_processing_function"):  # the bands are what a function combines: the dim counts its result
            bands = []
        if bands and size not in (None, -1, len(bands)):
            problems.append(Problem(where, f"lists {len(bands)} bands but its '{dim}' dim is {size}", "bands-vs-shape"))
        scaling = _list(inp.get("value_scaling"))
        count = len(bands) or (size if size is not None and size > 0 else None)
        if scaling and count is not None and len(scaling) not in (1, count):
            per = f"{count} bands" if bands else f"a '{dim}' dim of {count}"
            problems.append(
                Problem(
                    where,
                    f"has {len(scaling)} value scalings for {per}: give none, one for all, or one per band",
                    "value-scaling-count",
                )
            )
    for i, out in enumerate(_objects(props.get(mlm.OUTPUT))):
        where = f"$.properties['{mlm.OUTPUT}'][{i}]"
        structure = out.get("result")
        problems += _shape_problems(structure, f"{where}.result")
        classes = _list(out.get(mlm.CLASSES))
        dim, size = _dim_size(structure, CLASS_DIMS)
        if classes and size not in (None, -1, len(classes)):
            problems.append(
                Problem(where, f"names {len(classes)} classes but its '{dim}' dim is {size}", "classes-vs-shape")
            )
    return problems


def consistency_problems(
    item: Mapping[str, Any],
    base_dir: Path | None = None,
    *,
    allow_outside: bool = False,
    contents: Mapping[str, tuple[int, str] | Exception] | None = None,
) -> list[Problem]:
    """Cross-field problems of an MLM Item (:func:`structure_problems`, band names defined, one model asset);
    local assets are checked relative to ``base_dir`` when given (only inside its folder tree unless
    ``allow_outside``; ``contents`` as in :func:`asset_problems`)."""
    problems = structure_problems(item)
    props = item.get("properties", {})
    defined = _defined_bands(item)
    for i, inp in enumerate(props.get(mlm.INPUT, []) or []):  # a structure the schema rejects raises here
        where = f"$.properties['{mlm.INPUT}'][{i}]"
        bands = [b if isinstance(b, str) else b.get("name") for b in _list(inp.get("bands")) if _is_band(b)]
        if bands and defined is not None:
            unknown = [b for b in bands if b not in defined]
            if unknown:
                problems.append(Problem(where, f"bands {unknown} are not defined in the Item's bands", "bands-defined"))
    models = [k for k, a in item.get("assets", {}).items() if mlm.ROLE_MODEL in (a.get("roles") or [])]
    if len(models) != 1:
        problems.append(
            Problem("$.assets", f"has {len(models)} '{mlm.ROLE_MODEL}' assets; readers expect exactly one", "one-model")
        )
    if base_dir is not None:
        problems += asset_problems(item, base_dir, allow_outside=allow_outside, contents=contents)
    return problems


def _shape_problems(structure: Any, where: str) -> list[Problem]:
    """A shape must give one size per named dim: readers zip the two lists."""
    if not isinstance(structure, Mapping):
        return []
    dims, shape = structure.get("dim_order"), structure.get("shape")
    if not (isinstance(dims, list) and isinstance(shape, list)) or len(dims) == len(shape):
        return []
    return [
        Problem(
            where,
            f"shape {shape} has {len(shape)} entries but dim_order {dims} has {len(dims)}: give one size per dim",
            "shape-vs-dim-order",
        )
    ]


def _dim_size(structure: Any, names: tuple[str, ...]) -> tuple[str, int | None]:
    """The first of ``names`` a structure has as a dim and the size it states (-1 if dynamic); (name, None) if
    it has none of them or its shape does not match its dims."""
    if not isinstance(structure, Mapping):
        return names[0], None
    dims, shape = structure.get("dim_order"), structure.get("shape")
    if not (isinstance(dims, list) and isinstance(shape, list)) or len(dims) != len(shape):
        return names[0], None
    for name in names:
        if name in dims:
            size = shape[dims.index(name)]
            return name, size if isinstance(size, int) and not isinstance(size, bool) else None
    return names[0], None


def _objects(value: Any) -> list[Mapping[str, Any]]:
    return [v for v in value if isinstance(v, Mapping)] if isinstance(value, list) else []


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _is_band(b: Any) -> bool:
    return isinstance(b, str) or (isinstance(b, Mapping) and isinstance(b.get("name"), str))


def asset_problems(
    item: Mapping[str, Any],
    base_dir: Path,
    *,
    allow_outside: bool = False,
    contents: Mapping[str, tuple[int, str] | Exception] | None = None,
) -> list[Problem]:
    """Each local asset must exist with the ``file:size`` and ``file:checksum`` the Item states.

    Hrefs are followed only inside ``base_dir``'s tree (unless ``allow_outside``), only to regular files, each
    opened once without following links (one link level inside the folder is read, for Lightning's
    ``last.ckpt``), and no more bytes are read than the file's size. ``contents``: (size, checksum) of assets
    already read by their key (verify's model files), or why they could not be read; these are not opened again.
    """
    problems = []
    for key, asset in item.get("assets", {}).items():
        where = f"$.assets['{key}']"
        href = str(asset.get("href", ""))
        checksum = asset.get(mlm.FILE_CHECKSUM)
        hashed = isinstance(checksum, str) and checksum.startswith(SHA256_MULTIHASH_PREFIX)
        try:
            path = local_path(href, base_dir, allow_outside=allow_outside)
            if path is None:
                continue  # remote: not checked here
            if not os.path.lexists(path) and not os.path.lexists(base_dir / href):
                problems.append(Problem(where, f"file {href} does not exist", "asset-exists"))
                continue
            if contents is not None and key in contents:
                known = contents[key]
                if isinstance(known, Exception):
                    raise known
                actual_size, actual = known
            else:
                actual_size, actual = _size_and_checksum(base_dir, href, allow_outside, hashed)
        except (UnsafeHrefError, OSError) as e:
            problems.append(
                Problem(where, str(e), "asset-outside" if isinstance(e, UnsafeHrefError) else "asset-exists")
            )
            continue
        except InputTooLargeError as e:  # over the bytes or seconds a checksum may take
            problems.append(Problem(where, str(e), "asset-checksum"))
            continue
        except MLMExportError as e:  # a model file verify could not read
            problems.append(Problem(where, str(e), "asset-exists"))
            continue
        size = asset.get(mlm.FILE_SIZE)
        if isinstance(size, int) and size != actual_size:
            problems.append(Problem(where, f"file:size {size} but {href} has {actual_size} bytes", "asset-size"))
            continue
        if hashed and actual != checksum:
            problems.append(Problem(where, f"file:checksum does not match {href} (it is {actual})", "asset-checksum"))
    return problems


def _size_and_checksum(base_dir: Path, href: str, allow_outside: bool, hashed: bool) -> tuple[int, str]:
    """Size and (when ``hashed``) sha256 multihash of one local asset, from a single open of the file."""
    opened = open_confined(base_dir, href, allow_outside=allow_outside, links=True, limit=sys.maxsize)
    if opened is None:
        raise UnsafeHrefError(f"href {href!r} is not a local file")
    f, size = opened
    with f:
        if hashed and size > limits.HASH_BYTES:  # its size is still checked; its checksum is not
            raise InputTooLargeError(
                f"{href} is {size:,} bytes, over the {limits.HASH_BYTES:,} hashed to check a checksum: not checked "
                "(set MLM_EXPORT_HASH_BYTES to hash larger files)"
            )
        return size, hash_open(f, size, href) if hashed else ""


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
