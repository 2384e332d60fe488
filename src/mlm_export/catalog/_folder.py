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
"""

from __future__ import annotations

import fcntl
import os
import re
import secrets
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .._hrefs import read_json
from .._write import atomic_path, atomic_write_json
from . import _fields as fields
from ._base import AddOptions, AddResult, CatalogBase, loads, prepared_items
from ._errors import CatalogFormatError
from ._query import Query
from ._sql import bbox_sql, interval_sql, to_sql

MANIFEST = "catalog.json"
FORMAT = "mlm-export-catalog"
FORMAT_VERSION = 1
BATCH_ROWS = 5_000
_PART = re.compile(r"^part-\d{8}-[0-9a-f]{8}\.parquet$")


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


def _items_file(part: Path) -> Path:
    return part.with_suffix(".jsonl")


class FolderCatalog(CatalogBase):
    """A catalog in a local folder; created on the first ``add``."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._con: Any = None
        self._loaded: tuple[list[str], int] = ([], 0)  # parts in the in-memory table, superseded count

    def __repr__(self) -> str:
        return f"FolderCatalog({str(self.path)!r})"

    # -- reading -------------------------------------------------------------------------------------------
    def _manifest(self) -> dict[str, Any]:
        file = self.path / MANIFEST
        if not file.exists():
            if self.path.exists() and not self.path.is_dir():
                raise CatalogFormatError(f"{self.path} is a file, not a catalog folder; name a folder")
            return {"format": FORMAT, "version": FORMAT_VERSION, "seq": 0, "parts": [], "collections": {}}
        try:
            data: dict[str, Any] = read_json(file)
        except (OSError, ValueError) as e:
            raise CatalogFormatError(f"{file} cannot be read as a catalog manifest: {e}") from e
        if data.get("format") != FORMAT or not isinstance(data.get("parts"), list):
            raise CatalogFormatError(f"{file} is not an mlm-export catalog manifest; name another folder")
        for part in data["parts"]:
            if not _PART.match(str(part.get("file", ""))):
                raise CatalogFormatError(f"{file} lists a part named {part.get('file')!r}, which is not allowed")
        return data

    def _table(self, manifest: Mapping[str, Any]) -> Any:
        """A DuckDB connection whose ``models`` table holds the newest row per id, newest Items first.

        Rebuilt when the manifest changes. The rows are stored in search order, and DuckDB keeps insertion
        order for queries without ORDER BY, so a search stops after ``limit`` hits instead of sorting them all.
        """
        import duckdb

        state = ([p["file"] for p in manifest["parts"]], int(manifest.get("superseded", 0)))
        if self._con is not None and self._loaded == state:
            return self._con
        files = [str(self.path / "parts" / f) for f in state[0]]
        con = self._con or duckdb.connect(":memory:")
        # Fixed SQL: the file names are parameters. Without updates every row is the newest of its id.
        con.execute("DROP TABLE IF EXISTS models")
        con.execute(
            "CREATE TABLE models AS SELECT * EXCLUDE (filename), list_position(?, filename) - 1 AS part "
            'FROM read_parquet(?, filename = true) ORDER BY "start" DESC NULLS LAST, id DESC',
            [files, files],
        )
        if state[1]:
            con.execute("DELETE FROM models WHERE (id, seq) NOT IN (SELECT id, max(seq) FROM models GROUP BY id)")
        self._con, self._loaded = con, state
        return con

    def search(self, query: Query | None = None) -> list[dict[str, Any]]:
        """Items matching ``query``, newest first (then by id)."""
        query = query or Query()
        manifest = self._manifest()
        if not manifest["parts"]:
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
        params.append(query.limit)
        hits = self._table(manifest).execute(sql, params).fetchall()
        return self._read_items(manifest, hits)

    def _read_items(self, manifest: Mapping[str, Any], hits: list[tuple[int, int, int]]) -> list[dict[str, Any]]:
        """The Items at (part, offset, length), in the order given."""
        handles: dict[int, int] = {}
        try:
            out = []
            for part, offset, length in hits:
                if part not in handles:
                    path = _items_file(self.path / "parts" / manifest["parts"][part]["file"])
                    handles[part] = os.open(path, os.O_RDONLY)
                out.append(loads(os.pread(handles[part], length, offset)))
            return out
        finally:
            for fd in handles.values():
                os.close(fd)

    def ids(self) -> set[str]:
        """Every Item id in the catalog."""
        manifest = self._manifest()
        if not manifest["parts"]:
            return set()
        return {r[0] for r in self._table(manifest).execute("SELECT id FROM models").fetchall()}

    def collections(self) -> dict[str, dict[str, Any]]:
        """The Collections published with the Items, by id."""
        return dict(self._manifest().get("collections", {}))

    def close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None
            self._loaded = ([], 0)

    # -- writing -------------------------------------------------------------------------------------------
    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.mkdir(parents=True, exist_ok=True)
        (self.path / "parts").mkdir(exist_ok=True)
        with open(self.path / ".lock", "a+b") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _add(self, items: Iterable[Any], collections: list[dict[str, Any]], options: AddOptions) -> AddResult:
        """Add Items (dicts or pystac Items) and Collections in one commit: all of them or none."""
        with self._locked():
            manifest = self._manifest()
            self._remove_orphans(manifest)
            existing = self.ids()
            seq = int(manifest.get("seq", 0)) + 1
            result = AddResult()
            name = f"part-{seq:08d}-{secrets.token_hex(4)}.parquet"
            rows = 0
            try:
                rows = self._write_part(name, seq, items, existing, options, result)
            except _NothingToCommit:
                if not collections:
                    return result
            if rows:
                manifest["parts"].append({"file": name, "rows": rows, "seq": seq})
            manifest["seq"] = seq
            manifest["superseded"] = int(manifest.get("superseded", 0)) + result.updated
            manifest.setdefault("collections", {}).update({c["id"]: dict(c) for c in collections})
            atomic_write_json(self.path / MANIFEST, manifest)
            return result

    def _write_part(
        self,
        name: str,
        seq: int,
        items: Iterable[Any],
        existing: set[str],
        options: AddOptions,
        result: AddResult,
    ) -> int:
        """Stream the Items into one new pair of files; nothing is left behind when it fails (or adds nothing)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = _schema()
        rows = 0
        offset = 0
        part = self.path / "parts" / name
        with atomic_path(_items_file(part)) as tmp_items, atomic_path(part) as tmp_part:
            writer = pq.ParquetWriter(tmp_part, schema, compression="zstd")
            try:
                with open(tmp_items, "wb") as out:
                    for batch in _batches(prepared_items(items, existing, options, result)):
                        cols = []
                        for item, data in batch:
                            cols.append(fields.row(item) | {"seq": seq, "offset": offset, "length": len(data)})
                            out.write(data + b"\n")
                            offset += len(data) + 1
                        writer.write_batch(pa.RecordBatch.from_pylist(cols, schema=schema))
                        rows += len(cols)
            finally:
                writer.close()
            options.check(result)
            if not rows:
                raise _NothingToCommit
        return rows

    def _remove_orphans(self, manifest: Mapping[str, Any]) -> None:
        """Files a killed writer left behind (not in the manifest); only the lock holder writes, so none is live."""
        listed = {p["file"] for p in manifest["parts"]}
        listed |= {_items_file(Path(f)).name for f in listed}
        for file in (self.path / "parts").iterdir():
            if file.name not in listed and file.name.startswith((".part-", "part-")):
                file.unlink(missing_ok=True)


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
