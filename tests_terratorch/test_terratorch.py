"""TerraTorch's tasks, trained on synthetic batches with the callback and exported with export_mlm: every Item
says the task, classes, bands and normalization TerraTorch was given, without tasks= or example_input=."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from terratorch.datamodules.dummy_datamodule import DummyDataModule
from terratorch.datamodules.utils import Normalize
from terratorch.tasks import (
    ClassificationTask,
    PixelwiseRegressionTask,
    SemanticSegmentationTask,
)
from torch.utils.data import DataLoader, Dataset

from mlm_export import MLMExportCallback, MLMExportWarning, export_mlm, validate_item

CLASSES = ["water", "land", "cloud"]
#: When the (synthetic) training data was taken: nothing in it says so.
WHEN = dt.datetime(2024, 6, 1, tzinfo=dt.UTC)
#: A TerraTorch backbone that names its bands (``model_bands``); built without its pretrained weights.
BANDS = ["BLUE", "GREEN", "RED", "NIR_NARROW", "SWIR_1", "SWIR_2"]


def _args(**extra: Any) -> dict[str, Any]:
    return {"backbone": "timm_resnet18", "backbone_pretrained": False, "backbone_in_chans": 6, **extra}


class LabelledImages(Dataset[dict[str, torch.Tensor]]):
    """Scene classification samples as TerraTorch's datasets give them: {"image": [C, H, W], "label": []}."""

    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"image": torch.randn(6, 32, 32), "label": torch.tensor(i % len(CLASSES))}


class Scenes(pl.LightningDataModule):
    def __init__(self) -> None:
        super().__init__()
        self.batch_size = 2

    def train_dataloader(self) -> DataLoader[dict[str, torch.Tensor]]:
        return DataLoader(LabelledImages(), batch_size=self.batch_size)

    def val_dataloader(self) -> DataLoader[dict[str, torch.Tensor]]:
        return DataLoader(LabelledImages(), batch_size=self.batch_size)


class NormalizedMasks(DummyDataModule):
    """TerraTorch's dummy segmentation data with the normalization its generic datamodules keep in ``aug``."""

    MEANS = [100.0, 200.0, 300.0, 400.0, 500.0, 600.0]
    STDS = [10.0, 20.0, 30.0, 40.0, 50.0, 60.0]

    def __init__(self) -> None:
        super().__init__(
            batch_size=2,
            num_workers=0,
            train_samples=4,
            val_samples=2,
            channels=6,
            height=32,
            width=32,
            segmentation=True,
            num_classes=len(CLASSES),
        )
        self.aug = Normalize(self.MEANS, self.STDS)


def _fit(task: pl.LightningModule, dm: pl.LightningDataModule, root: Path) -> list[dict[str, Any]]:
    trainer = pl.Trainer(
        max_epochs=1,
        default_root_dir=root,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[
            ModelCheckpoint(dirpath=root / "ckpt"),
            MLMExportCallback(name="TerraTorch model", license="MIT", datetime=WHEN),
        ],
    )
    trainer.fit(task, dm)
    ckpts = sorted((root / "ckpt").glob("*.ckpt"))
    assert ckpts, "no checkpoint was saved"
    items = []
    for ckpt in ckpts:
        item = ckpt.with_name(ckpt.name.removesuffix(".ckpt") + ".mlm.json")
        assert item.is_file(), f"no Item beside {ckpt.name}"
        data = json.loads(item.read_text())
        validate_item(data)
        items.append(data)
    return items


def test_segmentation_task_gets_items_from_the_callback(tmp_path: Path) -> None:
    task = SemanticSegmentationTask(
        model_factory="EncoderDecoderFactory",
        model_args=_args(decoder="FCNDecoder", num_classes=3),
        loss="ce",
        ignore_index=-1,
        class_names=CLASSES,
    )
    (item,) = _fit(task, NormalizedMasks(), tmp_path)
    props = item["properties"]
    assert props["mlm:tasks"] == ["semantic-segmentation"]
    assert props["mlm:architecture"] == "timm_resnet18 + FCNDecoder"
    (out,) = props["mlm:output"]
    assert out["result"]["shape"] == [-1, 3, -1, -1]
    assert out["result"]["dim_order"] == ["batch", "class", "height", "width"]
    assert [c["name"] for c in out["classification:classes"]] == CLASSES
    (inp,) = props["mlm:input"]
    assert inp["input"]["shape"][:2] == [-1, 6]
    scaling = inp["value_scaling"]
    assert [(s["type"], s["mean"], s["stddev"]) for s in scaling] == [
        ("z-score", m, s) for m, s in zip(NormalizedMasks.MEANS, NormalizedMasks.STDS, strict=True)
    ]


def test_classification_task_gets_items_from_the_callback(tmp_path: Path) -> None:
    task = ClassificationTask(
        model_factory="EncoderDecoderFactory",
        model_args=_args(decoder="IdentityDecoder", num_classes=3),
        loss="ce",
        class_names=CLASSES,
    )
    (item,) = _fit(task, Scenes(), tmp_path)
    props = item["properties"]
    assert props["mlm:tasks"] == ["classification"]
    (out,) = props["mlm:output"]
    assert out["result"]["shape"] == [-1, 3]
    assert [c["name"] for c in out["classification:classes"]] == CLASSES


