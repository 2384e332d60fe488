"""No silent guesses: per-pixel maps, fixed sizes, versions and dtypes are stated only from evidence."""

from __future__ import annotations

import datetime as dt

import pytest
import torch
from torch import nn

from mlm_export import MLMExportWarning, TaskInferenceError, TraceError, export_mlm, inspect_model
from mlm_export._resolve import framework_version

WHEN = {"datetime": dt.datetime(2024, 6, 1, tzinfo=dt.UTC)}


class SuperResolution(nn.Module):
    """Image in, image twice as large out (PixelShuffle): a per-pixel map that is not class scores."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Conv2d(3, 12, 3, padding=1)
        self.up = nn.PixelShuffle(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.body(x))


class Denoiser(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(4, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 4, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x - self.net(x)


@pytest.mark.parametrize(("model", "channels"), [(SuperResolution(), 3), (Denoiser(), 4)])
def test_image_to_image_models_are_not_segmenters(model, channels):
    x = torch.zeros(1, channels, 32, 32)
    with pytest.raises(
        TaskInferenceError, match=rf"per-pixel map of {channels} channels may be class scores, an image"
    ):
        export_mlm(model, example_input=x, **WHEN)
    item = export_mlm(model, example_input=x, tasks="super-resolution" if channels == 3 else "regression", **WHEN)
    assert "class" not in item.properties["mlm:output"][0]["result"]["dim_order"]


def test_segmentation_library_is_evidence(assert_valid):
    smp = pytest.importorskip("segmentation_models_pytorch")
    model = smp.Unet("resnet18", encoder_weights=None, in_channels=3, classes=4)
    item = export_mlm(model, example_input=torch.zeros(1, 3, 64, 64), **WHEN)
    assert_valid(item)
    assert item.properties["mlm:tasks"] == ["semantic-segmentation"]
    out = item.properties["mlm:output"][0]
    assert out["result"]["dim_order"] == ["batch", "class", "height", "width"]
    assert "segmentation_models_pytorch Unet" in out["description"]


def test_known_class_count_is_evidence():
    item = export_mlm(Denoiser(), example_input=torch.zeros(1, 4, 32, 32), classes=list("abcd"), **WHEN)
    assert item.properties["mlm:tasks"] == ["semantic-segmentation"]


class Multiple64(nn.Module):
    """Runs only at sizes divisible by 64 (as encoders with six stride-2 stages do)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] % 64 or x.shape[-2] % 64:
            raise ValueError(f"height and width must be multiples of 64, got {tuple(x.shape[-2:])}")
        return self.conv(x)


def test_probe_tries_larger_sizes_until_one_runs():
    facts = inspect_model(Multiple64(), torch.zeros(1, 3, 64, 64))  # +32 (96) fails, x2 (128) runs
    assert facts.inputs[0].shape == (-1, 3, -1, -1)
    assert facts.outputs[0].shape == (-1, 2, -1, -1)


class Only48(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-2:]) != (48, 48):
            raise ValueError("this model is calibrated for 48x48 tiles")
        return self.conv(x)


def test_probe_warns_with_the_reason_when_no_size_runs():
    with pytest.warns(MLMExportWarning, match=r"ran only at the example's size 48x48.*80x80: ValueError: this model"):
        facts = inspect_model(Only48(), torch.zeros(1, 3, 48, 48))
    assert facts.inputs[0].shape == (-1, 3, 48, 48)


def test_framework_version_is_never_a_placeholder(monkeypatch):
    assert framework_version("nightly") is None
    monkeypatch.setattr(torch, "__version__", "nightly")
    model = nn.Sequential(nn.Conv2d(3, 2, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    with pytest.warns(MLMExportWarning, match=r"leaves out mlm:framework_version"):
        item = export_mlm(model, example_input=torch.zeros(1, 3, 8, 8), tasks="similarity-search", **WHEN)
    assert "mlm:framework_version" not in item.properties


def test_integer_example_into_a_float_model_is_an_error_naming_the_input(tmp_path):
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 2))  # meta kernels would accept int64 here
    with pytest.raises(TraceError, match=r"input 'input' is int64 but the model's weights are float32"):
        export_mlm(model, example_input=torch.zeros(1, 3, 2, 2, dtype=torch.int64), tasks="regression",
                   out_dir=tmp_path, **WHEN)  # fmt: skip
    assert list(tmp_path.iterdir()) == []


def test_integer_input_a_model_takes_still_works():
    class Tokens(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(10, 4)

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            return self.embed(ids).mean(1)

    item = export_mlm(Tokens(), example_input=torch.zeros(2, 5, dtype=torch.int64), tasks="similarity-search", **WHEN)
    assert item.properties["mlm:input"][0]["input"]["data_type"] == "int64"


def test_one_default_image_size():
    from mlm_export import _convert as convert
    from mlm_export._sources import dummy, weights

    assert convert.DEFAULT_IMAGE_SIZE is dummy.DEFAULT_IMAGE_SIZE is weights.DEFAULT_IMAGE_SIZE
