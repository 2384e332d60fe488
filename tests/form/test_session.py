"""mlm-export form's content and saving: fields generated from the schemas, live problems, guarded saves."""

from __future__ import annotations

import json

import pytest

from mlm_export import mlm
from mlm_export._form import licenses
from mlm_export._form.schema_form import form_spec
from mlm_export._form.session import HAND_EDITED, FormSession, parse_json_path, problem_json
from mlm_export._validate import default_store
from mlm_export.errors import ItemChangedError, ItemFileError, ItemValidationError

from .helpers import request, running


# -- the form's description ----------------------------------------------------------------------------------
def _fields(spec):
    for group in spec["groups"]:
        yield from _walk(group["fields"])


def _walk(fields):
    for f in fields:
        yield f
        yield from _walk(f.get("fields", []))
        if isinstance(f.get("item"), dict):
            yield from _walk([f["item"]])


def test_form_is_generated_from_the_schemas():
    spec = form_spec()
    assert [g["id"] for g in spec["groups"]] == ["model", "inputs", "outputs", "assets", "spatiotemporal", "extensions"]
    by_key = {}
    for f in _fields(spec):
        by_key.setdefault(f["key"], f)
    schema_fields = default_store().load(mlm.MLM_SCHEMA)["$defs"]["fields"]["properties"]
    model_keys = {f["key"] for f in spec["groups"][0]["fields"]}
    elsewhere = {mlm.ARTIFACT_TYPE, "mlm:compile_method", "mlm:entrypoint", mlm.INPUT, mlm.OUTPUT}
    assert set(schema_fields) - elsewhere <= model_keys
    assert by_key[mlm.TASKS]["kind"] == "multichoice"
    assert tuple(by_key[mlm.TASKS]["choices"]) == mlm.TASK_NAMES
    assert by_key[mlm.ACCELERATOR]["choices"] == list(mlm.Accelerator.__args__)
    assert by_key[mlm.ACCELERATOR]["nullable"] is True
    assert tuple(by_key["data_type"]["choices"]) == mlm.DATA_TYPES
    assert by_key["resize_type"]["choices"] == list(mlm.ResizeType.__args__)
    assert "PyTorch" in by_key[mlm.FRAMEWORK]["suggestions"]
    assert by_key["dim_order"]["kind"] == "list"
    assert "bands" in by_key["dim_order"]["suggestions"]
    scaling = by_key["value_scaling"]["item"]
    assert scaling["fields"][0]["choices"] == [
        "min-max",
        "z-score",
        "clip",
        "clip-min",
        "clip-max",
        "offset",
        "scale",
        "processing",
    ]
    classes = by_key["classification:classes"]["item"]
    assert {f["key"]: f["kind"] for f in classes["fields"]} == {
        "value": "integer",
        "description": "textarea",
        "name": "text",
        "color_hint": "color",
    }
    eo = default_store().load(mlm.EO_SCHEMA)["definitions"]["eo:common_name"]["enum"]
    assert by_key["eo:common_name"]["choices"] == eo
    assert by_key["license"]["kind"] == "license"
    assert by_key["datetime"]["kind"] == "datetime"
    assert by_key["datetime"]["nullable"] is True


def test_license_list_is_the_spdx_data_shipped_offline():
    shipped = licenses.shipped()
    assert shipped == licenses.generate(), "regenerate with python -m mlm_export._form.licenses"
    ids = [entry["id"] for entry in shipped["licenses"]]
    assert {"MIT", "Apache-2.0", "CC-BY-4.0", "GPL-3.0-only", "other"} <= set(ids)
    assert not [i for i in ids if i.startswith("LicenseRef-")]
    assert len(ids) > 500
    assert shipped["spdx_license_list_version"]


