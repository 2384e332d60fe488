"""What a user needs to call the model is in the Item: wavelengths as bands, constants in hyperparameters."""

from __future__ import annotations

import datetime as dt
import json

import pytest
import torch
from torch import nn

from mlm_export import export_mlm

WHEN = {"datetime": dt.datetime(2024, 6, 1, tzinfo=dt.UTC)}


class WavelengthNet(nn.Module):
    """Takes any bands with their centre wavelengths in micrometres, as DOFA does."""

    def __init__(self) -> None:
        super().__init__()
        self.mix = nn.Linear(1, 4)
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor, wavelengths: list[float]) -> torch.Tensor:
        w = self.mix(torch.tensor(wavelengths, dtype=x.dtype).unsqueeze(1))  # [bands, 4]
        return torch.einsum("bchw,cd->bd", x, w) / x.shape[-1] / x.shape[-2]


def test_wavelengths_become_bands_and_the_snippet_calls_the_model(tmp_path, assert_valid):
    waves = [0.842, 0.665, 0.56]
    item = export_mlm(WavelengthNet(), example_input=(torch.rand(2, 3, 16, 16), waves), tasks="similarity-search",
                      out_dir=tmp_path, **WHEN)  # fmt: skip
    data = assert_valid(item)
    p = data["properties"]
    assert p["mlm:input"][0]["bands"] == ["nir", "red", "green"]
    assert [b["eo:center_wavelength"] for b in p["bands"]] == waves
    assert p["mlm:hyperparameters"]["forward.wavelengths"] == waves
    assert "forward() also takes wavelengths=[0.842, 0.665, 0.56]" in p["mlm:input"][0]["description"]

    # The README's "Call a model from its Item" snippet, as written there:
    meta = json.loads((tmp_path / f"{item.id}.json").read_text())
    props = meta["properties"]
    program = torch.export.load(tmp_path / meta["assets"]["model"]["href"]).module()
    spec = props["mlm:input"][0]["input"]
    x = torch.zeros([1 if n == -1 else n for n in spec["shape"][:2]] + [32, 32])  # any batch, height and width
    constants = [v for k, v in props["mlm:hyperparameters"].items() if k.startswith("forward.")]
    out = program(x, *constants)  # constants follow the tensors, in forward's order
    assert out.shape == (1, 4)


def test_dofa_item_states_its_wavelengths(assert_valid):
    pytest.importorskip("torchgeo")
    from mlm_export._sources.weights import build_model

    name = "DOFABase16_Weights.DOFA_MAE"
    item = export_mlm(build_model(name), weights=name, **WHEN)
    p = assert_valid(item)["properties"]
    assert [b["eo:center_wavelength"] for b in p["bands"]] == [0.665, 0.56, 0.49]
    assert p["mlm:input"][0]["bands"] == ["red", "green", "blue"]
    assert p["mlm:hyperparameters"]["forward.wavelengths"] == [0.665, 0.56, 0.49]


def test_nanometre_wavelengths_are_stated_in_micrometres():
    from mlm_export._sources.constants import _bands

    bands = _bands([665.0, 560.0, 490.0, 1610.0])
    assert [b.center_wavelength for b in bands] == [0.665, 0.56, 0.49, 1.61]
    assert [b.name for b in bands] == ["red", "green", "blue", "swir16"]
