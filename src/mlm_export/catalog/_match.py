"""Which models can run on a STAC data Item (or Collection), and why each other model cannot.

A model fits when, for every ``mlm:input``: each band is in the data by name or common name (a band given by
an ``expression`` needs the bands the expression names), the data's type casts to the input's ``data_type``
without leaving its kind (integers to floats, wider floats to narrower; never floats to integers), and the
``value_scaling`` is one entry or one per band of known types. The data's footprint must overlap the model's
training extent (its bbox); the overlap is reported. An unknown extent or data type is reported, not guessed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .. import mlm
from ._fields import band_definitions, common_name, expression_bands

SCALING_TYPES = {*mlm.SCALING_TYPES, "processing"}  # MLM's value scaling types, and a processing expression


@dataclass(frozen=True)
class DataBands:
    """The bands a data Item or Collection offers: lower-cased names and common names, and data types."""

    keys: dict[str, str]
    data_types: frozenset[str]
    bbox: tuple[float, float, float, float] | None

    @classmethod
    def of(cls, data: Mapping[str, Any]) -> DataBands:
        defs = list(band_definitions(data))
        if data.get("type") == "Collection":
            summaries = data.get("summaries") or {}
            holders = [summaries, *(data.get("item_assets") or {}).values()]
            defs += [b for h in holders for k in ("bands", mlm.EO_BANDS, mlm.RASTER_BANDS) for b in h.get(k) or []]
        keys: dict[str, str] = {}
        types: set[str] = set()
        for band in (b for b in defs if isinstance(b, Mapping)):
            name = band.get("name")
            for key in (name, common_name(band)):
                if isinstance(key, str):
                    keys.setdefault(key.lower(), str(name or key))
            if isinstance(band.get("data_type"), str):
                types.add(band["data_type"])
        for key, asset in (data.get("assets") or {}).items():  # asset keys name bands in many catalogs
            if isinstance(asset, Mapping) and "data" in (asset.get("roles") or []):
                keys.setdefault(str(key).lower(), str(key))
        return cls(keys, frozenset(types), _footprint(data))


@dataclass
class Match:
    """One model against the data: ``fits``, the reasons it does not, notes, overlap and band mapping."""

    id: str
    fits: bool
    reasons: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    overlap: float | None = None
    bands: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "fits": self.fits,
            "reasons": self.reasons,
            "notes": self.notes,
            "overlap": self.overlap,
            "bands": self.bands,
        }


def match_models(data: Mapping[str, Any], models: Iterable[Mapping[str, Any]]) -> list[Match]:
    """Every model judged against the data: those that fit first (largest overlap first), then the others."""
    offered = DataBands.of(data)
    results = [match_model(offered, model) for model in models]
    return sorted(results, key=lambda m: (not m.fits, -(m.overlap or 0.0), m.id))


def match_model(data: DataBands, model: Mapping[str, Any]) -> Match:
    """Judge one model Item against the data's bands, types and footprint."""
    result = Match(str(model.get("id")), fits=True)
    synonyms = _model_synonyms(model)
    for inp in model.get("properties", {}).get(mlm.INPUT) or []:
        _check_input(data, inp, synonyms, result)
    _check_extent(data, model, result)
    result.fits = not result.reasons
    return result


def _model_synonyms(model: Mapping[str, Any]) -> dict[str, set[str]]:
    """Model band name -> the names it may be found under in data (itself and its common name)."""
    out: dict[str, set[str]] = {}
    for band in band_definitions(model):
        name = band.get("name")
        if isinstance(name, str):
            out.setdefault(name, {name.lower()})
            if common_name(band):
                out[name].add(str(common_name(band)).lower())
    return out


