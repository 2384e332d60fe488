"""Other readers of our Items: stac-model's pydantic models (0.7.0) and pystac's MLM extension (pystac-ext-mlm).

Each test parses what we write with the reader's own code and checks that nothing it needs is lost.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pystac
import pytest
import torch
from pydantic import ValidationError
from pystac.extensions.mlm import MLMExtension, ValueScaling
from stac_model.schema import MLModelExtension, MLModelProperties, SummariesMLModelExtension

from mlm_export import MLMExportWarning, export_mlm
from mlm_export._checkpoint_facts import plain, run_link
from mlm_export._item import CheckpointFacts, checkpoint_item
from mlm_export._runs import RunCatalog
from mlm_export._write import file_checksum

from .models import FixedSize, Regressor, SmallUNet, TinyDetector
from .openeo_reader import offline_pystac_validator

WHEN = {"start_datetime": dt.datetime(2020, 1, 1), "end_datetime": dt.datetime(2021, 1, 1)}
CLASSES = [
    {"value": 0, "name": "water", "description": "Open water", "color_hint": "0000ff"},
    {"value": 1, "name": "land", "color_hint": "00ff00"},
    {"value": 2, "name": "cloud"},
]


def _segmenter() -> dict[str, Any]:
    return export_mlm(
        SmallUNet(4, 3).eval(), example_input=torch.randn(2, 4, 32, 32), bands=["B02", "B03", "B04", "B08"],
        classes=CLASSES, value_scaling=[{"type": "z-score", "mean": 1.0, "stddev": 2.0}] * 4, batch_size=8,
        hyperparameters={"lr": 0.001, "depth": 3}, license="CC-BY-4.0", **WHEN,
    ).to_dict(include_self_link=False, transform_hrefs=False)  # fmt: skip


CASES = {
    "segmentation": _segmenter,
    "regression": lambda: export_mlm(
        Regressor(3).eval(), example_input=torch.randn(2, 3, 16, 16), tasks="regression", **WHEN
    ).to_dict(),  # fmt: skip
    "detection": lambda: export_mlm(
        TinyDetector(3).eval(), example_input=torch.rand(2, 3, 32, 32), classes=["a", "b", "c"], **WHEN
    ).to_dict(),  # fmt: skip
    "fixed-size": lambda: _fixed_size(),
}


def _fixed_size() -> dict[str, Any]:
    with pytest.warns(MLMExportWarning, match="ran only at the example's size"):  # the probe says why it is fixed
        item = export_mlm(FixedSize().eval(), example_input=torch.randn(2, 3, 16, 16), tasks="classification", **WHEN)
    return item.to_dict()


def _spec(entry: dict[str, Any], key: str) -> dict[str, Any]:
    """What a runtime needs of one input or output: name, structure, bands, scaling, tasks, classes."""
    out = {"name": entry["name"], key: entry[key], "bands": entry.get("bands") or []}
    for k in ("value_scaling", "tasks", "classification:classes", "resize_type"):
        if entry.get(k) is not None:
            out[k] = entry[k]
    return out


@pytest.mark.parametrize("case", sorted(CASES))
def test_stac_model_parses_our_items_and_keeps_every_shape(case: str):
    props = CASES[case]()["properties"]
    parsed = MLModelProperties.model_validate(props)
    back = parsed.model_dump(mode="json", by_alias=True, exclude_unset=True)
    assert [_spec(i, "input") for i in back["mlm:input"]] == [_spec(i, "input") for i in props["mlm:input"]]
    assert [_spec(o, "result") for o in back["mlm:output"]] == [_spec(o, "result") for o in props["mlm:output"]]
    for key in ("mlm:name", "mlm:architecture", "mlm:framework", "mlm:framework_version", "mlm:total_parameters",
                "mlm:memory_size", "mlm:accelerator", "mlm:hyperparameters", "mlm:batch_size_suggestion"):  # fmt: skip
        assert back.get(key) == props.get(key), key
    assert sorted(back["mlm:tasks"]) == sorted(props["mlm:tasks"])


def test_stac_model_applies_our_properties_to_a_pystac_item():
    """stac-model's own Item extension round-trip: apply the parsed model, read the same fields back."""
    data = _segmenter()
    parsed = MLModelProperties.model_validate(data["properties"])
    target = pystac.Item("copy", None, None, dt.datetime(2020, 1, 1, tzinfo=dt.UTC), {})
    MLModelExtension.ext(target, add_if_missing=True).apply(parsed)
    copied = target.properties
    assert [_spec(i, "input") for i in copied["mlm:input"]] == [
        _spec(i, "input") for i in data["properties"]["mlm:input"]
    ]
    assert (
        copied["mlm:output"][0]["classification:classes"]
        == data["properties"]["mlm:output"][0]["classification:classes"]
    )


