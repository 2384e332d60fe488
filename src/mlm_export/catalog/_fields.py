"""The searchable fields of an MLM Item, derived the same way for every backend.

The queryables are the names a CQL2 filter may use in every catalog. ``mlm:input.bands`` is derived by one rule:
the bands a model reads are those ``mlm:input`` lists (strings or objects with ``name``) and those named inside
an input band's ``expression`` (``NDVI = (B08 - B04) / (B08 + B04)`` reads B08 and B04); each is found by its
name and by the ``common_name`` / ``eo:common_name`` its definition gives (STAC 1.1 ``bands``, ``eo:bands``,
``raster:bands``, in the properties and the assets), so that ``--band red`` finds a model whose input lists
``B04`` defined as red, and ``--band B08`` and ``--band nir`` both find the NDVI model. An Item whose inputs
list no band names is found by the common names of all its band definitions.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

from .. import mlm

BANDS = mlm.INPUT + ".bands"

#: A name inside a band's ``expression``: the bands it reads.
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

#: name -> JSON Schema of the value, as the STAC API Filter extension's queryables list them.
QUERYABLES: dict[str, dict[str, Any]] = {
    "id": {"type": "string", "title": "Item id"},
    "collection": {"type": "string", "title": "Collection id"},
    "datetime": {"type": "string", "format": "date-time", "title": "Datetime (or start of the interval)"},
    mlm.NAME: {"type": "string", "title": "Model name"},
    mlm.ARCHITECTURE: {"type": "string", "title": "Model architecture"},
    mlm.FRAMEWORK: {"type": "string", "title": "Framework (compare with casei: spellings differ)"},
    mlm.ACCELERATOR: {"type": "string", "title": "Accelerator"},
    mlm.TOTAL_PARAMETERS: {"type": "number", "title": "Total parameters"},
    mlm.TASKS: {"type": "array", "items": {"type": "string"}, "title": "Tasks"},
    BANDS: {
        "type": "array",
        "items": {"type": "string"},
        "title": "Input band names and common names (derived from mlm:input and the band definitions)",
    },
}


def input_band_names(item: Mapping[str, Any]) -> list[str]:
    """The bands every ``mlm:input`` reads, in order, without repeats: those it lists, and after each band
    given by an ``expression`` the bands that expression names."""
    names: list[str] = []
    for inp in item.get("properties", {}).get(mlm.INPUT) or []:
        for band in (inp.get("bands") or []) if isinstance(inp, Mapping) else []:
            name = band if isinstance(band, str) else band.get("name") if isinstance(band, Mapping) else None
            used = [name, *expression_bands(band)] if isinstance(band, Mapping) else [name]
            names += [n for n in dict.fromkeys(used) if isinstance(n, str) and n not in names]
    return names


def expression_bands(band: Mapping[str, Any]) -> list[str]:
    """The names an input band's ``expression`` reads (none when it has no text expression)."""
    expression = band.get("expression")
    if isinstance(expression, Mapping):  # MLM's expression object: {"format": ..., "expression": "..."}
        expression = expression.get("expression")
    return list(dict.fromkeys(_IDENT.findall(expression))) if isinstance(expression, str) else []


def band_definitions(item: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    """Every band definition object of the Item: properties first, then each asset."""
    assets = item.get("assets") or {}
    for holder in (item.get("properties", {}), *(assets.values() if isinstance(assets, Mapping) else ())):
        if isinstance(holder, Mapping):
            for key in ("bands", mlm.EO_BANDS, mlm.RASTER_BANDS):
                bands = holder.get(key)
                if bands:
                    yield from (b for b in bands if isinstance(b, Mapping))


def common_name(band: Mapping[str, Any]) -> str | None:
    """A band definition's common name (``eo:common_name`` in STAC 1.1, ``common_name`` in eo:bands)."""
    value = band.get(mlm.EO_COMMON_NAME, band.get("common_name"))
    return value if isinstance(value, str) else None


def searchable_bands(item: Mapping[str, Any]) -> list[str]:
    """What ``--band`` matches: the bands the inputs read (see the module's rule), then their common names."""
    names = input_band_names(item)
    read = set(names)
    for band in band_definitions(item):
        value = common_name(band)
        if value and value not in names and (not read or band.get("name") in read):
            names.append(value)
    return names


def parse_time(value: Any) -> datetime | None:
    """An RFC 3339 timestamp as an aware datetime; None when absent or unreadable."""
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def time_range(item: Mapping[str, Any]) -> tuple[datetime | None, datetime | None]:
    """The Item's time interval: ``start_datetime``/``end_datetime``, else ``datetime`` for both ends."""
    props = item.get("properties", {})
    instant = parse_time(props.get("datetime"))
    start = parse_time(props.get("start_datetime")) or instant
    end = parse_time(props.get("end_datetime")) or instant
    return start, end


def row(item: Mapping[str, Any]) -> dict[str, Any]:
    """The columns a catalog keeps beside the Item's JSON for searching."""
    props = item.get("properties", {})
    bbox = item.get("bbox") if isinstance(item.get("bbox"), list) and len(item["bbox"]) in (4, 6) else None
    if bbox and len(bbox) == 6:
        bbox = [bbox[0], bbox[1], bbox[3], bbox[4]]
    start, end = time_range(item)
    params = props.get(mlm.TOTAL_PARAMETERS)
    tasks = props.get(mlm.TASKS)
    return {
        "id": item["id"],
        "collection": item.get("collection"),
        "start": start,
        "end": end,
        "xmin": bbox[0] if bbox else None,
        "ymin": bbox[1] if bbox else None,
        "xmax": bbox[2] if bbox else None,
        "ymax": bbox[3] if bbox else None,
        "name": _str(props.get(mlm.NAME)),
        "architecture": _str(props.get(mlm.ARCHITECTURE)),
        "framework": _str(props.get(mlm.FRAMEWORK)),
        "accelerator": _str(props.get(mlm.ACCELERATOR)),
        "total_parameters": int(params) if isinstance(params, int | float) and not isinstance(params, bool) else None,
        "tasks": [t for t in tasks if isinstance(t, str)] if isinstance(tasks, list) else [],
        "bands": searchable_bands(item),
    }


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None
