"""publish, search and match from the command line, on a folder catalog; match on real band tables."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from mlm_export import catalog
from mlm_export.catalog._match import castable, match_models, overlap
from mlm_export.catalog._sources import gather
from mlm_export.cli import main

from .catalog_data import FIXTURES, model_items, naip_model, official_examples
from .conftest import plain_validate

# the official MLM examples are STAC 1.0.0 Items with extension versions mlm-export does not bundle
pytestmark = pytest.mark.usefixtures("foreign_schemas")

DATA = FIXTURES / "data_items"


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def export_dir(tmp_path):
    """A folder as an export leaves it: an Item with a relative model href, and a Collection linking it."""
    folder = tmp_path / "export"
    (folder / "run1").mkdir(parents=True)
    item = naip_model()
    item["assets"]["weights"]["href"] = "./naip.pt2"
    item["links"] = [{"rel": "self", "href": "./naip.json"}, {"rel": "collection", "href": "../collection.json"}]
    item["collection"] = "runs"
    (folder / "run1" / "naip.json").write_text(json.dumps(item))
    collection = {
        "type": "Collection",
        "stac_version": "1.0.0",
        "id": "runs",
        "description": "training runs",
        "license": "CC-BY-4.0",
        "extent": {"spatial": {"bbox": [[-124.4, 32.5, -114.1, 42.0]]}, "temporal": {"interval": [[None, None]]}},
        "links": [{"rel": "item", "href": "./run1/naip.json"}],
    }
    (folder / "collection.json").write_text(json.dumps(collection))
    (folder / "hparams.json").write_text(json.dumps({"lr": 0.1}))  # not STAC: ignored in a folder
    return folder


def test_publish_makes_hrefs_absolute_from_the_file_or_the_base_url(export_dir):
    found = gather([export_dir])
    assert [i["id"] for i in found.items] == ["naip-rgbn-segmenter"]
    assert [c["id"] for c in found.collections] == ["runs"]
    item = found.items[0]
    assert item["assets"]["weights"]["href"] == str((export_dir / "run1" / "naip.pt2").resolve())
    assert [link["rel"] for link in item["links"]] == ["collection"]  # self dropped
    assert item["links"][0]["href"] == str((export_dir / "collection.json").resolve())
    served = gather([export_dir], base_url="https://models.example.com/exports/")
    assert served.items[0]["assets"]["weights"]["href"] == "https://models.example.com/exports/run1/naip.pt2"
    assert plain_validate(served.items[0]) == []


def test_collection_item_links_outside_the_named_folder_are_not_read(tmp_path):
    secret = tmp_path / "secret.json"
    secret.write_text(json.dumps(naip_model()))
    named = tmp_path / "named"
    named.mkdir()
    collection = {"type": "Collection", "id": "c", "links": [{"rel": "item", "href": "../secret.json"}]}
    (named / "collection.json").write_text(json.dumps(collection))
    found = gather([named / "collection.json"])
    assert found.items == []
    assert found.problems == [
        f"{(named / 'collection.json').resolve()}: item link '../secret.json' is not a file "
        f"inside {named.resolve()}; not read"
    ]


def test_cli_publish_search_json_and_table(capsys, tmp_path, export_dir, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # a wide table: one line per model
    models = tmp_path / "models"
    code, out, err = run(capsys, "publish", export_dir, "--to", models, "--json")
    assert code == 0, err
    assert json.loads(out)["added"] == ["naip-rgbn-segmenter"]
    assert catalog.open(models).collections()["runs"]["id"] == "runs"

    code, out, err = run(capsys, "publish", export_dir, "--to", models)
    assert code == 1
    assert err.strip().splitlines() == [
        "error: 1 Item id(s) already in the catalog: naip-rgbn-segmenter. Nothing was added; pass "
        "on_conflict='skip' or 'update' (--on-conflict skip|update) to keep or replace them."
    ]
    code, out, err = run(capsys, "publish", export_dir, "--to", models, "--on-conflict", "skip")
    assert code == 0 and "0 added, 0 updated, 1 skipped" in out

    code, out, err = run(capsys, "search", models, "--band", "nir,red", "--framework", "pytorch", "--json-envelope")
    assert code == 0, err
    envelope = json.loads(out)
    assert (envelope["command"], envelope["ok"], envelope["numberReturned"]) == ("search", True, 1)
    assert [f["id"] for f in envelope["results"]] == ["naip-rgbn-segmenter"]
    code, out, err = run(capsys, "search", models, "--task", "semantic-segmentation")
    assert code == 0 and "naip-rgbn-segmenter" in out and "1,900,000" in out
    code, out, err = run(capsys, "search", models, "--task", "object-detection", "--quiet")
    assert (code, out) == (0, "")  # nothing found: nothing printed
    code, out, err = run(capsys, "search", models, "--task", "semantic-segmentation", "--quiet")
    assert (code, out, err) == (0, "naip-rgbn-segmenter\n", "")  # quiet drops the table, not the results


def test_cli_publish_refuses_invalid_items_with_their_problems(capsys, tmp_path):
    bad = official_examples()[1]
    bad["properties"]["mlm:accelerator"] = "cpu"
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    code, out, err = run(capsys, "publish", tmp_path / "bad.json", "--to", tmp_path / "models")
    assert code == 1
    assert "error: 1 Item(s) fail validation and nothing was added" in err
    assert "item_basic: $.properties['mlm:accelerator']" in err
    assert not (tmp_path / "models" / "catalog.json").exists()


def test_cli_search_bad_input_is_one_line_and_exit_2(capsys, tmp_path):
    code, out, err = run(capsys, "search", tmp_path, "--filter", "\"mlm:framework\" = = 'x'")
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: malformed CQL2 filter")
    code, out, err = run(capsys, "search", tmp_path, "--bbox", "1,2,3")
    assert code == 2 and "W,S,E,N" in err


def test_cli_unreachable_database_is_one_line(capsys, tmp_path):
    code, out, err = run(capsys, "search", "postgresql://user:hunter2@127.0.0.1:9/models")
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot reach the PostgreSQL database postgresql://user:***@")
    assert "hunter2" not in err


# -- match ---------------------------------------------------------------------------------------------------


def load(name: str) -> dict:
    return json.loads((DATA / name).read_text())


def by_id(results):
    return {m.id: m for m in results}


def test_data_fixtures_are_valid_stac():
    for name in ("sentinel2_l2a.json", "landsat_c2_l2.json", "naip.json"):
        assert plain_validate(load(name)) == [], name


def test_match_sentinel2_l2a():
    results = by_id(match_models(load("sentinel2_l2a.json"), model_items()))
    assert {m for m, r in results.items() if r.fits} == {"item_bands_expression", "item_basic", "item_multi_io"}
    assert results["item_bands_expression"].bands == {"B04": "B04", "B03": "B03", "B02": "B02"}
    assert results["item_bands_expression"].overlap == 1.0
    # L2A has no B10 (cirrus is dropped at Level-2A)
    assert results["item_eo_bands"].reasons == [
        "13 Band Sentinel-2 Batch: bands not in the data (by name or common name): B10"
    ]
    assert "B4, B3, B2, B8" in results["item_pytorch_geo_unet"].reasons[0]  # B4 is not B04
    assert "outside the training extent" in results["naip-rgbn-segmenter"].reasons[-1]


def test_match_landsat_by_common_name_and_extent():
    results = by_id(match_models(load("landsat_c2_l2.json"), model_items()))
    assert not any(r.fits for r in results.values())
    naip = results["naip-rgbn-segmenter"]
    # red/green/blue are Landsat common names; Landsat's near-infrared is nir08, not nir
    assert naip.reasons == ["RBG+NDVI Bands Sentinel-2 Batch: bands not in the data (by name or common name): nir"]
    assert naip.overlap == 1.0
    # B01 is found as 'coastal' through the model's eo:bands common name
    assert results["item_eo_bands"].bands["B01"] == "SR_B1"


def test_match_naip_and_the_partial_overlap_note():
    data = load("naip.json")
    results = by_id(match_models(data, model_items()))
    assert [m for m, r in results.items() if r.fits] == ["naip-rgbn-segmenter"]
    assert results["naip-rgbn-segmenter"].bands == {"red": "Red", "green": "Green", "blue": "Blue", "nir": "NIR"}
    w, s, e, n = data["bbox"]
    data["bbox"] = [w - 10.0, s, e, n]  # mostly over the Pacific now
    partial = by_id(match_models(data, model_items()))["naip-rgbn-segmenter"]
    assert partial.fits
    assert partial.overlap == round((e - -124.4) / (e - (w - 10.0)), 4)  # the share east of the model's west edge
    assert partial.notes == [f"{partial.overlap:.0%} of the data's footprint is inside the training extent"]


def test_match_data_type_and_scaling_rules():
    assert castable("uint16", "float32") and castable("float64", "float32") and castable("uint8", "uint16")
    assert not castable("float32", "uint8") and not castable("int16", "uint8")
    model = naip_model()
    model["properties"]["mlm:input"][0]["input"]["data_type"] = "uint8"
    model["properties"]["mlm:input"][0]["value_scaling"] = [{"type": "z-score", "mean": 1, "stddev": 2}] * 3
    data = load("naip.json")
    data["assets"]["image"]["raster:bands"] = [{"data_type": "float32"}] * 4
    result = match_models(data, [model])[0]
    assert result.reasons == [
        "RBG+NDVI Bands Sentinel-2 Batch: data type float32 does not cast to the model's uint8",
        "RBG+NDVI Bands Sentinel-2 Batch: value_scaling has 3 entries for 4 bands (want 1 or 4)",
    ]
    assert overlap((0, 0, 2, 2), (1, 1, 3, 3)) == 0.25


def test_cli_match(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    models = tmp_path / "models"
    catalog.open(models).add(model_items())
    code, out, err = run(capsys, "match", DATA / "naip.json", models, "--json-envelope")
    assert code == 0, err
    report = json.loads(out)
    assert report["results"][0] == {
        "id": "naip-rgbn-segmenter",
        "fits": True,
        "reasons": [],
        "notes": [],
        "overlap": 1.0,
        "bands": {"red": "Red", "green": "Green", "blue": "Blue", "nir": "NIR"},
    }
    assert all(m["reasons"] for m in report["results"][1:])
    code, out, err = run(capsys, "match", DATA / "landsat_c2_l2.json", models)
    assert code == 1 and "0 of 10 fit" in out
    code, out, err = run(capsys, "match", tmp_path / "missing.json", models)
    assert code == 2 and "no such file or directory" in err


def test_publish_a_collection_file_follows_its_item_links(capsys, tmp_path, export_dir):
    copy = tmp_path / "copy"
    shutil.copytree(export_dir, copy)
    code, out, err = run(capsys, "publish", copy / "collection.json", "--to", tmp_path / "m", "--json")
    assert code == 0, err
    assert json.loads(out)["added"] == ["naip-rgbn-segmenter"]
    assert Path(catalog.open(tmp_path / "m").get("naip-rgbn-segmenter")["assets"]["weights"]["href"]).is_absolute()


def test_match_a_collection_by_its_item_assets():
    scene = load("sentinel2_l2a.json")
    collection = {
        "type": "Collection",
        "id": "sentinel-2-l2a",
        "extent": {"spatial": {"bbox": [scene["bbox"]]}, "temporal": {"interval": [[None, None]]}},
        "item_assets": {k: {kk: vv for kk, vv in v.items() if kk != "href"} for k, v in scene["assets"].items()},
    }
    as_collection = {m.id: (m.fits, m.reasons, m.bands) for m in match_models(collection, model_items())}
    as_item = {m.id: (m.fits, m.reasons, m.bands) for m in match_models(scene, model_items())}
    assert as_collection == as_item
    assert {k for k, v in as_collection.items() if v[0]} == {"item_bands_expression", "item_basic", "item_multi_io"}
