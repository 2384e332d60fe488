"""export_mlm: every kind of model gives a schema-valid Item whose facts equal a real forward pass."""

from __future__ import annotations

import json
import warnings

import pytest
import safetensors.torch
import torch
import torchvision

from mlm_export import (
    InputRequiredError,
    InvalidOptionError,
    ItemValidationError,
    MLMExportWarning,
    TaskInferenceError,
    TraceError,
    export_mlm,
    mlm,
)
from mlm_export._write import file_checksum

from .models import BatchDict, DictInput, FixedSize, ItemCall, Regressor, SmallUNet, TiedWeights, TinyDetector

WHEN = {"datetime": __import__("datetime").datetime(2024, 6, 1, tzinfo=__import__("datetime").UTC)}


def props(item):
    return item.to_dict(include_self_link=False, transform_hrefs=False)["properties"]


def test_resnet_classifier(assert_valid):
    model = torchvision.models.resnet18(num_classes=4)
    item = export_mlm(
        model,
        example_input=torch.randn(2, 3, 64, 64),
        classes=["water", "forest", "urban", "crop"],
        bands=["red", "green", "blue"],
        **WHEN,
    )
    data = assert_valid(item)
    p = data["properties"]
    assert p["mlm:tasks"] == ["classification"]  # told by the classes matching the output
    assert p["mlm:total_parameters"] == sum(x.numel() for x in model.parameters())
    assert p["mlm:framework"] == "PyTorch"
    assert p["mlm:input"][0]["input"] == {
        "shape": [-1, 3, -1, -1],
        "dim_order": ["batch", "bands", "height", "width"],
        "data_type": "float32",
    }
    assert p["mlm:input"][0]["bands"] == ["red", "green", "blue"]
    assert [b["name"] for b in p["bands"]] == ["red", "green", "blue"]
    out = p["mlm:output"][0]
    assert out["result"]["shape"] == [-1, 4]
    assert out["result"]["dim_order"] == ["batch", "class"]
    assert [c["name"] for c in out["classification:classes"]] == ["water", "forest", "urban", "crop"]
    model_asset = data["assets"]["model"]
    assert model_asset["roles"][0] == "mlm:model"
    assert model_asset["mlm:artifact_type"] == "safetensors.torch.save_file"
    assert model_asset["href"] == "./resnet.safetensors"
    assert "file:size" not in model_asset  # no out_dir: nothing was written, nothing measured


def test_vit_classifier(assert_valid):
    model = torchvision.models.VisionTransformer(
        image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64, num_classes=10
    )
    item = export_mlm(model, example_input=torch.randn(1, 3, 32, 32), tasks="classification", **WHEN)
    p = assert_valid(item)["properties"]
    assert p["mlm:input"][0]["input"]["shape"] == [-1, 3, 32, 32]
    assert p["mlm:input"][0]["input"]["dim_order"] == ["batch", "channel", "height", "width"]
    assert p["mlm:output"][0]["result"]["shape"] == [-1, 10]
    assert p["mlm:architecture"] == "VisionTransformer"


def test_unet_segmenter_task_inferred(assert_valid):
    model = SmallUNet(in_channels=4, num_classes=5)
    item = export_mlm(model, example_input=torch.randn(2, 4, 32, 32), **WHEN)
    p = assert_valid(item)["properties"]
    assert p["mlm:tasks"] == ["semantic-segmentation"]
    assert p["mlm:output"][0]["result"] == {
        "shape": [-1, 5, -1, -1],
        "dim_order": ["batch", "class", "height", "width"],
        "data_type": "float32",
    }
    assert p["mlm:input"][0]["bands"] == []


def test_regression_needs_tasks_and_says_so(assert_valid):
    with pytest.raises(TaskInferenceError, match=r"tasks=\['classification'\]"):
        export_mlm(Regressor(), example_input=torch.randn(2, 3, 16, 16), **WHEN)
    item = export_mlm(Regressor(), example_input=torch.randn(2, 3, 16, 16), tasks=["regression"], **WHEN)
    p = assert_valid(item)["properties"]
    assert p["mlm:output"][0]["result"]["dim_order"] == ["batch", "value"]
    assert p["mlm:tasks"] == ["regression"]


