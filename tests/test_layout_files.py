"""One layout must not change which files are written: ``layout="huggingface"`` honours ``artifacts=``,
``primary=`` and ``artifact_timeout=`` and writes the runtime files, as the flat layout does."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
import torch

from mlm_export import export_mlm
from mlm_export._write import file_checksum

from .models import SmallUNet

pytest.importorskip("huggingface_hub")

WHEN = {"datetime": dt.datetime(2024, 1, 1, tzinfo=dt.UTC)}
#: What the Hugging Face folder adds around the model files: not model files.
FOLDER_ONLY = {"config.json", "README.md", "mlm.json"}


def suffixes(folder: Path, stem: str) -> set[str]:
    """What follows the stem in each file's name, the Item and the folder's own files left out."""
    return {p.name.removeprefix(stem) for p in folder.iterdir() if p.name not in (*FOLDER_ONLY, f"{stem}.json")}


def model_assets(data: dict) -> dict[str, tuple[tuple[str, ...], str | None, str]]:
    """Each file asset but the folder's card and config: key -> (roles, artifact type, suffix of its href)."""
    out = {}
    for key, asset in data["assets"].items():
        if key in ("card", "config"):
            continue
        name = Path(asset["href"]).name
        out[key] = (tuple(asset["roles"]), asset.get("mlm:artifact_type"), name[name.index(".") :])
    return out


@pytest.mark.parametrize(
    ("artifacts", "primary"), [(("onnx", "torchscript", "safetensors"), "torchscript"), (("safetensors",), None)]
)
def test_both_layouts_write_the_same_model_and_runtime_files(tmp_path, assert_valid, artifacts, primary):
    torch.manual_seed(0)
    model = SmallUNet(in_channels=3, num_classes=2).eval()
    x = torch.randn(2, 3, 32, 32)
    common = {"artifacts": artifacts, "primary": primary, "artifact_timeout": 120.0, "example_input": x, **WHEN}
    flat = export_mlm(model, out_dir=tmp_path / "flat", **common)
    hf = export_mlm(model, out_dir=tmp_path / "hf", layout="huggingface", **common)
    flat_data, hf_data = assert_valid(flat), assert_valid(hf)
    written = suffixes(tmp_path / "flat", flat.id)
    assert written == suffixes(tmp_path / "hf", "model")
    assert {".requirements.txt", ".environment.txt"} <= written
    assert ".pt2" not in written  # artifacts= is honoured: no default .pt2 in either layout
    assert model_assets(flat_data) == model_assets(hf_data)
    want = primary or artifacts[0]
    assert Path(hf_data["assets"]["model"]["href"]).suffix == {"torchscript": ".torchscript"}.get(want, f".{want}")
    for asset in json.loads((tmp_path / "hf" / "mlm.json").read_text())["assets"].values():
        assert asset["file:checksum"] == file_checksum(tmp_path / "hf" / asset["href"])
