"""The command line tells the truth: no empty answer for a wrong question, Items that STAC tools read, one rule per
convention (bands, list flags, overwrite, quiet), example scenes that run."""

from __future__ import annotations

import json
from pathlib import Path

import pystac
import pytest

from mlm_export import catalog, mlm
from mlm_export.catalog._fields import searchable_bands
from mlm_export.catalog._match import match_models
from mlm_export.catalog._scenes import SCENES, example_scene
from mlm_export.cli import main

from .catalog_data import FIXTURES, model_items, naip_model, official_examples
from .conftest import plain_validate

pytestmark = pytest.mark.usefixtures("foreign_schemas")


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def models(tmp_path: Path) -> Path:
    folder = tmp_path / "models"
    catalog.open(folder).add(model_items())
    return folder


# -- 2. a wrong question is an error, not "0 model(s)" -------------------------------------------------------------


def test_search_of_a_folder_that_is_not_a_catalog_is_an_error_naming_it(capsys, tmp_path: Path) -> None:
    items = tmp_path / "demo-output"  # a folder of Items, as an export leaves it: not a catalog
    items.mkdir()
    (items / "model.json").write_text(json.dumps(naip_model()))
    for argv in (["search", items], ["search", items, "--json"], ["match", "--example-scene", "naip", items]):
        code, out, err = run(capsys, *argv)
        assert code == 1, argv
        assert "0 model(s)" not in out
        line = err.strip().splitlines()[-1]
        assert line.startswith(f"error: {items} is not a model catalog (it has no catalog.json)"), line
        assert f"mlm-export publish {items} --to CATALOG" in line
    code, out, _ = run(capsys, "search", items, "--json")
    assert json.loads(out)["ok"] is False  # the envelope, for errors


def test_search_of_an_unknown_task_is_a_usage_error_listing_the_tasks(capsys, models: Path) -> None:
    code, out, err = run(capsys, "search", models, "--task", "classifcation")
    assert code == 2
    assert err.strip() == (f"error: unknown task(s) classifcation; MLM tasks: {', '.join(mlm.TASK_NAMES)} (--task)")
    with pytest.raises(catalog.QueryError, match=r"unknown task\(s\) segmentaton; MLM tasks: regression"):
        catalog.Query(task="segmentaton")


# -- 3. --json is a STAC ItemCollection ----------------------------------------------------------------------------


def test_search_json_is_an_item_collection_stac_tools_read(capsys, models: Path) -> None:
    code, out, err = run(capsys, "search", models, "--task", "semantic-segmentation", "--json")
    assert code == 0, err
    collection = pystac.ItemCollection.from_dict(json.loads(out))
    ids = {item.id for item in collection}
    assert "naip-rgbn-segmenter" in ids
    assert all("semantic-segmentation" in item.properties[mlm.TASKS] for item in collection)
    assert json.loads(out)["numberReturned"] == len(ids)
    stored = catalog.open(models).get("naip-rgbn-segmenter")
    assert next(f for f in json.loads(out)["features"] if f["id"] == "naip-rgbn-segmenter") == stored


def test_match_json_is_an_item_collection_with_the_reasons_as_properties(capsys, models: Path) -> None:
    code, out, err = run(capsys, "match", FIXTURES / "data_items" / "naip.json", models, "--json")
    assert code == 0, err
    collection = pystac.ItemCollection.from_dict(json.loads(out))
    verdicts = {item.id: item.properties for item in collection}
    assert len(verdicts) == len(model_items())
    naip = verdicts["naip-rgbn-segmenter"]
    assert (naip[mlm.MATCH_FITS], naip[mlm.MATCH_REASONS], naip[mlm.MATCH_OVERLAP]) == (True, [], 1.0)
    assert naip[mlm.MATCH_BANDS] == {"red": "Red", "green": "Green", "blue": "Blue", "nir": "NIR"}
    others = [p for i, p in verdicts.items() if i != "naip-rgbn-segmenter"]
    assert others and all(p[mlm.MATCH_FITS] is False and p[mlm.MATCH_REASONS] for p in others)


# -- 6. quiet drops chatter, not results ----------------------------------------------------------------------------


def test_quiet_search_and_match_print_the_ids_they_found(capsys, models: Path) -> None:
    code, out, err = run(capsys, "search", models, "--band", "nir", "--quiet")
    assert code == 0 and err == ""
    found = out.splitlines()
    assert "naip-rgbn-segmenter" in found and all(" " not in line for line in found)
    code, out, err = run(capsys, "match", FIXTURES / "data_items" / "naip.json", models, "-q")
    assert (code, out, err) == (0, "naip-rgbn-segmenter\n", "")


# -- 7. list flags: repeated or comma-separated, singular or plural ---------------------------------------------------


def test_search_task_and_band_take_lists_either_way(capsys, models: Path) -> None:
    answers = set()
    for argv in (
        ["--task", "semantic-segmentation", "--band", "red", "--band", "nir"],
        ["--tasks", "semantic-segmentation", "--bands", "red,nir"],
        ["--task", "semantic-segmentation", "--band", "red,nir", "--max-items", "50"],
    ):
        code, out, err = run(capsys, "search", models, *argv, "--quiet")
        assert code == 0, err
        answers.add(out)
    assert len(answers) == 1 and "naip-rgbn-segmenter" in answers.pop()
    code, out, _ = run(capsys, "search", models, "--task", "semantic-segmentation,classification", "-q")
    assert out == ""  # every task must match (AND): no model here has both


# -- 8. one band rule: a band an expression reads is found by name and by common name --------------------------------


