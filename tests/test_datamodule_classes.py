"""Classes and class colours of TorchGeo datamodules, read from their dataset classes without any data."""

from __future__ import annotations

import datetime as dt
import inspect
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
import torch
from torch import nn

pytest.importorskip("torchgeo")
import torchgeo.datamodules  # noqa: E402
from torchvision.datasets import DatasetFolder  # noqa: E402

from mlm_export import export_mlm  # noqa: E402
from mlm_export._sources.datamodule import COLOR_ATTRS, datamodule_facts, documented_classes  # noqa: E402

from .conftest import plain_validate  # noqa: E402

WHEN = dt.datetime(2024, 6, 1, tzinfo=dt.UTC)


def _constructible() -> dict[str, Any]:
    """TorchGeo's datamodules that construct without data or required arguments (none downloads on construction)."""
    found = {}
    for name in sorted(torchgeo.datamodules.__all__):
        cls = getattr(torchgeo.datamodules, name)
        if not (inspect.isclass(cls) and name.endswith("DataModule")):
            continue
        try:
            found[name] = cls(batch_size=2)
        except TypeError:  # needs arguments (paths, a SpaceNet AOI, a dataset class): not constructible bare
            continue
    return found


DATAMODULES = _constructible()


def _dataset(dm: Any) -> type:
    cls = dm.dataset_class
    assert isinstance(cls, type)
    return cls


def _declared_names(cls: type, dm: Any) -> list[str] | None:
    """The class names a dataset class states, read here independently of the library: a ``classes`` list, a
    ``{name: {"id": i}}`` mapping, the class set its default class count picks, or a folder-per-class list."""
    value = getattr(cls, "classes", None)
    if isinstance(value, Sequence) and not isinstance(value, str) and value and all(isinstance(v, str) for v in value):
        return list(value)
    if isinstance(value, Mapping) and value:
        return [k for k, _ in sorted(value.items(), key=lambda kv: kv[1]["id"])]
    sets = getattr(cls, "class_sets", None)
    if isinstance(sets, Mapping):
        count = dm.kwargs.get("num_classes", inspect.signature(cls).parameters["num_classes"].default)
        return list(sets[count])
    documented = documented_classes(cls)
    return list(documented[1]) if documented else None


def _colour_count(cls: type) -> int | None:
    """How many colours a dataset class states (a mapping by value, a list, or a matplotlib colormap)."""
    for n in COLOR_ATTRS:
        value = getattr(cls, n, None)
        if isinstance(value, Mapping):
            return len(value)
        value = getattr(value, "colors", value)  # a matplotlib ListedColormap holds a list or an array
        if value is not None and not isinstance(value, str) and hasattr(value, "__len__"):
            return len(value)
    return None


def test_eurosat_classes_are_named_without_data() -> None:
    from torchgeo.datamodules import EuroSATDataModule

    facts = datamodule_facts(EuroSATDataModule(batch_size=4), load_batch=False)
    assert facts.classes is not None
    assert [(c.value, c.name) for c in facts.classes][:3] == [
        (0, "Annual Crop"),
        (1, "Forest"),
        (2, "Herbaceous Vegetation"),
    ]
    assert [c.name for c in facts.classes][-1] == "Sea & Lake" and len(facts.classes) == 10
    assert facts.sources["classes"].startswith("EuroSAT docstring")


def test_landcoverai_classes_have_their_colours() -> None:
    from torchgeo.datamodules import LandCoverAIDataModule

    facts = datamodule_facts(LandCoverAIDataModule(batch_size=2), load_batch=False)
    assert facts.classes is not None
    assert [(c.name, c.color_hint) for c in facts.classes] == [
        ("Background", "000000"),
        ("Building", "614A4A"),
        ("Woodland", "267300"),
        ("Water", "00C5FF"),
        ("Road", "CFCFCF"),
    ]
    assert facts.sources["class_colors"] == "LandCoverAI.cmap"


class _Classifier(nn.Module):
    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 8, 3, padding=1)
        self.head = nn.Linear(8, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv(x).mean(dim=(2, 3)))


def test_an_item_from_the_eurosat_datamodule_names_its_classes() -> None:
    from torchgeo.datamodules import EuroSATDataModule

    item = export_mlm(
        _Classifier(13, 10),
        EuroSATDataModule(batch_size=2),
        example_input=torch.randn(2, 13, 64, 64),
        tasks="classification",
        datetime=WHEN,
    )
    data = item.to_dict(include_self_link=False, transform_hrefs=False)
    assert plain_validate(data) == []
    classes = data["properties"]["mlm:output"][0]["classification:classes"]
    assert [c["name"] for c in classes][:2] == ["Annual Crop", "Forest"] and len(classes) == 10


def test_landcoverai_colours_reach_the_item() -> None:
    from torchgeo.datamodules import LandCoverAIDataModule

    model = nn.Conv2d(3, 5, 3, padding=1)
    item = export_mlm(
        model,
        LandCoverAIDataModule(batch_size=2),
        example_input=torch.randn(2, 3, 32, 32),
        tasks="semantic-segmentation",
        datetime=WHEN,
    )
    classes = item.properties["mlm:output"][0]["classification:classes"]
    assert [(c["name"], c.get("color_hint")) for c in classes][:2] == [("Background", "000000"), ("Building", "614A4A")]


