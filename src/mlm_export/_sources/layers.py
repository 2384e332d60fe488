"""The model's first layer: the one rule for "how many input channels does this model take"."""

from __future__ import annotations

from torch import nn


def first_layer(model: nn.Module) -> nn.Conv2d | nn.Conv3d | None:
    """The first image convolution (or patch embedding) of ``model``, in registration order.

    None when a sequence or vector layer (``Conv1d``, ``Linear``, ``Embedding``) comes first: the model's input
    is then not an image, and its first convolution (if any) sees features, not bands.
    """
    for m in model.modules():
        if isinstance(m, nn.Conv2d | nn.Conv3d):
            return m
        if isinstance(m, nn.Conv1d | nn.Linear | nn.Embedding):
            return None
    return None


def first_layer_channels(model: nn.Module) -> int | None:
    """Input channels of :func:`first_layer`, or None when the model does not start with an image convolution."""
    layer = first_layer(model)
    return layer.in_channels if layer is not None else None
