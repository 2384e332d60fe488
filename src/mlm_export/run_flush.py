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
from pathlib import Path
from typing import Any

from .runs import COLLECTION_FILE, RunCatalog, item_path_for
from .schema_cache import quick_check
from .versions import relink
from .write import json_bytes


def flush(catalog: RunCatalog, lock: threading.Lock) -> bool:
    """Rewrite the relinked Items and ``collection.json`` of ``catalog``; False when a removal meanwhile made
    the Collection stale (it stays marked dirty, for the next flush)."""
    with lock:
        catalog.dirty = False
        held = catalog.snapshot()
    copies = {path: _copy(item) for path, item in held.items()}
    changed = relink(copies, item_path_for, deprecate=catalog.deprecate_superseded, base=catalog.version)
    live = dict(held)  # the objects the Collection is computed from, each checked again before it is written
    for path in changed:
        swap = lambda p=path: catalog.swap(p, held[p], copies[p])  # noqa: E731
        if _commit(item_path_for(path), json_bytes(copies[path]), lock, swap):
            live[path] = copies[path]
        else:  # removed meanwhile: not linked from this Collection
            live.pop(path)
    data = catalog.collection({path: copies[path] for path in live})
    quick_check(data, what="Collection", by_shape=True)

    def current() -> bool:
        if all(catalog.still_holds(path, item) for path, item in live.items()):
            catalog.written(data)
            return True
        catalog.dirty = True
        return False

    return _commit(catalog.dirpath / COLLECTION_FILE, json_bytes(data), lock, current)


def _commit(target: Path, payload: bytes, lock: threading.Lock, still_current: Any) -> bool:
    """Write ``payload`` beside ``target``, then rename it onto ``target`` under ``lock`` if ``still_current()``."""
    tmp = target.with_name(f".{target.stem}.{secrets.token_hex(4)}.tmp{target.suffix}")
    try:
        tmp.write_bytes(payload)
        with lock:
            if still_current():
                os.replace(tmp, target)
                return True
        return False
    finally:
        tmp.unlink(missing_ok=True)


def _copy(item: dict[str, Any]) -> dict[str, Any]:
    """What relinking changes, copied (links, version, deprecated, extensions); the rest is shared, unchanged."""
    return {
        **item,
        "properties": dict(item.get("properties", {})),
        "links": [dict(link) for link in item.get("links", [])],
        "stac_extensions": list(item.get("stac_extensions", [])),
    }
