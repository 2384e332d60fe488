"""The rules inside ``mlm:input``/``mlm:output`` that no JSON Schema states: validate names each one, and verify
refuses an Item that breaks one before it loads or runs anything."""

from __future__ import annotations

import copy
import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from mlm_export import export_mlm, validate_item, validation_problems, verify_item
from mlm_export._checks import STRUCTURE_RULES, structure_problems
from mlm_export.cli import main
from mlm_export.errors import ItemValidationError

from .models import SmallUNet

WHEN = dt.datetime(2024, 6, 1, tzinfo=dt.UTC)
INPUT = "$.properties['mlm:input'][0]"
OUTPUT = "$.properties['mlm:output'][0]"


def _two_entry_shape(d: dict[str, Any]) -> None:
    d["properties"]["mlm:input"][0]["input"]["shape"] = [-1, 3]  # dim_order keeps its 4 names


def _output_shape(d: dict[str, Any]) -> None:
    d["properties"]["mlm:output"][0]["result"]["shape"].pop()


def _one_class_more(d: dict[str, Any]) -> None:
    classes = d["properties"]["mlm:output"][0]["classification:classes"]
    classes.append({"value": len(classes), "name": "cloud", "description": "cloud"})


def _one_band_less(d: dict[str, Any]) -> None:
    d["properties"]["mlm:input"][0]["bands"].pop()


def _two_scalings_for_three_bands(d: dict[str, Any]) -> None:
    d["properties"]["mlm:input"][0]["value_scaling"] = [
        {"type": "z-score", "mean": 0.5, "stddev": 0.25},
        {"type": "z-score", "mean": 0.4, "stddev": 0.2},
    ]


#: One broken rule each: (change, rule, where, words of the message).
BROKEN: dict[str, tuple[Callable[[dict[str, Any]], None], str, str, str]] = {
    "input-shape-vs-dim-order": (
        _two_entry_shape,
        "shape-vs-dim-order",
        f"{INPUT}.input",
        "shape [-1, 3] has 2 entries but dim_order ['batch', 'bands', 'height', 'width'] has 4",
    ),
    "output-shape-vs-dim-order": (_output_shape, "shape-vs-dim-order", f"{OUTPUT}.result", "has 3 entries"),
    "classes-vs-class-dim": (_one_class_more, "classes-vs-shape", OUTPUT, "names 3 classes but its 'class' dim is 2"),
    "bands-vs-band-dim": (_one_band_less, "bands-vs-shape", INPUT, "lists 2 bands but its 'bands' dim is 3"),
    "scalings-vs-bands": (
        _two_scalings_for_three_bands,
        "value-scaling-count",
        INPUT,
        "has 2 value scalings for 3 bands: give none, one for all, or one per band",
    ),
}


@pytest.fixture(scope="module")
def item_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An honest segmentation Item with its files (3 bands, 2 classes, a .pt2 archive verify runs)."""
    folder = tmp_path_factory.mktemp("rules")
    export_mlm(
        SmallUNet(in_channels=3, num_classes=2),
        example_input=torch.randn(2, 3, 32, 32),
        out_dir=folder,
        name="Small UNet",
        bands=["red", "green", "blue"],
        classes=["land", "water"],
        datetime=WHEN,
    )
    return folder / "small-unet.json"


def _broken(item_path: Path, change: Callable[[dict[str, Any]], None], name: str = "broken.json") -> Path:
    data = json.loads(item_path.read_text())
    change(data)
    path = item_path.with_name(name)
    path.write_text(json.dumps(data))
    return path


def test_the_honest_item_breaks_no_rule(item_path: Path) -> None:
    data = json.loads(item_path.read_text())
    assert data["properties"]["mlm:input"][0]["input"]["dim_order"] == ["batch", "bands", "height", "width"]
    assert structure_problems(data) == []
    assert validation_problems(data) == []


@pytest.mark.parametrize("case", list(BROKEN))
def test_validate_names_each_broken_rule(item_path: Path, case: str, capsys: pytest.CaptureFixture[str]) -> None:
    change, rule, where, words = BROKEN[case]
    data = json.loads(item_path.read_text())
    change(data)
    problems = validation_problems(data)
    assert [(p.json_path, p.schema) for p in problems if p.schema in STRUCTURE_RULES] == [(where, rule)]
    message = next(p.message for p in problems if p.schema == rule)
    assert words in message
    with pytest.raises(ItemValidationError, match=rule):
        validate_item(data)
    code = main(["validate", str(_broken(item_path, change)), "--json"])
    reported = json.loads(capsys.readouterr().out)["results"][0]["problems"]
    assert code == 1
    assert [p for p in reported if p["schema"] == rule] == [{"json_path": where, "message": message, "schema": rule}]


@pytest.mark.parametrize("case", list(BROKEN))
def test_verify_refuses_a_broken_item_before_it_runs_anything(item_path: Path, case: str) -> None:
    change, rule, _, words = BROKEN[case]
    checks = {c.name: c for c in verify_item(_broken(item_path, change))}
    assert not checks["consistency"].ok and rule in checks["consistency"].detail
    refused = checks["load model"]
    assert not refused.ok
    assert refused.detail.startswith("not run: mlm:input/mlm:output contradict themselves")
    assert words in refused.detail and "zip()" not in refused.detail
    assert "run" not in checks  # nothing was loaded or run


def test_the_schema_check_does_not_repeat_the_rules(item_path: Path) -> None:
    checks = {c.name: c for c in verify_item(_broken(item_path, _two_entry_shape))}
    assert checks["schema"].ok, checks["schema"].detail


@pytest.mark.parametrize(
    ("count", "ok"), [(0, True), (1, True), (2, False), (3, True), (4, False)], ids=lambda v: str(v)
)
def test_value_scalings_are_none_one_or_one_per_band(item_path: Path, count: int, ok: bool) -> None:
    data = json.loads(item_path.read_text())
    step = {"type": "z-score", "mean": 0.5, "stddev": 0.25}
    data["properties"]["mlm:input"][0]["value_scaling"] = [dict(step) for _ in range(count)] or None
    if count == 0:
        del data["properties"]["mlm:input"][0]["value_scaling"]
    rules = [p.schema for p in structure_problems(data)]
    assert rules == ([] if ok else ["value-scaling-count"])


def test_value_scalings_count_against_the_band_dim_when_no_band_is_named(item_path: Path) -> None:
    data = json.loads(item_path.read_text())
    inp = data["properties"]["mlm:input"][0]
    inp["bands"] = []
    inp["input"]["dim_order"] = ["batch", "channel", "height", "width"]
    inp["value_scaling"] = [{"type": "scale", "value": 2.0}] * 2
    [problem] = structure_problems(data)
    assert problem.message.startswith("has 2 value scalings for a 'channel' dim of 3")


def test_dynamic_sizes_and_a_pre_processing_function_are_not_mismatches(item_path: Path) -> None:
    data = json.loads(item_path.read_text())
    props = data["properties"]
    props["mlm:output"][0]["result"]["shape"][1] = -1  # a dynamic class dim: any count of classes
    inp = copy.deepcopy(props["mlm:input"][0])
    inp["input"]["shape"][1] = 1
    inp["pre_processing_function"] = {"format": "gdal-calc", "expression": "(A - B) / (A + B)"}
    props["mlm:input"][0] = inp  # 3 bands combined into 1 channel by the function
    assert structure_problems(data) == []
