"""One form session: the Item file being edited, its live checks, and the one guarded way to save it.

Checks are those of ``mlm-export validate``: the JSON Schemas (:func:`mlm_export._validate.validation_problems`)
and the cross-field rules (:func:`mlm_export._checks.consistency_problems`); local asset files are hashed at
save time only, and only inside the Item's own folder. Saving is atomic (:mod:`mlm_export._write`), keeps the
previous file as ``ITEM.json.bak`` and refuses when the file changed on disk since the form opened it.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, TypeGuard
from urllib.parse import urlparse

from .. import mlm
from .._checks import STRUCTURE_RULES, asset_problems, consistency_problems
from .._hrefs import UnsafeHrefError, loads, read_regular
from .._validate import validation_problems
from .._write import atomic_write_bytes
from ..errors import InputTooLargeError, ItemChangedError, ItemFileError, ItemValidationError, MLMExportError, Problem

#: Item property listing the JSON paths of derived values a person changed in the form (kept across saves).
HAND_EDITED = "mlm_export:hand_edited"
STAC_VERSION = "1.1.0"

#: Values mlm-export derives, by path in the Item ("*" is any index or key), with where they come from.
#: The form shows them locked; a changed one is recorded in :data:`HAND_EDITED`.
DERIVED: dict[tuple[str, ...], str] = {
    ("properties", mlm.ARCHITECTURE): "the model's class (a TorchGeo task: its model and backbone)",
    ("properties", mlm.TASKS): "the traced outputs' shapes, or tasks=",
    ("properties", mlm.FRAMEWORK): "the framework the model was traced with",
    ("properties", mlm.FRAMEWORK_VERSION): "torch.__version__ when the Item was made",
    ("properties", mlm.TOTAL_PARAMETERS): "the model's parameters (shared weights counted once)",
    ("properties", mlm.MEMORY_SIZE): "the model's parameters and buffers",
    ("properties", mlm.ACCELERATOR): "the device the model was on",
    ("properties", mlm.ACCELERATOR_CONSTRAINED): "the device the model was on",
    ("properties", mlm.ACCELERATOR_SUMMARY): "the machine the model was traced on",
    ("properties", mlm.BATCH_SIZE_SUGGESTION): "batch_size=, or the datamodule's batch_size",
    ("properties", mlm.HYPERPARAMETERS): "hyperparameters=, or the LightningModule's hparams",
    ("properties", mlm.INPUT, "*", "name"): "the forward() argument the input is passed as",
    ("properties", mlm.INPUT, "*", "bands"): "bands=, the datamodule's or the weights' bands",
    ("properties", mlm.INPUT, "*", "input", "shape"): "the traced example batch (-1: dynamic)",
    ("properties", mlm.INPUT, "*", "input", "dim_order"): "the traced example batch",
    ("properties", mlm.INPUT, "*", "input", "data_type"): "the traced example batch",
    ("properties", mlm.INPUT, "*", "value_scaling"): "the Normalize steps of the inference transforms",
    ("properties", mlm.OUTPUT, "*", "tasks"): "the traced output's shape, or tasks=",
    ("properties", mlm.OUTPUT, "*", "result", "shape"): "the traced output (-1: dynamic)",
    ("properties", mlm.OUTPUT, "*", "result", "dim_order"): "the traced output",
    ("properties", mlm.OUTPUT, "*", "result", "data_type"): "the traced output",
    ("properties", mlm.OUTPUT, "*", mlm.CLASSES, "*", "value"): "the output's class dim",
    ("properties", "bands", "*", "name"): "bands=, the datamodule's or the weights' bands",
    ("assets", "*", "href"): "the file mlm-export wrote",
    ("assets", "*", mlm.ARTIFACT_TYPE): "how mlm-export wrote the file",
    ("assets", "*", mlm.FILE_SIZE): "the file mlm-export wrote",
    ("assets", "*", mlm.FILE_CHECKSUM): "the file mlm-export wrote (sha256)",
}

#: Extension schemas declared when their fields are used, by field prefix.
_EXTENSIONS = {
    mlm.PREFIX: mlm.MLM_SCHEMA,
    "classification:": mlm.CLASSIFICATION_SCHEMA,
    "eo:": mlm.EO_SCHEMA,
    mlm.SCI_PREFIX: mlm.SCI_SCHEMA,
    "file:": mlm.FILE_SCHEMA,
}
_REQUIRED = re.compile(r"^'(.+)' is a (?:required|dependency of) ")
_PATH_TOKEN = re.compile(r"\.([^.\[]+)|\[(\d+)\]|\['((?:[^'\\]|\\.)*)'\]")


def blank_item() -> dict[str, Any]:
    """What the form starts from without an Item: the skeleton of a STAC 1.1 Item declaring MLM."""
    return {
        "type": "Feature",
        "stac_version": STAC_VERSION,
        "stac_extensions": [mlm.MLM_SCHEMA],
        "id": "",
        "geometry": None,
        "properties": {"datetime": None},
        "links": [],
        "assets": {},
    }


def parse_json_path(json_path: str) -> list[str | int]:
    """``$.properties['mlm:input'][0].name`` -> ``['properties', 'mlm:input', 0, 'name']``."""
    parts: list[str | int] = []
    for dotted, index, quoted in _PATH_TOKEN.findall(json_path.removeprefix("$")):
        if index:
            parts.append(int(index))
        else:
            parts.append(dotted or re.sub(r"\\(.)", r"\1", quoted))
    return parts


def problem_json(problem: Problem) -> dict[str, Any]:
    """A problem for the page: its path as a list (a missing required field points at the field itself)."""
    path = parse_json_path(problem.json_path)
    if match := _REQUIRED.match(problem.message):
        path.append(match.group(1))
    return {"path": path, "json_path": problem.json_path, "message": problem.message, "schema": problem.schema}


def _concrete(
    data: Any, template: tuple[str, ...], prefix: tuple[str | int, ...] = ()
) -> Iterator[tuple[tuple[str | int, ...], Any]]:
    """Every concrete path in ``data`` that matches ``template``, with the value there."""
    if not template:
        yield prefix, data
        return
    head, rest = template[0], template[1:]
    if head == "*":
        items = enumerate(data) if isinstance(data, list) else data.items() if isinstance(data, Mapping) else []
        for key, value in items:
            yield from _concrete(value, rest, (*prefix, key))
    elif isinstance(data, Mapping) and head in data:
        yield from _concrete(data[head], rest, (*prefix, head))


def _get(data: Any, path: tuple[str | int, ...]) -> Any:
    for part in path:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return _MISSING
    return data


_MISSING = object()


def _json_path(path: tuple[str | int, ...]) -> str:
    return "$" + "".join(f"[{p}]" if isinstance(p, int) else f"['{p}']" for p in path)


def _is_bbox(bbox: Any) -> TypeGuard[list[float]]:
    return (
        isinstance(bbox, list)
        and len(bbox) == 4
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in bbox)
        and bbox[0] <= bbox[2]
        and bbox[1] <= bbox[3]
    )


def _bbox_polygon(bbox: list[float]) -> dict[str, Any]:
    """The GeoJSON polygon of a west, south, east, north box (STAC wants a geometry with every bbox)."""
    west, south, east, north = bbox
    ring = [[west, south], [east, south], [east, north], [west, north], [west, south]]
    return {"type": "Polygon", "coordinates": [ring]}


def _prefixes(data: Any) -> Iterator[str]:
    if isinstance(data, Mapping):
        for key, value in data.items():
            if isinstance(key, str) and ":" in key:
                yield key.split(":", 1)[0] + ":"
            yield from _prefixes(value)
    elif isinstance(data, list):
        for value in data:
            yield from _prefixes(value)


class FormSession:
    """The Item behind one form: what it was when opened, and how to check and save an edited version."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self.digest: str | None = None
        self.original: dict[str, Any] = blank_item()
        self.opened = False
        if path is not None and path.exists():
            raw = read_regular(path)  # never a blocking read of a FIFO named like an Item
            try:
                data = loads(raw, str(path))
            except InputTooLargeError as e:
                raise ItemFileError(f"{e}; open another Item") from e
            except ValueError as e:
                raise ItemFileError(f"{path} is not JSON ({e}); fix or remove it, then run mlm-export form") from e
            if not isinstance(data, dict) or data.get("type") != "Feature":
                raise ItemFileError(f'{path} is not a STAC Item (no "type": "Feature"); open an Item JSON file')
            self.digest, self.original, self.opened = hashlib.sha256(raw).hexdigest(), data, True

    def state(self) -> dict[str, Any]:
        """What the page needs to start: the Item, whether it came from a file, and the derived paths."""
        return {
            "item": self.original,
            "path": str(self.path) if self.path else None,
            "opened": self.opened,
            "derived": [{"path": list(t), "source": s} for t, s in DERIVED.items()] if self.opened else [],
            "hand_edited_property": HAND_EDITED,
        }

    def prepare(self, data: dict[str, Any]) -> dict[str, Any]:
        """The Item as it will be saved: extensions of the fields used declared, a geometry for a bbox typed
        without one, hand edits of derived values recorded in :data:`HAND_EDITED`."""
        item = copy.deepcopy(data)
        declared = item.setdefault("stac_extensions", [])
        if isinstance(declared, list):
            for prefix in sorted(set(_prefixes(item))):
                url = _EXTENSIONS.get(prefix)
                if url and not any(f"/{url.split('/')[3]}/" in str(u) for u in declared):
                    declared.append(url)
        bbox = item.get("bbox")
        if item.get("geometry") is None and _is_bbox(bbox):
            item["geometry"] = _bbox_polygon(bbox)
        props = item.get("properties")
        if not isinstance(props, dict):
            return item
        edited = [p for p in self.original.get("properties", {}).get(HAND_EDITED, []) if isinstance(p, str)]
        if self.opened:
            for template in DERIVED:
                for path, value in _concrete(self.original, template):
                    if _get(item, path) != value and _json_path(path) not in edited:
                        edited.append(_json_path(path))
        if edited:
            props[HAND_EDITED] = edited
        return item

    def problems(self, data: Any, *, check_files: bool = False) -> list[Problem]:
        """Every problem ``mlm-export validate`` would report (asset files only with ``check_files``)."""
        if not isinstance(data, dict):
            return [Problem("$", "the Item must be a JSON object", "form")]
        try:
            found = validation_problems(data)
        except MLMExportError as e:  # an extension schema that cannot be found, say
            return [Problem("$.stac_extensions", str(e), "schema")]
        found += [p for p in consistency_problems(data) if p.schema not in STRUCTURE_RULES]  # already found
        if check_files and self.path is not None:
            found += asset_problems(self._local_assets_only(data), self.path.parent)
        return found

    def _local_assets_only(self, data: dict[str, Any]) -> dict[str, Any]:
        """The Item with only the assets whose file lies inside the Item's folder (others are not read)."""
        folder = self.path.parent.resolve() if self.path else Path.cwd()
        inside = {}
        for key, asset in (data.get("assets") or {}).items():
            href = str(asset.get("href", "")) if isinstance(asset, Mapping) else ""
            parsed = urlparse(href)
            if parsed.scheme in ("", "file") and (folder / parsed.path).resolve().is_relative_to(folder):
                inside[key] = asset
        return {**data, "assets": inside}

    def save(self, data: dict[str, Any]) -> dict[str, Any]:
        """Check and write the Item; returns the saved Item. Keeps the previous file as ``ITEM.json.bak``."""
        if self.path is None:
            raise ItemFileError("the form was opened without a file: run mlm-export form ITEM.json to save one")
        item = self.prepare(data)
        problems = self.problems(item, check_files=True)
        if problems:
            raise ItemValidationError(problems)
        with self._lock:
            try:  # a regular file of bounded size only: a FIFO swapped in since the form opened cannot block
                current = read_regular(self.path) if self.path.exists() else None
            except UnsafeHrefError as e:
                raise ItemChangedError(f"{e}: it changed on disk since the form opened it; not saved") from e
            digest = hashlib.sha256(current).hexdigest() if current is not None else None
            if digest != self.digest:
                raise ItemChangedError(
                    f"{self.path} changed on disk since the form opened it; not saved. Reload the page to edit the "
                    "new version (your edits are lost), or copy them first."
                )
            if current is not None:
                atomic_write_bytes(self.path.with_name(self.path.name + ".bak"), current)
            text = (json.dumps(item, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
            atomic_write_bytes(self.path, text)
            self.digest, self.original, self.opened = hashlib.sha256(text).hexdigest(), item, True
        return item
