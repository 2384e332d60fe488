"""The Items of one checkpoint directory and their run Collection, kept true as checkpoints come and go."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pystac

from . import mlm
from .schema_cache import quick_check
from .write import atomic_write_bytes, atomic_write_json, file_checksum, file_key

#: Item file of a checkpoint: ``epoch=3-step=40.ckpt`` -> ``epoch=3-step=40.mlm.json``.
ITEM_SUFFIX = ".mlm.json"
COLLECTION_FILE = "collection.json"
CHECKPOINT_SUFFIXES = (".ckpt", ".pt", ".pth", ".safetensors")
#: Files written beside a checkpoint for its Item, removed with it.
MODEL_FILE_SUFFIXES = (".safetensors", ".pt2", ".torchscript", ".onnx", ".requirements.txt", ".environment.txt")
SUMMARY_FIELDS = (mlm.NAME, mlm.ARCHITECTURE, mlm.TASKS, mlm.FRAMEWORK, mlm.FRAMEWORK_VERSION, mlm.ACCELERATOR)


def checkpoint_stem(path: Path) -> str:
    """``epoch=3-step=40.ckpt`` -> ``epoch=3-step=40``."""
    name = path.name
    for suffix in CHECKPOINT_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def item_path_for(checkpoint: str | os.PathLike[str]) -> Path:
    """Where the Item of a checkpoint lives: beside it, named after it with ``.mlm.json``."""
    path = Path(checkpoint)
    return path.with_name(checkpoint_stem(path) + ITEM_SUFFIX)


class RunCatalog:
    """Live Items of one directory, each keyed by its checkpoint path, and the Collection over them."""

    def __init__(
        self,
        dirpath: Path,
        *,
        collection_id: str,
        title: str | None = None,
        license: str | None = None,  # noqa: A002 - the STAC field's name
        description: str | None = None,
        version: str | None = None,
        deprecate_superseded: bool = False,
    ) -> None:
        self.dirpath = dirpath
        #: The user's version, before each checkpoint's epoch and step; mark all but the latest deprecated.
        self.version = version
        self.deprecate_superseded = deprecate_superseded
        self.collection_id = collection_id
        self.title = title
        #: The Collection's license; None: the license the Items share, else "other" (STAC requires one).
        self.license = license
        self.description = description or f"Checkpoints of one training run of {title or 'a model'}."
        self._items: dict[Path, tuple[dict[str, Any], dict[str, Any]]] = {}
        self._checksums: dict[tuple[int, int, int, int], tuple[int, str]] = {}
        #: The Collection as last written (to unlink an Item from it without rebuilding it).
        self._written: dict[str, Any] | None = None
        #: Whether model files (.safetensors, .pt2) are written beside checkpoints, to be removed with them.
        self.model_files = True
        #: Items changed since the Collection was last written (the callback writes it when its queue drains).
        self.dirty = False

    # -------------------------------------------------------------------------------------------- items

    def checksum(self, path: Path) -> tuple[int, str]:
        """Size and sha256 of a file, each distinct file read once (a ``last.ckpt`` link reuses its target's)."""
        st = path.stat()  # follows a link: the same file is known by its device and inode
        key = file_key(st)
        if key not in self._checksums:
            self._checksums[key] = (st.st_size, file_checksum(path))
        return self._checksums[key]

    def known_checksum(self, key: tuple[int, int, int, int], size: int, checksum: str) -> None:
        """Size and sha256 of a file computed while it was written, under its identity (``write.file_key``):
        :meth:`checksum` returns them without reading the file, as long as it is that same, unchanged file."""
        self._checksums[key] = (size, checksum)

    def item_links(self) -> list[dict[str, str]]:
        """Links every Item of the run carries: to its Collection."""
        link = {"href": f"./{COLLECTION_FILE}", "type": "application/json", "title": self.title or self.collection_id}
        return [{"rel": rel, **link} for rel in ("collection", "parent", "root")]

    def put(self, checkpoint: Path, item: dict[str, Any]) -> None:
        """Write the Item of a checkpoint (atomically) and count it in."""
        atomic_write_json(item_path_for(checkpoint), item)
        self.record(checkpoint, item)

    def record(self, checkpoint: Path, item: dict[str, Any]) -> None:
        """Count in the Item of a checkpoint, already written."""
        self._items[checkpoint] = (item, _ranking(item))

    def holds(self, checkpoint: Path) -> bool:
        """Whether a checkpoint lies in this directory itself (only there are files ever removed or replaced)."""
        if checkpoint.parent == self.dirpath:
            return True
        return os.path.realpath(checkpoint.parent) == os.path.realpath(self.dirpath)

    def forget(self, checkpoint: Path) -> None:
        """Remove the Item of a checkpoint and the model files written for it (only inside this directory)."""
        known = self._items.pop(checkpoint, None)
        if not self.holds(checkpoint):
            return
        self._unlink_from_collection(item_path_for(checkpoint).name)
        item_path_for(checkpoint).unlink(missing_ok=True)
        stem = checkpoint_stem(checkpoint)
        listed = {a.get("href") for a in known[0].get("assets", {}).values()} if known else set()
        for suffix in MODEL_FILE_SUFFIXES:
            name = f"{stem}{suffix}"
            if not checkpoint.name.endswith(suffix) and (self.model_files or f"./{name}" in listed):
                (checkpoint.parent / name).unlink(missing_ok=True)

    def adopt(self) -> None:
        """Take in the Items already in the directory (a resumed run); drop those whose checkpoint is gone."""
        for path in sorted(self.dirpath.glob(f"*{ITEM_SUFFIX}")):
            try:
                item = json.loads(path.read_text(encoding="utf-8"))
                href = _checkpoint_href(item)
            except (OSError, ValueError):
                continue
            if href is None or not _plain_name(href):
                continue  # an Item that points elsewhere is not one of this directory's: never adopted
            checkpoint = (path.parent / href).absolute()
            if not self.holds(checkpoint) or item_path_for(checkpoint).name != path.name:
                continue
            if item.get("collection") != self.collection_id:
                continue  # not this run's (another callback's or converter's)
            if checkpoint.exists() and _size_matches(item, checkpoint):
                self._items[checkpoint] = (item, _ranking(item))
            else:  # its checkpoint is gone or was replaced: the Item no longer describes it
                self.forget(checkpoint)

    def live(self) -> list[Path]:
        """Checkpoints whose Items are in the Collection."""
        return sorted(self._items)

    # -------------------------------------------------------------------------------------------- collection

    def collection(self, held: dict[Path, dict[str, Any]] | None = None) -> dict[str, Any]:
        """The Collection over the live Items (or over ``held``, a :meth:`snapshot`): extents, summaries, item
        links, latest and best."""
        ranked = self._items if held is None else {path: (item, _ranking(item)) for path, item in held.items()}
        items = [(path, item, rank) for path, (item, rank) in sorted(ranked.items())]
        links: list[dict[str, Any]] = [
            {"rel": "root", "href": f"./{COLLECTION_FILE}", "type": "application/json"},
        ]
        for path, item, _ in items:
            links.append(_link("item", item_path_for(path).name, item))
        if items:
            latest = max(
                items, key=lambda t: (t[2].get("global_step", -1), t[2].get("epoch", -1), t[0].name != "last.ckpt")
            )
            links.append(_link("latest-version", item_path_for(latest[0]).name, latest[1]))
            best = _best(items)
            if best is not None:
                path, item, rank = best
                title = f"best {rank['monitor']} ({rank['mode']}): {rank['score']:g}"
                links.append({**_link("best", item_path_for(path).name, item), "title": title})
        data: dict[str, Any] = {
            "type": "Collection",
            "stac_version": pystac.get_stac_version(),
            # Not declaring MLM here: its v1.5.2 schema rejects every list-valued summary (it checks each summary
            # value as an object), and lists of names, tasks and frameworks are what a catalog search needs.
            "stac_extensions": [],
            "id": self.collection_id,
            "title": self.title or self.collection_id,
            "description": self.description,
            "license": self.license or _shared_license(item for _, item, _ in items) or "other",
            "extent": _extent(item for _, item, _ in items),
            "summaries": _summaries(item for _, item, _ in items),
            "links": links,
        }
        if not data["summaries"]:
            del data["summaries"]
        from .provenance import item_stats

        data["stats:items"] = item_stats(item for _, item, _ in items)
        data["stac_extensions"].append(mlm.STATS_SCHEMA)
        return data

    def write_collection(self) -> dict[str, Any]:
        """Rewrite the Items whose version links changed, then check and write ``collection.json`` atomically."""
        from .versions import relink

        items = {path: item for path, (item, _) in self._items.items()}
        for path in relink(items, item_path_for, deprecate=self.deprecate_superseded, base=self.version):
            atomic_write_json(item_path_for(path), items[path])
        data = self.collection()
        quick_check(data, what="Collection", by_shape=True)
        atomic_write_json(self.dirpath / COLLECTION_FILE, data)
        self._written = data
        return data

    # ------------------------------------------------------------------------ concurrent writes (run_flush.py)

    def snapshot(self) -> dict[Path, dict[str, Any]]:
        """The live Items as held now (the objects themselves: copy before changing them)."""
        return {path: item for path, (item, _) in self._items.items()}

    def still_holds(self, checkpoint: Path, item: dict[str, Any]) -> bool:
        """Whether ``item`` (from a :meth:`snapshot`) is still the live Item of ``checkpoint``."""
        held = self._items.get(checkpoint)
        return held is not None and held[0] is item

    def swap(self, checkpoint: Path, old: dict[str, Any], new: dict[str, Any]) -> bool:
        """Hold ``new`` instead of ``old`` when ``old`` is still the live Item of ``checkpoint``."""
        if not self.still_holds(checkpoint, old):
            return False
        self._items[checkpoint] = (new, _ranking(new))
        return True

    def written(self, data: dict[str, Any]) -> None:
        """Note the Collection just written (to unlink Items from it later)."""
        self._written = data

    def _unlink_from_collection(self, item_name: str) -> None:
        """Before an Item file goes: write the Collection without its links, so that it never links a missing
        Item, even if the process dies now. Dropping links keeps a checked Collection valid: no new check."""
        written = self._written
        href = f"./{item_name}"
        if written is None or not any(link.get("href") == href for link in written["links"]):
            return
        data = {**written, "links": [link for link in written["links"] if link.get("href") != href]}
        # compact (json's C encoder): this runs in the training loop; the next regular write indents it again
        atomic_write_bytes(self.dirpath / COLLECTION_FILE, json.dumps(data, ensure_ascii=False).encode() + b"\n")
        self._written = data
        self.dirty = True  # extents, summaries, latest and best are brought up to date at the next write


def _checkpoint_href(item: dict[str, Any]) -> str | None:
    for key in ("checkpoint", "model"):
        asset = item.get("assets", {}).get(key)
        if asset and mlm.ROLE_CHECKPOINT in asset.get("roles", []):
            return str(asset["href"])
    return None


def _size_matches(item: dict[str, Any], checkpoint: Path) -> bool:
    for asset in item.get("assets", {}).values():
        if asset.get("href") in (checkpoint.name, f"./{checkpoint.name}") and "file:size" in asset:
            return bool(asset["file:size"] == checkpoint.stat().st_size)
    return True


def _shared_license(items: Iterable[dict[str, Any]]) -> str | None:
    licenses = {item.get("properties", {}).get("license") for item in items}
    return licenses.pop() if len(licenses) == 1 and None not in licenses else None


def _plain_name(href: str) -> bool:
    """``./name.ckpt`` or ``name.ckpt``: a file in the Item's own directory, not a path or a URL."""
    name = href.removeprefix("./")
    return bool(name) and "/" not in name and "\\" not in name and name not in (".", "..")


def _ranking(item: dict[str, Any]) -> dict[str, Any]:
    p = item.get("properties", {})
    return {
        "global_step": p.get("lightning:global_step", -1),
        "epoch": p.get("lightning:epoch", -1),
        "monitor": p.get("lightning:monitor"),
        "mode": p.get("lightning:mode"),
        "score": p.get("lightning:score"),
    }


def _best(
    items: list[tuple[Path, dict[str, Any], dict[str, Any]]],
) -> tuple[Path, dict[str, Any], dict[str, Any]] | None:
    scored = [t for t in items if t[2].get("monitor") and t[2].get("score") is not None]
    if not scored:
        return None
    sign = -1.0 if scored[0][2].get("mode") == "max" else 1.0
    return min(scored, key=lambda t: (sign * t[2]["score"], -t[2].get("global_step", 0)))


def _link(rel: str, href: str, item: dict[str, Any]) -> dict[str, Any]:
    return {"rel": rel, "href": f"./{href}", "type": "application/geo+json", "title": str(item.get("id"))}


def _extent(items: Iterable[dict[str, Any]]) -> dict[str, Any]:
    boxes, times = [], []
    for item in items:
        if item.get("bbox"):
            boxes.append(item["bbox"])
        p = item.get("properties", {})
        for key in ("datetime", "start_datetime", "end_datetime"):
            if p.get(key):
                times.append(p[key])
    bbox = (
        [min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes)]
        if boxes
        else [-180.0, -90.0, 180.0, 90.0]
    )
    interval = [min(times), max(times)] if times else [None, None]
    return {"spatial": {"bbox": [bbox]}, "temporal": {"interval": [interval]}}


