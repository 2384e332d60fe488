"""A dummy batch from what the objects state: torchvision, timm, TorchGeo task + datamodule, example_input_array."""

from __future__ import annotations

import datetime as dt

import pytest
import torch
import torchvision
from rich.console import Console
from torch import nn

from mlm_export import InputRequiredError, export_mlm
from mlm_export._summary import item_table

WHEN = {"datetime": dt.datetime(2024, 6, 1, tzinfo=dt.UTC)}


def first_input(item) -> dict:
    return item.properties["mlm:input"][0]


def test_torchvision_size_is_the_weights_crop_size(assert_valid):
    item = export_mlm(torchvision.models.efficientnet_b3(num_classes=10), tasks="classification", **WHEN)
    assert_valid(item)
    described = first_input(item)["description"]
    # b0..b7 all build EfficientNet: the one matched by its parameters crops at 300, not b0's 224
    assert "zeros [2, 3, 300, 300]" in described and "EfficientNet_B3_Weights" in described


def test_torchvision_resnet_without_example(assert_valid):
    item = export_mlm(torchvision.models.resnet18(num_classes=10), tasks="classification", **WHEN)
    assert_valid(item)
    assert first_input(item)["input"]["shape"] == [-1, 3, -1, -1]
    assert "224x224 px, the crop size of torchvision's ResNet18_Weights" in first_input(item)["description"]


def test_video_model_reads_channel_first_from_its_conv3d(assert_valid):
    item = export_mlm(torchvision.models.video.r3d_18(num_classes=5), tasks="classification", **WHEN)
    assert_valid(item)
    spec = first_input(item)["input"]
    assert spec["dim_order"] == ["batch", "channel", "time", "height", "width"]
    assert spec["shape"][1:3] == [3, 16]  # 3 channels, the 16-frame clips R3D_18_Weights documents
    assert "16 frames" in first_input(item)["description"]


def test_video_given_example_is_read_by_the_first_layer_not_the_rank(assert_valid):
    """An example of 8 frames: the Item says channel=3, time=8 (not time=3, channel=8)."""
    model = torchvision.models.video.r3d_18(num_classes=5)
    item = export_mlm(model, example_input=torch.zeros(1, 3, 8, 64, 64), tasks="classification", **WHEN)
    spec = first_input(item)["input"]
    assert spec["dim_order"][:3] == ["batch", "channel", "time"]
    assert spec["shape"][1] == 3
    assert first_input(item)["description"] == "Traced with the example_input= batch."


def test_timm_size_from_pretrained_cfg(assert_valid):
    timm = pytest.importorskip("timm")
    model = timm.create_model("resnet10t", num_classes=3)
    c, h, w = model.pretrained_cfg["input_size"]
    item = export_mlm(model, tasks="classification", **WHEN)
    assert_valid(item)
    assert f"zeros [2, {c}, {h}, {w}]" in first_input(item)["description"]
    assert "timm pretrained_cfg['input_size']" in first_input(item)["description"]


def test_torchgeo_task_and_datamodule_before_setup_with_no_data(tmp_path, assert_valid):
    tasks = pytest.importorskip("torchgeo.tasks")
    from torchgeo.datamodules import EuroSATDataModule

    root = tmp_path / "eurosat"  # never created: nothing is downloaded or set up
    task = tasks.Classification(model="resnet18", in_channels=13, num_classes=10)
    item = export_mlm(task, EuroSATDataModule(batch_size=4, root=root), **WHEN)
    assert_valid(item)
    inp = first_input(item)
    assert inp["input"]["shape"] == [-1, 13, -1, -1] and inp["bands"][0] == "B01"
    assert "zeros [2, 13, 64, 64]" in inp["description"] and "EuroSAT's documented image size" in inp["description"]
    assert item.properties["mlm:tasks"] == ["classification"]
    assert not root.exists()


def test_example_input_array_is_used():
    L = pytest.importorskip("lightning")

    class Module(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = nn.Sequential(nn.Conv2d(5, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
            self.example_input_array = torch.zeros(2, 5, 40, 40)

        def forward(self, x):
            return self.net(x)

    item = export_mlm(Module(), tasks="classification", **WHEN)
    assert first_input(item)["description"] == "Traced with Module.example_input_array."


def test_summary_says_where_the_batch_came_from():
    item = export_mlm(torchvision.models.resnet18(num_classes=10), tasks="classification", **WHEN)
    console = Console(width=200, record=True)
    console.print(item_table(item))
    text = console.export_text()
    assert "traced with" in text and "ResNet18_Weights" in text


def test_missing_size_is_named():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    with pytest.raises(InputRequiredError, match=r"missing the input's height and width.*example_input=") as info:
        export_mlm(model, tasks="classification", **WHEN)
    assert "channels" not in info.value.missing[0]


def test_missing_channels_and_size_are_named():
    with pytest.raises(InputRequiredError, match=r"missing the number of input channels.*; the input's height"):
        export_mlm(nn.Sequential(nn.Linear(4, 2)), tasks="regression", **WHEN)
