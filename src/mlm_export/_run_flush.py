"""The callback's Collection writes, done beside the training loop instead of in its way.

A run's Collection write relinks the version chain of every live Item (each new latest checkpoint changes the
``latest-version`` link of all of them) and rewrites those that changed, then ``collection.json``. All of that is
computed, checked, encoded and written to temporary files without the callback's lock; the lock is taken only to
rename one finished file at a time, and only if what it describes is still live. So the training loop, which
takes the same lock to remove a checkpoint's Item before the checkpoint goes, waits for one rename at most,
and a removal during the write still wins: no Item comes back for a removed checkpoint, and ``collection.json``
never links an Item that is gone (a Collection computed before a removal is dropped and written again later).
"""

from __future__ import annotations

import os
import secrets
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ._collection import COLLECTION_FILE
from ._runs import RunCatalog, item_path_for
from ._validate import check
from ._versions import relink
from ._write import json_bytes


def flush(catalog: RunCatalog, lock: threading.Lock, *, final: bool = True) -> bool:
    """Rewrite the relinked Items and ``collection.json`` of ``catalog``; False when a removal meanwhile made
    the Collection stale (it stays marked dirty, for the next flush).

    ``final=False`` (a flush while training goes on) leaves out the Items whose only change is a
    ``latest-version`` link that still points to a live, older Item: each new checkpoint changes that link
    on every Item of the run, and rewriting them all at every flush is most of its cost. The final flush (at
    the end of ``fit``) writes them; until then they link a live Item, only not the newest.
    """
    with lock:
        catalog.dirty = False
        held = catalog.snapshot()
    copies = {path: _copy(item) for path, item in held.items()}
    changed = relink(copies, item_path_for, deprecate=catalog.deprecate_superseded, base=catalog.version)
    if not final:
        names = {item_path_for(path).name for path in held}
        changed = [path for path in changed if not _only_latest_moved(held[path], copies[path], names)]
    live = dict(held)  # the objects the Collection is computed from, each checked again before it is written
    for path in changed:
        swap = lambda p=path: catalog.swap(p, held[p], copies[p])  # noqa: E731
        if commit(item_path_for(path), json_bytes(copies[path]), lock, swap):
            live[path] = copies[path]
        else:  # removed meanwhile: not linked from this Collection
            live.pop(path)
    data = catalog.collection({path: copies[path] for path in live})
    check(data, what="Collection")

    def current() -> bool:
        if all(catalog.still_holds(path, item) for path, item in live.items()):
            catalog.written(data)
            return True
        catalog.dirty = True
        return False

    return commit(catalog.dirpath / COLLECTION_FILE, json_bytes(data), lock, current)


def commit(
    target: Path,
    payload: bytes,
    lock: threading.Lock,
    still_current: Callable[[], bool],
    then: Callable[[], object] | None = None,
) -> bool:
    """Write ``payload`` beside ``target``, then rename it onto ``target`` under ``lock`` if ``still_current()``
    (and, still under the lock, call ``then()``: what records the new file)."""
    tmp = target.with_name(f".{target.stem}.{secrets.token_hex(4)}.tmp{target.suffix}")
    try:
        tmp.write_bytes(payload)
        with lock:
            if still_current():
                os.replace(tmp, target)
                if then is not None:
                    then()
                return True
        return False
    finally:
        tmp.unlink(missing_ok=True)


def _only_latest_moved(old: dict[str, Any], new: dict[str, Any], live_names: set[str]) -> bool:
    """Whether ``new`` differs from ``old`` only in a ``latest-version`` link, and the old one links a live Item."""
    if old.get("properties") != new.get("properties") or old.get("stac_extensions") != new.get("stac_extensions"):
        return False
    before = [link for link in old.get("links", []) if link.get("rel") != "latest-version"]
    after = [link for link in new.get("links", []) if link.get("rel") != "latest-version"]
    if before != after:
        return False
    targets = [link.get("href", "") for link in old.get("links", []) if link.get("rel") == "latest-version"]
    return len(targets) == 1 and str(targets[0]).removeprefix("./") in live_names


def _copy(item: dict[str, Any]) -> dict[str, Any]:
    """What relinking changes, copied (links, version, deprecated, extensions); the rest is shared, unchanged."""
    return {
        **item,
        "properties": dict(item.get("properties", {})),
        "links": [dict(link) for link in item.get("links", [])],
        "stac_extensions": list(item.get("stac_extensions", [])),
    }
