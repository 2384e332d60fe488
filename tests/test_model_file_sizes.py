"""Every model file runs wherever the Item says it may: the smallest size the architecture takes (its total
stride), sizes that are no multiple of it and a large one; a ``.pt2`` that would refuse them is exported
size-oblivious, and each asset says which sizes it ran.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from mlm_export import MLMExportWarning, export_mlm, verify_item

WHEN = {"datetime": dt.datetime(2024, 1, 1, tzinfo=dt.UTC)}
RUNNABLE = ("pt2", "torchscript", "onnx")


def strided(classes: int = 2) -> nn.Module:
    """A total stride of 4 ending in a global pool: at 4x4 px its last map is 1x1, where torch.export specialises."""
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
        nn.Conv2d(4, 4, 3, stride=2, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, classes),
    ).eval()  # fmt: skip


def run_file(fmt: str, path: Path, x: torch.Tensor) -> torch.Tensor:
    """Load a model file the way a reader of the Item would, and run it on ``x``."""
    if fmt == "pt2":
        return torch.export.load(path).module()(x)
    if fmt == "torchscript":
        return torch.jit.load(path)(x)
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return torch.from_numpy(np.asarray(session.run(None, {name: x.numpy()})[0]))


def files_of(folder: Path, data: dict) -> dict[str, tuple[Path, str]]:
    """Runnable model files of an Item by format, with their asset description."""
    by_suffix = {".pt2": "pt2", ".torchscript": "torchscript", ".onnx": "onnx"}
    out = {}
    for asset in data["assets"].values():
        fmt = by_suffix.get(Path(asset["href"]).suffix)
        if fmt:
            out[fmt] = (folder / asset["href"], asset.get("description", ""))
    return out


def assert_every_file_runs_or_says_not(model: nn.Module, folder: Path, data: dict, sizes) -> dict[str, str]:
    shape = data["properties"]["mlm:input"][0]["input"]["shape"]
    assert shape[-2:] == [-1, -1]  # the Item allows any height and width
    files = files_of(folder, data)
    assert set(files) == set(RUNNABLE)
    for fmt, (path, description) in files.items():
        for h, w in sizes:
            x = torch.randn(1, 3, h, w, generator=torch.Generator().manual_seed(h * w))
            with torch.no_grad():
                expected = model(x)
            try:
                got = run_file(fmt, path, x)
            except Exception:
                assert f"x{h}x{w}): " in description.split("Refuses sizes the Item allows:")[-1], (fmt, h, w)
                continue
            torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
    return {fmt: d for fmt, (_, d) in files.items()}


def test_a_pt2_is_exported_so_that_it_runs_the_smallest_size_the_item_allows(tmp_path, assert_valid):
    from torch.fx.experimental import _config as fx_config

    torch.manual_seed(0)
    model = strided()
    before = fx_config.backed_size_oblivious
    item = export_mlm(
        model, example_input=torch.randn(2, 3, 16, 16), tasks="classification", out_dir=tmp_path,
        artifacts=RUNNABLE, **WHEN,
    )  # fmt: skip
    assert fx_config.backed_size_oblivious == before  # torch's option is set only while the export runs
    data = assert_valid(item)
    described = assert_every_file_runs_or_says_not(model, tmp_path, data, [(4, 4), (5, 5), (5, 7), (512, 512)])
    for fmt, description in described.items():
        assert "smallest size (1x3x4x4)" in description, (fmt, description)
        assert "size no multiple of the stride (1x3x5x5)" in description
        assert "large size (1x3x512x512)" in description
        assert "Refuses" not in description
    assert described["pt2"].startswith("Exported size-oblivious")
    assert data["assets"]["model"]["href"] == "./sequential.pt2"
    checks = {c.name: c for c in verify_item(tmp_path / "sequential.json")}
    assert all(c.ok for c in checks.values()), checks


def test_the_size_oblivious_option_is_restored_when_the_export_fails():
    from torch.fx.experimental import _config as fx_config

    from mlm_export._artifacts import _size_oblivious

    def failing_export() -> None:
        with _size_oblivious(True):
            assert fx_config.backed_size_oblivious is True
            raise RuntimeError("export failed")

    before = fx_config.backed_size_oblivious
    with pytest.raises(RuntimeError, match="export failed"):
        failing_export()
    assert fx_config.backed_size_oblivious == before


def test_a_model_with_fixed_sizes_gets_no_stride_cases(tmp_path, assert_valid):
    """An Item that fixes height and width is not run at other sizes, and its .pt2 is exported the usual way."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 2)).eval()
    with pytest.warns(MLMExportWarning, match="the model ran only at the example's size 8x8"):
        item = export_mlm(
            model, example_input=torch.randn(2, 3, 8, 8), tasks="classification", out_dir=tmp_path, artifacts="pt2",
            **WHEN,
        )  # fmt: skip
    assert item.properties["mlm:input"][0]["input"]["shape"] == [-1, 3, 8, 8]
    description = assert_valid(item)["assets"]["model"]["description"]
    assert "smallest size" not in description and "size-oblivious" not in description


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet18", "unet"])
def test_every_file_of_a_resnet18_and_a_unet_runs_at_32_33x47_and_512(name, tmp_path, assert_valid):
    torch.manual_seed(0)
    if name == "resnet18":
        model, options = torchvision.models.resnet18(num_classes=4).eval(), {"tasks": "classification"}
    else:
        smp = pytest.importorskip("segmentation_models_pytorch")
        model, options = smp.Unet("resnet18", encoder_weights=None, in_channels=3, classes=2).eval(), {}
    item = export_mlm(
        model, example_input=torch.randn(2, 3, 64, 64), out_dir=tmp_path, artifacts=(*RUNNABLE, "safetensors"),
        **options, **WHEN,
    )  # fmt: skip
    data = assert_valid(item)
    described = assert_every_file_runs_or_says_not(model, tmp_path, data, [(32, 32), (33, 47), (512, 512)])
    for description in described.values():
        assert "smallest size (1x3x32x32)" in description and "(1x3x33x47)" in description
    assert data["assets"]["model"]["href"].endswith(".pt2")
