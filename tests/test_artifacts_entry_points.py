"""artifacts= through the callback and mlm-export convert: the files beside each checkpoint, one mlm:model."""

from __future__ import annotations

import datetime as dt
import json

import pytest
import torch

pytest.importorskip("lightning")
from lightning.pytorch.callbacks import ModelCheckpoint  # noqa: E402

from mlm_export import MLMExportCallback  # noqa: E402
from mlm_export.cli import main  # noqa: E402
from mlm_export.errors import InvalidOptionError  # noqa: E402

from .conftest import plain_validate  # noqa: E402
from .test_callback import assert_catalog_true, fit, items_in  # noqa: E402

WHEN = {"datetime": dt.datetime(2024, 1, 1, tzinfo=dt.UTC)}


def test_callback_writes_the_named_files_beside_each_checkpoint(tmp_path):
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", monitor="val_loss", save_top_k=1)
    fit(tmp_path, ckpt, MLMExportCallback(artifacts=("torchscript", "onnx"), **WHEN), epochs=2)
    directory = tmp_path / "ckpt"
    (item,) = items_in(directory).values()
    assert plain_validate(item) == []
    assets = item["assets"]
    assert assets["model"]["mlm:artifact_type"] == "torch.jit.save"
    assert assets["onnx"]["roles"] == ["model"] and "mlm:artifact_type" not in assets["onnx"]
    assert assets["checkpoint"]["roles"] == ["mlm:checkpoint"]
    stem = assets["checkpoint"]["href"].removeprefix("./").removesuffix(".ckpt")
    names = {p.name for p in directory.iterdir()}
    assert {f"{stem}.torchscript", f"{stem}.onnx"} <= names
    assert len([n for n in names if n.endswith(".onnx")]) == 1  # the pruned checkpoint's files went with it
    assert_catalog_true(directory)


def test_callback_checkpoint_as_primary_keeps_it_the_model(tmp_path):
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_top_k=1, monitor="val_loss")
    fit(tmp_path, ckpt, MLMExportCallback(artifacts="checkpoint,pt2", **WHEN), epochs=1)
    (item,) = items_in(tmp_path / "ckpt").values()
    assert plain_validate(item) == []
    assert item["assets"]["model"]["href"].endswith(".ckpt")
    assert item["assets"]["program"]["roles"] == ["model"]
    assert [k for k, a in item["assets"].items() if "mlm:model" in a["roles"]] == ["model"]


def test_callback_rejects_unknown_formats_at_construction():
    with pytest.raises(InvalidOptionError, match=r"choose from pt2, torchscript, onnx, safetensors, checkpoint"):
        MLMExportCallback(artifacts=("keras",))


def test_convert_writes_artifacts_from_a_state_dict(tmp_path, capsys):
    model = torch.nn.Conv2d(3, 2, 3, padding=1)
    torch.save(model.state_dict(), tmp_path / "unet.pth")
    code = main([
        "convert", str(tmp_path / "unet.pth"), "--model", "torch.nn:Conv2d", "--init-args",
        '{"in_channels": 3, "out_channels": 2, "kernel_size": 3, "padding": 1}', "--input-shape", "1,3,32,32",
        "--tasks", "semantic-segmentation", "--artifacts", "onnx,pt2", "--primary", "pt2", "--quiet",
    ])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    item = json.loads((tmp_path / "unet.mlm.json").read_text())
    assert plain_validate(item) == []
    assets = item["assets"]
    assert assets["model"]["href"] == "./unet.pt2" and assets["model"]["mlm:artifact_type"] == "torch.export.save"
    assert assets["onnx"]["href"] == "./unet.onnx"
    assert assets["checkpoint"]["roles"] == ["mlm:checkpoint"]
    program = torch.export.load(str(tmp_path / "unet.pt2")).module()
    x = torch.randn(3, 3, 48, 48)
    assert torch.allclose(program(x), model.eval()(x), atol=1e-4)
    assert main(["verify", str(tmp_path / "unet.mlm.json"), "--quiet"]) == 0
