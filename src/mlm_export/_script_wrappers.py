"""TorchScript wrappers that give a scripted model the Item's interface (one batch tensor in).

No ``from __future__ import annotations`` here: TorchScript reads these annotations at run time.
torchvision's detection models take a list of images and, when scripted, return ``(losses, detections)``;
the Item describes a ``[batch, channel, height, width]`` tensor in and the detections out.
"""

from typing import Dict, List  # noqa: UP035 - TorchScript's own spelling

import torch
from torch import nn


class ImageListDetections(nn.Module):
    """Split a batch tensor into the image list a detection model takes; return its detections only."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> List[Dict[str, torch.Tensor]]:  # noqa: UP006
        detections: List[Dict[str, torch.Tensor]] = self.model(list(images.unbind(0)))[1]  # noqa: UP006
        return detections


class ImageList(nn.Module):
    """Split a batch tensor into the image list a model takes."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    # TorchScript infers the return type (whatever the model returns); an annotation would fix it
    def forward(self, images: torch.Tensor):  # type: ignore[no-untyped-def]  # noqa: ANN201
        return self.model(list(images.unbind(0)))
