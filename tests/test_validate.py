"""The validator: real schemas by URL, offline, with every problem located by JSON path."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import pytest

from mlm_export import (
    ItemValidationError,
    SchemaNotFoundError,
    SchemaStore,
    validate_item,
    validation_problems,
)

from .conftest import schema_dirs

MLM = "stac-extensions.github.io/mlm/v1.5.2/schema.json"


def broken(item, change):
    data = copy.deepcopy(item)
    change(data)
    return validation_problems(data)


def test_valid_item_has_no_problems(item_dict):
    assert validation_problems(item_dict) == []
    validate_item(item_dict)  # does not raise


@pytest.mark.parametrize(
    ("change", "path"),
    [
        (lambda d: d["properties"].__setitem__("mlm:accelerator", "cpu"), "$.properties['mlm:accelerator']"),
        (lambda d: d["properties"].__setitem__("mlm:name", "epoch=3-step=40"), "$.properties['mlm:name']"),
        (lambda d: d["properties"].pop("mlm:input"), "$.properties"),
        (lambda d: d["properties"].__setitem__("mlm:unknown_field", 1), "$.properties"),
        (lambda d: d["properties"]["mlm:input"][0]["input"].__setitem__("data_type", "bfloat16"), "data_type"),
        (lambda d: d["properties"]["mlm:input"][0]["input"]["dim_order"].__setitem__(1, "channel"), "mlm:input"),
        (lambda d: d["assets"]["model"].pop("mlm:artifact_type"), "$.assets"),
        (
            lambda d: d["properties"].__setitem__("mlm:framework_version", "2.6"),
            "$.properties['mlm:framework_version']",
        ),
        (
            lambda d: d["properties"]["mlm:output"][0]["classification:classes"][0].__setitem__(
                "color_hint", "#FF0000"
            ),
            "classification:classes",
        ),
    ],
    ids=[
        "accelerator-cpu",
        "name-with-equals",
        "no-input",
        "unknown-mlm-field",
        "bfloat16",
        "bands-without-dim",
        "no-artifact-type",
        "bad-semver",
        "color-with-hash",
    ],
)
def test_each_violation_is_reported_with_its_path(item_dict, change, path):
    problems = broken(item_dict, change)
    assert problems, "the change must be caught"
    assert any(path in p.json_path for p in problems), [str(p) for p in problems]


def test_error_lists_every_problem(item_dict):
    data = copy.deepcopy(item_dict)
    data["properties"]["mlm:accelerator"] = "cpu"
    data["properties"]["mlm:name"] = "x"
    with pytest.raises(ItemValidationError, match=r"fails \d+ schema check") as info:
        validate_item(data)
    text = str(info.value)
    assert "mlm:accelerator" in text and "mlm:name" in text
    assert len(info.value.problems) >= 2


def test_offline_missing_schema_names_url_and_variable(tmp_path, item_dict):
    store = SchemaStore(override_dirs=[tmp_path], cache_dir=tmp_path / "cache", offline=True, bundled=False)
    with pytest.raises(SchemaNotFoundError, match=r"schemas.stacspec.org/v1.1.0/item-spec.*MLM_EXPORT_SCHEMA_DIR"):
        validation_problems(item_dict, store)


def test_several_override_directories_and_the_cache(tmp_path, item_dict):
    root = schema_dirs()[-1]  # the bundled schemas
    first, cache = tmp_path / "first", tmp_path / "cache"
    # STAC core in the first override dir, extensions only in the cache
    shutil.copytree(root / "schemas.stacspec.org", first / "schemas.stacspec.org")
    shutil.copytree(root / "geojson.org", first / "geojson.org")
    shutil.copytree(root / "stac-extensions.github.io", cache / "stac-extensions.github.io")
    store = SchemaStore(override_dirs=[tmp_path / "empty", first], cache_dir=cache, offline=True)
    assert validation_problems(item_dict, store) == []


def test_download_is_cached_and_reused(tmp_path, item_dict, monkeypatch):
    root = schema_dirs()[-1]  # the bundled schemas
    fetched = []

    def fake_download(url, hosts):
        fetched.append(url)
        return (root / url.removeprefix("https://")).read_bytes()

    monkeypatch.setattr("mlm_export._validate._download", fake_download)
    cache = tmp_path / "cache"
    store = SchemaStore(override_dirs=[], cache_dir=cache, offline=False, bundled=False)
    assert validation_problems(item_dict, store) == []
    assert fetched and (cache / MLM).is_file()
    fetched.clear()
    monkeypatch.setattr("mlm_export._validate._download", lambda *a, **k: pytest.fail("cached schema downloaded again"))
    store2 = SchemaStore(override_dirs=[], cache_dir=cache, offline=True, bundled=False)
    assert validation_problems(item_dict, store2) == []


def test_unreachable_network_is_a_clear_error(tmp_path, item_dict):
    store = SchemaStore(override_dirs=[], cache_dir=tmp_path, offline=False, bundled=False)
    with pytest.raises(SchemaNotFoundError, match="could not be fetched"):
        validation_problems(item_dict, store)


def test_collection_and_unknown_types(item_dict):
    with pytest.raises(ItemValidationError, match="type"):
        validation_problems({"type": "Thing"})
    collection = {
        "type": "Collection",
        "stac_version": "1.1.0",
        "id": "run",
        "description": "models of one run",
        "license": "MIT",
        "extent": {"spatial": {"bbox": [[-180, -90, 180, 90]]}, "temporal": {"interval": [[None, None]]}},
        "links": [],
    }
    assert validation_problems(collection) == []
    assert validation_problems({**collection, "license": 5})


def test_item_written_to_disk_validates_with_cli_json(tmp_path, capsys):
    import datetime as dt

    import torch

    from mlm_export import export_mlm
    from mlm_export.cli import main

    from .models import SmallUNet

    when = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    item = export_mlm(SmallUNet(3, 2), example_input=torch.randn(1, 3, 16, 16), out_dir=tmp_path,
                      artifacts="safetensors", datetime=when)  # fmt: skip
    path = item.get_self_href()
    assert main(["validate", path, "--json"]) == 0
    out = capsys.readouterr().out
    assert path in out and json.loads(out)  # the JSON report names the file
    broken = json.loads(Path(path).read_text())
    broken["properties"]["mlm:accelerator"] = "cpu"
    Path(path).write_text(json.dumps(broken))
    assert main(["validate", path, "--json"]) == 1
    assert "mlm:accelerator" in capsys.readouterr().out
