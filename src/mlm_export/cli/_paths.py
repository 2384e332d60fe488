"""Paths named on the command line: checked before any work, each problem a usage error (exit 2)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .._hrefs import read_json as regular_json
from ..errors import InputTooLargeError, NotJSONError, UsageError

GLOB_CHARS = "*?["


def require_existing(paths: Sequence[str | Path], *, globs: bool = False) -> None:
    """Every path exists (a pattern with ``*?[`` is left to the command when ``globs``)."""
    missing = [str(p) for p in paths if not Path(p).exists() and not (globs and any(c in str(p) for c in GLOB_CHARS))]
    if missing:
        raise UsageError(f"no such file or directory: {', '.join(missing)}")


def require_files(paths: Sequence[Path], *, what: str = "an Item or Collection JSON file") -> list[Path]:
    """Every path is an existing file (a directory is named as one, with what to give instead)."""
    require_existing(paths)
    for p in paths:
        if p.is_dir():
            raise UsageError(f"{p} is a directory; name {what} (e.g. {p / '*.json'})")
    return list(paths)


def read_json(path: Path) -> Any:
    """The JSON in a file; a file that is not JSON is a :class:`NotJSONError` saying so (one that is not a regular
    file, an ``UnsafeHrefError``: it is never opened for a blocking read; one over a cap of ``_limits``, an
    ``InputTooLargeError``)."""
    try:
        return regular_json(path)
    except InputTooLargeError:
        raise  # says what cap it is over: not "not JSON"
    except ValueError as e:
        raise NotJSONError(path, e) from e


def require_catalog(target: str) -> str:
    """A catalog to read from: a URL (``postgresql://``, ``http(s)://``), or a folder that exists."""
    if "://" not in target:
        require_existing([target])
    return target
