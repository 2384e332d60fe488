"""The Items of one checkpoint directory and their run Collection, kept true as checkpoints come and go."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

from . import mlm
from ._collection import COLLECTION_FILE, Member, RunFacts, build_collection, ranking
from ._hrefs import read_json
from ._write import atomic_write_bytes, atomic_write_json, file_checksum, file_key

__all__ = [
    "CHECKPOINT_SUFFIXES",
    "COLLECTION_FILE",
    "ITEM_SUFFIX",
    "MODEL_FILE_SUFFIXES",
    "RunCatalog",
    "checkpoint_stem",
    "item_path_for",
]

#: Item file of a checkpoint: ``epoch=3-step=40.ckpt`` -> ``epoch=3-step=40.mlm.json``.
ITEM_SUFFIX = ".mlm.json"
CHECKPOINT_SUFFIXES = (".ckpt", ".pt", ".pth", ".safetensors")
#: Files written beside a checkpoint for its Item, removed with it.
MODEL_FILE_SUFFIXES = (".safetensors", ".pt2", ".torchscript", ".onnx", ".requirements.txt", ".environment.txt")


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
        """Size and sha256 of a file computed while it was written, under its identity (``_write.file_key``):
        :meth:`checksum` returns them without reading the file, as long as it is that same, unchanged file."""
        self._checksums[key] = (size, checksum)

    def put(self, checkpoint: Path, item: dict[str, Any]) -> None:
        """Write the Item of a checkpoint (atomically) and count it in."""
        atomic_write_json(item_path_for(checkpoint), item)
        self.record(checkpoint, item)

    def record(self, checkpoint: Path, item: dict[str, Any]) -> None:
        """Count in the Item of a checkpoint, already written."""
        self._items[checkpoint] = (item, ranking(item))

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
            try:  # a regular file of bounded size and depth: a FIFO or /dev/zero named like an Item is passed over
                item = read_json(path)
                href = _checkpoint_href(item) if isinstance(item, dict) else None
            except (OSError, ValueError, AttributeError, TypeError):  # not an Item: not this directory's
                continue
            if href is None or not _plain_name(href):
                continue  # an Item that points elsewhere is not one of this directory's: never adopted
            checkpoint = (path.parent / href).absolute()
            if not self.holds(checkpoint) or item_path_for(checkpoint).name != path.name:
                continue
            if item.get("collection") != self.collection_id:
                continue  # not this run's (another callback's or converter's)
            if checkpoint.exists() and _size_matches(item, checkpoint):
                self._items[checkpoint] = (item, ranking(item))
            else:  # its checkpoint is gone or was replaced: the Item no longer describes it
                self.forget(checkpoint)

    def live(self) -> list[Path]:
        """Checkpoints whose Items are in the Collection."""
        return sorted(self._items)

    # -------------------------------------------------------------------------------------------- collection

    def collection(self, held: dict[Path, dict[str, Any]] | None = None) -> dict[str, Any]:
        """The Collection over the live Items (or over ``held``, a :meth:`snapshot`): extents, summaries, item
        links, latest and best (built by ``_collection.build_collection``)."""
        ranked = self._items if held is None else {path: (item, ranking(item)) for path, item in held.items()}
        members = [
            Member(item_path_for(path).name, path.name, item, rank) for path, (item, rank) in sorted(ranked.items())
        ]
        run = RunFacts(self.collection_id, self.title, self.description, self.license)
        return build_collection(run, members).to_dict(include_self_link=False, transform_hrefs=False)

    def write_collection(self) -> dict[str, Any]:
        """Rewrite the Items whose version links changed, then check and write ``collection.json`` atomically:
        the callback's one flush step, with nothing running beside it (``convert``)."""
        from ._run_flush import flush

        flush(self, threading.Lock(), final=True)  # no training loop here: nothing can make it stale
        return self._written or self.collection()

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
        self._items[checkpoint] = (new, ranking(new))
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


def _assets(item: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The assets of an Item read back from a folder, those that are objects (the file may be anyone's)."""
    assets = item.get("assets")
    return {k: a for k, a in assets.items() if isinstance(a, dict)} if isinstance(assets, dict) else {}


def _checkpoint_href(item: dict[str, Any]) -> str | None:
    for key in ("checkpoint", "model"):
        asset = _assets(item).get(key)
        if asset and mlm.ROLE_CHECKPOINT in (asset.get("roles") or []) and isinstance(asset.get("href"), str):
            return str(asset["href"])
    return None


def _size_matches(item: dict[str, Any], checkpoint: Path) -> bool:
    for asset in _assets(item).values():
        if asset.get("href") in (checkpoint.name, f"./{checkpoint.name}") and mlm.FILE_SIZE in asset:
            return bool(asset[mlm.FILE_SIZE] == checkpoint.stat().st_size)
    return True


def _plain_name(href: str) -> bool:
    """``./name.ckpt`` or ``name.ckpt``: a file in the Item's own directory, not a path or a URL."""
    name = href.removeprefix("./")
    return bool(name) and "/" not in name and "\\" not in name and name not in (".", "..")