def test_a_band_read_only_by_an_expression_is_found_by_name_and_by_common_name(capsys, models: Path) -> None:
    ndvi = next(i for i in official_examples() if i["id"] == "item_bands_expression")
    assert "B08" not in [b.get("name") for b in ndvi["properties"]["mlm:input"][0]["bands"]]
    assert {"B08", "B04", "nir", "red"} <= set(searchable_bands(ndvi))
    for band in ("B08", "nir"):
        code, out, err = run(capsys, "search", models, "--band", band, "-q")
        assert code == 0, err
        assert "item_bands_expression" in out.splitlines(), band


def test_common_names_count_only_for_bands_the_inputs_read(capsys) -> None:
    model = naip_model()
    model["assets"]["weights"]["eo:bands"].append({"name": "swir", "common_name": "swir16"})  # defined, never read
    assert "swir16" not in searchable_bands(model)
    assert {"red", "green", "blue", "nir"} <= set(searchable_bands(model))


# -- 9. example scenes shipped with the package ---------------------------------------------------------------------


def test_example_scenes_are_valid_stac_built_from_the_band_tables() -> None:
    assert set(SCENES) == {"sentinel-2-l2a", "landsat-c2-l2", "naip"}
    for name in SCENES:
        scene = example_scene(name)
        assert plain_validate(scene) == [], name
        assert pystac.Item.from_dict(scene).id == scene["id"]
    s2 = example_scene("sentinel-2-l2a")
    names = [a["bands"][0]["name"] for a in s2["assets"].values()]
    assert names == ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12"]  # no B10
    assert s2["assets"]["B08"]["bands"][0]["eo:common_name"] == "nir"
    assert s2["properties"]["gsd"] == 10
    from mlm_export.demo import SCENE_BBOX  # the README's walk: the demo's model fits the Sentinel-2 example scene

    w, s, e, n = s2["bbox"]
    assert SCENE_BBOX[0] <= w < e <= SCENE_BBOX[2] and SCENE_BBOX[1] <= s < n <= SCENE_BBOX[3]
    landsat = example_scene("landsat-c2-l2")
    assert landsat["assets"]["nir08"]["bands"][0]["name"] == "SR_B5"
    naip = example_scene("naip")
    assert [b["eo:common_name"] for b in naip["assets"]["image"]["bands"]] == ["red", "green", "blue", "nir"]


@pytest.mark.parametrize(
    ("scene", "fixture"),
    [("sentinel-2-l2a", "sentinel2_l2a.json"), ("landsat-c2-l2", "landsat_c2_l2.json"), ("naip", "naip.json")],
)
def test_example_scenes_match_as_the_test_fixtures_of_the_same_missions(scene: str, fixture: str) -> None:
    shipped = {m.id: (m.fits, m.bands) for m in match_models(example_scene(scene), model_items())}
    by_hand = json.loads((FIXTURES / "data_items" / fixture).read_text())
    assert shipped == {m.id: (m.fits, m.bands) for m in match_models(by_hand, model_items())}


def test_match_example_scene_runs_from_the_command_line(capsys, models: Path) -> None:
    code, out, err = run(capsys, "match", "--example-scene", "sentinel-2-l2a", models, "--quiet")
    assert code == 0, err
    assert set(out.splitlines()) == {"item_bands_expression", "item_basic", "item_multi_io"}
    code, out, _ = run(capsys, "match", "--example-scene", "naip", "--print-example-scene")
    assert json.loads(out) == example_scene("naip")
    code, _, err = run(capsys, "match", "--example-scene", "modis", models)
    assert code == 2 and "invalid choice: 'modis'" in err
    code, _, err = run(capsys, "match", FIXTURES / "data_items" / "naip.json", models, "--example-scene", "naip")
    assert code == 2 and "either DATA.json or --example-scene" in err
    assert main(["match", "--help"]) == 0
    assert "sentinel-2-l2a" in capsys.readouterr().out
    code, out, err = run(capsys, "match", "--example-scene", "sentinel-2-l2a", models, "--max-items", "1", "--json")
    assert code in (0, 1) and len(json.loads(out)["features"]) == 1, err  # --max-items = --limit, as in search


# -- 7. --version is the program's; list flags repeat or comma-separate in every command ------------------------------


def test_convert_item_version_and_list_flags_either_way(capsys) -> None:
    from mlm_export.cli import parser
    from mlm_export.cli._convert import options_from

    def options(*flags: str):
        return options_from(parser().parse_args(["convert", "ckpts/", *flags]))

    given = options("--item-version", "2.1.0", "--tasks", "semantic-segmentation", "--bands", "red,nir")
    same = options("--item-version", "2.1.0", "--task", "semantic-segmentation", "--band", "red", "--band", "nir")
    assert given == same
    assert (given.version, given.tasks, list(given.bands or [])) == ("2.1.0", ["semantic-segmentation"], ["red", "nir"])
    assert options("--classes", "land,water", "--class", "cloud").classes == ["land", "water", "cloud"]
    code, out, _ = run(capsys, "--version")
    assert code == 0 and out.startswith("mlm-export ")
    code, out, _ = run(capsys, "convert", "--help")
    assert "--item-version" in out and "--version" not in out.replace("--item-version", "")


def test_convert_old_version_flag_still_sets_the_item_version_with_a_warning(capsys, tmp_path: Path) -> None:
    code, _, err = run(capsys, "convert", tmp_path, "--version", "v3")  # no checkpoint: exit 2 after the warning
    assert code == 2
    assert "warning: convert --version VALUE is now --item-version VALUE" in err
    code, _, err = run(capsys, "convert", tmp_path, "--version", "v3", "--item-version", "v4")
    assert code == 2 and "pass --item-version alone" in err
