"""Bounds on what reading a zip checkpoint may inflate, checked from the sizes the archive declares.

``torch.save`` stores its members uncompressed. A stranger's checkpoint may deflate them instead: a 1 MB
file can then declare gigabytes of pickle or tensor data, which torch inflates into memory before any other
check runs. The central directory states every member's inflated size; the reader trusts it, so checking it
before loading bounds what is decompressed.
"""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

from ..errors import ArchiveBombError as ArchiveBombError

#: Most bytes the compressed members of one checkpoint may inflate to, over and above the file's own size.
MAX_INFLATE = int(os.environ.get("MLM_EXPORT_MAX_INFLATE", str(256 << 20)))


def check_declared_sizes(path: Path, limit: int = MAX_INFLATE, *, data: bytes | None = None) -> None:
    """Refuse an archive whose compressed members would inflate past ``limit`` plus the file's size, or whose
    stored members claim more bytes than the file has; reads only the central directory (of ``data``, the
    file's bytes already read, when given: ``path`` then only names it)."""
    size = path.stat().st_size if data is None else len(data)
    inflated = 0
    with zipfile.ZipFile(path if data is None else io.BytesIO(data)) as archive:
        for info in archive.infolist():
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
