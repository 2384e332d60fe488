"""The folder catalog: search columns in Parquet, each Item's JSON in a JSON-lines file beside it; DuckDB.

Layout of a catalog folder::

    catalog.json              the manifest: the committed parts and Collections (replaced atomically)
    parts/part-N-X.parquet    one row per Item: the search columns, and where its JSON is in the .jsonl
    parts/part-N-X.jsonl      the Items exactly as added, one per line (readable with any JSON tool)
    .lock                     writers take an exclusive lock on it

An ``add`` streams its Items into one new pair of files (written under temporary names, renamed when
complete), then commits by replacing ``catalog.json``. A reader reads the manifest and only the parts it
lists, so a writer killed at any moment leaves the old state (unlisted files are removed by the next
writer). Updates append a newer row; the newest row per id wins. Items are kept whole as JSON text, so every
MLM Item goes in (bands as strings or objects, ``expression`` of any type, legacy keys) and comes back equal.
A search runs in DuckDB over the search columns (loaded once per catalog state into memory), then reads only
the matched Items' bytes.

A catalog folder may come from strangers. Every name inside it is opened relative to a descriptor of the
folder (``dir_fd``) without following links (``O_NOFOLLOW``), without blocking (a FIFO cannot hang), and only
as a regular file: a catalog whose ``parts``, ``.lock``, manifest or part files are links is refused. A part
is read only after its Parquet footer says it has the catalog's columns and no more rows than the manifest
lists and :data:`MAX_ROWS`; a search skips a part that fails this (with a warning naming it) and answers from
the others, while ``add`` refuses to write beside it.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import secrets
import stat
import warnings
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, Any

from .._hrefs import _open_regular, read_json
from .._write import json_bytes
from ..errors import MLMExportWarning, UnsafeHrefError
from . import _fields as fields
from ._base import MAX_ITEM_BYTES, AddOptions, AddResult, CatalogBase, loads, prepared_items
from ._errors import CatalogError, CatalogFormatError, QueryError
from ._query import Query
from ._sql import bbox_sql, interval_sql, to_sql

MANIFEST = "catalog.json"
PARTS = "parts"
LOCK = ".lock"
FORMAT = "mlm-export-catalog"
FORMAT_VERSION = 1
BATCH_ROWS = 5_000
#: Most rows a folder catalog loads for a search, over all its parts (a part's footer is checked before it is read:
#: a 1 MB Parquet file can declare 20M rows). ``add`` refuses to grow a catalog past it.
MAX_ROWS = 5_000_000
#: Largest Parquet part read (bytes on disk, and bytes its footer says its columns hold uncompressed).
MAX_PART_BYTES = 1 << 30
#: Largest manifest read (it lists the parts and holds the Collections).
MAX_MANIFEST_BYTES = 64 << 20
#: Highest commit number (it names the parts with 8 digits), and most superseded rows, a manifest may hold.
MAX_SEQ = 99_999_999
_PART = re.compile(r"^part-\d{8}-[0-9a-f]{8}\.parquet$")
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _schema() -> Any:
    import pyarrow as pa

    ts = pa.timestamp("us", tz="UTC")
    return pa.schema(
        [
            ("id", pa.string()),
            ("seq", pa.int64()),
            ("collection", pa.string()),
            ("start", ts),
            ("end", ts),
            ("xmin", pa.float64()),
            ("ymin", pa.float64()),
            ("xmax", pa.float64()),
            ("ymax", pa.float64()),
            ("name", pa.string()),
            ("architecture", pa.string()),
            ("framework", pa.string()),
            ("accelerator", pa.string()),
            ("total_parameters", pa.int64()),
            ("tasks", pa.list_(pa.string())),
            ("bands", pa.list_(pa.string())),
            ("offset", pa.int64()),
            ("length", pa.int64()),
        ]
    )


def _items_name(part: str) -> str:
    return part.removesuffix(".parquet") + ".jsonl"


def _empty_manifest() -> dict[str, Any]:
    return {"format": FORMAT, "version": FORMAT_VERSION, "seq": 0, "parts": [], "collections": {}}


class _Folder:
    """Descriptors of an opened catalog folder and of its ``parts`` folder (None while there is none)."""

    def __init__(self, path: Path, root: int, parts: int | None) -> None:
        self.path, self.root, self.parts = path, root, parts

    def where(self, name: str, *, part: bool = True) -> Path:
        """The path to show for a name inside the folder."""
        return self.path / PARTS / name if part else self.path / name

    def refuse_link(self, error: OSError, name: str, *, part: bool = True) -> CatalogError:
        """The one-line error for an open that failed on a link (or anything else the name turned out to be)."""
        where = self.where(name, part=part)
        if error.errno in (errno.ELOOP, errno.EMLINK, errno.ENOTDIR):
            return CatalogFormatError(
                f"{where} is a symbolic link (or not what a catalog holds there); a catalog folder's files are "
                "never followed through links: name another folder"
            )
        return CatalogFormatError(f"{where} cannot be opened: {error.strerror or error}")

    def refusal(self, error: OSError, name: str, *, part: bool = True) -> CatalogError:
        """The one-line error for a name of the folder that cannot be opened as a regular file."""
        where = self.where(name, part=part)
        if isinstance(error, UnsafeHrefError):
            reason = "is not a regular file (a FIFO, device or folder)" if "regular" in str(error) else "is too large"
            return CatalogFormatError(f"{where} {reason}; it is not read")
        if isinstance(error, FileNotFoundError):
            return CatalogFormatError(f"{where} is missing; the catalog is damaged")
        return self.refuse_link(error, name, part=part)

    def is_link(self, name: str, *, part: bool = True) -> bool:
        """Whether the name is a symbolic link (looked at, not followed)."""
        folder = self.parts if part else self.root
        if folder is None:
            return False
        try:
            return stat.S_ISLNK(os.stat(name, dir_fd=folder, follow_symlinks=False).st_mode)
        except OSError:
            return False

    def open_regular(self, name: str, limit: int, *, part: bool = True) -> IO[bytes]:
        """A file of the folder (or of ``parts``) for reading: no link followed, never blocking, regular only."""
        folder = self.parts if part else self.root
        if folder is None:
            missing = self.path / PARTS
            raise CatalogFormatError(f"{missing} is missing, yet the manifest lists {name}; the catalog is damaged")
        try:
            return _open_regular(Path(name), limit, dir_fd=folder)
        except OSError as e:
            raise self.refusal(e, name, part=part) from e

    def close(self) -> None:
        for fd in (self.parts, self.root):
            if fd is not None:
                os.close(fd)


class FolderCatalog(CatalogBase):
    """A catalog in a local folder; created on the first ``add``."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._con: Any = None
        self._loaded: tuple[list[str], int] = ([], 0)  # parts in the in-memory table, superseded count
        self._rows = 0  # rows loaded into it
        self._skipped: list[CatalogFormatError] = []  # why parts were left out of it

    def __repr__(self) -> str:
        return f"FolderCatalog({str(self.path)!r})"

    # -- opening -------------------------------------------------------------------------------------------
    @contextmanager
    def _opened(self, *, create: bool = False) -> Iterator[_Folder | None]:
        """The folder's descriptors (None when it does not exist and ``create`` is False)."""
        if create:
            try:
                self.path.mkdir(parents=True, exist_ok=True)
            except (FileExistsError, NotADirectoryError) as e:  # a file, FIFO or device where the folder would be
                raise CatalogFormatError(f"{self.path} is a file, not a catalog folder; name a folder") from e
        try:
            # the folder the user named may itself be a link (their choice); nothing inside it is followed
            root = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            yield None
            return
        except NotADirectoryError as e:
            raise CatalogFormatError(f"{self.path} is a file, not a catalog folder; name a folder") from e
        folder = _Folder(self.path, root, None)
        try:
            folder.parts = self._parts(folder, create=create)
            yield folder
        finally:
            folder.close()

    def _parts(self, folder: _Folder, *, create: bool) -> int | None:
        for attempt in (0, 1):
            try:
                return os.open(PARTS, _DIR_FLAGS, dir_fd=folder.root)
            except FileNotFoundError:
                if not create or attempt:
                    return None
                with suppress(FileExistsError):
                    os.mkdir(PARTS, 0o777, dir_fd=folder.root)
            except OSError as e:
                raise folder.refuse_link(e, PARTS, part=False) from e
        return None

    # -- reading -------------------------------------------------------------------------------------------
    def _manifest(self, folder: _Folder | None) -> dict[str, Any]:
        if folder is None:
            return _empty_manifest()
        file = folder.where(MANIFEST, part=False)
        try:
            data = read_json(Path(MANIFEST), MAX_MANIFEST_BYTES, dir_fd=folder.root)
        except FileNotFoundError:
            return _empty_manifest()
        except OSError as e:
            raise folder.refusal(e, MANIFEST, part=False) from e
        except (ValueError, RecursionError) as e:
            raise CatalogFormatError(f"{file} cannot be read as a catalog manifest: {e}") from e
        if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("parts"), list):
            raise CatalogFormatError(f"{file} is not an mlm-export catalog manifest; name another folder")
        for part in data["parts"]:
            if not isinstance(part, dict) or not _PART.match(str(part.get("file", ""))):
                name = part.get("file") if isinstance(part, dict) else part
                raise CatalogFormatError(f"{file} lists a part named {name!r}, which is not allowed")
        if not isinstance(data.get("collections", {}), dict):
            raise CatalogFormatError(f"{file} is not an mlm-export catalog manifest; name another folder")
        for key in ("seq", "superseded"):
            value = data.get(key, 0)
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_SEQ:
                raise CatalogFormatError(
                    f"{file} holds {key} = {str(value)[:40]!r}, not a whole number from 0 to {MAX_SEQ:,}; "
                    "the catalog is damaged: name another folder"
                )
        return data

    def _part(self, folder: _Folder, index: int, entry: Mapping[str, Any], budget: int) -> Any:
        """One part's search columns (with its index as ``part``), after its footer is checked; a one-line
        :class:`CatalogFormatError` naming the file when it cannot be used."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        name = str(entry["file"])
        where = folder.where(name)
        with folder.open_regular(name, MAX_PART_BYTES) as f:
            try:
                parquet = pq.ParquetFile(f)
            except (pa.ArrowException, OSError, ValueError) as e:
                raise CatalogFormatError(f"{where} is not a Parquet file ({' '.join(str(e).split())[:200]})") from e
            meta = parquet.metadata
            listed = entry.get("rows")
            if meta.num_rows > budget or (isinstance(listed, int) and meta.num_rows != listed):
                raise CatalogFormatError(
                    f"{where} holds {meta.num_rows:,} rows where the manifest lists {listed!r} (at most "
                    f"{MAX_ROWS:,} rows are loaded); it is not read"
                )
            declared = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
            if declared > MAX_PART_BYTES:
                raise CatalogFormatError(f"{where} declares {declared:,} bytes of columns; it is not read")
            expected = _schema()
            found = parquet.schema_arrow
            if [(c.name, c.type) for c in found] != [(c.name, c.type) for c in expected]:
                raise CatalogFormatError(
                    f"{where} has columns {', '.join(found.names)[:200]}, not those of a catalog part; it is not read"
                )
            try:
                table = parquet.read()
            except (pa.ArrowException, OSError, ValueError) as e:
                raise CatalogFormatError(f"{where} cannot be read ({' '.join(str(e).split())[:200]})") from e
        folder.open_regular(_items_name(name), 1 << 62).close()  # the Items file: there, regular, not a link
        return table.append_column("part", pa.array([index] * table.num_rows, pa.int64()))

    def _table(self, folder: _Folder, manifest: Mapping[str, Any], *, strict: bool) -> Any:
        """A DuckDB connection whose ``models`` table holds the newest row per id, newest Items first.

        Rebuilt when the manifest changes. The rows are stored in search order, and DuckDB keeps insertion
        order for queries without ORDER BY, so a search stops after ``limit`` hits instead of sorting them all.
        A part that cannot be used is skipped with a warning naming it, or raises when ``strict`` (writers).
        """
        import duckdb
        import pyarrow as pa

        state = ([p["file"] for p in manifest["parts"]], int(manifest.get("superseded", 0)))
        if self._con is not None and self._loaded == state:
            if strict and self._skipped:
                raise self._skipped[0]
            return self._con
        tables = []
        skipped: list[CatalogFormatError] = []
        budget = MAX_ROWS
        for index, entry in enumerate(manifest["parts"]):
            for name in (entry["file"], _items_name(entry["file"])):
                if folder.is_link(name):  # a catalog tampered with: refused whole, never followed
                    raise folder.refuse_link(OSError(errno.ELOOP, "link"), name)
            try:
                table = self._part(folder, index, entry, budget)
            except CatalogFormatError as e:
                if strict:
                    raise
                warnings.warn(f"{e}; searching the other parts", MLMExportWarning, stacklevel=4)
                skipped.append(e)
                continue
            budget -= table.num_rows
            tables.append(table)
        schema = _schema().append(pa.field("part", pa.int64()))
        loaded = pa.concat_tables(tables) if tables else schema.empty_table()
        con = self._con or duckdb.connect(":memory:")
        con.execute("DROP TABLE IF EXISTS models")
        con.register("loaded_parts", loaded)
        try:
            con.execute('CREATE TABLE models AS SELECT * FROM loaded_parts ORDER BY "start" DESC NULLS LAST, id DESC')
        finally:
            con.unregister("loaded_parts")
        if state[1]:
            con.execute("DELETE FROM models WHERE (id, seq) NOT IN (SELECT id, max(seq) FROM models GROUP BY id)")
        self._con, self._loaded, self._rows, self._skipped = con, state, loaded.num_rows, skipped
        return con

    def search(self, query: Query | None = None) -> list[dict[str, Any]]:
        """Items matching ``query``, newest first (then by id)."""
        import duckdb

        query = query or Query()
        with self._opened() as folder:
            manifest = self._manifest(folder)
            if folder is None or not manifest["parts"]:
                return []
            where = ["TRUE"]
            params: list[Any] = []
            if query.bbox is not None:  # numeric tests first: cheap, and often the most selective
                where.append(bbox_sql(query.bbox, params))
            if query.datetime is not None:
                where.append(interval_sql(*query.interval, params))
            expr = query.cql2()
            if expr is not None:
                clause, more = to_sql(expr)
                where.append(clause)
                params.extend(more)
            # Only fixed fragments are joined here; every user value is a ``?`` parameter.
            sql = f'SELECT part, "offset", length FROM models WHERE {" AND ".join(where)} LIMIT ?'  # noqa: S608
            params.append(min(query.limit, MAX_ROWS))
            table = self._table(folder, manifest, strict=False)
            try:
                hits = table.execute(sql, params).fetchall()
            except duckdb.Error as e:  # a comparison DuckDB cannot make (text with a number, ...)
                reason = " ".join(str(e).split())[:200]
                raise QueryError(f"the filter cannot be evaluated over the catalog: {reason} (--filter)") from e
            return self._read_items(folder, manifest, hits)

    def _read_items(
        self, folder: _Folder, manifest: Mapping[str, Any], hits: list[tuple[int, int, int]]
    ) -> list[dict[str, Any]]:
        """The Items at (part, offset, length), in the order given; each Items file opened once, not through
        a link, and read only inside its size."""
        handles: dict[int, tuple[IO[bytes], int]] = {}
        try:
            out = []
            for part, offset, length in hits:
                name = _items_name(manifest["parts"][part]["file"])
                if part not in handles:
                    f = folder.open_regular(name, 1 << 62)
                    handles[part] = (f, os.fstat(f.fileno()).st_size)
                f, size = handles[part]
                if not (offset >= 0 and 0 < length <= MAX_ITEM_BYTES and offset + length <= size):
                    raise CatalogFormatError(
                        f"{folder.where(name)} has no Item of {length} bytes at {offset}; the part is damaged"
                    )
                try:
                    out.append(loads(os.pread(f.fileno(), length, offset)))
                except ValueError as e:
                    raise CatalogFormatError(f"{folder.where(name)} holds no JSON Item at {offset}") from e
            return out
        finally:
            for f, _ in handles.values():
                f.close()

    def ids(self) -> set[str]:
        """Every Item id in the catalog."""
        with self._opened() as folder:
            return self._ids(folder, self._manifest(folder), strict=False)

    def _ids(self, folder: _Folder | None, manifest: Mapping[str, Any], *, strict: bool) -> set[str]:
        if folder is None or not manifest["parts"]:
            return set()
        table = self._table(folder, manifest, strict=strict)
        return {r[0] for r in table.execute("SELECT id FROM models").fetchall()}

    def collections(self) -> dict[str, dict[str, Any]]:
        """The Collections published with the Items, by id."""
        with self._opened() as folder:
            return dict(self._manifest(folder).get("collections", {}))

    def close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None
            self._loaded = ([], 0)

    # -- writing -------------------------------------------------------------------------------------------
    @contextmanager
    def _locked(self) -> Iterator[_Folder]:
        with self._opened(create=True) as folder:
            if folder is None:
                raise CatalogFormatError(f"{self.path} cannot be created as a catalog folder")
            flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
            try:
                fd = os.open(LOCK, flags, 0o666, dir_fd=folder.root)
            except OSError as e:
                raise folder.refuse_link(e, LOCK, part=False) from e
            try:
                if not stat.S_ISREG(os.fstat(fd).st_mode):
                    raise CatalogFormatError(
                        f"{folder.where(LOCK, part=False)} is not a regular file (a FIFO, device or folder); "
                        "remove it or name another folder"
                    )
                fcntl.flock(fd, fcntl.LOCK_EX)
                try:
                    yield folder
                finally:
                    fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)

    def _add(self, items: Iterable[Any], collections: list[dict[str, Any]], options: AddOptions) -> AddResult:
        """Add Items (dicts or pystac Items) and Collections in one commit: all of them or none."""
        with self._locked() as folder:
            manifest = self._manifest(folder)
            self._remove_orphans(folder, manifest)
            existing = self._ids(folder, manifest, strict=True)
            loaded = self._rows if existing else 0
            seq = int(manifest.get("seq", 0)) + 1
            if seq > MAX_SEQ:
                raise CatalogError(f"{self.path} holds {MAX_SEQ:,} commits, the most a folder catalog takes")
            result = AddResult()
            name = f"part-{seq:08d}-{secrets.token_hex(4)}.parquet"
            rows = 0
            try:
                rows = self._write_part(folder, name, seq, items, existing, options, result, MAX_ROWS - loaded)
            except _NothingToCommit:
                if not collections:
                    return result
            if rows:
                manifest["parts"].append({"file": name, "rows": rows, "seq": seq})
            manifest["seq"] = seq
            manifest["superseded"] = int(manifest.get("superseded", 0)) + result.updated
            manifest.setdefault("collections", {}).update({c["id"]: dict(c) for c in collections})
            write_manifest(folder.root, manifest)
            return result

    def _write_part(
        self,
        folder: _Folder,
        name: str,
        seq: int,
        items: Iterable[Any],
        existing: set[str],
        options: AddOptions,
        result: AddResult,
        room: int,
    ) -> int:
        """Stream the Items into one new pair of files; nothing is left behind when it fails (or adds nothing)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        if folder.parts is None:
            raise CatalogFormatError(f"{self.path / PARTS} cannot be created")
        schema = _schema()
        rows = 0
        offset = 0
        with _new_file(folder.parts, _items_name(name)) as (_, out), _new_file(folder.parts, name) as (_, part):
            writer = pq.ParquetWriter(part, schema, compression="zstd")
            try:
                for batch in _batches(prepared_items(items, existing, options, result)):
                    cols = []
                    for item, data in batch:
                        cols.append(fields.row(item) | {"seq": seq, "offset": offset, "length": len(data)})
                        out.write(data + b"\n")
                        offset += len(data) + 1
                    writer.write_batch(pa.RecordBatch.from_pylist(cols, schema=schema))
                    rows += len(cols)
                    if rows > room:
                        raise CatalogError(
                            f"{self.path} would hold more than {MAX_ROWS:,} Item rows, the most a folder catalog "
                            "loads to search; nothing was added: publish to pgstac (postgresql://...) instead"
                        )
            finally:
                writer.close()
            options.check(result)
            if not rows:
                raise _NothingToCommit
        return rows

    def _remove_orphans(self, folder: _Folder, manifest: Mapping[str, Any]) -> None:
        """Files a killed writer left behind (not in the manifest); only the lock holder writes, so none is live.
        Names are listed and removed inside ``parts`` (by descriptor): a removed link is the link, never its target."""
        if folder.parts is None:
            return
        listed = {p["file"] for p in manifest["parts"]}
        listed |= {_items_name(f) for f in listed}
        for name in os.listdir(folder.parts):
            if name not in listed and name.startswith((".part-", "part-")):
                with suppress(FileNotFoundError):
                    if stat.S_ISDIR(os.stat(name, dir_fd=folder.parts, follow_symlinks=False).st_mode):
                        continue  # no writer makes folders: not an orphan, left alone
                    os.unlink(name, dir_fd=folder.parts)


