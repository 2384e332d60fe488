"""The pgstac backend: Items loaded into PostgreSQL + PostGIS through pgstac's own functions.

One ``add`` is one transaction (all Items or none). pgstac is installed with ``pypgstac`` migrate when the
database has no ``pgstac`` schema yet; missing Collections are created; the MLM queryables are registered in
``pgstac.queryables`` so STAC API clients can discover them. A plain property path into
``mlm:input[].bands`` matches nothing in pgstac, so ``mlm:input.bands`` is answered from a derived property
(``mlm_export:bands``) added to pgstac's copy.
pgstac strips null-valued fields when it stores an Item, so the exact JSON of each Item published here is also
kept in ``mlm_export.items``; ``search`` asks pgstac which Items match and returns those exact Items.
Every value travels as a query parameter.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from .. import mlm
from ._base import AddOptions, AddResult, CatalogBase, loads, prepared_items
from ._errors import CatalogUnreachableError
from ._fields import BANDS, QUERYABLES, searchable_bands
from ._query import Query, datetime_param

DEFAULT_COLLECTION = "mlm-models"
CONNECT_TIMEOUT_S = 5
BATCH = 2_000
#: Items added in one call after which the table statistics are refreshed (bulk loads change the plans).
ANALYZE_AFTER = 1_000
#: Where pgstac finds the derived bands: a property added to pgstac's copy only (its cql2 cannot reach inside
#: ``mlm:input[].bands``, and queryables name keys, not expressions). Removed again when Items are read.
INDEX_BANDS = "mlm_export:bands"
#: Queryables pgstac indexes (one index per partition): GIN for array containment, BTREE for numeric ranges.
_INDEXED = {mlm.TASKS: "GIN", BANDS: "GIN", mlm.TOTAL_PARAMETERS: "BTREE"}
#: Fields compared with casei(), indexed in prepare() as (upper(value), datetime DESC, id DESC): an equality on
#: the first column returns the rows already in search order, so a LIMIT stops after a few rows even when most
#: Items match (framework: nearly every Item is some spelling of PyTorch). The index also gives the planner the
#: value statistics it needs to know how many rows match.
CASEI_INDEXED = (mlm.ARCHITECTURE, mlm.FRAMEWORK)
#: Indexes of earlier versions, superseded by the ones above.
_OLD_INDEXES = ("mlm_export_architecture_casei",)


#: The ids matching a STAC search, newest first: pgstac builds the WHERE clause from the search (quoting its
#: values itself, as pgstac.search does); the limit is an integer argument. No parallel workers: for a LIMIT in
#: datetime order a parallel index scan makes each worker read (and decompress) its own run of Items past the
#: ones returned (1,400 Items read for 100 hits where one process reads 520, on 100,000 Items); across the suite
#: a worker gave no consistent gain and doubled the task query's p95 (65 vs 30 ms) on 2 shared cores.
SEARCH_IDS_SQL = """
CREATE OR REPLACE FUNCTION mlm_export.search_ids(_search jsonb, _limit integer) RETURNS SETOF text AS $$
BEGIN
    RETURN QUERY EXECUTE format(
        'SELECT id FROM pgstac.items WHERE %s ORDER BY datetime DESC, id DESC LIMIT %s',
        pgstac.stac_search_to_where(_search),
        _limit
    );
