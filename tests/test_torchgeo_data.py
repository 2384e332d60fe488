"""TorchGeo data: bands, normalization, classes and the extent of GeoDatasets, from synthetic GeoTIFFs."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pytest
import torch

pytest.importorskip("torchgeo")
rasterio = pytest.importorskip("rasterio")
L = pytest.importorskip("lightning")
import kornia.augmentation as K  # noqa: E402
from rasterio.transform import from_origin  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402
from torchgeo.datasets import RasterDataset, stack_samples  # noqa: E402
from torchgeo.samplers import RandomGeoSampler  # noqa: E402

from mlm_export import export_mlm  # noqa: E402
from mlm_export._sources.datamodule import datamodule_facts  # noqa: E402

from .conftest import plain_validate  # noqa: E402
from .models import SmallUNet  # noqa: E402


class Scenes(RasterDataset):
    """Four-band scenes named scene_YYYYMMDD.tif."""

    filename_glob = "scene_*.tif"
    filename_regex = r"^scene_(?P<date>\d{8})\.tif$"
    date_format = "%Y%m%d"
    all_bands = ("B02", "B03", "B04", "B08")
    separate_files = False
    classes = ("background", "field")
    cmap = {0: (0, 0, 0, 255), 1: (255, 200, 0, 255)}


def write_scene(path, date: str, x0: float) -> None:
    data = np.random.default_rng(0).integers(0, 10000, size=(4, 64, 64), dtype=np.uint16)
    profile = {
        "driver": "GTiff", "width": 64, "height": 64, "count": 4, "dtype": "uint16",
        "crs": "EPSG:32632", "transform": from_origin(x0, 5_200_000, 10, 10),
    }  # fmt: skip
    with rasterio.open(path / f"scene_{date}.tif", "w", **profile) as f:
        f.write(data)


class ScenesDataModule(L.LightningDataModule):
    def __init__(self, root, batch_size: int = 2, patch_size: int = 32) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.aug = K.AugmentationSequential(
            K.Normalize(mean=torch.tensor([0.0]), std=torch.tensor([10000.0])), data_keys=None, keepdim=True
        )

    def setup(self, stage: str) -> None:
        self.train_dataset = Scenes(paths=str(self.hparams.root))

    def train_dataloader(self):
        sampler = RandomGeoSampler(self.train_dataset, size=self.hparams.patch_size, length=4)
        return DataLoader(
            self.train_dataset, batch_size=self.hparams.batch_size, sampler=sampler, collate_fn=stack_samples
        )


@pytest.fixture
def scenes(tmp_path):
    write_scene(tmp_path, "20230601", 500_000)
    write_scene(tmp_path, "20230915", 500_640)
    return tmp_path


def test_geodataset_facts(scenes):
    dm = ScenesDataModule(scenes)
    facts = datamodule_facts(dm)
    assert [b.name for b in facts.bands] == ["B02", "B03", "B04", "B08"]
    assert facts.sources["bands"] == "Scenes.bands"
    assert [(s.mean, s.stddev) for s in facts.value_scaling] == [(0.0, 10000.0)]
    assert [(c.name, c.color_hint) for c in facts.classes] == [("background", "000000"), ("field", "FFC800")]
    assert facts.patch_size == (32, 32) and facts.batch_size == 2
    assert facts.example_input.shape == (2, 4, 32, 32)
    w, s, e, n = facts.bbox
    assert 8.99 < w < e < 9.03 and 46.9 < s < n < 46.96  # UTM 32N around 500 km E, 5200 km N
    assert facts.start_datetime.startswith("2023-06-01") and facts.end_datetime.startswith("2023-09-15")
    (link,) = facts.links
    assert link["rel"] == "derived_from" and link["ml-aoi:split"] == "train" and link["href"] == str(scenes)


def test_export_with_a_geo_datamodule(scenes):
    item = export_mlm(SmallUNet(in_channels=4, num_classes=2), ScenesDataModule(scenes))
    data = item.to_dict(include_self_link=False, transform_hrefs=False)
    assert plain_validate(data) == []
    assert data["geometry"]["type"] == "Polygon" and len(data["bbox"]) == 4
    p = data["properties"]
    assert p["datetime"] is None and p["start_datetime"].startswith("2023-06-01")
    assert p["mlm:output"][0]["classification:classes"][1]["name"] == "field"
    assert any(link["rel"] == "derived_from" for link in data["links"])
    json.dumps(data)  # plain JSON


def test_user_extent_overrides_the_data(scenes):
    item = export_mlm(
        SmallUNet(in_channels=4, num_classes=2),
        ScenesDataModule(scenes),
        bbox=(0, 0, 1, 1),
        start_datetime=dt.datetime(2020, 1, 1, tzinfo=dt.UTC),
        end_datetime=dt.datetime(2020, 2, 1, tzinfo=dt.UTC),
    )
    assert item.bbox == [0.0, 0.0, 1.0, 1.0]
    assert item.properties["start_datetime"].startswith("2020-01-01")


def test_torchgeo_datamodule_before_setup():
    """Bands and normalization of a TorchGeo datamodule, read without its data (no download, no setup)."""
    from torchgeo.datamodules import EuroSATDataModule

    facts = datamodule_facts(EuroSATDataModule(batch_size=4), load_batch=False)
    assert len(facts.bands) == 13 and facts.bands[0].name == "B01"
    assert facts.sources["bands"] == "EuroSAT.all_band_names"
    assert len(facts.value_scaling) == 13 and facts.batch_size == 4
    rgb = datamodule_facts(EuroSATDataModule(batch_size=4, bands=("B04", "B03", "B02")), load_batch=False)
    assert [b.name for b in rgb.bands] == ["B04", "B03", "B02"]
    assert len(rgb.value_scaling) == 3  # the datamodule normalizes the selected bands only