def write_manifest(dir_fd: int, manifest: Mapping[str, Any]) -> None:
    """The commit: ``catalog.json`` replaced atomically in the folder of ``dir_fd`` (synced first)."""
    with _new_file(dir_fd, MANIFEST) as (_, out):
        out.write(json_bytes(manifest))
        out.flush()
        os.fsync(out.fileno())


@contextmanager
def _new_file(dir_fd: int, name: str) -> Iterator[tuple[str, IO[bytes]]]:
    """A new hidden file in the folder of ``dir_fd``, renamed onto ``name`` when the block succeeds, removed when
    it fails. Created with ``O_EXCL | O_NOFOLLOW``: never an existing file, never through a link."""
    tmp = f".{name}.{secrets.token_hex(4)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666, dir_fd=dir_fd)
    try:
        with os.fdopen(fd, "wb") as out:
            yield tmp, out
        os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(tmp, dir_fd=dir_fd)
        raise


class _NothingToCommit(Exception):
    """Internal: the call added nothing; the empty part is dropped and the manifest left alone."""


def _batches(items: Iterable[tuple[dict[str, Any], bytes]]) -> Iterator[list[tuple[dict[str, Any], bytes]]]:
    batch: list[tuple[dict[str, Any], bytes]] = []
    for pair in items:
        batch.append(pair)
        if len(batch) >= BATCH_ROWS:
            yield batch
            batch = []
    if batch:
        yield batch
