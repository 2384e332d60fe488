"""Attack tests: model files from strangers are inspected before anything in them is loaded or run."""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import zipfile
from pathlib import Path

import pytest
import torch

from mlm_export import export_mlm, verify_item
from mlm_export._artifact_safety import UnsafeArtifactError, check_onnx, check_pt2, check_torchscript
from mlm_export._write import file_checksum

from .models import SmallUNet

WHEN = {"datetime": dt.datetime(2024, 1, 1, tzinfo=dt.UTC)}


class _Marker:
    """Unpickling this creates a file: the stand-in for any code a pickle can run."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (str(self.path), "w"))


def _export(tmp_path: Path, artifacts: str) -> tuple[Path, dict]:
    out = tmp_path / "model"
    export_mlm(
        SmallUNet(in_channels=3, num_classes=2), example_input=torch.randn(2, 3, 32, 32), out_dir=out,
        name="Small UNet", artifacts=artifacts, **WHEN,
    )  # fmt: skip
    item_path = out / "small-unet.json"
    return item_path, json.loads(item_path.read_text())


def _rewrite(path: Path, replace: dict[str, bytes]) -> None:
    """Rewrite a zip archive with some members replaced (matched by name suffix)."""
    with zipfile.ZipFile(path) as z:
        members = [(i.filename, z.read(i.filename)) for i in z.infolist()]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        for name, data in members:
            for suffix, new in replace.items():
                if name.endswith(suffix):
                    data = new
            z.writestr(name, data)


def _restamp(item_path: Path, item: dict, key: str) -> None:
    """Make the Item state the tampered file's size and checksum, as an attacker who controls both would."""
    f = item_path.parent / item["assets"][key]["href"]
    item["assets"][key]["file:size"] = f.stat().st_size
    item["assets"][key]["file:checksum"] = file_checksum(f)
    item_path.write_text(json.dumps(item))


def _member(path: Path, suffix: str) -> bytes:
    with zipfile.ZipFile(path) as z:
        return z.read(next(n for n in z.namelist() if n.endswith(suffix)))


def test_pt2_with_pickled_sample_inputs_is_refused(tmp_path):
    item_path, item = _export(tmp_path, "pt2")
    marker = tmp_path / "pwned"
    evil = io.BytesIO()
    torch.save(_Marker(marker), evil)
    pt2 = item_path.parent / "small-unet.pt2"
    _rewrite(pt2, {"data/sample_inputs/model.pt": evil.getvalue()})
    _restamp(item_path, item, "model")

    with pytest.raises(UnsafeArtifactError, match=r"sample_inputs/model.pt' is not plain tensors.*trust=True"):
        check_pt2(pt2)
    checks = verify_item(item_path)
    load = next(c for c in checks if c.name == "load model")
    assert not load.ok and "could run code" in load.detail
    assert not marker.exists()
    # the control: PyTorch's own loader runs the payload (it retries with weights_only=False), so the check matters
    with contextlib.suppress(Exception):  # it then fails on the payload's result; the file exists by then
        torch.export.load(str(pt2))
    assert marker.exists()


def test_trust_flag_is_the_only_way_past_the_check(tmp_path):
    item_path, item = _export(tmp_path, "pt2")
    marker = tmp_path / "trusted"
    evil = io.BytesIO()
    torch.save(_Marker(marker), evil)
    _rewrite(item_path.parent / "small-unet.pt2", {"data/sample_inputs/model.pt": evil.getvalue()})
    _restamp(item_path, item, "model")
    with contextlib.suppress(Exception):
        verify_item(item_path, trust=True)
    assert marker.exists()


def test_pt2_with_pickled_weights_is_refused(tmp_path):
    item_path, _ = _export(tmp_path, "pt2")
    pt2 = item_path.parent / "small-unet.pt2"
    config = json.loads(_member(pt2, "model_weights_config.json"))
    first = next(iter(config["config"]))
    config["config"][first]["use_pickle"] = True
    _rewrite(pt2, {"model_weights_config.json": json.dumps(config).encode()})
    with pytest.raises(UnsafeArtifactError, match=rf"stores '{first}' as a pickle"):
        check_pt2(pt2)


def test_checksum_mismatch_stops_verify_before_loading(tmp_path):
    item_path, _ = _export(tmp_path, "pt2")
    marker = tmp_path / "pwned"
    evil = io.BytesIO()
    torch.save(_Marker(marker), evil)
    _rewrite(item_path.parent / "small-unet.pt2", {"data/sample_inputs/model.pt": evil.getvalue()})
    checks = verify_item(item_path, trust=True)  # even trusted: the file is not the one the Item describes
    assert [c.name for c in checks][-1] == "load model"
    assert not checks[-1].ok and "not loaded" in checks[-1].detail
    assert not next(c for c in checks if c.name == "files").ok
    assert not marker.exists()


def test_torchscript_naming_a_python_callable_is_refused(tmp_path):
    item_path, item = _export(tmp_path, "torchscript")
    ts = item_path.parent / "small-unet.torchscript"
    evil = io.BytesIO()
    import pickle

    pickle.dump(_Marker(tmp_path / "pwned"), evil, protocol=2)
    _rewrite(ts, {"/data.pkl": evil.getvalue()})
    with pytest.raises(UnsafeArtifactError, match=r"names the Python object '(_io|io|builtins)\.open'"):
        check_torchscript(ts)
    _restamp(item_path, item, "model")
    load = next(c for c in verify_item(item_path) if c.name == "load model")
    assert not load.ok and ".open'" in load.detail


def test_torchscript_calling_foreign_operators_is_refused(tmp_path):
    item_path, _ = _export(tmp_path, "torchscript")
    ts = item_path.parent / "small-unet.torchscript"
    with zipfile.ZipFile(ts) as z:
        code = next(n for n in z.namelist() if "/code/" in n and n.endswith(".py"))
    text = _member(ts, code).decode() + "\n_ = ops.evil.run_shell\n"
    _rewrite(ts, {code: text.encode()})
    with pytest.raises(UnsafeArtifactError, match=r"calls the operator evil::run_shell"):
        check_torchscript(ts)


def test_onnx_reading_external_data_outside_the_folder_is_refused(tmp_path):
    import onnx

    item_path, item = _export(tmp_path, "onnx")
    path = item_path.parent / "small-unet.onnx"
    secret = tmp_path / "secret.bin"
    secret.write_bytes(b"\0" * 4096)
    model = onnx.load(str(path))
    tensor = model.graph.initializer[0]
    tensor.ClearField("raw_data")
    tensor.data_location = onnx.TensorProto.EXTERNAL
    for k, v in {"location": "../secret.bin", "offset": "0", "length": "64"}.items():
        tensor.external_data.add(key=k, value=v)
    onnx.save(model, str(path))
    with pytest.raises(UnsafeArtifactError, match=r"reads external data from '\.\./secret\.bin', outside"):
        check_onnx(path, path.parent)
    _restamp(item_path, item, "model")
    load = next(c for c in verify_item(item_path) if c.name == "load model")
    assert not load.ok and "outside" in load.detail


def test_model_file_outside_the_item_folder_is_not_loaded(tmp_path):
    item_path, item = _export(tmp_path, "pt2")
    outside = tmp_path / "elsewhere.pt2"
    (item_path.parent / "small-unet.pt2").rename(outside)
    item["assets"]["model"]["href"] = "../elsewhere.pt2"
    item_path.write_text(json.dumps(item))
    checks = verify_item(item_path, trust=True)
    assert not any(c.ok for c in checks if c.name == "load model")
