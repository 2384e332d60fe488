"""Atomic writes and checksums: a file is either the old one or the complete new one, never a torn one.

Atomic means against the process dying at any moment (write to a temporary file beside the target, then
rename); flushing to the disk against power loss is left to the operating system, as Lightning does.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import queue
import secrets
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, cast

#: multihash prefix of a sha2-256 digest: code 0x12, length 0x20.
SHA256_MULTIHASH_PREFIX = "1220"
#: Small chunks keep the write and the hash of neighbouring chunks overlapped (measured in benchmarks/).
CHUNK = 1 << 20
READ_CHUNK = 8 << 20


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], *, keep_suffix: bool = True) -> Iterator[Path]:
    """A temporary path beside ``path``; renamed onto it when the block succeeds, removed when it fails.

    ``keep_suffix=False`` ends the temporary name in ``.tmp``: a process killed mid-write then leaves no file
    that looks like a checkpoint (``*.ckpt``) to the next ``convert``.
    """
    target = Path(path)
    if not target.parent.is_dir():  # a stat, not a failing mkdir: the callback writes many small files
        target.parent.mkdir(parents=True, exist_ok=True)
    # Hidden, unique, and keeping the suffix (some writers, torch.export.save among them, check it).
    suffix = f".tmp{target.suffix}" if keep_suffix else f"{target.suffix}.tmp"
    tmp_path = target.parent / f".{target.stem}.{secrets.token_hex(4)}{suffix}"
    # O_EXCL: never reuse a file; mode 0o666 so the umask applies as it does for any file the user writes.
    os.close(os.open(tmp_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes | memoryview, *, keep_suffix: bool = True) -> None:
    """Write ``data`` to ``path`` atomically (as :func:`atomic_path` does, with the file opened once: creating
    files is what costs most when the callback writes an Item and its runtime files per checkpoint)."""
    target = Path(path)
    if not target.parent.is_dir():
        target.parent.mkdir(parents=True, exist_ok=True)
    suffix = f".tmp{target.suffix}" if keep_suffix else f"{target.suffix}.tmp"
    tmp = target.parent / f".{target.stem}.{secrets.token_hex(4)}{suffix}"
    fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)  # never an existing file (see atomic_path)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_save(path: str | os.PathLike[str], save: Callable[[IO[bytes]], Any]) -> None:
    """Serialise with ``save(buffer)`` in memory, then write the bytes atomically.

    torch's zip writer (``torch.export.save``, ``torch.jit.save``) aborts the whole process when a write to a
    full disk fails inside it; serialising to memory first keeps disk errors in Python, as an ``OSError``.
    """
    buffer = io.BytesIO()
    save(buffer)
    atomic_write_bytes(path, buffer.getbuffer())


class Written:
    """A file just written: its size, its identity right after the rename, and the sha256 of the bytes written:
    computed while writing, or later from the bytes kept in memory (:meth:`checksum`), or never (:meth:`release`).
    """

    def __init__(
        self,
        size: int,
        key: tuple[int, int, int, int],
        checksum: str | None = None,
        data: list[bytes | bytearray] | None = None,
    ) -> None:
        self.size = size
        #: ``(st_dev, st_ino, st_size, st_mtime_ns)`` of the file written: the same, unchanged file has this key.
        self.key = key
        self._checksum = checksum
        self._data = data

    @property
    def held_bytes(self) -> int:
        """Bytes kept in memory until the checksum is computed or given up."""
        return self.size if self._data is not None else 0

    def checksum(self) -> str | None:
        """The sha256 multihash of the bytes written; None if they were released before it was computed."""
        if self._checksum is None and self._data is not None:
            h = hashlib.sha256()
            for chunk in self._data:
                h.update(chunk)  # releases the GIL while it hashes
            self._checksum = multihash(h.digest())
            self.release()
        return self._checksum

    def release(self) -> None:
        """Drop the bytes kept for a checksum nobody needs (the file was replaced or removed meanwhile)."""
        self._data = None


def file_key(st: os.stat_result) -> tuple[int, int, int, int]:
    """What identifies one version of a file: device, inode, size and modification time."""
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def atomic_save_hashed(
    path: str | os.PathLike[str],
    save: Callable[[IO[bytes]], Any],
    *,
    keep: Callable[[int], bool] = lambda n: False,  # noqa: ARG005 - keep nothing
    hash_from: int = 64 << 20,
) -> Written:
    """Serialise with ``save(file)`` in memory, write the bytes atomically, and know their sha256 without ever
    reading the file back.

    The same bytes as :func:`atomic_save` (and as Lightning's ``_atomic_save``, which also serialises into
    memory first). Once more than ``hash_from`` bytes have come, the rest are hashed on a second thread while
    serialisation goes on, so a large checkpoint's checksum costs the training loop almost nothing; a smaller
    one stays in memory when ``keep(size)`` allows, for whoever needs the checksum later (the callback's worker,
    which skips it for a checkpoint replaced meanwhile), else it is hashed at once. The temporary file's name
    ends in ``.tmp``: a process killed mid-write leaves nothing that looks like a checkpoint.
    """
    sink = _HashingSink(hash_from)
    try:
        save(cast(IO[bytes], sink))  # torch.save needs only write() and flush()
    finally:
        checksum = sink.close()
    if checksum is None and not keep(sink.size):
        checksum = Written(sink.size, (0, 0, 0, 0), data=sink.chunks).checksum()
    with atomic_path(path, keep_suffix=False) as tmp, open(tmp, "wb") as f:
        for chunk in sink.chunks:
            f.write(chunk)
    return Written(sink.size, file_key(os.stat(path)), checksum, None if checksum else sink.chunks)


class _HashingSink:
    """A file-like object ``torch.save`` writes into: keeps a copy of what it is given (as ``io.BytesIO`` would:
    torch hands out views of memory it reuses), small writes (record headers) gathered into one chunk, and,
    past ``hash_from`` bytes, hashes each finished chunk on a second thread while serialisation goes on."""

    #: Writes smaller than this are appended to the chunk being gathered instead of making one of their own.
    SMALL = 1 << 16

    def __init__(self, hash_from: int) -> None:
        self.chunks: list[bytes | bytearray] = []
        self.size = 0
        self._gathering = bytearray()
        self._hash_from = hash_from
        self._hasher: _Hasher | None = None

    def write(self, data: bytes | memoryview) -> int:
        n = len(memoryview(data).cast("B"))
        self.size += n
        if n < self.SMALL:
            self._gathering += data
        else:
            self._finish_chunk()
            self._add(bytes(data))
        return n

    def _finish_chunk(self) -> None:
        if self._gathering:
            self._add(self._gathering)
            self._gathering = bytearray()

    def _add(self, chunk: bytes | bytearray) -> None:
        self.chunks.append(chunk)
        if self._hasher is not None:
            self._hasher.put(chunk)
        elif self.size > self._hash_from:
            self._hasher = _Hasher()
            for earlier in self.chunks:
                self._hasher.put(earlier)

    def flush(self) -> None:
        """Nothing to flush: the bytes are written to the file afterwards."""

    def close(self) -> str | None:
        """The sha256 multihash of everything written, when it was hashed on the way; else None."""
        self._finish_chunk()
        return self._hasher.close() if self._hasher is not None else None


class _Hasher:
    """sha256 of buffers handed over one by one, computed on its own thread (hashlib releases the GIL)."""

    def __init__(self, depth: int = 0) -> None:
        self._hash = hashlib.sha256()
        self._queue: queue.Queue[bytes | bytearray | memoryview | None] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._work, name="mlm-export-sha256", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        while (buf := self._queue.get()) is not None:
            try:
                self._hash.update(buf)
            except BaseException as e:  # noqa: BLE001  # pragma: no cover - hashlib does not fail on bytes; kept for put()
                self._error = e

    def put(self, buf: bytes | bytearray | memoryview) -> None:
        self._queue.put(buf)

    def close(self) -> str:
        """Wait for the hash to catch up; the sha256 multihash of everything handed over."""
        self._queue.put(None)
        self._thread.join()
        if self._error:
            raise self._error
        return multihash(self._hash.digest())


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    atomic_write_bytes(path, json_bytes(obj))


def json_bytes(obj: Any) -> bytes:
    """``obj`` as indented UTF-8 JSON with a final newline. orjson when installed: the callback rewrites every
    Item of a run when its version links change, and Python's indenting encoder holds the GIL ~5x longer."""
    try:
        import orjson
    except ImportError:
        orjson = None  # type: ignore[assignment]
    if orjson is not None:
        try:
            return orjson.dumps(obj, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE)
        except TypeError:  # a non-str key, an int beyond 64 bits: what only the json module writes
            pass
    return (json.dumps(obj, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def multihash(digest: bytes) -> str:
    """The ``file:checksum`` form of a sha256 digest: hex multihash."""
    return SHA256_MULTIHASH_PREFIX + digest.hex()


def file_checksum(path: str | os.PathLike[str]) -> str:
    """sha256 multihash of a file, read once in large chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(READ_CHUNK):
            h.update(chunk)
    return multihash(h.digest())


class HashingWriter:
    """Write buffers to a file while a second thread hashes them, so writing and sha256 overlap.

    Buffers must stay unchanged until :meth:`close` returns (they are hashed after being written).
    """

    def __init__(self, f: IO[bytes], depth: int = 16) -> None:
        self._f = f
        self._hasher = _Hasher(depth)
        self.size = 0

    def write(self, data: bytes | memoryview) -> None:
        view = memoryview(data).cast("B")
        for start in range(0, len(view), CHUNK):
            part = view[start : start + CHUNK]
            self._f.write(part)
            self._hasher.put(part)
        self.size += len(view)

    def close(self) -> str:
        """Wait for the hash to catch up; the sha256 multihash of everything written."""
        return self._hasher.close()