END;
$$ LANGUAGE plpgsql STABLE SET search_path = pgstac, public SET max_parallel_workers_per_gather = 0
"""


def use_lz4(con: Any) -> bool:
    """Compress the Items this session writes with lz4 when the server has it (PostgreSQL 14+ built with lz4).

    A filter that pgstac cannot answer from an index reads each candidate Item's TOASTed ``content``; lz4
    decompresses it about 2.5x faster than the default pglz (measured on 100,000 MLM Items). Servers without
    lz4 keep pglz: the setting is refused and nothing else changes.
    """
    import psycopg

    try:
        con.execute("SET default_toast_compression = 'lz4'")
    except psycopg.Error:
        return False
    return True


def redact(dsn: str) -> str:
    """The DSN without its password, for messages."""
    parts = urlsplit(dsn)
    if parts.password:
        host = parts.hostname or ""
        netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=netloc))
    return dsn


def default_collection(collection_id: str) -> dict[str, Any]:
    """A Collection for Items whose Collection was not published with them."""
    return {
        "type": "Collection",
        "stac_version": "1.1.0",
        "id": collection_id,
        "description": f"Machine learning models published with mlm-export ({collection_id}).",
        "license": "other",
        "extent": {"spatial": {"bbox": [[-180, -90, 180, 90]]}, "temporal": {"interval": [[None, None]]}},
        "links": [],
    }


def with_collection(item: dict[str, Any]) -> dict[str, Any]:
    """pgstac and STAC APIs need a Collection: Items without one go to ``mlm-models`` (with its link)."""
    if item.get("collection"):
        return item
    links = [*item.get("links", []), {"rel": "collection", "href": f"./{DEFAULT_COLLECTION}.json"}]
    return {**item, "collection": DEFAULT_COLLECTION, "links": links}


def indexed(item: dict[str, Any]) -> dict[str, Any]:
    """The copy pgstac stores: the derived band list added, so band search works."""
    return {**item, "properties": {**item.get("properties", {}), INDEX_BANDS: searchable_bands(item)}}


def unindexed(item: dict[str, Any]) -> dict[str, Any]:
    """An Item as read back from pgstac, without the derived band list."""
    props = item.get("properties")
    if isinstance(props, dict) and INDEX_BANDS in props:
        return {**item, "properties": {k: v for k, v in props.items() if k != INDEX_BANDS}}
    return item


def search_body(query: Query) -> dict[str, Any]:
    """The STAC API search (as pgstac takes it) for a query."""
    body: dict[str, Any] = {
        "limit": query.limit,
        "sortby": [{"field": "datetime", "direction": "desc"}, {"field": "id", "direction": "desc"}],
    }
    expr = query.cql2()
    if expr is not None:
        body["filter"] = expr
        body["filter-lang"] = "cql2-json"
    if query.bbox is not None:
        body["bbox"] = list(query.bbox)
    if query.datetime is not None:
        body["datetime"] = datetime_param(query)
    return body


class PgstacCatalog(CatalogBase):
    """A pgstac database named by a ``postgresql://`` DSN."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self._con: Any = None
        self._pgstac_loader: Any = None

    def __repr__(self) -> str:
        return f"PgstacCatalog({redact(self.dsn)!r})"

    def _connection(self) -> Any:
        import psycopg

        if self._con is None:
            try:
                self._con = psycopg.connect(
                    self.dsn,
                    connect_timeout=CONNECT_TIMEOUT_S,
                    autocommit=True,
                    options="-c search_path=pgstac,public -c jit=off",  # JIT costs more than it saves on these plans
                )
            except psycopg.Error as e:
                reason = " ".join(str(e).split())
                raise CatalogUnreachableError(
                    f"cannot reach the PostgreSQL database {redact(self.dsn)}: {reason}; check the URL and that the "
                    "server runs"
                ) from e
            use_lz4(self._con)
        return self._con

    def close(self) -> None:
        if self._pgstac_loader is not None:
            self._pgstac_loader.db.connection = None  # ours: closed below, not by pypgstac
            self._pgstac_loader.db.close()
            self._pgstac_loader = None
        if self._con is not None:
            self._con.close()
            self._con = None

    def _installed(self) -> bool:
        row = self._connection().execute("SELECT to_regclass('pgstac.items') IS NOT NULL").fetchone()
        return bool(row and row[0])

    def migrate(self) -> str:
        """Install or upgrade pgstac in the database (pypgstac migrate); returns the version."""
        from pypgstac.db import PgstacDB
        from pypgstac.migrate import Migrate

        db = PgstacDB(dsn=self.dsn)
        try:
            return str(Migrate(db).run_migration())
        finally:
            db.close()

    def register_queryables(self) -> None:
        """Make the MLM fields discoverable (GET /queryables) and the band search work.

        Rows already as wanted are left alone: pgstac rebuilds a queryable's indexes when its row changes.
        """
        con = self._connection()
        rows = con.execute(
            "SELECT name, definition, property_path, property_wrapper, property_index_type FROM pgstac.queryables "
            "WHERE name = ANY(%s) AND collection_ids IS NULL",
            [list(QUERYABLES)],
        ).fetchall()
        have = {r[0]: tuple(r[1:]) for r in rows}
        with con.transaction():
            for name, definition in QUERYABLES.items():
                if name in ("id", "collection", "datetime"):
                    continue
                path = ["properties", INDEX_BANDS] if name == BANDS else None
                wrapper = "to_text_array" if definition["type"] == "array" else None
                if have.get(name) == (definition, path, wrapper, _INDEXED.get(name)):
                    continue
                con.execute("DELETE FROM pgstac.queryables WHERE name = %s", [name])
                con.execute(
                    "INSERT INTO pgstac.queryables (name, definition, property_path, property_wrapper, "
                    "property_index_type) VALUES (%s, %s::jsonb, %s::text[], %s, %s)",
                    [name, json.dumps(definition), path, wrapper, _INDEXED.get(name)],
                )

    def prepare(self) -> None:
        """Install pgstac when missing, register the MLM queryables (needed once for a STAC API on this database)."""
        from psycopg import sql

        if not self._installed():
            self.migrate()
        con = self._connection()
        con.execute("CREATE SCHEMA IF NOT EXISTS mlm_export")
        # the exact Items as JSON text (parsed faster on the client than jsonb, and byte for byte as added)
        con.execute("CREATE TABLE IF NOT EXISTS mlm_export.items (id text PRIMARY KEY, content text NOT NULL)")
        con.execute(SEARCH_IDS_SQL)
        for old in _OLD_INDEXES:
            con.execute(sql.SQL("DROP INDEX IF EXISTS pgstac.{}").format(sql.Identifier(old)))
        for name in CASEI_INDEXED:  # casei() comparisons: the rows in search order, from an index
            index = "mlm_export_" + name.removeprefix(mlm.PREFIX) + "_casei_newest"
            con.execute(
                sql.SQL(
                    "CREATE INDEX IF NOT EXISTS {} ON pgstac.items "
                    "(upper(pgstac.to_text(content->'properties'->{})), datetime DESC, id DESC)"
                ).format(sql.Identifier(index), sql.Literal(name))
            )
        self.register_queryables()

    def _add(self, items: Iterable[Any], collections: list[dict[str, Any]], options: AddOptions) -> AddResult:
        """Add Items and Collections in one transaction: all of them or none."""
        self.prepare()
        con = self._connection()
        existing = {r[0] for r in con.execute("SELECT id FROM pgstac.items").fetchall()}
        known = {r[0] for r in con.execute("SELECT id FROM pgstac.collections").fetchall()}
        result = AddResult()
        with con.transaction():
            for collection in collections:
                con.execute("SELECT pgstac.upsert_collection(%s::jsonb)", [json.dumps(dict(collection))])
                known.add(collection["id"])
            batch: list[tuple[dict[str, Any], bytes]] = []
            for pair in prepared_items(items, existing, options, result):
                batch.append(pair)
                if len(batch) >= BATCH:
                    self._load(con, batch, known, existing)
                    batch = []
            options.check(result)
            self._load(con, batch, known, existing)
        if len(result.added) + result.updated >= ANALYZE_AFTER:  # fresh statistics, or the planner guesses
            con.execute("ANALYZE pgstac.items")
        return result

    def _load(self, con: Any, batch: list[tuple[dict[str, Any], bytes]], known: set[str], existing: set[str]) -> None:
        """Load one batch inside the caller's transaction: pypgstac's loader (dehydrates in Python, COPYs
        into the partition; its own transactions become savepoints of ours), then the exact copies."""
        if not batch:
            return
        stored = [with_collection(item) for item, _ in batch]
        for cid in {i["collection"] for i in stored} - known:
            con.execute("SELECT pgstac.create_collection(%s::jsonb)", [json.dumps(default_collection(cid))])
            known.add(cid)
        ids = [i["id"] for i in stored]
        replace = [i for i in ids if i in existing]
        if replace:
            con.execute("DELETE FROM pgstac.items WHERE id = ANY(%s)", [replace])
            con.execute("DELETE FROM mlm_export.items WHERE id = ANY(%s)", [replace])
        self._loader().load_items(iter([indexed(i) for i in stored]), insert_mode=None)
        with con.cursor() as cur, cur.copy("COPY mlm_export.items (id, content) FROM STDIN") as copy:
            for item_id, (_, data) in zip(ids, batch, strict=True):
                copy.write_row((item_id, data.decode("utf-8")))

    def _loader(self) -> Any:
        from pypgstac.db import PgstacDB
        from pypgstac.load import Loader

        if self._pgstac_loader is None:
            db = PgstacDB(dsn=self.dsn)
            db.connection = self._connection()  # so that the load joins our transaction
            self._pgstac_loader = Loader(db)
        return self._pgstac_loader

    def search(self, query: Query | None = None) -> list[dict[str, Any]]:
        """Items matching ``query`` as pgstac's own WHERE builder reads it, returned exactly as published.

        ``mlm_export.search_ids`` runs pgstac's ``stac_search_to_where`` on the search (values quoted by
        pgstac, as its ``search`` does) and orders by datetime then id, newest first: the same rows as
        ``pgstac.search``, without its per-call bookkeeping (~130 ms here). The client sends parameters only.
        """
        query = query or Query()
        con = self._connection()
        if not self._installed():
            return []
        if not self._has_search_function():
            self.prepare()
        body = search_body(query)
        rows = con.execute(
            "SELECT s.id, i.content FROM mlm_export.search_ids(%s::jsonb, %s) WITH ORDINALITY AS s(id, n) "
            "LEFT JOIN mlm_export.items i ON i.id = s.id ORDER BY s.n",
            [json.dumps(body), query.limit],
        ).fetchall()
        missing = [item_id for item_id, content in rows if content is None]
        found = {item_id: loads(content) for item_id, content in rows if content is not None}
        if missing:  # Items loaded by other tools: pgstac's own copy
            more = con.execute("SELECT pgstac.search(%s::jsonb)", [json.dumps({"ids": missing, "limit": len(missing)})])
            found |= {f["id"]: unindexed(f) for f in more.fetchone()[0].get("features", [])}
        return [found[item_id] for item_id, _ in rows if item_id in found]

    def _has_search_function(self) -> bool:
        row = self._connection().execute("SELECT to_regproc('mlm_export.search_ids') IS NOT NULL").fetchone()
        return bool(row and row[0])
