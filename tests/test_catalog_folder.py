"""The folder catalog: every MLM Item goes in and comes back equal, searches, conflicts, atomic commits."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mlm_export import catalog
from mlm_export.catalog import (
    CatalogFormatError,
    ConflictError,
    ItemNotFoundError,
    Query,
    QueryError,
    RefusedItemsError,
)

from .catalog_data import SUITE, model_items, naip_model, official_examples

ROOT = Path(__file__).resolve().parents[1]
# the official MLM examples are STAC 1.0.0 Items with extension versions mlm-export does not bundle
pytestmark = pytest.mark.usefixtures("foreign_schemas")


@pytest.fixture
def folder(tmp_path):
    cat = catalog.open(tmp_path / "models")
    cat.add(model_items())
    return cat


def state(path: Path) -> tuple[bytes, list[str]]:
    """What a reader depends on: the manifest's bytes and the part files."""
    return (path / "catalog.json").read_bytes(), sorted(p.name for p in (path / "parts").iterdir())


def test_the_nine_official_examples_go_in_together_and_round_trip(tmp_path):
    items = official_examples()
    assert len(items) == 9
    cat = catalog.open(tmp_path / "models")
    result = cat.add(items)
    assert sorted(result.added) == sorted(i["id"] for i in items)
    reopened = catalog.open(tmp_path / "models")
    for item in items:
        assert reopened.get(item["id"]) == item
    assert len(reopened.search()) == 9


@pytest.mark.parametrize(("name", "query", "expected"), SUITE, ids=[s[0] for s in SUITE])
def test_query_suite(folder, name, query, expected):
    assert {i["id"] for i in folder.search(query)} == expected


def test_limit_and_order_newest_first(folder):
    found = folder.search(Query(limit=2))
    # starts 2020, then 2015; every other example starts in 1900 or 1940
    assert [i["id"] for i in found] == ["naip-rgbn-segmenter", "item_pytorch_geo_unet"]


def test_get_unknown_id(folder):
    with pytest.raises(ItemNotFoundError, match="no Item with id 'absent'"):
        folder.get("absent")


def test_conflicts_error_skip_update(tmp_path, folder):
    before = state(tmp_path / "models")
    with pytest.raises(ConflictError, match=r"1 Item id\(s\) already in the catalog: naip-rgbn-segmenter"):
        folder.add([naip_model()])
    assert state(tmp_path / "models") == before

    assert folder.add([naip_model()], on_conflict="skip").skipped == ["naip-rgbn-segmenter"]
    assert state(tmp_path / "models") == before

    changed = naip_model()
    changed["properties"]["mlm:architecture"] = "DeepLabV3"
    assert folder.add([changed], on_conflict="update").updated_ids == ["naip-rgbn-segmenter"]
    assert folder.get("naip-rgbn-segmenter") == changed
    assert folder.search(Query(architecture="unet")) == []
    assert [i["id"] for i in folder.search(Query(architecture="deeplabv3"))] == ["naip-rgbn-segmenter"]
    assert len(folder.search()) == len(model_items())


def test_invalid_item_refuses_the_whole_call_unless_skip_invalid(tmp_path):
    good = naip_model()
    bad = official_examples()[1]
    bad["properties"]["mlm:accelerator"] = "cpu"  # not in the v1.5.2 enum
    cat = catalog.open(tmp_path / "models")
    with pytest.raises(RefusedItemsError, match=r"1 Item\(s\) fail validation and nothing was added") as info:
        cat.add([good, bad])
    assert "mlm:accelerator" in str(info.value.refused["item_basic"][0])
    assert cat.search() == []
    assert not (tmp_path / "models" / "catalog.json").exists()
    result = cat.add([good, bad], skip_invalid=True)
    assert result.added == ["naip-rgbn-segmenter"]
    assert list(result.refused) == ["item_basic"]
    assert [i["id"] for i in cat.search()] == ["naip-rgbn-segmenter"]


def test_failure_mid_publish_leaves_the_catalog_as_it_was(tmp_path, folder, monkeypatch):
    from mlm_export.catalog import _folder as folder_module

    monkeypatch.setattr(folder_module, "BATCH_ROWS", 2)  # so that parts of the call reach the file first
    before = state(tmp_path / "models")

    def items():
        for i in range(7):
            item = naip_model()
            item["id"] = f"new-{i}"
            yield item
        raise RuntimeError("disk gone")

    with pytest.raises(RuntimeError, match="disk gone"):
        folder.add(items())
    assert state(tmp_path / "models") == before
    assert len(folder.search()) == len(model_items())


