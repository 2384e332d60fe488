"""pgstac and a STAC API (stac-fastapi-pgstac) started here on 127.0.0.1: same answers as the folder catalog.

A throwaway PostgreSQL 15 + PostGIS cluster and one uvicorn process serve the whole module (about 10 s to
start); both are removed afterwards.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from typing import Any

import psycopg
import pytest

from mlm_export import catalog
from mlm_export.catalog import CatalogUnreachableError, ConflictError, Query, RefusedItemsError
from mlm_export.catalog._pgstac import PgstacCatalog

from . import pgcluster
from .catalog_data import SUITE, model_items, naip_model, official_examples

# the official MLM examples are STAC 1.0.0 Items with extension versions mlm-export does not bundle
pytestmark = pytest.mark.usefixtures("foreign_schemas")


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loopback only: the servers these tests start are on 127.0.0.1; anything else is refused."""
    connect = socket.socket.connect

    def loopback_only(self: socket.socket, address: Any) -> Any:
        if self.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in ("127.0.0.1", "::1", "localhost"):
            raise OSError("network access is disabled in tests")
        return connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", loopback_only)


@pytest.fixture(scope="module", autouse=True)
def _foreign_schemas_for_the_module() -> Any:
    """The module's catalogs are filled once, before any test's own fixtures run: the examples' schemas too."""
    from .conftest import FOREIGN_SCHEMAS

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLM_EXPORT_SCHEMA_DIR", str(FOREIGN_SCHEMAS))
        yield


@pytest.fixture(scope="module")
def cluster():
    reason = pgcluster.available()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    server = pgcluster.Cluster().start()
    yield server
    server.stop()


def new_database(cluster: pgcluster.Cluster, name: str) -> str:
    with psycopg.connect(cluster.dsn, autocommit=True) as con:
        con.execute(f'CREATE DATABASE "{name}"')
    return cluster.dsn.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture(scope="module")
def pg(cluster):
    dsn = new_database(cluster, "models")
    cat = catalog.open(dsn)
    cat.add(model_items())
    yield cat
    cat.close()