def _check_input(data: DataBands, inp: Mapping[str, Any], synonyms: dict[str, set[str]], result: Match) -> None:
    label = inp.get("name", "input")
    bands = inp.get("bands") or []
    missing: list[str] = []
    for band in bands:
        if isinstance(band, Mapping) and band.get("expression") is not None:
            needed = set(expression_bands(band))
            lost = sorted(n for n in needed if not _find(data, n, synonyms))
            if lost:
                missing.append(f"{band.get('name')} (needs {', '.join(lost)})")
            continue
        name = band if isinstance(band, str) else band.get("name") if isinstance(band, Mapping) else None
        if not isinstance(name, str):
            continue
        found = _find(data, name, synonyms)
        if found:
            result.bands[name] = found
        elif name not in missing:
            missing.append(name)
    if missing:
        result.reasons.append(f"{label}: bands not in the data (by name or common name): {', '.join(missing)}")
    if not bands:
        result.notes.append(f"{label}: lists no bands, so the band check cannot apply")
    want = (inp.get("input") or {}).get("data_type")
    if isinstance(want, str):
        if not data.data_types:
            result.notes.append(f"{label}: the data gives no data_type; the model wants {want}")
        for have in sorted(data.data_types):
            if not castable(have, want):
                result.reasons.append(f"{label}: data type {have} does not cast to the model's {want}")
    _check_scaling(inp, len(bands), label, result)


def _find(data: DataBands, name: str, synonyms: dict[str, set[str]]) -> str | None:
    for key in (name.lower(), *sorted(synonyms.get(name, set()))):
        if key in data.keys:
            return data.keys[key]
    return None


def castable(have: str, want: str) -> bool:
    """Whether data of type ``have`` may be fed as ``want``: numpy's same-kind rule (no float to integer)."""
    import numpy as np

    try:
        return bool(np.can_cast(np.dtype(have), np.dtype(want), casting="same_kind"))
    except TypeError:
        return have == want


def _check_scaling(inp: Mapping[str, Any], nbands: int, label: str, result: Match) -> None:
    scaling = inp.get("value_scaling")
    if not scaling:
        return
    if not isinstance(scaling, list) or (nbands and len(scaling) not in (1, nbands)):
        count = len(scaling) if isinstance(scaling, list) else "not a list"
        result.reasons.append(f"{label}: value_scaling has {count} entries for {nbands} bands (want 1 or {nbands})")
        return
    unknown = sorted({str(s.get("type")) for s in scaling if isinstance(s, Mapping)} - SCALING_TYPES)
    if unknown:
        result.reasons.append(f"{label}: value_scaling types {', '.join(unknown)} are unknown")
    if any(isinstance(s, Mapping) and s.get("type") == "processing" for s in scaling):
        result.notes.append(f"{label}: value_scaling runs a processing expression (not checked)")


def _footprint(obj: Mapping[str, Any]) -> tuple[float, float, float, float] | None:
    box = obj.get("bbox")
    if obj.get("type") == "Collection":
        boxes = ((obj.get("extent") or {}).get("spatial") or {}).get("bbox") or []
        box = boxes[0] if boxes else None
    if not isinstance(box, list) or len(box) not in (4, 6):
        return None
    w, s, e, n = (box[0], box[1], box[3], box[4]) if len(box) == 6 else box
    return (float(w), float(s), float(e), float(n))


def _check_extent(data: DataBands, model: Mapping[str, Any], result: Match) -> None:
    extent = _footprint(model)
    if data.bbox is None:
        result.notes.append("the data has no bbox; footprint not checked")
        return
    if extent is None:
        result.notes.append("the model's training extent is unknown; footprint not checked")
        return
    result.overlap = overlap(data.bbox, extent)
    if result.overlap == 0.0:
        result.reasons.append(f"the data's footprint {list(data.bbox)} is outside the training extent {list(extent)}")
    elif result.overlap < 1.0:
        result.notes.append(f"{result.overlap:.0%} of the data's footprint is inside the training extent")


def overlap(inner: tuple[float, float, float, float], outer: tuple[float, float, float, float]) -> float:
    """The fraction of ``inner``'s area inside ``outer`` (bboxes in degrees; a point counts as area 1)."""
    w, s = max(inner[0], outer[0]), max(inner[1], outer[1])
    e, n = min(inner[2], outer[2]), min(inner[3], outer[3])
    if e < w or n < s:
        return 0.0
    area = (inner[2] - inner[0]) * (inner[3] - inner[1])
    return 1.0 if area <= 0 else round(max(0.0, (e - w) * (n - s)) / area, 4)