def test_pixelwise_regression_task_gets_items_from_the_callback(tmp_path: Path) -> None:
    task = PixelwiseRegressionTask(
        model_factory="EncoderDecoderFactory",
        model_args=_args(decoder="FCNDecoder"),
        loss="mse",
    )
    dm = DummyDataModule(batch_size=2, num_workers=0, train_samples=4, val_samples=2, channels=6, height=32, width=32)
    (item,) = _fit(task, dm, tmp_path)
    props = item["properties"]
    assert props["mlm:tasks"] == ["regression"]
    (out,) = props["mlm:output"]
    assert out["result"]["shape"][0] == -1 and out["result"]["shape"][-2:] == [-1, -1]


def test_bands_come_from_the_backbones_model_bands(tmp_path: Path) -> None:
    task = SemanticSegmentationTask(
        model_factory="EncoderDecoderFactory",
        model_args={
            "backbone": "ssl4eol_resnet18_landsat_tm_toa_moco",
            "backbone_pretrained": False,
            "backbone_model_bands": BANDS,
            "decoder": "FCNDecoder",
            "num_classes": 3,
        },
        loss="ce",
        ignore_index=-1,
        class_names=CLASSES,
    )
    item = export_mlm(task, NormalizedMasks(), name="Landsat segmentation", license="MIT", datetime=WHEN)
    props = item.to_dict()["properties"]
    (inp,) = props["mlm:input"]
    assert inp["bands"] == BANDS
    assert inp["input"]["dim_order"][1] == "bands"


def test_export_mlm_of_a_task_writes_a_runnable_prediction_program(tmp_path: Path) -> None:
    task = SemanticSegmentationTask(
        model_factory="EncoderDecoderFactory",
        model_args=_args(decoder="FCNDecoder", num_classes=3),
        loss="ce",
        ignore_index=-1,
        class_names=CLASSES,
    )
    # TerraTorch's decoder path specialises on the traced size: the program is kept and the Item says where it runs.
    with pytest.warns(MLMExportWarning, match="not at every size the Item allows"):
        item = export_mlm(
            task, NormalizedMasks(), name="TerraTorch segmentation", license="MIT", datetime=WHEN, out_dir=tmp_path
        )
    data = item.to_dict()
    validate_item(data)
    assert data["properties"]["mlm:tasks"] == ["semantic-segmentation"]
    model_asset = next(a for a in data["assets"].values() if "mlm:model" in a["roles"])
    assert model_asset["mlm:artifact_type"] == "torch.export.save"
    program = torch.export.load(tmp_path / Path(model_asset["href"]).name)
    task.eval()
    assert "32" in model_asset["description"], model_asset["description"]
    x = torch.randn(2, 6, 32, 32)  # the size it was traced at, which its description says it runs
    with torch.no_grad():
        got = program.module()(x)
        want = task(x).output
    assert isinstance(got, torch.Tensor) and got.shape == (2, 3, *x.shape[-2:])
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def test_terratorch_fit_config_with_the_callback_in_yaml(tmp_path: Path) -> None:
    """``terratorch fit --config`` (its LightningCLI) builds the callback from class_path and init_args."""
    config = tmp_path / "config.yaml"
    config.write_text(
        textwrap.dedent(
            f"""
            seed_everything: 0
            trainer:
              accelerator: cpu
              max_epochs: 1
              logger: false
              enable_progress_bar: false
              default_root_dir: {tmp_path}
              callbacks:
                - class_path: lightning.pytorch.callbacks.ModelCheckpoint
                  init_args:
                    dirpath: {tmp_path / "ckpt"}
                - class_path: mlm_export.MLMExportCallback
                  init_args:
                    name: TerraTorch water segmentation
                    license: CC-BY-4.0
                    datetime: 2024-06-01T00:00:00Z
                    strict: true
            model:
              class_path: terratorch.tasks.SemanticSegmentationTask
              init_args:
                model_factory: EncoderDecoderFactory
                model_args:
                  backbone: timm_resnet18
                  backbone_pretrained: false
                  backbone_in_chans: 6
                  decoder: FCNDecoder
                  num_classes: 3
                loss: ce
                ignore_index: -1
                class_names: [water, land, cloud]
            data:
              class_path: terratorch.datamodules.dummy_datamodule.DummyDataModule
              init_args:
                batch_size: 2
                num_workers: 0
                train_samples: 4
                val_samples: 2
                channels: 6
                height: 32
                width: 32
                segmentation: true
                num_classes: 3
            """
        )
    )
    done = subprocess.run(
        [sys.executable, "-m", "terratorch", "fit", "--config", str(config)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (item_path,) = (tmp_path / "ckpt").glob("*.mlm.json")
    data = json.loads(item_path.read_text())
    validate_item(data)
    props = data["properties"]
    assert props["mlm:name"] == "TerraTorch water segmentation"
    assert props["mlm:tasks"] == ["semantic-segmentation"]
    assert [c["name"] for c in props["mlm:output"][0]["classification:classes"]] == CLASSES
    (config_asset,) = [a for a in data["assets"].values() if a["type"] == "application/yaml"]
    kept = (item_path.parent / config_asset["href"]).read_text()
    assert "terratorch.tasks.SemanticSegmentationTask" in kept and "mlm_export.MLMExportCallback" in kept
    assert Path(config_asset["href"]).name in props["processing:lineage"]