# -- validation and saving -----------------------------------------------------------------------------------
def test_live_validation_puts_each_problem_at_its_field(item_path):
    item = json.loads(item_path.read_text())
    item["properties"]["license"] = "CC BY 4.0"
    item["properties"]["mlm:output"][0]["classification:classes"][1]["color_hint"] = "blue"
    item["properties"]["mlm:accelerator"] = "cpu"
    del item["properties"]["mlm:name"]
    with running(item_path) as server:
        status, data = request(server, "POST", "/api/validate", body={"item": item})
    assert status == 200
    assert data["valid"] is False
    messages = {tuple(p["path"]): p["message"] for p in data["problems"]}
    assert set(messages) == {
        ("properties", "license"),
        ("properties", "mlm:output", 0, "classification:classes", 1, "color_hint"),
        ("properties", "mlm:accelerator"),
        ("properties", "mlm:name"),
    }
    # the alternative the value was meant for names the mistake (not "is not of type 'null'")
    assert messages[("properties", "mlm:accelerator")].startswith("'cpu' is not one of ['amd64'")
    assert messages[("properties", "mlm:output", 0, "classification:classes", 1, "color_hint")] == (
        "'blue' does not match '^([0-9A-Fa-f]{6})$'"
    )


def test_json_paths_parse_both_notations():
    parsed = parse_json_path("$.properties['mlm:input'][0].input.shape")
    assert parsed == ["properties", "mlm:input", 0, "input", "shape"]
    assert parse_json_path("$.properties.license") == ["properties", "license"]
    assert parse_json_path("$['assets']['it\\'s']") == ["assets", "it's"]
    from mlm_export.errors import Problem

    missing = problem_json(Problem("$.properties", "'mlm:name' is a required property"))
    assert missing["path"] == ["properties", "mlm:name"]


def test_save_keeps_a_backup_and_writes_what_was_sent(item_path, assert_valid):
    before = item_path.read_bytes()
    item = json.loads(before)
    item["properties"]["description"] = "Water from Sentinel-2."
    item["properties"]["license"] = "CC-BY-4.0"
    with running(item_path) as server:
        status, data = request(server, "POST", "/api/save", body={"item": item})
        assert status == 200, data
        assert (item_path.parent / (item_path.name + ".bak")).read_bytes() == before
        saved = json.loads(item_path.read_text())
        assert saved == item
        assert_valid(saved)
        # a second save from the same page builds on the first (its digest is now the file's)
        item["properties"]["keywords"] = ["water"]
        assert request(server, "POST", "/api/save", body={"item": item})[0] == 200
    assert json.loads((item_path.parent / (item_path.name + ".bak")).read_text()) == saved
    assert not list(item_path.parent.glob(".*.tmp*"))


def test_save_refuses_when_the_file_changed_on_disk(item_path):
    item = json.loads(item_path.read_text())
    with running(item_path) as server:
        other = {**item, "properties": {**item["properties"], "description": "someone else's edit"}}
        item_path.write_text(json.dumps(other))
        item["properties"]["description"] = "mine"
        status, data = request(server, "POST", "/api/save", body={"item": item})
    assert status == 409
    assert "changed on disk since the form opened it" in data["error"]
    assert json.loads(item_path.read_text())["properties"]["description"] == "someone else's edit"
    assert not (item_path.parent / (item_path.name + ".bak")).exists()
    session = FormSession(item_path)
    item_path.write_text(item_path.read_text() + " ")
    with pytest.raises(ItemChangedError, match="changed on disk"):
        session.save(json.loads(item_path.read_text()))


def test_save_refuses_an_invalid_item(item_path):
    before = item_path.read_bytes()
    item = json.loads(before)
    item["properties"]["mlm:name"] = "bad/name"
    with running(item_path) as server:
        status, data = request(server, "POST", "/api/save", body={"item": item})
    assert status == 422
    assert [p["path"] for p in data["problems"]] == [["properties", "mlm:name"]]
    assert item_path.read_bytes() == before
    with pytest.raises(ItemValidationError, match="mlm:name"):
        FormSession(item_path).save(item)


