"""A TorchGeo task exported from its own datamodule (dict batches) gets runnable model files: its network is
exported as the task's forward calls it, and the weights file still loads into the task."""

from __future__ import annotations

import datetime as dt

import pytest
import safetensors.torch
import torch
from torch.utils.data import DataLoader, Dataset

from mlm_export import export_mlm

L = pytest.importorskip("lightning")
tasks = pytest.importorskip("torchgeo.tasks")

WHEN = {"datetime": dt.datetime(2024, 1, 1, tzinfo=dt.UTC)}


class Scenes(Dataset):
    """TorchGeo-style samples: {"image": [C, H, W], "label": int64 scalar}."""

    def __len__(self) -> int:
        return 8

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        g = torch.Generator().manual_seed(i)
        return {"image": torch.randn(3, 32, 32, generator=g), "label": torch.tensor(i % 4)}


class ScenesDataModule(L.LightningDataModule):
    def train_dataloader(self) -> DataLoader:
        return DataLoader(Scenes(), batch_size=4)


@pytest.mark.slow
def test_a_torchgeo_task_from_its_datamodule_gets_a_runnable_pt2_and_torchscript(tmp_path, assert_valid):
    torch.manual_seed(0)
    task = tasks.Classification(model="resnet18", weights=None, in_channels=3, num_classes=4).eval()
    item = export_mlm(task, ScenesDataModule(), out_dir=tmp_path, artifacts=("pt2", "torchscript", "safetensors"),
                      **WHEN)  # fmt: skip
    data = assert_valid(item)
    assert data["properties"]["mlm:tasks"] == ["classification"]
    model = data["assets"]["model"]
    assert model["href"].endswith(".pt2") and model["mlm:artifact_type"] == "torch.export.save"
    x = next(iter(ScenesDataModule().train_dataloader()))["image"]
    with torch.no_grad():
        expected = task(x)
    program = torch.export.load(tmp_path / model["href"]).module()
    torch.testing.assert_close(program(x), expected, atol=1e-4, rtol=1e-4)
    scripted = torch.jit.load(tmp_path / data["assets"]["torchscript"]["href"])
    torch.testing.assert_close(scripted(x), expected, atol=1e-4, rtol=1e-4)
    # the weights file is the task's own state dict: it loads into a fresh task
    fresh = tasks.Classification(model="resnet18", weights=None, in_channels=3, num_classes=4).eval()
    fresh.load_state_dict(safetensors.torch.load_file(tmp_path / data["assets"]["weights"]["href"]))
    with torch.no_grad():
        torch.testing.assert_close(fresh(x), expected)