def _summaries(items: Iterable[dict[str, Any]]) -> dict[str, Any]:
    values: dict[str, list[Any]] = {}
    for item in items:
        p = item.get("properties", {})
        for key in SUMMARY_FIELDS:
            v = p.get(key)
            for x in v if isinstance(v, list) else [v]:
                if x is not None and x not in values.setdefault(key, []):
                    values[key].append(x)
    return {k: v for k, v in values.items() if v}


def checkpoint_item(
    base: dict[str, Any],
    checkpoint: Path,
    *,
    size: int,
    checksum: str,
    item_id: str,
    properties: dict[str, Any] | None = None,
    model_files: dict[str, Any] | None = None,
    title: str = "Checkpoint",
    catalog: RunCatalog | None = None,
) -> dict[str, Any]:
    """The Item of one checkpoint file: the model's description (``base``), the file as an asset, and its links.

    ``model_files`` are assets written beside the checkpoint (a ``.pt2`` or safetensors); when one of them is
    the ``mlm:model``, the checkpoint is only ``mlm:checkpoint``, else the checkpoint is the model file.
    """
    data = json.loads(json.dumps(base))  # a deep copy of plain JSON
    assets: dict[str, Any] = dict(model_files or {})
    safetensors = checkpoint.name.endswith(".safetensors")
    asset: dict[str, Any] = {
        "href": f"./{checkpoint.name}",
        "type": "application/octet-stream; application=" + ("safetensors" if safetensors else "pytorch"),
        "title": title,
        "file:size": size,
        "file:checksum": checksum,
    }
    if any(mlm.ROLE_MODEL in a.get("roles", []) for a in assets.values()):
        asset["roles"] = [mlm.ROLE_CHECKPOINT]
        assets["checkpoint"] = asset
    else:
        asset["mlm:artifact_type"] = mlm.ARTIFACT_SAFETENSORS if safetensors else mlm.ARTIFACT_TORCH_SAVE
        asset["roles"] = [mlm.ROLE_MODEL, mlm.ROLE_WEIGHTS if safetensors else mlm.ROLE_CHECKPOINT]
        if data["properties"].get("bands"):
            asset["bands"] = data["properties"]["bands"]
        assets["model"] = asset
    data["assets"] = assets
    data["id"] = item_id
    data["properties"].update(properties or {})
    if mlm.FILE_SCHEMA not in data["stac_extensions"]:
        data["stac_extensions"].append(mlm.FILE_SCHEMA)
    data["links"] = catalog.item_links() if catalog else []
    if catalog:
        data["collection"] = catalog.collection_id
    else:
        data.pop("collection", None)
    return data
