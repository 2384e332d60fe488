"""Tasks from the evidence a run holds: the training targets, the module's loss, its hyperparameters.

The README's callback snippet, pasted with a plain module nobody told the task, writes true Items; only a
model with no evidence at all (a denoiser) is left without, said once at the end of fit.
"""

from __future__ import annotations

import datetime as dt
import json
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from mlm_export import MLMExportWarning, TaskInferenceError, export_mlm

L = pytest.importorskip("lightning")
from lightning.pytorch.callbacks import ModelCheckpoint  # noqa: E402

from mlm_export import MLMExportCallback  # noqa: E402

WHEN = {"datetime": dt.datetime(2024, 6, 1, tzinfo=dt.UTC)}
G = torch.Generator().manual_seed(0)
X = torch.randn(8, 3, 16, 16, generator=G)


class Module(L.LightningModule):
    """A plain module: a net, a loss function applied in training_step, nothing that names the task."""

    def __init__(self, net: nn.Module, loss=F.cross_entropy) -> None:
        super().__init__()
        self.net = net
        self._loss = loss

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = (batch["image"], batch.get("mask", batch.get("label"))) if isinstance(batch, dict) else batch
        loss = self._loss(self(x), y)
        self.log("train_loss", loss)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def segmenter(classes: int = 3) -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, classes, 1))


def classifier(classes: int = 5) -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, classes))


def fit(tmp_path: Path, module: L.LightningModule, loader: DataLoader, **options):
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", monitor="train_loss", save_top_k=2, save_last=True)
    trainer = L.Trainer(
        default_root_dir=tmp_path, max_epochs=2, logger=False, enable_progress_bar=False,
        enable_model_summary=False, accelerator="cpu", devices=1,
        callbacks=[ckpt, MLMExportCallback(name="UNet water segmentation", license="CC-BY-4.0", **options)],
    )  # fmt: skip
    trainer.fit(module, loader)
    return tmp_path / "ckpt"


def items_beside_every_checkpoint(directory: Path, assert_valid) -> list[dict]:
    checkpoints = sorted(directory.glob("*.ckpt"))
    assert len(checkpoints) == 3  # two best and last
    items = []
    for ckpt in checkpoints:
        item = json.loads(ckpt.with_suffix(".mlm.json").read_text())
        assert_valid(item)
        items.append(item)
    return items


def test_readme_snippet_on_a_plain_segmentation_module_writes_true_items(tmp_path, assert_valid):
    y = torch.randint(0, 3, (8, 16, 16), generator=G)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MLMExportWarning)  # no date is known: not this test's subject
        directory = fit(tmp_path, Module(segmenter()), DataLoader(TensorDataset(X, y), batch_size=4))
    for item in items_beside_every_checkpoint(directory, assert_valid):
        props = item["properties"]
        assert props["mlm:tasks"] == ["semantic-segmentation"]
        assert props["mlm:name"] == "UNet water segmentation"  # the user's name, not an output's
        out = props["mlm:output"][0]
        assert out["result"]["dim_order"] == ["batch", "class", "height", "width"]
        assert "Task from the training targets: int64 mask [B, H, W], values 0..2" in out["description"]


def test_readme_snippet_on_a_plain_classification_module_writes_true_items(tmp_path, assert_valid):
    y = torch.randint(0, 5, (8,), generator=G)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MLMExportWarning)
        directory = fit(tmp_path, Module(classifier()), DataLoader(TensorDataset(X, y), batch_size=4))
    for item in items_beside_every_checkpoint(directory, assert_valid):
        assert item["properties"]["mlm:tasks"] == ["classification"]
        out = item["properties"]["mlm:output"][0]
        assert out["result"]["dim_order"] == ["batch", "class"]
        assert "int64 labels [B], values " in out["description"]


