"""The command line's validate, and the README's demo."""

from __future__ import annotations

import json

from mlm_export.cli import main
from mlm_export.demo import main as demo_main

from .conftest import plain_validate


def test_demo_writes_a_valid_item(tmp_path, capsys):
    assert demo_main([str(tmp_path), "--epochs", "1"]) == 0
    out = capsys.readouterr().out
    item_path = tmp_path / "tinyunet-water-segmentation.json"
    assert str(item_path.resolve()) in out.replace("\n", "")
    data = json.loads(item_path.read_text())
    assert plain_validate(data) == []
    p = data["properties"]
    assert p["mlm:tasks"] == ["semantic-segmentation"]
    assert p["mlm:input"][0]["bands"] == ["B02", "B03", "B04", "B08", "B11", "B12"]
    assert len(p["mlm:input"][0]["value_scaling"]) == 6
    assert [c["name"] for c in p["mlm:output"][0]["classification:classes"]] == ["land", "water", "cloud"]
    assert data["bbox"] and p["start_datetime"].startswith("2024-04-01")
    assert p["bands"][3]["eo:common_name"] == "nir"
    assert data["assets"]["model"]["mlm:artifact_type"] == "torch.export.save"

    assert main(["validate", str(item_path)]) == 0
    assert "valid" in capsys.readouterr().out


def test_validate_reports_broken_items(tmp_path, capsys):
    good = tmp_path / "good.json"
    demo_main([str(tmp_path), "--epochs", "1"])
    data = json.loads((tmp_path / "tinyunet-water-segmentation.json").read_text())
    good.write_text(json.dumps(data))
    data["properties"]["mlm:accelerator"] = "cpu"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    not_json = tmp_path / "x.json"
    not_json.write_text("{")
    capsys.readouterr()
    assert main(["validate", str(good), str(bad), str(not_json)]) == 1
    err = capsys.readouterr().err
    assert "bad.json: 1 problem(s)" in err and "mlm:accelerator" in err
    assert "x.json: 1 problem(s)" in err and "x.json is not JSON" in err
    assert main(["validate", "--json", str(good), str(bad)]) == 1
    results = json.loads(capsys.readouterr().out)["results"]
    assert [r["valid"] for r in results] == [True, False]