def test_detection_model(assert_valid):
    torch.manual_seed(0)
    item = export_mlm(TinyDetector(), example_input=torch.randn(2, 3, 32, 32), classes=["a", "b", "c"], **WHEN)
    p = assert_valid(item)["properties"]
    assert p["mlm:tasks"] == ["object-detection"]
    outs = {o["name"]: o for o in p["mlm:output"]}
    assert outs["boxes"]["result"]["dim_order"] == ["batch", "detection", "coordinate"]
    assert outs["boxes"]["result"]["shape"] == [-1, -1, 4]
    assert outs["labels"]["result"]["data_type"] == "int64"
    assert [c["name"] for c in outs["labels"]["classification:classes"]] == ["a", "b", "c"]


def test_dict_input_model(assert_valid):
    item = export_mlm(
        DictInput(),
        example_input={"optical": torch.randn(2, 4, 16, 16), "radar": torch.randn(2, 2, 16, 16)},
        bands=["B02", "B03", "B04", "B08"],
        tasks={"output": ["classification"]},
        **WHEN,
    )
    p = assert_valid(item)["properties"]
    inputs = {i["name"]: i for i in p["mlm:input"]}
    assert inputs["optical"]["bands"] == ["B02", "B03", "B04", "B08"]
    assert inputs["radar"]["bands"] == []
    assert inputs["radar"]["input"]["dim_order"] == ["batch", "channel", "height", "width"]


def test_dict_batch_with_dict_output(assert_valid):
    item = export_mlm(
        BatchDict(),
        example_input={"image": torch.randn(2, 3, 16, 16)},
        tasks={"mask": ["semantic-segmentation"], "embedding": ["similarity-search"]},
        **WHEN,
    )
    p = assert_valid(item)["properties"]
    outs = {o["name"]: o for o in p["mlm:output"]}
    assert outs["embedding"]["result"]["dim_order"] == ["batch", "embedding"]
    assert set(p["mlm:tasks"]) == {"semantic-segmentation", "similarity-search"}


def test_shared_weights_model(assert_valid, tmp_path):
    model = TiedWeights()
    item = export_mlm(model, example_input=torch.randn(2, 16), tasks="regression", out_dir=tmp_path, **WHEN)
    p = assert_valid(item)["properties"]
    assert p["mlm:total_parameters"] == sum(x.numel() for x in model.parameters())
    loaded = safetensors.torch.load_file(tmp_path / "tiedweights.safetensors")
    assert "decode.weight" not in loaded and torch.equal(loaded["encode.weight"], model.encode.weight)
    fresh = TiedWeights()
    fresh.load_state_dict(loaded, strict=False)  # tied names restore from the one stored copy
    assert torch.equal(fresh.decode.weight, model.decode.weight)


def test_item_call_model(assert_valid):
    item = export_mlm(ItemCall(), example_input=torch.randn(2, 3, 8, 8), tasks="classification", **WHEN)
    p = assert_valid(item)["properties"]
    assert p["mlm:output"][0]["result"]["shape"] == [-1, 2]