def test_stac_model_parses_the_summaries_of_our_collection(tmp_path: Path):
    """Every MLM summary of a run's collection.json validates in stac-model's summaries extension."""
    catalog = RunCatalog(tmp_path, collection_id="run", title="UNet run")
    base = _segmenter()
    for step in (10, 20):
        ckpt = tmp_path / f"epoch=0-step={step}.ckpt"
        ckpt.write_bytes(b"x" * step)
        facts = CheckpointFacts(path=ckpt, size=step, checksum=file_checksum(ckpt), saved=dt.datetime(2024, 1, 2),
                                lineage="test run", global_step=step, run=run_link(catalog))  # fmt: skip
        catalog.put(ckpt, plain(checkpoint_item(pystac.Item.from_dict(base), facts)))
    data = catalog.collection()
    assert pystac.Collection.from_dict(data).summaries.lists  # pystac reads it
    # stac-model 0.7.0's SummariesMLModelExtension cannot be constructed (its __setattr__ takes the base class's
    # own `summaries` attribute for an MLM field and raises), so its per-summary check is called as it would be:
    # each value through MLModelProperties' pydantic validator; tasks, a set-valued field, as one list.
    check = SummariesMLModelExtension._validate_mlm_property
    mlm_keys = [k for k in data["summaries"] if k.startswith("mlm:")]
    assert {"mlm:name", "mlm:architecture", "mlm:tasks", "mlm:framework"} <= set(mlm_keys)
    for key in mlm_keys:
        values = data["summaries"][key]
        check(object.__new__(SummariesMLModelExtension), key.removeprefix("mlm:"),
              [values] if key == "mlm:tasks" else values)  # fmt: skip
    # the check does check: a task outside MLM's enum fails
    with pytest.raises(ValidationError, match=r"tasks\.0\.[\s\S]*input_value='embedding'"):
        check(object.__new__(SummariesMLModelExtension), "tasks", [["embedding"]])


def test_pystac_mlm_extension_reads_our_v1_5_2_items():
    """pystac's MLM extension is for MLM <= 1.4.0 but recognises any version by URI prefix: it reads ours."""
    data = _segmenter()
    item = pystac.Item.from_dict(data)
    assert MLMExtension.has_extension(item)
    ext = item.ext.mlm
    assert (ext.mlm_name, ext.framework, ext.tasks) == ("SmallUNet", "PyTorch", ["semantic-segmentation"])
    assert ext.total_parameters == data["properties"]["mlm:total_parameters"]
    assert ext.batch_size_suggestion == 8 and ext.hyperparameters.properties == {"lr": 0.001, "depth": 3}
    model_input, model_output = ext.input[0], ext.output[0]
    assert model_input.input.shape == [-1, 4, -1, -1]
    assert model_input.input.dim_order == ["batch", "bands", "height", "width"]
    assert model_input.bands == ["B02", "B03", "B04", "B08"]
    assert model_output.result.shape == [-1, 3, -1, -1]
    assert [(c.value, c.name, c.color_hint) for c in model_output.classes] == [
        (0, "water", "0000FF"), (1, "land", "00FF00"), (2, "cloud", None),
    ]  # fmt: skip
    assert item.assets["model"].ext.mlm.artifact_type == "safetensors.torch.save_file"
    # pystac-ext-mlm 1.4.1 wraps the value_scaling *list* in one ValueScaling object; read the list itself:
    assert isinstance(model_input.value_scaling, ValueScaling)
    assert model_input.properties["value_scaling"] == [{"type": "z-score", "mean": 1.0, "stddev": 2.0}] * 4


@pytest.mark.parametrize("case", sorted(CASES))
def test_pystac_validate_accepts_our_items_offline(case: str):
    """pystac's own validate() (after its migration of declared extensions), schemas from the local bundle."""
    item = pystac.Item.from_dict(CASES[case]())
    assert item.validate(validator=offline_pystac_validator())
