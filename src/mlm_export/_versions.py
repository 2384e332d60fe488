"""The version chain of a run's Items: each checkpoint is a revision of the model (STAC version extension).

Revisions are ordered by global step, then epoch. Checkpoints of the same step (``last.ckpt`` beside
``epoch=3-step=40.ckpt``) are one revision: the named one is in the chain, its copies carry the same version
and links. The chain is computed from the live Items alone, so it stays right when top-k pruning removes some
and when a resumed run adopts the Items already there.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from . import mlm

CHAIN_RELS = ("predecessor-version", "successor-version", "latest-version")
GEOJSON = mlm.MEDIA_GEOJSON


def revision(props: Mapping[str, Any], base: str | None = None) -> str | None:
    """A checkpoint's ``version``: ``epoch3-step40`` (after the user's version, when given)."""
    epoch, step = props.get(mlm.LIGHTNING_EPOCH), props.get(mlm.LIGHTNING_GLOBAL_STEP)
    if not isinstance(epoch, int) or not isinstance(step, int):
        return base
    own = f"epoch{epoch}-step{step}"
    return f"{base}-{own}" if base else own


def _order(path: Path, item: Mapping[str, Any]) -> tuple[int, int, bool, str]:
    p = item.get("properties", {})
    step, epoch = p.get(mlm.LIGHTNING_GLOBAL_STEP, -1), p.get(mlm.LIGHTNING_EPOCH, -1)
    return (step if isinstance(step, int) else -1, epoch if isinstance(epoch, int) else -1, _is_copy(path), path.name)


def _is_copy(path: Path) -> bool:
    return path.name.startswith("last")


def relink(
    items: Mapping[Path, dict[str, Any]], item_file: Any, *, deprecate: bool = False, base: str | None = None
) -> list[Path]:
    """Set ``version``, the chain links and (``deprecate``) ``deprecated`` on every Item; return those changed.

    ``item_file(checkpoint)`` gives the Item's file (its name is the link target). Items are changed in place.
    """
    ordered = sorted(items, key=lambda p: _order(p, items[p]))
    revisions: list[list[Path]] = []
    for path in ordered:
        key = _order(path, items[path])[:2]
        same = revisions and key[0] >= 0 and _order(revisions[-1][0], items[revisions[-1][0]])[:2] == key
        if same:
            revisions[-1].append(path)
        else:
            revisions.append([path])
    heads = [group[0] for group in revisions]
    changed = []
    for i, group in enumerate(revisions):
        before = heads[i - 1] if i > 0 else None
        after = heads[i + 1] if i + 1 < len(heads) else None
        latest = heads[-1]
        for path in group:
            item = items[path]
            old = (item.get("properties", {}).get("version"), item.get("properties", {}).get("deprecated"),
                   [dict(link) for link in item.get("links", [])])  # fmt: skip
            _apply(item, item_file, before, after, latest, group[0], deprecate=deprecate and i < len(revisions) - 1,
                   base=base)  # fmt: skip
            new = (item["properties"].get("version"), item["properties"].get("deprecated"), item["links"])
            if new != old:
                changed.append(path)
    return changed


def _apply(
    item: dict[str, Any],
    item_file: Any,
    before: Path | None,
    after: Path | None,
    latest: Path,
    head: Path,
    *,
    deprecate: bool,
    base: str | None,
) -> None:
    props = item.setdefault("properties", {})
    version = revision(props, base)
    if version:
        props["version"] = version
    if deprecate:
        props["deprecated"] = True
    else:
        props.pop("deprecated", None)
    links = [link for link in item.get("links", []) if link.get("rel") not in CHAIN_RELS]
    for rel, target in (("predecessor-version", before), ("successor-version", after), ("latest-version", latest)):
        if target is not None and not (rel == "latest-version" and target == head):
            links.append({"rel": rel, "href": f"./{item_file(target).name}", "type": GEOJSON})
    item["links"] = links
    exts = item.setdefault("stac_extensions", [])
    if ("version" in props or "deprecated" in props) and mlm.VERSION_SCHEMA not in exts:
        exts.append(mlm.VERSION_SCHEMA)