def test_writes_weights_program_and_item(tmp_path, assert_valid):
    model = SmallUNet(in_channels=3, num_classes=2)
    x = torch.randn(2, 3, 32, 32)
    item = export_mlm(model, example_input=x, out_dir=tmp_path, name="Small UNet", **WHEN)
    files = sorted(f.name for f in tmp_path.iterdir())
    assert files == [
        "small-unet.environment.txt", "small-unet.json", "small-unet.pt2", "small-unet.requirements.txt",
        "small-unet.safetensors",
    ]  # fmt: skip
    on_disk = json.loads((tmp_path / "small-unet.json").read_text())
    assert_valid(on_disk)
    assets = on_disk["assets"]
    assert assets["model"]["mlm:artifact_type"] == "torch.export.save"
    assert assets["weights"]["roles"] == ["mlm:weights"]
    assert "mlm:artifact_type" not in assets["weights"]
    for a in assets.values():
        path = tmp_path / a["href"]
        assert a["file:size"] == path.stat().st_size
        assert a["file:checksum"] == file_checksum(path)
    # the weights are the model's, and the program runs without the model's code
    loaded = safetensors.torch.load_file(tmp_path / "small-unet.safetensors")
    assert loaded.keys() == model.state_dict().keys()
    assert all(torch.equal(loaded[k], v) for k, v in model.state_dict().items())
    program = torch.export.load(tmp_path / "small-unet.pt2").module()
    y = program(torch.randn(3, 3, 64, 48))  # another batch size and image size: the dims are dynamic
    assert y.shape == (3, 2, 64, 48)
    assert item.get_self_href() == str((tmp_path / "small-unet.json").resolve())


def test_without_out_dir_nothing_is_written_and_no_file_is_measured(tmp_path, monkeypatch, assert_valid):
    """Without out_dir the model asset names the file writing would make, states no file:* fields for a file that
    does not exist, and says how to write it; with out_dir the same href gets the written file's size."""
    monkeypatch.chdir(tmp_path)
    model = SmallUNet(in_channels=3, num_classes=2)
    item = export_mlm(model, example_input=torch.randn(2, 3, 32, 32), **WHEN)
    assert list(tmp_path.iterdir()) == []
    planned = assert_valid(item)["assets"]["model"]
    assert not [k for a in item.assets.values() for k in a.extra_fields if k.startswith("file:")]
    assert "out_dir=" in planned["description"]
    assert mlm.FILE_SCHEMA not in item.stac_extensions
    written = export_mlm(model, example_input=torch.randn(2, 3, 32, 32), out_dir=tmp_path, export_program=False, **WHEN)
    assert planned["href"] == written.assets["model"].href
    assert written.assets["model"].extra_fields["file:size"] == (tmp_path / "smallunet.safetensors").stat().st_size
    assert "description" not in written.assets["model"].to_dict()


def test_model_that_does_not_export_falls_back_to_torchscript(tmp_path, assert_valid):
    # ItemCall branches in Python on a tensor value: torch.export cannot capture it, TorchScript can
    with pytest.warns(MLMExportWarning) as caught:
        item = export_mlm(
            ItemCall(), example_input=torch.randn(1, 3, 16, 16), tasks="classification", out_dir=tmp_path, **WHEN
        )
    messages = [str(w.message) for w in caught]
    assert any(m.startswith("torch.export could not export ItemCall") for m in messages)
    assert any("is the torchscript file instead of the pt2 file" in m for m in messages)
    data = assert_valid(item)
    assert data["assets"]["model"]["mlm:artifact_type"] == "torch.jit.save"
    assert data["assets"]["weights"]["roles"] == ["mlm:weights"]
    files = sorted(f.name for f in tmp_path.iterdir())
    assert files == [
        "itemcall.environment.txt", "itemcall.json", "itemcall.requirements.txt", "itemcall.safetensors",
        "itemcall.torchscript",
    ]  # fmt: skip
    # torch.export prints a failed export's partial graph to sys.stderr itself; mlm-export says why in one line
    # and no longer swaps sys.stderr to hide that (a process-wide change every other thread would see)
    assert [m.count("\n") for m in messages if m.startswith("torch.export could not export")] == [0]


def test_model_that_does_not_export_still_gets_weights(tmp_path, assert_valid):
    with pytest.warns(MLMExportWarning, match="torch.export could not export ItemCall"):
        item = export_mlm(
            ItemCall(), example_input=torch.randn(1, 3, 16, 16), tasks="classification", out_dir=tmp_path,
            artifacts=("pt2", "safetensors"), primary="safetensors", artifact_timeout=60, **WHEN,
        )  # fmt: skip
    data = assert_valid(item)
    # the weights are the mlm:model as asked; the failed .pt2 is one warning and leaves no file
    assert data["assets"]["model"]["mlm:artifact_type"] == "safetensors.torch.save_file"
    assert data["assets"]["model"]["roles"] == ["mlm:model", "mlm:weights"]
    assert sorted(f.name for f in tmp_path.iterdir()) == [
        "itemcall.environment.txt", "itemcall.json", "itemcall.requirements.txt", "itemcall.safetensors",
    ]  # fmt: skip