KILL_SCRIPT = """
import os, signal, sys
sys.path.insert(0, {tests!r})
from mlm_export import catalog
from mlm_export.catalog import _folder as folder_module
from catalog_data import naip_model

folder_module.BATCH_ROWS = 2
where = sys.argv[2]
if where == "before-commit":
    folder_module.write_manifest = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)
def items():
    for i in range(9):
        if where == "mid-part" and i == 5:
            os.kill(os.getpid(), signal.SIGKILL)
        item = naip_model()
        item["id"] = f"new-{{i}}"
        yield item
catalog.open(sys.argv[1]).add(items())
"""


@pytest.mark.parametrize("where", ["mid-part", "before-commit"])
def test_a_killed_publish_leaves_the_old_state_and_the_next_writer_cleans_up(tmp_path, folder, where):
    path = tmp_path / "models"
    before_manifest = (path / "catalog.json").read_bytes()
    script = tmp_path / "publish.py"
    script.write_text(KILL_SCRIPT.format(tests=str(ROOT / "tests")))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, str(script), str(path), where], env=env, capture_output=True, timeout=120)
    assert proc.returncode == -9, proc.stderr.decode()
    assert (path / "catalog.json").read_bytes() == before_manifest
    assert len(catalog.open(path).search()) == len(model_items())
    leftovers = [p.name for p in (path / "parts").iterdir()]
    assert len(leftovers) == 4  # the committed pair of files and the killed writer's pair
    folder.add([official_examples()[0] | {"id": "after-kill"}])
    parts = json.loads((path / "catalog.json").read_text())["parts"]
    committed = {p["file"] for p in parts} | {p["file"].replace(".parquet", ".jsonl") for p in parts}
    assert {p.name for p in (path / "parts").iterdir()} == committed
    assert len(folder.search()) == len(model_items()) + 1


def test_malformed_cql2_is_one_line():
    with pytest.raises(QueryError, match=r"malformed CQL2 filter") as info:
        Query(filter="\"mlm:architecture\" = = 'x'")
    assert "\n" not in str(info.value)


def test_unknown_property_in_filter_is_refused():
    with pytest.raises(QueryError, match="'mlm:archtecture', which is not a queryable"):
        Query(filter="\"mlm:archtecture\" = 'ResNet'")


def test_user_values_never_become_sql(folder):
    hostile = "x' OR 1=1 --"
    assert folder.search(Query(architecture=hostile)) == []
    assert folder.search(Query(filter=f"id = '{hostile.replace(chr(39), chr(39) * 2)}'")) == []
    assert folder.search(Query(bands=("red'); DROP TABLE x; --",))) == []
    assert len(folder.search()) == len(model_items())


def test_a_tampered_manifest_cannot_point_outside_the_folder(tmp_path, folder):
    manifest_path = tmp_path / "models" / "catalog.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["parts"].append({"file": "../../../etc/passwd", "rows": 1, "seq": 99})
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(CatalogFormatError, match="lists a part named '../../../etc/passwd', which is not allowed"):
        catalog.open(tmp_path / "models").search()


def test_a_file_is_not_a_catalog(tmp_path):
    (tmp_path / "x").write_text("{}")
    with pytest.raises(CatalogFormatError, match="is a file, not a catalog folder"):
        catalog.open(tmp_path / "x").search()


def test_bad_query_values_name_the_flag():
    with pytest.raises(QueryError, match=r"--bbox"):
        Query(bbox=(10, 50, 5, 40))
    with pytest.raises(QueryError, match=r"--datetime"):
        Query(datetime="last tuesday")
    with pytest.raises(QueryError, match=r"--limit"):
        Query(limit=0)


def test_core_import_does_not_load_catalog_dependencies():
    code = textwrap.dedent(
        """
        import sys, mlm_export, mlm_export.catalog
        heavy = ('duckdb', 'pyarrow', 'psycopg', 'pystac_client', 'cql2', 'pypgstac')
        print(sorted(n for n in heavy if n in sys.modules))
        """
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "[]", out.stderr