@pytest.fixture(scope="module")
def api(cluster):
    dsn = new_database(cluster, "api")
    PgstacCatalog(dsn).prepare()  # pgstac installed, MLM queryables registered: the server's set-up
    port = pgcluster.free_port()
    env = {
        **os.environ,
        "PGUSER": "postgres",
        "PGPASSWORD": "unused",
        "PGHOST": "127.0.0.1",
        "PGPORT": str(cluster.port),
        "PGDATABASE": "api",
        "ENABLE_TRANSACTIONS_EXTENSIONS": "true",
    }
    cmd = [sys.executable, "-m", "uvicorn", "stac_fastapi.pgstac.app:create_app", "--factory"]
    proc = subprocess.Popen(
        [*cmd, "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):  # noqa: S310 - our own server on loopback
                break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"stac-fastapi-pgstac did not start: {proc.stderr.read().decode()[-2000:]}")
            time.sleep(0.3)
    cat = catalog.open(url)
    cat.add(model_items())
    yield cat
    cat.close()
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    cat = catalog.open(tmp_path_factory.mktemp("folder") / "models")
    cat.add(model_items())
    return cat


def strip_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: strip_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [strip_nulls(v) for v in value]
    return value


def test_pgstac_round_trips_the_official_examples(pg):
    for item in official_examples():
        assert pg.get(item["id"]) == item


def test_stac_api_returns_the_examples_as_pgstac_keeps_them(api):
    for item in official_examples():
        got = api.get(item["id"])
        # pgstac drops null-valued fields (datetime: null is restored) and the API writes its own links
        assert strip_nulls(got["properties"]) == strip_nulls(item["properties"])
        assert strip_nulls(got["assets"]) == strip_nulls(item["assets"])
        assert got["properties"]["datetime"] is None


@pytest.mark.parametrize(("name", "query", "expected"), SUITE, ids=[s[0] for s in SUITE])
def test_the_same_query_suite_gives_the_same_ids_everywhere(folder, pg, api, name, query, expected):
    answers = {
        backend: {i["id"] for i in cat.search(query)}
        for backend, cat in (("folder", folder), ("pgstac", pg), ("api", api))
    }
    assert answers == {"folder": expected, "pgstac": expected, "api": expected}


def test_pgstac_publish_is_one_transaction(pg, monkeypatch):
    from mlm_export.catalog import _pgstac as pgstac_module

    count = len(pg.search(Query(limit=1000)))
    monkeypatch.setattr(pgstac_module, "BATCH", 2)

    def items():
        for i in range(5):
            item = naip_model()
            item["id"] = f"half-{i}"
            yield item
        raise RuntimeError("connection lost")

    with pytest.raises(RuntimeError, match="connection lost"):
        pg.add(items())
    bad = naip_model() | {"id": "bad"}
    bad["properties"] = {**bad["properties"], "mlm:tasks": ["embedding"]}  # not in the closed enum
    with pytest.raises(RefusedItemsError, match=r"1 Item\(s\) fail validation"):
        pg.add([naip_model() | {"id": "good"}, bad])
    with pytest.raises(ConflictError, match="naip-rgbn-segmenter"):
        pg.add([naip_model()])
    assert len(pg.search(Query(limit=1000))) == count


def test_pgstac_update_replaces_the_item(pg):
    changed = naip_model()
    changed["properties"]["mlm:total_parameters"] = 2_500_000
    assert pg.add([changed], on_conflict="update").updated_ids == ["naip-rgbn-segmenter"]
    assert pg.get("naip-rgbn-segmenter") == changed
    assert [i["id"] for i in pg.search(Query(filter='"mlm:total_parameters" = 2500000'))] == ["naip-rgbn-segmenter"]
    pg.add([naip_model()], on_conflict="update")


def test_queryables_are_discoverable_through_the_api(api):
    import json

    with urllib.request.urlopen(f"{api.url}/queryables", timeout=10) as resp:  # noqa: S310 - loopback
        names = set(json.load(resp)["properties"])
    assert {
        "mlm:tasks",
        "mlm:architecture",
        "mlm:framework",
        "mlm:total_parameters",
        "mlm:input.bands",
        "mlm:accelerator",
    } <= names


def test_a_user_value_with_quotes_reaches_pgstac_as_data(pg):
    assert pg.search(Query(architecture="x'); DROP TABLE pgstac.items; --")) == []
    assert len(pg.search(Query(limit=1000))) == len(model_items())


def test_unreachable_api_is_one_line():
    port = pgcluster.free_port()
    with pytest.raises(CatalogUnreachableError, match=rf"cannot reach the STAC API at http://127.0.0.1:{port}") as e:
        catalog.open(f"http://127.0.0.1:{port}").search()
    assert "\n" not in str(e.value)


def test_unreachable_database_is_one_line():
    port = pgcluster.free_port()
    with pytest.raises(
        CatalogUnreachableError, match=r"cannot reach the PostgreSQL database postgresql://u:\*\*\*@"
    ) as e:
        catalog.open(f"postgresql://u:pw@127.0.0.1:{port}/x").search()
    assert "\n" not in str(e.value) and "pw@" not in str(e.value)


def sql_connection(pg: PgstacCatalog) -> psycopg.Connection[Any]:
    """A connection of the test's own to the catalog's database (closed with the test's objects)."""
    return psycopg.connect(pg.dsn, autocommit=True, options="-c search_path=pgstac,public")


def test_queryables_are_registered_once(pg):
    """pgstac rebuilds a queryable's indexes when its row changes: a later add must leave the rows alone."""
    con = sql_connection(pg)
    before = con.execute("SELECT id, name FROM pgstac.queryables ORDER BY id").fetchall()
    assert {"mlm:tasks", "mlm:input.bands", "mlm:total_parameters"} <= {name for _, name in before}
    pg.add([naip_model()], on_conflict="skip")
    assert con.execute("SELECT id, name FROM pgstac.queryables ORDER BY id").fetchall() == before


def _plan_nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    """Every node of an EXPLAIN (FORMAT JSON) plan."""
    return [plan, *(n for child in plan.get("Plans", []) for n in _plan_nodes(child))]


def _plan(pg: PgstacCatalog, query: Query, settings: tuple[str, ...]) -> list[dict[str, Any]]:
    """The plan of the search's id query (pgstac's own WHERE clause, search order) under planner settings."""
    import json

    from mlm_export.catalog._pgstac import search_body

    con = sql_connection(pg)
    with con.transaction(force_rollback=True):  # the SET LOCALs end with it
        where = con.execute("SELECT pgstac.stac_search_to_where(%s::jsonb)", [json.dumps(search_body(query))])
        clause = where.fetchone()[0]
        for setting in settings:
            con.execute(f"SET LOCAL {setting} = off")
        order = "ORDER BY datetime DESC, id DESC LIMIT 100"
        plan = con.execute(f"EXPLAIN (FORMAT JSON) SELECT id FROM pgstac.items WHERE {clause} {order}").fetchone()
    return _plan_nodes(plan[0][0]["Plan"])


@pytest.mark.parametrize(
    ("query", "field"),
    [
        (Query(task="semantic-segmentation"), "mlm:tasks"),
        (Query(bands=("red", "nir")), "mlm_export:bands"),
        (Query(filter='"mlm:total_parameters" BETWEEN 1000000 AND 2000000'), "mlm:total_parameters"),
        (Query(max_parameters=5_000_000), "mlm:total_parameters"),
    ],
    ids=["task", "bands", "parameter range", "max parameters"],
)
def test_pgstac_answers_indexed_filters_from_the_index_without_reading_items(pg, query, field):
    """With a table scan ruled out, the filter is an index condition (GIN for arrays, BTREE for numbers)."""
    nodes = _plan(pg, query, ("enable_seqscan", "enable_indexscan"))
    conds = [n.get("Index Cond", "") for n in nodes if n["Node Type"] == "Bitmap Index Scan"]
    assert any(field in cond for cond in conds), nodes
    assert not any(field in n.get("Filter", "") for n in nodes)


@pytest.mark.parametrize(
    ("query", "field"),
    [(Query(framework="pytorch"), "mlm:framework"), (Query(architecture="UNET"), "mlm:architecture")],
    ids=["framework", "architecture"],
)
def test_pgstac_reads_casei_matches_in_search_order_from_an_index(pg, query, field):
    """casei() equality is an index condition whose index returns the rows newest first: nothing to sort."""
    nodes = _plan(pg, query, ("enable_seqscan", "enable_bitmapscan", "enable_sort", "enable_incremental_sort"))
    assert not any("Sort" in n["Node Type"] for n in nodes), nodes
    assert any(n["Node Type"] == "Index Scan" and field in n.get("Index Cond", "") for n in nodes), nodes


def test_pgstac_stores_items_compressed_with_lz4(pg):
    """Filters that read Items decompress them; lz4 (PostgreSQL 15 here is built with it) is the faster codec."""
    con = sql_connection(pg)
    for table in ("pgstac.items", "mlm_export.items"):
        codecs = con.execute(
            f"SELECT pg_column_compression(content), count(*) FROM {table} "  # noqa: S608 - fixed names
            "WHERE pg_column_compression(content) IS NOT NULL GROUP BY 1"
        ).fetchall()
        assert [codec for codec, _ in codecs] == ["lz4"], (table, codecs)


def test_prepare_replaces_the_earlier_architecture_index(pg):
    """Databases prepared by an earlier version had a plain upper(architecture) index: prepare() swaps it."""
    con = sql_connection(pg)
    con.execute(
        "CREATE INDEX IF NOT EXISTS mlm_export_architecture_casei "
        "ON pgstac.items (upper(pgstac.to_text(content->'properties'->'mlm:architecture')))"
    )
    pg.prepare()
    names = {r[0] for r in con.execute("SELECT indexname FROM pg_indexes WHERE schemaname = 'pgstac'").fetchall()}
    assert "mlm_export_architecture_casei" not in names
    assert {"mlm_export_architecture_casei_newest", "mlm_export_framework_casei_newest"} <= names
    assert [i["id"] for i in pg.search(Query(architecture="unet"))] == ["naip-rgbn-segmenter"]