def test_save_checks_local_asset_files_inside_the_folder_only(item_path, tmp_path):
    item = json.loads(item_path.read_text())
    model = item["assets"]["model"]
    model["file:size"] += 1
    with pytest.raises(ItemValidationError, match="file:size"):
        FormSession(item_path).save(item)
    outside = tmp_path / "outside.bin"
    outside.write_bytes(b"secret")
    item = json.loads(item_path.read_text())
    item["assets"]["extra"] = {"href": "../outside.bin", "roles": ["metadata"], "file:size": 1}
    FormSession(item_path).save(item)  # not read: it is outside the Item's folder
    assert json.loads(item_path.read_text())["assets"]["extra"]["href"] == "../outside.bin"


def test_changed_derived_values_are_recorded_as_hand_edits(item_path, assert_valid):
    item = json.loads(item_path.read_text())
    item["properties"][mlm.TOTAL_PARAMETERS] = 6000
    item["properties"][mlm.INPUT][0]["input"]["shape"] = [-1, 4, 64, 64]
    item["properties"]["description"] = "not derived: not recorded"
    saved = FormSession(item_path).save(item)
    assert saved["properties"][HAND_EDITED] == [
        "$['properties']['mlm:total_parameters']",
        "$['properties']['mlm:input'][0]['input']['shape']",
    ]
    assert json.loads(item_path.read_text()) == saved
    assert_valid(saved)
    # kept on the next save, even with no new hand edit
    again = FormSession(item_path).save(saved)
    assert again["properties"][HAND_EDITED] == saved["properties"][HAND_EDITED]


def test_used_extensions_are_declared(item_path, assert_valid):
    item = json.loads(item_path.read_text())
    item["properties"]["sci:doi"] = "10.5281/zenodo.1234"
    item["properties"]["bands"][0]["eo:common_name"] = "blue"
    saved = FormSession(item_path).save(item)
    assert mlm.SCI_SCHEMA in saved["stac_extensions"]
    assert mlm.EO_SCHEMA in saved["stac_extensions"]
    assert_valid(saved)


def test_blank_form_and_new_files(tmp_path, assert_valid, derived):
    blank = FormSession(None)
    assert blank.state()["opened"] is False
    assert blank.state()["derived"] == []
    assert blank.state()["item"]["properties"] == {"datetime": None}
    assert blank.problems(blank.state()["item"])  # a blank Item is not valid yet
    with pytest.raises(ItemFileError, match="mlm-export form ITEM.json"):
        blank.save(json.loads(derived.read_text()))
    new = tmp_path / "new.json"
    session = FormSession(new)
    assert session.state()["item"]["id"] == ""
    item = json.loads(derived.read_text())
    for key, asset in item["assets"].items():  # the files stay beside the derived Item: point at published copies
        asset.pop("file:size", None), asset.pop("file:checksum", None)
        asset["href"] = f"https://example.com/{key}"
    session.save(item)
    assert json.loads(new.read_text()) == item
    assert not (tmp_path / "new.json.bak").exists()
    assert_valid(item)


def test_not_an_item_is_refused(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ItemFileError, match="is not JSON"):
        FormSession(bad)
    bad.write_text('{"type": "Collection"}')
    with pytest.raises(ItemFileError, match="not a STAC Item"):
        FormSession(bad)


def test_a_typed_training_extent_gets_its_geometry(item_path, assert_valid):
    item = json.loads(item_path.read_text())
    item["bbox"] = [5.9, 45.8, 10.5, 47.8]
    del item["properties"]["datetime"]
    item["properties"].update(datetime=None, start_datetime="2019-01-01T00:00:00Z", end_datetime="2021-12-31T23:59:59Z")
    saved = FormSession(item_path).save(item)
    assert saved["geometry"] == {
        "type": "Polygon",
        "coordinates": [[[5.9, 45.8], [10.5, 45.8], [10.5, 47.8], [5.9, 47.8], [5.9, 45.8]]],
    }
    assert_valid(saved)
    item["bbox"] = [10.5, 45.8, 5.9, 47.8]  # west > east: no guess, the validator says what is missing
    assert FormSession(item_path).prepare(item)["geometry"] is None
