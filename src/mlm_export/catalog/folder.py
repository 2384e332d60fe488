"""The folder catalog: Parquet files of search columns plus each Item's JSON text, queried with DuckDB.

Layout of a catalog folder::

    catalog.json        the manifest: the committed parts and Collections (replaced atomically)
    parts/*.parquet     one file per add() call, never rewritten
    .lock               writers take an exclusive lock on it

An ``add`` streams its Items into one new Parquet file (written under a temporary name, renamed when
complete), then commits by replacing ``catalog.json``. A reader reads the manifest once and only the parts it
lists, so a writer killed at any moment leaves the old state (an unlisted part is removed by the next
writer). Updates append a newer row; a search keeps the newest row per id. Items are kept whole as JSON
text, so every MLM Item goes in (bands as strings or objects, ``expression`` of any type, legacy keys) and
comes back equal.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import secrets
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..write import atomic_path, atomic_write_json
from . import fields
from .base import AddResult, CatalogBase, prepared_items
from .errors import CatalogFormatError, ConflictError
from .query import Query
from .sql import bbox_sql, interval_sql, to_sql

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
            ("item", pa.string()),
        ]
    )


class FolderCatalog(CatalogBase):
    """A catalog in a local folder; created on the first ``add``."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._con: Any = None

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
            data = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise CatalogFormatError(f"{file} cannot be read as a catalog manifest: {e}") from e
        if data.get("format") != FORMAT or not isinstance(data.get("parts"), list):
            raise CatalogFormatError(f"{file} is not an mlm-export catalog manifest; name another folder")
        for part in data["parts"]:
            if not _PART.match(str(part.get("file", ""))):
                raise CatalogFormatError(f"{file} lists a part named {part.get('file')!r}, which is not allowed")
        return data

    def _connection(self) -> Any:
        import duckdb

        if self._con is None:
            self._con = duckdb.connect(":memory:")
        return self._con

    def _source(self, manifest: Mapping[str, Any], params: list[Any]) -> str | None:
        files = [str(self.path / "parts" / p["file"]) for p in manifest["parts"]]
        if not files:
            return None
        params.append(files)
        if not manifest.get("superseded"):
            return "read_parquet(?)"
        params.append(files)
        return (
            "(SELECT * FROM read_parquet(?) WHERE (id, seq) IN (SELECT id, max(seq) FROM read_parquet(?) GROUP BY id))"
        )

    def search(self, query: Query | None = None) -> list[dict[str, Any]]:
        """Items matching ``query``, newest first (then by id)."""
        query = query or Query()
        params: list[Any] = []
        source = self._source(self._manifest(), params)
        if source is None:
            return []
        where = ["TRUE"]
        expr = query.cql2()
        if expr is not None:
            clause, more = to_sql(expr)
            where.append(clause)
            params.extend(more)
        if query.bbox is not None:
            where.append(bbox_sql(query.bbox, params))
        if query.datetime is not None:
            where.append(interval_sql(*query.interval, params))
        # Only fixed fragments are joined here; every user value is a ``?`` parameter.
        sql = f'SELECT item FROM {source} WHERE {" AND ".join(where)} ORDER BY "start" DESC NULLS LAST, id LIMIT ?'  # noqa: S608
        params.append(query.limit)
        rows = self._connection().execute(sql, params).fetchall()
        return [json.loads(r[0]) for r in rows]

    def ids(self) -> set[str]:
        """Every Item id in the catalog."""
        params: list[Any] = []
        manifest = self._manifest()
        if not manifest["parts"]:
            return set()
        params.append([str(self.path / "parts" / p["file"]) for p in manifest["parts"]])
        rows = self._connection().execute("SELECT DISTINCT id FROM read_parquet(?)", params)
        return {r[0] for r in rows.fetchall()}

    def collections(self) -> dict[str, dict[str, Any]]:
        """The Collections published with the Items, by id."""
        return dict(self._manifest().get("collections", {}))

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

    def add(
        self,
        items: Iterable[Any],
        *,
        collections: Iterable[Mapping[str, Any]] = (),
        on_conflict: str = "error",
        skip_invalid: bool = False,
        validate: bool = True,
    ) -> AddResult:
        """Add Items (dicts or pystac Items) and Collections in one commit: all of them or none."""
        collections = [dict(c) for c in collections]
        with self._locked():
            manifest = self._manifest()
            self._remove_orphans(manifest)
            existing = self.ids()
            seq = int(manifest.get("seq", 0)) + 1
            result = AddResult()
            name = f"part-{seq:08d}-{secrets.token_hex(4)}.parquet"
            rows = 0
            try:
                rows = self._write_part(name, seq, items, existing, on_conflict, skip_invalid, validate, result)
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
        on_conflict: str,
        skip_invalid: bool,
        validate: bool,
        result: AddResult,
    ) -> int:
        """Stream the Items into one new part; nothing is left behind when it fails (or adds nothing)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = _schema()
        rows = 0
        with atomic_path(self.path / "parts" / name) as tmp:
            writer = pq.ParquetWriter(tmp, schema, compression="zstd")
            try:
                for batch in _batches(prepared_items(items, existing, on_conflict, skip_invalid, validate, result)):
                    cols = [fields.row(item) | {"seq": seq, "item": text} for item, text in batch]
                    writer.write_batch(pa.RecordBatch.from_pylist(cols, schema=schema))
                    rows += len(cols)
            finally:
                writer.close()
            result.raise_for_problems()
            if on_conflict == "error" and result.conflicts:
                raise ConflictError(result.conflicts)
            if not rows:
                raise _NothingToCommit
        return rows

    def _remove_orphans(self, manifest: Mapping[str, Any]) -> None:
        """Parts a killed writer left behind (not in the manifest); only the lock holder writes, so none is live."""
        listed = {p["file"] for p in manifest["parts"]}
        for file in (self.path / "parts").iterdir():
            if file.name not in listed and (file.name.startswith(".part-") or _PART.match(file.name)):
                file.unlink(missing_ok=True)


class _NothingToCommit(Exception):
    """Internal: the call added nothing; the empty part is dropped and the manifest left alone."""


def _batches(items: Iterable[tuple[dict[str, Any], str]]) -> Iterator[list[tuple[dict[str, Any], str]]]:
    batch: list[tuple[dict[str, Any], str]] = []
    for pair in items:
        batch.append(pair)
        if len(batch) >= BATCH_ROWS:
            yield batch
            batch = []
    if batch:
        yield batch
