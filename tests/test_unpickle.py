"""Checkpoints are read with torch's static scan of their globals: refused by name before any unpickling."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import torch

from mlm_export._sources.checkpoint import load
from mlm_export._sources.unpickle import CheckpointError, UntrustedCheckpointError, legacy_globals


class Evil:
    """Unpickling this runs a shell command."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.target}",))


class BuildsAModel:
    """Unpickling this calls a model factory of an allowed package: still code, still refused."""

    def __reduce__(self) -> tuple[Any, ...]:
        import torchvision

        return (torchvision.models.resnet18, ())


def _checkpoint(path: Path, hparams: dict[str, Any], *, zipped: bool = True) -> Path:
    data = {"state_dict": {"w": torch.zeros(2)}, "hyper_parameters": hparams, "epoch": 0, "global_step": 1}
    torch.save(data, path, _use_new_zipfile_serialization=zipped)
    return path


@pytest.mark.parametrize("zipped", [True, False], ids=["zip", "legacy"])
def test_a_global_that_runs_code_is_refused_by_name(tmp_path, zipped):
    marker = tmp_path / "pwned"
    ckpt = _checkpoint(tmp_path / "evil.ckpt", {"x": Evil(marker)}, zipped=zipped)
    with pytest.raises(UntrustedCheckpointError, match=r"needs '(posix|os)\.system' to load.*trust=True"):
        load(ckpt)
    assert not marker.exists()


def test_a_model_factory_of_an_allowed_package_is_refused(tmp_path):
    ckpt = _checkpoint(tmp_path / "factory.ckpt", {"backbone": BuildsAModel()})
    with pytest.raises(UntrustedCheckpointError, match=r"torchvision\.models\.resnet\.resnet18"):
        load(ckpt)


def test_plain_data_and_allowlisted_types_load(tmp_path):
    from argparse import Namespace

    ckpt = _checkpoint(tmp_path / "plain.ckpt", {"root": Path("/data"), "args": Namespace(lr=0.1)})
    loaded = load(ckpt)
    assert loaded.kind == "lightning" and loaded.hyper_parameters["root"] == Path("/data")


@pytest.mark.parametrize("zipped", [True, False], ids=["zip", "legacy"])
def test_lightning_attribute_dict_is_allowlisted_when_the_checkpoint_names_it(tmp_path, zipped):
    from lightning.fabric.utilities.data import AttributeDict

    # torch's weights-only unpickler sets items only on plain dicts: an empty one is what it can rebuild
    loaded = load(_checkpoint(tmp_path / "hparams.ckpt", {"net": AttributeDict()}, zipped=zipped))
    assert type(loaded.hyper_parameters["net"]) is AttributeDict


def test_every_refused_global_is_named(tmp_path):
    """A pickled weights enum carries its transforms (modules): all of them are named, nothing is built."""
    tgm = pytest.importorskip("torchgeo.models")
    ckpt = _checkpoint(tmp_path / "task.ckpt", {"weights": tgm.ResNet18_Weights.SENTINEL2_ALL_MOCO})
    with pytest.raises(
        UntrustedCheckpointError, match=r"'torch\.nn\.modules\.container\.Sequential', .*_api\.Weights'"
    ):
        load(ckpt)


def test_a_corrupt_pickle_inside_a_zip_is_a_checkpoint_error(tmp_path):
    ckpt = _checkpoint(tmp_path / "bad.ckpt", {})
    import zipfile

    with zipfile.ZipFile(ckpt) as z:
        entries = {n: z.read(n) for n in z.namelist()}
    with zipfile.ZipFile(ckpt, "w") as z:
        for name, data in entries.items():
            z.writestr(name, b"\x80\x02garbage" if name.endswith("data.pkl") else data)
    with pytest.raises(CheckpointError, match="bad.ckpt"):
        load(ckpt)


def test_legacy_globals_are_read_without_unpickling(tmp_path):
    marker = tmp_path / "pwned"
    ckpt = _checkpoint(tmp_path / "evil.pt", {"x": Evil(marker)}, zipped=False)
    names = legacy_globals(ckpt.read_bytes())
    assert any(n.endswith(".system") for n in names) and not marker.exists()
