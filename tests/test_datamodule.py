"""Facts from a plain LightningDataModule: batch, batch size, normalization per band, bands, classes and colors."""

from __future__ import annotations

import datetime as dt

import pytest
import torch
import torchvision.transforms.v2 as T
from torch.utils.data import DataLoader, TensorDataset

from mlm_export import InputRequiredError, InvalidOptionError, export_mlm
from mlm_export._sources.datamodule import datamodule_facts
from mlm_export._sources.values import compose_zscores

from .models import SmallUNet

L = pytest.importorskip("lightning")
WHEN = {"datetime": dt.datetime(2024, 6, 1, tzinfo=dt.UTC)}


class SegmentationData(L.LightningDataModule):
    """Normalizes in its transform; names bands and classes as many datamodules do."""

    classes = ("background", "building", "road")
    cmap = {0: (0, 0, 0), 1: (255, 0, 0), 2: (0.5, 0.5, 0.5)}

    def __init__(self, batch_size: int = 6, bands: tuple[str, ...] = ("B02", "B03", "B04", "B08")) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.val_transform = T.Compose(
            [T.Normalize(mean=[0.0] * 4, std=[10000.0] * 4), T.Normalize([0.1, 0.2, 0.3, 0.4], [1.0, 2.0, 3.0, 4.0])]
        )

    def setup(self, stage: str) -> None:
        x = torch.rand(12, 4, 32, 32) * 10000
        y = torch.randint(0, 3, (12, 32, 32))
        self.val_dataset = TensorDataset(x, y)
        self.train_dataset = TensorDataset(x, y)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_dataset, batch_size=self.hparams.batch_size)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_dataset, batch_size=self.hparams.batch_size)


def test_facts_from_a_lightning_datamodule():
    dm = SegmentationData()
    facts = datamodule_facts(dm)
    assert facts.batch_size == 6
    assert [b.name for b in facts.bands] == ["B02", "B03", "B04", "B08"]
    assert facts.sources["bands"] == "datamodule.hparams['bands']"
    assert [c.name for c in facts.classes] == ["background", "building", "road"]
    assert [c.color_hint for c in facts.classes] == ["000000", "FF0000", "808080"]
    assert facts.example_input.shape == (6, 4, 32, 32)  # setup() was called to get a real batch
    # the two Normalize steps fold into one z-score per band: x' = (x - mean) / std
    means = [s.mean for s in facts.value_scaling]
    stds = [s.stddev for s in facts.value_scaling]
    assert means == pytest.approx([1000.0, 2000.0, 3000.0, 4000.0])
    assert stds == pytest.approx([10000.0, 20000.0, 30000.0, 40000.0])
    x = torch.rand(4, 8, 8) * 10000
    expected = dm.val_transform(x)
    folded = (x - torch.tensor(means)[:, None, None]) / torch.tensor(stds)[:, None, None]
    assert torch.allclose(expected, folded, atol=1e-5)


def test_export_with_datamodule(assert_valid):
    item = export_mlm(SmallUNet(in_channels=4, num_classes=3), SegmentationData(), **WHEN)
    p = assert_valid(item)["properties"]
    assert p["mlm:batch_size_suggestion"] == 6
    (inp,) = p["mlm:input"]
    assert inp["bands"] == ["B02", "B03", "B04", "B08"]
    assert inp["input"]["dim_order"] == ["batch", "bands", "height", "width"]
    assert [v["type"] for v in inp["value_scaling"]] == ["z-score"] * 4
    assert inp["value_scaling"][3] == {
        "type": "z-score",
        "mean": pytest.approx(4000.0),
        "stddev": pytest.approx(40000.0),
    }
    out = p["mlm:output"][0]
    assert out["tasks"] == ["semantic-segmentation"]
    assert [(c["value"], c["name"], c.get("color_hint")) for c in out["classification:classes"]] == [
        (0, "background", "000000"),
        (1, "building", "FF0000"),
        (2, "road", "808080"),
    ]


def test_user_options_override_the_datamodule(assert_valid):
    item = export_mlm(
        SmallUNet(in_channels=4, num_classes=3),
        SegmentationData(),
        bands=["blue", "green", "red", "nir"],
        batch_size=32,
        value_scaling=[{"type": "min-max", "minimum": 0, "maximum": 10000}],
        **WHEN,
    )
    p = assert_valid(item)["properties"]
    assert p["mlm:input"][0]["bands"] == ["blue", "green", "red", "nir"]
    assert p["mlm:batch_size_suggestion"] == 32
    assert p["mlm:input"][0]["value_scaling"] == [{"type": "min-max", "minimum": 0.0, "maximum": 10000.0}]


def test_datamodule_bands_that_do_not_match_the_model_are_reported():
    dm = SegmentationData(bands=("B02", "B03", "B04"))
    with pytest.raises(InvalidOptionError, match=r"3 bands are named \(datamodule.hparams\['bands'\]"):
        export_mlm(SmallUNet(in_channels=4, num_classes=3), dm, **WHEN)


def test_datamodule_without_data_needs_example_input(assert_valid):
    class Empty(L.LightningDataModule):
        bands = ["a", "b", "c", "d"]

        def train_dataloader(self):
            raise RuntimeError("call setup first")

    with pytest.raises(InputRequiredError, match="example_input="):
        export_mlm(SmallUNet(in_channels=4), Empty(), **WHEN)
    item = export_mlm(SmallUNet(in_channels=4, num_classes=5), Empty(), example_input=torch.randn(1, 4, 16, 16), **WHEN)
    assert assert_valid(item)["properties"]["mlm:input"][0]["bands"] == ["a", "b", "c", "d"]


def test_a_datamodules_own_setup_error_is_raised_not_hidden():
    """setup() is called to get a real batch; when the user's setup fails, that error is what they see (it was
    swallowed, and export_mlm asked for example_input= instead)."""

    class BrokenSetup(L.LightningDataModule):
        def setup(self, stage: str) -> None:
            raise FileNotFoundError(f"no such data folder for stage {stage!r}")

        def train_dataloader(self):
            raise RuntimeError("call setup first")

    with pytest.raises(FileNotFoundError, match="no such data folder for stage"):
        export_mlm(SmallUNet(in_channels=4), BrokenSetup(), **WHEN)


def test_dict_batches_use_the_image_key():
    class DictData(L.LightningDataModule):
        def predict_dataloader(self):
            return [{"image": torch.rand(2, 3, 8, 8), "mask": torch.zeros(2, 8, 8)}]

    facts = datamodule_facts(DictData())
    assert facts.example_input.shape == (2, 3, 8, 8)
    assert facts.sources["example_input"] == "datamodule.predict_dataloader()"


def test_kornia_style_normalize_flags():
    class KorniaLike(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.flags = {"mean": torch.tensor([0.0]), "std": torch.tensor([255.0])}

    class Data:
        aug = torch.nn.Sequential(KorniaLike())

    facts = datamodule_facts(Data())
    assert [(s.mean, s.stddev) for s in facts.value_scaling] == [(0.0, 255.0)]


def test_compose_rejects_mismatched_band_counts():
    with pytest.raises(InvalidOptionError, match="3 values per band but the input has 4 bands"):
        compose_zscores([([0.0, 0.0, 0.0], [1.0, 1.0, 1.0])], 4)
