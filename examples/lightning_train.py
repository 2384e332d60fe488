"""Train a small segmentation model with Lightning and get an MLM Item next to every checkpoint.

Synthetic data, a few seconds on a CPU. Run: .venv/bin/python examples/lightning_train.py [OUT_DIR]
Then look at OUT_DIR/checkpoints/: *.ckpt, one *.mlm.json per checkpoint, and collection.json.
"""

from __future__ import annotations

import datetime as dt
import sys

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import nn
from torch.utils.data import DataLoader

from mlm_export import MLMExportCallback
from mlm_export.demo import BANDS, CLASSES, CMAP, SceneDataModule, TinyUNet


class Segmenter(L.LightningModule):
    def __init__(self, num_classes: int = 3, lr: float = 3e-3) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.model = TinyUNet(in_channels=len(BANDS), num_classes=num_classes)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.model(image)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = nn.functional.cross_entropy(self(batch[0]), batch[1])
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self.log("val_loss", nn.functional.cross_entropy(self(batch[0]), batch[1]))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.parameters(), lr=self.hparams.lr)


class Scenes(L.LightningDataModule):
    """The demo's synthetic scenes as a LightningDataModule: bands, classes, colors and normalization on it."""

    bands = [b["name"] for b in BANDS]
    classes = list(CLASSES.values())
    cmap = CMAP

    def __init__(self, batch_size: int = 8) -> None:
        super().__init__()
        self.batch_size = batch_size
        scenes = SceneDataModule(batch_size=batch_size)
        self.aug = scenes.aug  # the per-band normalization applied to the data
        self.train_set, self.val_set = scenes.train_dataset, scenes.val_dataset

    def train_dataloader(self) -> DataLoader[tuple[torch.Tensor, ...]]:
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader[tuple[torch.Tensor, ...]]:
        return DataLoader(self.val_set, batch_size=self.batch_size)


def main(out_dir: str = "lightning-output") -> None:
    torch.manual_seed(0)
    trainer = L.Trainer(
        max_epochs=4,
        default_root_dir=out_dir,
        accelerator="cpu",
        logger=False,
        callbacks=[
            ModelCheckpoint(dirpath=f"{out_dir}/checkpoints", monitor="val_loss", save_top_k=2, save_last=True),
            MLMExportCallback(
                name="TinyUNet water segmentation",
                license="CC-BY-4.0",
                bands=BANDS,
                start_datetime=dt.datetime(2024, 4, 1, tzinfo=dt.UTC),
                end_datetime=dt.datetime(2024, 9, 30, tzinfo=dt.UTC),
                bbox=(5.9, 45.8, 10.5, 47.8),
            ),
        ],
    )
    trainer.fit(Segmenter(), Scenes())
    print(f"Items and collection.json in {out_dir}/checkpoints")


if __name__ == "__main__":
    main(*sys.argv[1:])
