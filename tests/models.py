"""Small models, one per edge case the introspector must handle."""

from __future__ import annotations

import torch
from torch import nn


class SmallUNet(nn.Module):
    """Fully convolutional segmenter: any input size divisible by 4."""

    def __init__(self, in_channels: int = 4, num_classes: int = 5) -> None:
        super().__init__()
        self.num_classes = num_classes  # stated, as segmentation libraries do: the evidence its maps are classes
        self.down1 = nn.Sequential(nn.Conv2d(in_channels, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.down2 = nn.Sequential(nn.Conv2d(8, 16, 3, padding=1, stride=2), nn.ReLU())
        self.down3 = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1, stride=2), nn.ReLU())
        self.up2 = nn.ConvTranspose2d(16, 16, 2, stride=2)
        self.up1 = nn.ConvTranspose2d(32, 8, 2, stride=2)
        self.head = nn.Conv2d(16, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d1 = self.down1(x)
        d2 = self.down2(d1)
        d3 = self.down3(d2)
        u2 = torch.cat([self.up2(d3), d2], 1)
        u1 = torch.cat([self.up1(u2), d1], 1)
        return self.head(u1)


class Regressor(nn.Module):
    """Image -> one value per image (e.g. biomass)."""

    def __init__(self, in_channels: int = 3) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(in_channels, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.out = nn.Linear(8, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.features(x))


class TinyDetector(nn.Module):
    """Returns one dict per image with a data-dependent number of boxes (needs real values: nonzero)."""

    def __init__(self, num_classes: int = 3) -> None:
        super().__init__()
        self.backbone = nn.Conv2d(3, 8, 3, stride=4, padding=1)
        self.cls = nn.Conv2d(8, num_classes, 1)

    def forward(self, images: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        feats = self.backbone(images)
        logits = self.cls(feats)
        out = []
        for per_image in logits:
            scores, labels = per_image.softmax(0).max(0)
            keep = (scores > 0.4).nonzero()
            ys, xs = keep[:, 0].float() * 4, keep[:, 1].float() * 4
            boxes = torch.stack([xs, ys, xs + 4, ys + 4], dim=1)
            out.append(
                {"boxes": boxes, "labels": labels[keep[:, 0], keep[:, 1]], "scores": scores[keep[:, 0], keep[:, 1]]}
            )
        return out


class DictInput(nn.Module):
    """Takes optical and radar images as keyword arguments, returns class logits."""

    def __init__(self) -> None:
        super().__init__()
        self.optical = nn.Conv2d(4, 8, 3, padding=1)
        self.radar = nn.Conv2d(2, 8, 3, padding=1)
        self.head = nn.Linear(16, 6)

    def forward(self, optical: torch.Tensor, radar: torch.Tensor) -> torch.Tensor:
        a = self.optical(optical).mean((2, 3))
        b = self.radar(radar).mean((2, 3))
        return self.head(torch.cat([a, b], 1))


class BatchDict(nn.Module):
    """Takes one dict argument (a Lightning/TorchGeo-style batch) and returns a dict of outputs."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        feats = self.conv(batch["image"])
        return {"mask": feats, "embedding": feats.mean((2, 3))}


class TiedWeights(nn.Module):
    """Two layers share one weight matrix and one module is used twice: parameters must be counted once."""

    def __init__(self) -> None:
        super().__init__()
        self.encode = nn.Linear(16, 16)
        self.decode = nn.Linear(16, 16)
        self.decode.weight = self.encode.weight  # tied: one Parameter under two names
        self.proj = nn.Linear(16, 8)
        self.proj_again = self.proj  # the same module registered twice

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj_again(self.decode(self.encode(x)))


class ItemCall(nn.Module):
    """Calls .item() in forward: cannot run on the meta device."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = 1.0 / max(x.abs().max().item(), 1e-6)
        return self.fc(self.conv(x * scale).mean((2, 3)))


class FixedSize(nn.Module):
    """Flattens a fixed 16x16 image: accepts only that size."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3 * 16 * 16, 10)
        self.dropout = nn.Dropout(0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(x.flatten(1)))


class ReturnsString(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> str:
        return "not a tensor"