def test_detection_program_runs_without_the_code(tmp_path):
    torch.manual_seed(0)
    model = TinyDetector()
    # forward loops over the images in Python, so torch.export fixes the batch size: the Item must say so
    with pytest.warns(MLMExportWarning, match=r"fixed images.batch=2"):
        item = export_mlm(model, example_input=torch.randn(2, 3, 32, 32), out_dir=tmp_path, **WHEN)
    assert item.assets["model"].extra_fields["mlm:artifact_type"] == "torch.export.save"
    p = props(item)
    assert p["mlm:input"][0]["input"]["shape"] == [2, 3, -1, -1]
    assert {o["name"]: o["result"]["shape"][0] for o in p["mlm:output"]} == {"boxes": 2, "labels": 2, "scores": 2}
    program = torch.export.load(tmp_path / "tinydetector.pt2").module()
    x = torch.randn(2, 3, 48, 32)  # any image size still works
    got, want = program(x), model.eval()(x)
    assert len(got) == 2 and all(torch.equal(g["labels"], w["labels"]) for g, w in zip(got, want, strict=True))


def test_fixed_size_program_matches_item(tmp_path, assert_valid):
    with pytest.warns(MLMExportWarning, match=r"ran only at the example's size 16x16"):
        item = export_mlm(
            FixedSize(), example_input=torch.randn(2, 3, 16, 16), tasks="classification", out_dir=tmp_path, **WHEN
        )
    p = assert_valid(item)["properties"]
    assert p["mlm:input"][0]["input"]["shape"] == [-1, 3, 16, 16]
    program = torch.export.load(tmp_path / "fixedsize.pt2").module()
    assert program(torch.randn(5, 3, 16, 16)).shape == (5, 10)


def test_no_input_names_both_ways():
    with pytest.raises(InputRequiredError, match=r"example_input=.*datamodule="):
        export_mlm(Regressor())


