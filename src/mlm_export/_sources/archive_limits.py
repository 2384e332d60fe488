"""Bounds on what reading a checkpoint may inflate or create, checked from the sizes the file declares.

``torch.save`` stores its members uncompressed. A stranger's checkpoint may deflate them instead: a 1 MB
file can then declare gigabytes of pickle or tensor data, which torch inflates into memory before any other
check runs. The central directory states every member's inflated size; the reader trusts it, so checking it
before loading bounds what is decompressed. The pickle's own size bounds the objects unpickling creates (10M
state-dict keys take 120 MB of pickle and 3 GB of memory), and a safetensors header's length and tensor
count bound what safetensors builds from it. The caps are those of :mod:`mlm_export._limits`.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

from .. import _limits as limits
from .._hrefs import loads
from ..errors import ArchiveBombError as ArchiveBombError
from ..errors import InputTooLargeError

#: Most bytes the compressed members of one checkpoint may inflate to, over and above the file's own size.
MAX_INFLATE = limits.INFLATE_BYTES


def pickle_too_large(name: str, size: int) -> InputTooLargeError:
    """The error for a checkpoint whose pickle is over ``_limits.PICKLE_BYTES``."""
    return InputTooLargeError(
        f"{name}: its pickle is {size:,} bytes, over the {limits.PICKLE_BYTES:,} a checkpoint's pickle may have "
        "(millions of objects?); it is not read. Set MLM_EXPORT_MAX_PICKLE to raise the cap for a file you trust"
    )


def check_declared_sizes(path: Path, limit: int = MAX_INFLATE, *, data: bytes | None = None) -> None:
    """Refuse an archive whose compressed members would inflate past ``limit`` plus the file's size, whose
    stored members claim more bytes than the file has, or whose pickle is over ``_limits.PICKLE_BYTES``;
    reads only the central directory (of ``data``, the file's bytes already read, when given: ``path`` then
    only names it)."""
    size = path.stat().st_size if data is None else len(data)
    inflated = 0
    pickle = 0
    with zipfile.ZipFile(path if data is None else io.BytesIO(data)) as archive:
        for info in archive.infolist():
            if info.filename.endswith(".pkl"):
                pickle = max(pickle, info.file_size)
            if info.compress_type == zipfile.ZIP_STORED:
                if info.file_size > size:
                    raise ArchiveBombError(
                        f"{path.name}: member {info.filename} claims {info.file_size:,} bytes, more than the "
                        f"{size:,}-byte file holds (corrupt or crafted)"
                    )
                continue
            inflated += info.file_size
            if inflated > size + limit:
                raise ArchiveBombError(
                    f"{path.name}: its compressed members inflate to over {inflated:,} bytes from a {size:,}-byte "
                    f"file (a zip bomb?); it is not read. torch.save never compresses: re-save the checkpoint with "
                    f"torch.save, or raise MLM_EXPORT_MAX_INFLATE (now {limit:,} bytes) if you trust it"
                )
    if pickle > limits.PICKLE_BYTES:  # after the bomb checks: a deflated pickle is first of all a zip bomb
        raise pickle_too_large(path.name, pickle)


def check_safetensors_header(path: Path, *, data: bytes | None = None) -> None:
    """Refuse a safetensors file whose header is over ``_limits.SAFETENSORS_HEADER_BYTES`` or lists more than
    ``_limits.STATE_KEYS`` tensors, reading only the header (zero-size tensors cost no data bytes); of ``data``,
    the file's bytes already read, when given (``path`` then only names it)."""
    with path.open("rb") if data is None else io.BytesIO(data) as f:
        length = int.from_bytes(f.read(8), "little")
        if length > limits.SAFETENSORS_HEADER_BYTES:
            raise InputTooLargeError(
                f"{path.name}: its safetensors header is {length:,} bytes, over the "
                f"{limits.SAFETENSORS_HEADER_BYTES:,} a header may have; it is not read"
            )
        try:
            header = loads(f.read(length), f"{path.name}'s safetensors header")
        except InputTooLargeError:
            raise
        except ValueError:
            return  # not JSON: safetensors' own reader says what is wrong with it
    count = len(header) - ("__metadata__" in header) if isinstance(header, dict) else 0
    if count > limits.STATE_KEYS:
        raise InputTooLargeError(
            f"{path.name}: holds {count:,} tensors, over the {limits.STATE_KEYS:,} a state dict may have; "
            "it is not read"
        )
