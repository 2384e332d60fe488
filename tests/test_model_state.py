"""A model leaves mlm-export as it came: each module's own train/eval flag, whichever step ran it."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mlm_export import inspect_model
from mlm_export._model_state import eval_mode
from mlm_export._sources.layers import first_layer_channels
from mlm_export._torchscript import write_torchscript


class FrozenBackbone(nn.Module):
    """A backbone kept in eval (frozen batch norm) under a head in training: mixed modes, as in fine-tuning."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
        self.head = nn.Sequential(nn.Conv2d(4, 2, 1), nn.Dropout(0.5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


def _mixed() -> FrozenBackbone:
    model = FrozenBackbone().train()
    model.backbone.eval()
    return model


def _flags(model: nn.Module) -> list[bool]:
    return [m.training for m in model.modules()]


def test_eval_mode_puts_each_modules_flag_back_even_on_error():
    model = _mixed()
    before = _flags(model)
    inside: list[bool] = []

    def fail_in_eval() -> None:
        with eval_mode(model):
            inside.extend(_flags(model))
            raise ValueError("inside")

    with pytest.raises(ValueError, match="inside"):
        fail_in_eval()
    assert inside and not any(inside)
    assert _flags(model) == before


def test_tracing_and_torchscript_keep_mixed_modes(tmp_path):
    model = _mixed()
    before = _flags(model)
    inspect_model(model, torch.rand(2, 3, 16, 16))
    assert _flags(model) == before
    write_torchscript(model, torch.rand(2, 3, 16, 16), tmp_path / "model.pt")
    assert _flags(model) == before  # the backbone stays in eval (model.train(True) would have flipped it)


@pytest.mark.parametrize(
    ("model", "channels"),
    [
        (nn.Sequential(nn.Conv2d(5, 2, 1)), 5),
        (nn.Sequential(nn.Conv3d(4, 2, 1)), 4),
        (nn.Sequential(nn.Linear(8, 4), nn.Conv2d(1, 2, 1)), None),  # a vector model: no image channels
        (nn.Sequential(nn.Conv1d(7, 2, 1), nn.Conv2d(1, 2, 1)), None),  # a sequence model
        (nn.Sequential(nn.Embedding(10, 4)), None),
    ],
)
def test_one_first_layer_rule(model, channels):
    assert first_layer_channels(model) == channels