@pytest.mark.parametrize("name", list(DATAMODULES))
def test_every_datamodule_gives_the_classes_and_colours_its_dataset_states(name: str) -> None:
    dm = DATAMODULES[name]
    cls = _dataset(dm)
    facts = datamodule_facts(dm, load_batch=False)
    declared = _declared_names(cls, dm)
    got = [c.name for c in facts.classes] if facts.classes else None
    assert got == declared, facts.sources
    if not got:
        return
    colours = _colour_count(cls)
    hinted = [c for c in facts.classes or () if c.color_hint]
    if colours == len(got):  # one colour per class (a mapping by value or a list): every class has its colour
        assert len(hinted) == len(got)
    elif colours is not None:  # a list of another length (xBD: 4 colours for 5 classes) is not matched by guess
        assert hinted == []


def test_the_survey_covers_the_datamodules_with_class_lists() -> None:
    """At least the datamodules known to state classes are constructible here and covered above."""
    named = {n for n, dm in DATAMODULES.items() if _declared_names(_dataset(dm), dm)}
    assert {"EuroSATDataModule", "LandCoverAIDataModule", "BigEarthNetDataModule", "FAIR1MDataModule"} <= named
    assert len(named) >= 25


# ------------------------------------------------------------------- folder-per-class datasets: order is position


class _Folders(DatasetFolder):
    """Folders of samples.

    Dataset classes:

    * Bare Soil
    * Crop
    * Water
    """


class _Unsorted(DatasetFolder):
    """Folders of samples, listed in another order than the sorted folders.

    Dataset classes:

    * Water
    * Crop
    """


class _Numbered(DatasetFolder):
    """Folders of samples, numbered from 1.

    Dataset classes:

    1. Crop
    2. Water
    """


class _NotFolders(torch.utils.data.Dataset[Any]):
    """Not a folder dataset: its list says nothing about positions.

    Dataset classes:

    * Crop
    * Water
    """


class _DataModule:
    def __init__(self, dataset_class: type) -> None:
        self.dataset_class = dataset_class
        self.batch_size = 2


@pytest.mark.parametrize(
    ("cls", "names"),
    [(_Folders, ["Bare Soil", "Crop", "Water"]), (_Unsorted, None), (_Numbered, None), (_NotFolders, None)],
    ids=["sorted-folders", "unsorted", "numbered-from-1", "not-a-folder-dataset"],
)
def test_a_documented_list_names_classes_only_when_its_order_is_the_folder_order(
    cls: type, names: list[str] | None
) -> None:
    facts = datamodule_facts(_DataModule(cls), load_batch=False)
    assert ([c.name for c in facts.classes] if facts.classes else None) == names


def test_a_colour_list_of_another_length_is_not_matched_to_the_classes() -> None:
    class Damage(torch.utils.data.Dataset[Any]):
        classes = ("background", "no-damage", "destroyed")
        colormap = ("#00FF00", "#FF0000")  # one colour short: which class lacks one is not guessed

    facts = datamodule_facts(_DataModule(Damage), load_batch=False)
    assert facts.classes is not None
    assert [c.color_hint for c in facts.classes] == [None, None, None]
    assert "class_colors" not in facts.sources


# ------------------------------------------------------------------- class mappings either way, as libraries keep them


class _ImageFolderLike(torch.utils.data.Dataset[Any]):
    """Only ``class_to_idx`` (name -> value), as a torchvision folder dataset keeps it beside its list."""

    def __init__(self) -> None:
        self.class_to_idx = {"forest": 0, "river": 2, "crop": 1}


class _HFConfigured:
    """A datamodule whose hyperparameters carry a Hugging Face style ``id2label`` read from JSON (string keys)."""

    def __init__(self) -> None:
        self.hparams = {"id2label": {"0": "background", "1": "building"}, "batch_size": 2}


@pytest.mark.parametrize(
    ("dm", "expected", "where"),
    [
        (
            type("DM", (), {"train_dataset": _ImageFolderLike()})(),
            [(0, "forest"), (2, "river"), (1, "crop")],
            "class_to_idx",
        ),
        (_HFConfigured(), [(0, "background"), (1, "building")], "hparams['id2label']"),
    ],
    ids=["class_to_idx", "id2label"],
)
def test_class_mappings_either_way_give_values_and_names(dm: Any, expected: list[tuple[int, str]], where: str) -> None:
    facts = datamodule_facts(dm, load_batch=False)
    assert facts.classes is not None
    assert [(c.value, c.name) for c in facts.classes] == expected
    assert facts.sources["classes"].endswith(where)


def test_a_mapping_of_names_to_repeated_values_is_not_a_class_list() -> None:
    dm = type("DM", (), {"hparams": {"class_to_idx": {"forest": 0, "woods": 0}}})()
    assert datamodule_facts(dm, load_batch=False).classes is None
