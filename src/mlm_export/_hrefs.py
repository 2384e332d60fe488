"""Following a stranger's hrefs to local files: inside the Item's folder tree, regular files only, reads bounded.

An Item's asset hrefs are written by whoever made the Item. ``validate`` and ``verify`` follow them to check
sizes and checksums; without these rules ``../../etc/passwd``, ``file:///etc/shadow`` or a symlink would let
an Item make them read (and print the hash of) any file, and ``/dev/zero`` or a FIFO would hang them.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import stat
import time
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import unquote, urlparse

from . import _limits as limits
from ._write import READ_CHUNK, multihash
from .errors import InputTooLargeError
from .errors import UnsafeHrefError as UnsafeHrefError


def local_path(href: str, base: Path, *, allow_outside: bool = False) -> Path | None:
    """The file a relative or ``file://`` href names, resolved (symlinks followed); None for a remote href.

    Outside ``base``'s tree it is refused unless ``allow_outside`` (``--allow-outside``).
    """
    parsed = urlparse(href)
    if parsed.scheme not in ("", "file"):
        return None
    if parsed.scheme == "file" and not allow_outside:
        raise UnsafeHrefError(f"href {href!r} is a file:// URL; pass --allow-outside to follow hrefs out of the folder")
    root = base.resolve()
    path = (root / unquote(parsed.path)).resolve()
    if not allow_outside and not path.is_relative_to(root):
        raise UnsafeHrefError(
            f"href {href!r} leads outside the Item's folder ({root}); pass --allow-outside to follow it"
        )
    return path


def regular_size(path: Path) -> int:
    """The size of a regular file; a device, FIFO, socket or directory is refused (reading it could hang)."""
    st = path.stat()
    if not stat.S_ISREG(st.st_mode):
        raise UnsafeHrefError(f"{path} is not a regular file (a device, FIFO or directory); it is not read")
    return st.st_size


def _open_regular(path: Path, limit: int, what: str = "a check reads", *, dir_fd: int | None = None) -> BinaryIO:
    """``path`` opened for reading without blocking (a FIFO cannot hang the open), refused unless the open
    descriptor is a regular file of at most ``limit`` bytes (``what`` names the cap in the message). With
    ``dir_fd`` the name is opened in that folder and a final symlink is refused (``ELOOP``), never followed."""
    nofollow = os.O_NOFOLLOW if dir_fd is not None else 0
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | nofollow, dir_fd=dir_fd)
    f = os.fdopen(fd, "rb")
    st = os.fstat(f.fileno())
    if not stat.S_ISREG(st.st_mode):
        f.close()
        raise UnsafeHrefError(f"{path} is not a regular file; it is not read")
    if st.st_size > limit:
        f.close()
        raise UnsafeHrefError(f"{path} is {st.st_size:,} bytes, over the {limit:,} {what}; it is not read")
    return f


def read_regular(path: Path, limit: int | None = None, *, dir_fd: int | None = None) -> bytes:
    """The bytes of a file from strangers (an Item, a Collection): a regular file of at most ``limit`` bytes
    (default ``_limits.ITEM_BYTES``), never a FIFO or device (:class:`UnsafeHrefError`, an ``OSError``, when
    it is not one or is larger); ``dir_fd`` as in ``_open_regular``."""
    cap = limits.ITEM_BYTES if limit is None else limit
    with _open_regular(path, cap, "bytes an Item may have", dir_fd=dir_fd) as f:
        return f.read()


def loads(data: bytes | str, what: str) -> Any:
    """JSON from a stranger, nested at most ``_limits.JSON_DEPTH`` levels: a deeper document is an
    :class:`InputTooLargeError` (a ``ValueError``) naming ``what``, never a ``RecursionError``."""
    try:
        value = json.loads(data)
    except RecursionError:
        raise InputTooLargeError(f"{what} is nested deeper than {limits.JSON_DEPTH} levels; it is not read") from None
    limits.check_structure(value, what, values=None)  # parsed from bytes: their size bounds the values
    return value


def read_json(path: Path, limit: int | None = None, *, dir_fd: int | None = None) -> Any:
    """The JSON in a file from strangers, read by :func:`read_regular` and :func:`loads`; ``ValueError`` when
    it is not JSON or over a cap."""
    return loads(read_regular(path, limit, dir_fd=dir_fd).decode("utf-8"), str(path))


def bounded_checksum(path: Path, limit: int | None = None) -> str:
    """sha256 multihash of a regular file, reading at most ``limit`` bytes, never more than
    ``_limits.HASH_BYTES`` nor for longer than ``_limits.HASH_SECONDS`` (:class:`InputTooLargeError`).

    Opened without blocking (a FIFO swapped in after the size check cannot hang the read) and checked again on
    the open descriptor.
    """
    if limit is not None and limit > limits.HASH_BYTES:
        raise InputTooLargeError(
            f"{path} is {limit:,} bytes, over the {limits.HASH_BYTES:,} hashed to check a checksum: not checked "
            "(set MLM_EXPORT_HASH_BYTES to hash larger files)"
        )
    limit = limits.HASH_BYTES if limit is None else limit
    deadline = time.monotonic() + limits.HASH_SECONDS
    with _open_regular(path, limit, "hashed to check a checksum (MLM_EXPORT_HASH_BYTES)") as f:
        h = hashlib.sha256()
        left = limit
        while left > 0 and (chunk := f.read(min(READ_CHUNK, left))):
            h.update(chunk)
            left -= len(chunk)
            if left > 0 and time.monotonic() > deadline:
                raise InputTooLargeError(
                    f"hashing {path} stopped after {limits.HASH_SECONDS:g} s ({limit - left:,} of {limit:,} bytes): "
                    "checksum not checked (set MLM_EXPORT_HASH_SECONDS to allow longer)"
                )
    return multihash(h.digest())


def open_confined(
    base: Path, href: str, *, allow_outside: bool = False, limit: int | None = None, links: bool = False
) -> tuple[BinaryIO, int] | None:
    """The file an href names, opened once for reading, and its size; None for a remote href.

    Inside ``base`` no symbolic link is followed by the kernel: each folder is opened below the last with
    ``O_NOFOLLOW`` and the file itself too, so a link swapped in after any check cannot lead elsewhere.
    ``links=True`` reads one link level whose target is a plain file inside ``base`` (Lightning's
    ``last.ckpt``), resolved here and opened the same way. ``allow_outside`` (``--allow-outside``) follows
    links as the system does. The open descriptor must be a regular file of at most ``limit`` bytes.
    """
    path = local_path(href, base, allow_outside=allow_outside)
    if path is None:
        return None
    limit = limits.HASH_BYTES if limit is None else limit
    if allow_outside:
        return _checked(os.open(path, os.O_RDONLY | _NONBLOCK), href, limit)
    rel = os.path.normpath(unquote(urlparse(href).path))
    fd = _open_below(base, rel, href)
    if fd is None and links:
        target = os.path.normpath(os.path.join(os.path.dirname(rel), os.readlink(base / rel)))
        if os.path.isabs(target) or target.startswith(".."):
            raise UnsafeHrefError(f"href {href!r} is a symbolic link leading outside the Item's folder; not read")
        fd = _open_below(base, target, href)
    if fd is None:
        raise UnsafeHrefError(f"href {href!r} is a symbolic link; links are not followed (the file is not read)")
    return _checked(fd, href, limit)


_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def _open_below(base: Path, rel: str, href: str) -> int | None:
    """A descriptor of ``rel`` opened from ``base`` one component at a time without following links; None
    when the last component is a link."""
    parts = [p for p in rel.split(os.sep) if p not in ("", ".")]
    if not parts or ".." in parts:
        raise UnsafeHrefError(f"href {href!r} does not name a file inside the Item's folder")
    folder = os.open(base, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        for part in parts[:-1]:
            try:
                inner = os.open(part, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _NOFOLLOW, dir_fd=folder)
            except OSError as e:
                if os.path.islink(os.path.join(base, *parts[: parts.index(part) + 1])):
                    raise UnsafeHrefError(
                        f"href {href!r} passes through the symbolic link '{part}'; links are not followed"
                    ) from e
                raise
            os.close(folder)
            folder = inner
        try:
            return os.open(parts[-1], os.O_RDONLY | _NONBLOCK | _NOFOLLOW, dir_fd=folder)
        except OSError as e:
            if e.errno == errno.ELOOP:
                return None
            raise
    finally:
        os.close(folder)


def _checked(fd: int, href: str, limit: int) -> tuple[BinaryIO, int]:
    """The descriptor as a file, refused unless it is a regular file of at most ``limit`` bytes."""
    st = os.fstat(fd)  # before a file object is made: Python refuses a directory's with its own error
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise UnsafeHrefError(f"{href} is not a regular file (a device, FIFO or directory); it is not read")
    if st.st_size > limit:
        os.close(fd)
        raise UnsafeHrefError(
            f"{href} is {st.st_size:,} bytes, over the {limit:,} a check reads (MLM_EXPORT_HASH_BYTES raises it for "
            "checksums, MLM_EXPORT_MAX_MODEL_READ for model files)"
        )
    return os.fdopen(fd, "rb"), st.st_size


def hash_open(f: BinaryIO, size: int, name: str = "the file") -> str:
    """sha256 multihash of the first ``size`` bytes of an open file (never more: it may be growing), for at
    most ``_limits.HASH_SECONDS`` (:class:`InputTooLargeError` after that: a slow disk cannot hang a check)."""
    deadline = time.monotonic() + limits.HASH_SECONDS
    h = hashlib.sha256()
    left = size
    while left > 0 and (chunk := f.read(min(READ_CHUNK, left))):
        h.update(chunk)
        left -= len(chunk)
        if left > 0 and time.monotonic() > deadline:
            raise InputTooLargeError(
                f"hashing {name} stopped after {limits.HASH_SECONDS:g} s ({size - left:,} of {size:,} bytes): "
                "checksum not checked (set MLM_EXPORT_HASH_SECONDS to allow longer)"
            )
    return multihash(h.digest())
