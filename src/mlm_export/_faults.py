"""Writing into a folder that refuses (read-only, full disk, file size limit): one clear line, nothing half-done.

Every file is written atomically (``_write.py``), so a failed write leaves no torn file. What remains to do is
what a failure leaves around the files: a folder this call made and left empty, model files of an Item that
was never written. :func:`all_or_nothing` removes them and turns the ``OSError`` into a one-line error.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator, Sequence
from pathlib import Path

from .errors import MLMExportError
from .errors import WriteFailedError as WriteFailedError


@contextlib.contextmanager
def all_or_nothing(folder: Path, outputs: Sequence[Path]) -> Iterator[None]:
    """Write ``outputs`` into ``folder`` inside the block; on an OSError remove those of them that did not exist
    before, and ``folder`` itself if the block made it and it is empty, then raise :class:`WriteFailedError`."""
    made = not folder.exists()
    existed = {p for p in outputs if p.exists()}
    try:
        yield
    except OSError as e:
        if isinstance(e, MLMExportError):
            raise
        for p in outputs:
            if p not in existed:
                with contextlib.suppress(OSError):
                    p.unlink(missing_ok=True)
        if made:
            with contextlib.suppress(OSError):
                folder.rmdir()  # only if empty
        # Free what the failed writer left in reference cycles (torch.export state) now: left to the collector
        # at interpreter exit, torch tears it down after its own modules and the process dies with SIGSEGV.
        gc.collect()
        raise WriteFailedError(_target(e, outputs) or folder, e) from e


def _target(error: OSError, outputs: Sequence[Path]) -> Path | None:
    """The output an error is about (a write goes through a hidden temporary file beside its target)."""
    if not error.filename:  # a failed write() names no file
        return outputs[0] if len(outputs) == 1 else None
    name = Path(str(error.filename)).name
    for p in outputs:
        if name == p.name or name.startswith(f".{p.stem}."):
            return p
    return None