def test_failing_model_names_what_was_tried(tmp_path):
    with pytest.raises(TraceError, match=r"float32\[1, 4, 8, 8\]"):
        export_mlm(Regressor(in_channels=3), example_input=torch.randn(2, 4, 8, 8), out_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def test_invalid_name_is_explained():
    with pytest.raises(InvalidOptionError, match="name='epoch=3-step=40' is not a valid mlm:name"):
        export_mlm(Regressor(), example_input=torch.randn(1, 3, 8, 8), tasks="regression", name="epoch=3-step=40")


def test_default_name_made_valid_from_class_name():
    class _x(torch.nn.Module):  # noqa: N801 - a class name the schema would reject
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(2, 2)

        def forward(self, x):
            return self.fc(x)

    item = export_mlm(_x(), example_input=torch.randn(2, 2), tasks="regression", **WHEN)
    assert props(item)["mlm:name"] == "model-x"


def test_band_count_mismatch_is_reported_not_written(tmp_path):
    with pytest.raises(InvalidOptionError, match="2 bands are named .* but input 'x' has 3 channels"):
        export_mlm(
            Regressor(), example_input=torch.randn(1, 3, 8, 8), tasks="regression", bands=["a", "b"], out_dir=tmp_path
        )
    assert list(tmp_path.iterdir()) == []


def test_class_count_mismatch_is_reported():
    with pytest.raises(InvalidOptionError, match="3 classes are named"):
        export_mlm(
            torchvision.models.resnet18(num_classes=4),
            example_input=torch.randn(1, 3, 32, 32),
            tasks="classification",
            classes=["a", "b", "c"],
        )


def test_unknown_task_is_rejected():
    with pytest.raises(InvalidOptionError, match="tasks= must list MLM tasks"):
        export_mlm(Regressor(), example_input=torch.randn(1, 3, 8, 8), tasks="clasification")


def test_missing_datetime_warns_and_defaults(assert_valid):
    with pytest.warns(MLMExportWarning, match="datetime="):
        item = export_mlm(Regressor(), example_input=torch.randn(1, 3, 8, 8), tasks="regression")
    assert item.datetime is not None
    assert item.geometry is None and item.bbox is None
    assert_valid(item)


def test_extent_and_metadata_options(assert_valid):
    import datetime as dt

    item = export_mlm(
        Regressor(),
        example_input=torch.randn(1, 3, 8, 8),
        tasks="regression",
        bbox=(5.0, 45.0, 11.0, 48.0),
        start_datetime=dt.datetime(2020, 1, 1, tzinfo=dt.UTC),
        end_datetime=dt.datetime(2021, 1, 1, tzinfo=dt.UTC),
        license="MIT",
        description="Biomass regression",
        pretrained=False,
        batch_size=16,
        hyperparameters={"lr": 1e-3, "loss fn": "mse", "weights": torch.tensor([1.0, 2.0]), "bad": float("nan")},
    )
    data = assert_valid(item)
    p = data["properties"]
    assert data["bbox"] == [5.0, 45.0, 11.0, 48.0]
    assert data["geometry"]["type"] == "Polygon"
    assert p["datetime"] is None and p["start_datetime"].startswith("2020-01-01")
    assert p["mlm:pretrained"] is False and p["mlm:pretrained_source"] is None
    assert p["mlm:batch_size_suggestion"] == 16
    assert p["mlm:hyperparameters"] == {"lr": 1e-3, "loss_fn": "mse", "weights": [1.0, 2.0], "bad": "nan"}
    assert p["license"] == "MIT"


def test_bad_bbox_is_rejected():
    with pytest.raises(InvalidOptionError, match="bbox="):
        export_mlm(Regressor(), example_input=torch.randn(1, 3, 8, 8), tasks="regression", bbox=(500, 0, 1, 1))


def test_validation_warn_mode_warns_instead_of_raising():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MLMExportWarning)
        with pytest.raises(ItemValidationError, match="fails"):
            export_mlm(
                Regressor(), example_input=torch.randn(1, 3, 8, 8), tasks="regression", properties={"mlm:bogus": 1}
            )
    with pytest.warns(MLMExportWarning, match=r"mlm:bogus"):
        export_mlm(
            Regressor(),
            example_input=torch.randn(1, 3, 8, 8),
            tasks="regression",
            properties={"mlm:bogus": 1},
            validate="warn",
            **WHEN,
        )


def test_framework_version_is_semver():
    from mlm_export._resolve import framework_version
    from mlm_export.mlm import SEMVER

    for raw, expected in [
        ("2.14.1+cu128", "2.14.1+cu128"),
        ("2.6.0a0+git1234abc", "2.6.0-a0+git1234abc"),
        ("2.5.0.dev20240801+cpu", "2.5.0-dev20240801+cpu"),
        ("2.3.1", "2.3.1"),
    ]:
        assert framework_version(raw) == expected
        assert SEMVER.match(framework_version(raw))


def test_core_imports_without_lightning_or_torchgeo():
    """The core needs torch, pystac, pydantic and safetensors (and jsonschema): integrations load on use."""
    import subprocess
    import sys

    code = (
        "import sys, torch, mlm_export\n"
        "from mlm_export import export_mlm\n"
        "m = torch.nn.Linear(4, 2)\n"
        "export_mlm(m, example_input=torch.zeros(2, 4), tasks='regression', validate='warn',"
        " datetime=__import__('datetime').datetime(2024, 1, 1))\n"
        "optional = ('lightning', 'torchgeo', 'torchvision', 'timm', 'kornia', 'huggingface_hub')\n"
        "print(sorted(n for n in optional if n in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
