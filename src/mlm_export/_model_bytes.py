"""The one reader of model files from strangers: each file opened once, without following links, read to a
bound, hashed, and checked and loaded from those same bytes.

``verify`` used to hash a file, check it, and load it, each by name: a file swapped for a link between the
steps was loaded unchecked. Here the bytes that were hashed are the bytes that are checked and loaded.
"""

from __future__ import annotations

import hashlib
import operator
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any, SupportsIndex

from . import _limits as limits
from ._hrefs import UnsafeHrefError, open_confined
from ._write import multihash

#: Largest model file read into memory to be checked and loaded (bytes); ``MLM_EXPORT_MAX_MODEL_READ``.
MAX_MODEL_READ = limits.MODEL_READ_BYTES


@dataclass(frozen=True)
class ModelBytes:
    """A model file's bytes as read once, where they came from, and their ``file:checksum`` multihash."""

    #: The file's path (for messages only: it is never opened again by this name).
    path: Path
    data: bytes = b""
    checksum: str = ""

    @property
    def size(self) -> int:
        return len(self.data)

    def __reduce_ex__(self, protocol: SupportsIndex) -> tuple[Any, ...]:
        """Pickled for verify's limited child (protocol 5, :mod:`mlm_export._isolate`), the bytes go out of band:
        sent in one piece after the request and unpickled as that same object, so the child holds one copy."""
        data: Any = pickle.PickleBuffer(self.data) if operator.index(protocol) >= 5 else self.data
        return (ModelBytes, (self.path, data, self.checksum))


def read_model_file(base: Path, href: str, *, allow_outside: bool = False, limit: int | None = None) -> ModelBytes:
    """The bytes of the model file ``href`` names inside ``base`` (:class:`UnsafeHrefError` for a link, a
    device, a FIFO, a path out of the folder, or a file over ``limit`` bytes)."""
    limit = MAX_MODEL_READ if limit is None else limit
    opened = open_confined(base, href, allow_outside=allow_outside, limit=limit)
    if opened is None:
        raise UnsafeHrefError(f"href {href!r} is not a local file; model files are read only from the Item's folder")
    f, size = opened
    with f:
        data = f.read(size + 1)
    if len(data) != size:
        raise UnsafeHrefError(f"{href} changed size while it was read; read it again when it is complete")
    return ModelBytes(base / href, data, multihash(hashlib.sha256(data).digest()))
