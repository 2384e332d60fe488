"""What a model was trained on: dataset sizes per split, and STAC Collections or Items named as the data.

Sizes come from a datamodule's split datasets (``len``), batches from its batch size. A STAC Collection or
Item given as the data (a pystac object, a dict, or a local JSON file; a URL is linked, never fetched) becomes
a ``derived_from`` link; its ``label:tasks`` and ``label:classes`` are compared with the model's.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import _limits as limits
from .. import mlm
from .._hrefs import UnsafeHrefError, read_json
from ..errors import InputTooLargeError, InvalidOptionError

#: Datamodule attributes holding each split's dataset, and their ml-aoi split name.
SPLIT_DATASETS = (("train_dataset", "train"), ("val_dataset", "validate"), ("test_dataset", "test"))
ML_AOI_SPLITS = ("train", "validate", "test")
#: A STAC document larger than this is not read (``_limits.ITEM_BYTES``: a Collection or Item is kilobytes).
MAX_STAC_BYTES = limits.ITEM_BYTES
#: label extension task -> the MLM tasks that agree with it.
LABEL_TASKS = {
    "classification": {"classification", "scene-classification"},
    "segmentation": {"segmentation", "semantic-segmentation", "instance-segmentation", "panoptic-segmentation"},
    "detection": {"detection", "object-detection", "instance-segmentation"},
    "regression": {"regression"},
}


def split_sizes(dm: Any) -> dict[str, dict[str, int]]:
    """Samples (and batches, ``ceil(samples / batch_size)``) per split, for the split datasets ``dm`` holds."""
    batch_size = getattr(dm, "batch_size", None)
    out: dict[str, dict[str, int]] = {}
    for attr, split in SPLIT_DATASETS:
        ds = getattr(dm, attr, None)
        if ds is None or (hasattr(ds, "bounds") and hasattr(ds, "crs")):
            continue  # a GeoDataset's length counts its files; its samples are what a sampler draws
        try:
            n = len(ds)
        except Exception:  # noqa: S112 - an iterable dataset has no length: its size is unknown
            continue
        if not isinstance(n, int) or n < 0:
            continue
        sizes = {"samples": n}
        if isinstance(batch_size, int) and not isinstance(batch_size, bool) and batch_size > 0:
            sizes["batches"] = math.ceil(n / batch_size)
        out[split] = sizes
    return out


@dataclass(frozen=True)
class StacData:
    """A STAC Collection or Item the model was trained on."""

    href: str | None
    title: str
    split: str | None
    label_tasks: tuple[str, ...] = ()
    label_classes: tuple[str, ...] = ()

    def link(self) -> dict[str, Any] | None:
        if not self.href:
            return None
        link: dict[str, Any] = {"rel": "derived_from", "href": self.href, "type": mlm.MEDIA_JSON}
        link["title"] = self.title
        if self.split:
            link[mlm.ML_AOI_SPLIT] = self.split
        return link


def stac_training_data(value: Any) -> tuple[StacData, ...]:
    """The ``training_data=`` option: one STAC Collection/Item, or a mapping of split -> one (train/validate/test)."""
    if value is None:
        return ()
    if isinstance(value, Mapping) and value and set(value) <= set(ML_AOI_SPLITS):
        return tuple(_one(v, split) for split, v in value.items())
    return (_one(value, None),)


def _one(value: Any, split: str | None) -> StacData:
    data, href = _document(value)
    kind = data.get("type")
    if kind not in ("Collection", "Feature"):
        raise InvalidOptionError(f"training_data= must be a STAC Collection or Item, got a document of type {kind!r}")
    fields = data.get("summaries", {}) if kind == "Collection" else data.get("properties", {})
    fields = fields if isinstance(fields, Mapping) else {}
    if kind == "Feature" and "label:tasks" not in fields:
        fields = {**data.get("summaries", {}), **fields}
    title = str(data.get("title") or data.get("id") or "training data")
    return StacData(href, f"{'Collection' if kind == 'Collection' else 'Item'} {title}", split,
                    _strings(fields.get("label:tasks")), _class_names(fields.get("label:classes")))  # fmt: skip


def _document(value: Any) -> tuple[dict[str, Any], str | None]:
    if hasattr(value, "to_dict") and hasattr(value, "get_self_href"):  # a pystac Collection or Item
        return value.to_dict(include_self_link=False, transform_hrefs=False), value.get_self_href()
    if isinstance(value, Mapping):
        self_link = next((lk.get("href") for lk in value.get("links", []) if lk.get("rel") == "self"), None)
        return dict(value), self_link
    if isinstance(value, str) and "://" in value and not value.startswith("file://"):
        raise InvalidOptionError(
            f"training_data= {value!r} is a URL: it is not downloaded. Pass the Collection as a pystac object, a "
            "dict or a local file"
        )
    path = Path(str(value).removeprefix("file://"))
    if not path.is_file():
        raise InvalidOptionError(f"training_data= {value!r} is not a STAC JSON file")
    if path.stat().st_size > MAX_STAC_BYTES:
        raise InvalidOptionError(f"training_data= {path} is over {MAX_STAC_BYTES >> 20} MB: not a STAC document")
    try:  # a regular file of bounded size and depth, read once
        data = read_json(path)
    except (InputTooLargeError, UnsafeHrefError) as e:
        raise InvalidOptionError(f"training_data= {e}: not a STAC document") from e
    except (ValueError, UnicodeError) as e:
        raise InvalidOptionError(f"training_data= {path} is not JSON: {e}") from e
    if not isinstance(data, dict):
        raise InvalidOptionError(f"training_data= {path} is not a STAC Collection or Item")
    return data, str(path.resolve())


def _strings(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    return tuple(str(v) for v in value) if isinstance(value, list) else ()


def _class_names(value: Any) -> tuple[str, ...]:
    """The class names of the first ``label:classes`` entry (a list of ``{name, classes}`` objects)."""
    if isinstance(value, list):
        for entry in value:
            if isinstance(entry, Mapping) and isinstance(entry.get("classes"), list):
                return tuple(str(c) for c in entry["classes"])
    return ()


def disagreements(stac: StacData, tasks: tuple[str, ...], classes: tuple[str, ...] | None) -> list[str]:
    """What the data's labels and the model's description say differently."""
    out = []
    if stac.label_tasks:
        agreeing = set().union(*(LABEL_TASKS.get(t, {t}) for t in stac.label_tasks))
        if not agreeing & set(tasks):
            out.append(f"its label:tasks {list(stac.label_tasks)} do not match mlm:tasks {list(tasks)}")
    if stac.label_classes and classes and list(stac.label_classes) != list(classes):
        out.append(f"its label:classes {list(stac.label_classes)} differ from the model's classes {list(classes)}")
    return out