class Denoiser(L.LightningModule):
    """Image in, image out, no targets: no evidence of any task."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        (x,) = batch
        loss = F.mse_loss(self(x + 0.1 * torch.randn_like(x)), x)
        self.log("train_loss", loss)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def test_no_evidence_at_all_is_said_once_at_the_end_of_fit(tmp_path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        directory = fit(tmp_path, Denoiser(), DataLoader(TensorDataset(X), batch_size=4))
    assert len(list(directory.glob("*.ckpt"))) == 3
    assert not list(directory.glob("*.mlm.json"))
    ours = [str(w.message) for w in caught if issubclass(w.category, MLMExportWarning)]
    said = [m for m in ours if "task" in m]
    assert len(said) == 1, ours
    line = said[0]
    assert line.startswith("MLMExportCallback wrote no Item for 3 checkpoints: cannot tell the task of output")
    assert "Pass tasks= to MLMExportCallback" in line
    assert "\n" not in line and ".." not in line


def test_no_evidence_with_strict_stops_before_training(tmp_path):
    with pytest.raises(TaskInferenceError, match="cannot tell the task of output 'output'"):
        fit(tmp_path, Denoiser(), DataLoader(TensorDataset(X), batch_size=4), strict=True)


def test_denoiser_stays_an_error_in_export_mlm():
    with pytest.raises(TaskInferenceError, match=r"per-pixel map of 3 channels.*tasks="):
        export_mlm(Denoiser(), example_input=X, **WHEN)


# ------------------------------------------------------------------------------------------- export_mlm


class Data(L.LightningDataModule):
    """A datamodule whose batches are tuples or TorchGeo-style dicts."""

    def __init__(self, y: torch.Tensor, key: str | None = None, x: torch.Tensor = X) -> None:
        super().__init__()
        self.x, self.y, self.key = x, y, key

    def train_dataloader(self):
        if self.key is None:
            return DataLoader(TensorDataset(self.x, self.y), batch_size=4)
        return DataLoader(Dicts(self.x, self.y, self.key), batch_size=4)


class Dicts(Dataset):
    def __init__(self, x: torch.Tensor, y: torch.Tensor, key: str) -> None:
        self.x, self.y, self.key = x, y, key

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"image": self.x[i], self.key: self.y[i]}


def described(item) -> tuple[list[str], str]:
    out = item.properties["mlm:output"][0]
    return item.properties["mlm:tasks"], out["description"]


CASES = {
    "segmentation tuple": (segmenter(3), torch.randint(0, 3, (8, 16, 16), generator=G), None,
                           "semantic-segmentation", "int64 mask [B, H, W], values 0..2"),
    "segmentation dict mask": (segmenter(4), torch.randint(0, 4, (8, 16, 16), generator=G), "mask",
                               "semantic-segmentation", "(batch['mask'])"),
    "segmentation ignore index": (segmenter(3), torch.where(torch.rand(8, 16, 16, generator=G) > 0.5, 255, 1), "mask",
                                  "semantic-segmentation", "and ignore value 255"),
    "binary mask": (segmenter(1), torch.randint(0, 2, (8, 1, 16, 16), generator=G).float(), "mask",
                    "semantic-segmentation", "0/1 mask [B, 1, H, W]"),
    "classification dict label": (classifier(5), torch.randint(0, 5, (8,), generator=G), "label",
                                  "classification", "int64 labels [B]"),
    "multi-label": (classifier(6), torch.randint(0, 2, (8, 6), generator=G).float(), "label",
                    "classification", "multi-label"),
    "regression": (classifier(2), torch.randn(8, 2, generator=G), None,
                   "regression", "float32 target shaped like the [B, 2] output"),
    "pixelwise regression": (segmenter(1), torch.randn(8, 16, 16, generator=G), "mask",
                             "regression", "per pixel"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(CASES))
def test_export_mlm_tells_the_task_from_the_datamodule_targets(case, assert_valid):
    net, y, key, task, reason = CASES[case]
    item = export_mlm(net, Data(y, key), **WHEN)
    assert_valid(item)
    tasks, description = described(item)
    assert tasks == [task]
    assert "Task from the training targets: " in description and reason in description, description


def test_mask_values_beyond_the_channels_are_no_evidence():
    """Values 0..4 beside 3 channels: not a 3-class segmentation; the task still needs saying."""
    with pytest.raises(TaskInferenceError, match="tasks="):
        export_mlm(segmenter(3), Data(torch.randint(0, 5, (8, 16, 16), generator=G)), **WHEN)


def test_a_float_target_shaped_like_the_input_is_no_evidence():
    """A denoiser trained on (noisy, clean) pairs: image to image, which MLM names no task for."""
    with pytest.raises(TaskInferenceError, match="per-pixel map of 3 channels"):
        export_mlm(segmenter(3), Data(torch.randn(8, 3, 16, 16, generator=G)), **WHEN)


class WithLoss(nn.Module):
    def __init__(self, net: nn.Module, attr: str, loss) -> None:
        super().__init__()
        self.net = net
        setattr(self, attr, loss)

    def forward(self, x):
        return self.net(x)


LOSSES = {
    "criterion CrossEntropyLoss on maps": (segmenter(3), "criterion", nn.CrossEntropyLoss(), "semantic-segmentation",
                                           "self.criterion is nn.CrossEntropyLoss"),
    "loss_fn F.cross_entropy on scores": (classifier(4), "loss_fn", F.cross_entropy, "classification",
                                          "self.loss_fn is F.cross_entropy"),
    "loss BCEWithLogitsLoss on scores": (classifier(4), "loss", nn.BCEWithLogitsLoss(), "classification",
                                         "multi-label"),
    "any name MSELoss": (classifier(1), "mse", nn.MSELoss(), "regression", "self.mse is nn.MSELoss"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(LOSSES))
def test_the_modules_loss_tells_the_task(case, assert_valid):
    net, attr, loss, task, reason = LOSSES[case]
    item = export_mlm(WithLoss(net, attr, loss), example_input=X[:2], **WHEN)
    assert_valid(item)
    tasks, description = described(item)
    assert tasks == [task]
    assert "Task from the module's loss: " in description and reason in description, description


def test_an_mse_loss_on_an_image_to_image_model_is_no_evidence():
    with pytest.raises(TaskInferenceError, match="per-pixel map of 3 channels"):
        export_mlm(WithLoss(segmenter(3), "criterion", nn.MSELoss()), example_input=X[:2], **WHEN)


class Named(L.LightningModule):
    def __init__(self, net: nn.Module, task: str | None = None, num_classes: int | None = None) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["net"])
        self.net = net

    def forward(self, x):
        return self.net(x)


def test_hparams_task_and_num_classes_tell_the_task(assert_valid):
    item = export_mlm(Named(segmenter(3), task="multiclass"), example_input=X[:2], **WHEN)
    assert_valid(item)
    tasks, description = described(item)
    assert tasks == ["semantic-segmentation"]
    assert "Task from the hyperparameters: task='multiclass'" in description
    item = export_mlm(Named(segmenter(3), num_classes=3), example_input=X[:2], **WHEN)
    assert described(item) == (
        ["semantic-segmentation"],
        "Task from the hyperparameters: num_classes=3 beside a [B, 3, H, W] output.",
    )
