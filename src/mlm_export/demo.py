"""Demo: train a small segmentation model on synthetic 6-band imagery, export its MLM Item, print a summary.

Run with ``python -m mlm_export.demo [OUT_DIR]`` (or ``./dev demo``). The data is made here, from a fixed
seed: Sentinel-2-like scenes whose "water" class is where a synthetic NDWI is high.
"""

from __future__ import annotations

import datetime as dt
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pystac
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from .errors import Problem

BANDS = [
    {"name": "B02", "common_name": "blue", "center_wavelength": 0.49},
    {"name": "B03", "common_name": "green", "center_wavelength": 0.56},
    {"name": "B04", "common_name": "red", "center_wavelength": 0.665},
    {"name": "B08", "common_name": "nir", "center_wavelength": 0.842},
    {"name": "B11", "common_name": "swir16", "center_wavelength": 1.61},
    {"name": "B12", "common_name": "swir22", "center_wavelength": 2.19},
]
CLASSES = {0: "land", 1: "water", 2: "cloud"}
CMAP = {0: (34, 139, 34), 1: (30, 144, 255), 2: (245, 245, 245)}
#: Where and when the synthetic scenes "were taken" (the Item's extent comes from here).
SCENE_BBOX = (5.9, 45.8, 10.5, 47.8)
SCENE_START = dt.datetime(2024, 4, 1, tzinfo=dt.UTC)
SCENE_END = dt.datetime(2024, 9, 30, tzinfo=dt.UTC)


def synthetic_scenes(n: int, size: int = 64, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Reflectance-like uint16 images (N, 6, H, W) and their land/water/cloud masks (N, H, W)."""
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(n, 1, size // 8, size // 8, generator=g)
    field = nn.functional.interpolate(base, size=(size, size), mode="bilinear", align_corners=False)
    water = field[:, 0] > 0.55
    cloud = torch.rand(n, size // 16, size // 16, generator=g) > 0.85
    cloud = nn.functional.interpolate(cloud[:, None].float(), size=(size, size), mode="nearest")[:, 0] > 0
    mask = torch.zeros(n, size, size, dtype=torch.long)
    mask[water] = 1
    mask[cloud] = 2
    land = torch.tensor([600.0, 900.0, 800.0, 3000.0, 2200.0, 1400.0])
    wet = torch.tensor([700.0, 800.0, 500.0, 300.0, 150.0, 100.0])
    bright = torch.tensor([5000.0, 5200.0, 5400.0, 5800.0, 4000.0, 3000.0])
    refl = torch.where(
        mask[:, None] == 1,
        wet[None, :, None, None],
        torch.where(mask[:, None] == 2, bright[None, :, None, None], land[None, :, None, None]),
    )
    noise = torch.randn(n, 6, size, size, generator=g) * 120
    image = (refl + noise).clamp(0, 10000).to(torch.int16).to(torch.float32)
    return image, mask


class Normalize(nn.Module):
    """Per-band z-score, applied by the datamodule (and so recorded as the input's value scaling)."""

    def __init__(self, mean: list[float], std: list[float]) -> None:
        super().__init__()
        self.mean = torch.tensor(mean)
        self.std = torch.tensor(std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean[:, None, None]) / self.std[:, None, None]


class SceneDataModule:
    """A datamodule in Lightning's shape (works with or without Lightning installed)."""

    bands = [b["name"] for b in BANDS]
    classes = list(CLASSES.values())
    cmap = CMAP

    def __init__(self, batch_size: int = 8, n: int = 64, size: int = 64) -> None:
        self.batch_size = batch_size
        image, mask = synthetic_scenes(n, size)
        flat = image.transpose(0, 1).reshape(6, -1)
        self.aug = Normalize(flat.mean(1).tolist(), flat.std(1).tolist())
        self.train_dataset = TensorDataset(self.aug(image), mask)
        self.val_dataset = TensorDataset(*(t[: n // 4] for t in (self.aug(image), mask)))

    def train_dataloader(self) -> DataLoader[Any]:
        return DataLoader(self.train_dataset, batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader[Any]:
        return DataLoader(self.val_dataset, batch_size=self.batch_size)


class TinyUNet(nn.Module):
    """A two-level U-Net: fully convolutional, so it accepts any image size that is a multiple of 2."""

    def __init__(self, in_channels: int = 6, num_classes: int = 3, width: int = 16) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.enc1 = _block(in_channels, width)
        self.enc2 = _block(width, width * 2)
        self.up = nn.ConvTranspose2d(width * 2, width, 2, stride=2)
        self.dec = _block(width * 2, width)
        self.head = nn.Conv2d(width, num_classes, 1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        e1 = self.enc1(image)
        e2 = self.enc2(nn.functional.max_pool2d(e1, 2))
        logits: torch.Tensor = self.head(self.dec(torch.cat([self.up(e2), e1], dim=1)))
        return logits


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
    )  # fmt: skip


def train(model: nn.Module, dm: SceneDataModule, epochs: int = 2) -> float:
    """A plain training loop; returns the last epoch's mean loss."""
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    loss = torch.tensor(0.0)
    for _ in range(epochs):
        losses = []
        for x, y in dm.train_dataloader():
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
            losses.append(loss.item())
    return sum(losses) / len(losses)


@dataclass
class DemoRun:
    """What the demo did: the Item it wrote, whether it validates, and what it took."""

    item: pystac.Item
    path: Path
    loss: float
    problems: list[Problem]
    warnings: list[str]
    seconds: float


def run(out_dir: str | Path, epochs: int = 2) -> DemoRun:
    """Train TinyUNet on synthetic scenes for ``epochs``, export its Item into ``out_dir`` and validate it."""
    from . import export_mlm
    from ._validate import validation_problems

    torch.manual_seed(0)
    dm = SceneDataModule()
    model = TinyUNet()
    start = time.perf_counter()
    loss = train(model, dm, epochs)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        item = export_mlm(
            model,
            dm,
            out_dir=out_dir,
            name="TinyUNet water segmentation",
            description="Land/water/cloud segmentation of Sentinel-2-like scenes (synthetic demo data).",
            bands=BANDS,
            bbox=SCENE_BBOX,
            start_datetime=SCENE_START,
            end_datetime=SCENE_END,
            license="CC-BY-4.0",
            pretrained=False,
            hyperparameters={"optimizer": "AdamW", "lr": 3e-3, "epochs": epochs, "loss": "cross_entropy"},
        )
    messages = list(dict.fromkeys(str(w.message) for w in caught))
    path = Path(item.get_self_href() or "")
    return DemoRun(item, path, loss, validation_problems(item), messages, time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    """``python -m mlm_export.demo [OUT_DIR] [--epochs N] [--json] [--quiet]``: the same as ``mlm-export demo``."""
    from .cli import main as cli_main

    return cli_main(["demo", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())

__all__ = [
    "DemoRun",
    "main",
    "run",
    "SceneDataModule",
    "synthetic_scenes",
    "TinyUNet",
    "train",
]
