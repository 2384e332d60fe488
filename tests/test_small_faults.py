"""Smaller faults: a real trace leaves the model as it was; odd hyperparameters and examples get clear answers."""

from __future__ import annotations

import datetime as dt

import pytest
import torch
from torch import nn

from mlm_export import InvalidOptionError, MLMExportWarning, export_mlm, inspect_model

WHEN = {"datetime": dt.datetime(2024, 6, 1, tzinfo=dt.UTC)}


class Counting(nn.Module):
    """Data-dependent (nonzero), so traced for real; its forward bumps a buffer, swaps one and sets attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 1)
        self.register_buffer("calls", torch.zeros((), dtype=torch.long))
        self.register_buffer("cache", torch.zeros(2))
        self.note = "untouched"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        self.cache = torch.ones(2)  # replaces the buffer
        self.note = "changed"
        self.last_shape = tuple(x.shape)
        keep = (x.flatten(1) > 0).nonzero()  # data-dependent: a meta trace cannot do it
        return self.conv(x) + keep.shape[0] * 0


def test_real_trace_restores_buffers_and_attributes():
    model = Counting()
    cache = model.cache
    facts = inspect_model(model, torch.rand(1, 3, 8, 8))
    assert facts.traced_on == "cpu"  # the real pass ran (and the probe too)
    assert int(model.calls) == 0
    assert model.cache is cache and torch.equal(model.cache, torch.zeros(2))
    assert model.note == "untouched" and not hasattr(model, "last_shape")
    assert dict(model.named_buffers()).keys() == {"calls", "cache"}


def test_meta_tensor_in_hyperparameters_is_described():
    model = nn.Sequential(nn.Conv2d(3, 2, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    hparams = {"anchors": torch.empty(3, 2, device="meta"), "lr": 0.1}
    item = export_mlm(model, example_input=torch.zeros(1, 3, 8, 8), tasks="similarity-search", hyperparameters=hparams,
                      **WHEN)  # fmt: skip
    assert item.properties["mlm:hyperparameters"] == {"anchors": "tensor(float32[3, 2], meta)", "lr": 0.1}


def test_zero_dim_example_is_a_clear_error():
    with pytest.raises(InvalidOptionError, match=r"example_input 'input' is a 0-d tensor.*reshape\(1\)"):
        export_mlm(nn.Linear(1, 1), example_input=torch.tensor(3.0), tasks="regression", **WHEN)


def test_hyperparameter_keys_that_sanitise_alike_are_both_kept():
    model = nn.Sequential(nn.Conv2d(3, 2, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    hparams = {"lr rate": 0.1, "lr/rate": 0.2, "lr_rate_2": 0.3}
    with pytest.warns(MLMExportWarning) as record:
        item = export_mlm(model, example_input=torch.zeros(1, 3, 8, 8), tasks="similarity-search",
                          hyperparameters=hparams, **WHEN)  # fmt: skip
    messages = {str(w.message) for w in record}
    assert any("'lr rate' and 'lr/rate' both become 'lr_rate'" in m and "kept as 'lr_rate_2'" in m for m in messages)
    # the numbered name never overwrites a key the user gave
    assert item.properties["mlm:hyperparameters"] == {"lr_rate": 0.1, "lr_rate_2": 0.2, "lr_rate_2_2": 0.3}
