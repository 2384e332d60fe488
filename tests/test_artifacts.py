"""Model files: every format of artifacts=, one mlm:model, parity with the eager model, fallbacks, no orphans."""

from __future__ import annotations

import datetime as dt
import json
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import safetensors.torch
import torch
import torchvision
from torch import nn

from mlm_export import export_mlm, verify_item
from mlm_export._write import file_checksum
from mlm_export.errors import InvalidOptionError, MLMExportWarning

from .models import SmallUNet

WHEN = {"datetime": dt.datetime(2024, 1, 1, tzinfo=dt.UTC)}
ALL = ("pt2", "torchscript", "onnx", "safetensors", "checkpoint")


#: Files every export with ``out_dir`` writes beside the model files (provenance): not model files.
RUNTIME_ASSETS = {"inference_runtime", "training_runtime"}


def _model_files(folder) -> list[str]:
    return sorted(f.name for f in folder.iterdir() if not f.name.endswith((".requirements.txt", ".environment.txt")))


def _model_assets(data: dict) -> list[str]:
    return [k for k, a in data["assets"].items() if "mlm:model" in a["roles"]]


def test_every_format_is_written_described_and_matches_the_model(tmp_path, assert_valid):
    torch.manual_seed(0)
    model = SmallUNet(in_channels=3, num_classes=2).eval()
    item = export_mlm(model, example_input=torch.randn(2, 3, 32, 32), out_dir=tmp_path, artifacts=ALL, **WHEN)
    data = assert_valid(json.loads((tmp_path / "smallunet.json").read_text()))
    assets = data["assets"]
    assert _model_assets(data) == ["model"]
    assert assets["model"]["href"] == "./smallunet.pt2"
    assert assets["model"]["mlm:artifact_type"] == "torch.export.save"
    assert set(assets) == {
        "model",
        "torchscript",
        "onnx",
        "weights",
        "checkpoint",
        "inference_runtime",
        "training_runtime",
    }
    for key, asset in assets.items():
        f = tmp_path / asset["href"]
        assert asset["file:size"] == f.stat().st_size and asset["file:checksum"] == file_checksum(f)
        if key != "model":
            assert "mlm:artifact_type" not in asset
    assert assets["onnx"]["type"] == "application/octet-stream; framework=onnx"
    assert item.assets["model"].extra_fields["mlm:artifact_type"] == "torch.export.save"

    # each file, loaded as a newcomer would, gives the eager outputs at batch 1 and 3 and at another size
    import onnxruntime as ort

    session = ort.InferenceSession(str(tmp_path / "smallunet.onnx"), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape == ["batch", 3, "height", "width"]
    assert session.get_outputs()[0].shape[:2] == ["batch", 2]
    program = torch.export.load(str(tmp_path / "smallunet.pt2")).module()
    scripted = torch.jit.load(str(tmp_path / "smallunet.torchscript"))
    for shape in [(1, 3, 32, 32), (3, 3, 32, 32), (3, 3, 64, 48)]:
        x = torch.randn(shape)
        with torch.no_grad():
            want = model(x)
            got_onnx = torch.from_numpy(session.run(None, {session.get_inputs()[0].name: x.numpy()})[0])
            for got in (program(x), scripted(x), got_onnx):
                assert got.shape == want.shape
                assert float((got - want).abs().max()) <= 1e-4
    state = model.state_dict()
    loaded = torch.load(tmp_path / "smallunet.pt", weights_only=True)
    assert loaded.keys() == state.keys() and all(torch.equal(loaded[k], v) for k, v in state.items())
    weights = safetensors.torch.load_file(tmp_path / "smallunet.safetensors")
    assert all(torch.equal(weights[k], v) for k, v in state.items())


@pytest.mark.parametrize(
    ("artifacts", "primary", "artifact_type", "others"),
    [
        ("onnx,safetensors", None, "torch.onnx.export", {"weights"}),
        (("safetensors", "torchscript"), "torchscript", "torch.jit.save", {"weights"}),
        (["checkpoint"], None, "torch.save", set()),
    ],
)
def test_primary_is_the_only_mlm_model(tmp_path, assert_valid, artifacts, primary, artifact_type, others):
    item = export_mlm(
        SmallUNet(in_channels=3, num_classes=2), example_input=torch.randn(2, 3, 32, 32), out_dir=tmp_path,
        artifacts=artifacts, primary=primary, **WHEN,
    )  # fmt: skip
    data = assert_valid(item)
    assert _model_assets(data) == ["model"]
    assert data["assets"]["model"]["mlm:artifact_type"] == artifact_type
    assert set(data["assets"]) - {"model"} - RUNTIME_ASSETS == others


def test_unknown_format_and_primary_are_refused_before_anything_runs(tmp_path):
    model = SmallUNet(in_channels=3, num_classes=2)
    x = torch.randn(2, 3, 32, 32)
    with pytest.raises(InvalidOptionError, match=r"artifacts= names unknown model file format\(s\) \['tflite'\]"):
        export_mlm(model, example_input=x, out_dir=tmp_path, artifacts=("pt2", "tflite"), **WHEN)
    with pytest.raises(InvalidOptionError, match=r"primary='onnx' is not among artifacts="):
        export_mlm(model, example_input=x, out_dir=tmp_path, artifacts="pt2", primary="onnx", **WHEN)
    assert list(tmp_path.iterdir()) == []


class CumMax(nn.Module):
    """Uses torch.cummax, which the ONNX exporter cannot convert (torch.export and TorchScript can)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cummax(self.conv(x), dim=-1).values


def test_a_format_that_fails_is_one_message_and_the_others_are_written(tmp_path, assert_valid):
    with pytest.warns(MLMExportWarning) as caught:
        item = export_mlm(
            CumMax(), example_input=torch.randn(2, 3, 16, 16), tasks="semantic-segmentation", out_dir=tmp_path,
            artifacts=("onnx", "pt2", "safetensors"), **WHEN,
        )  # fmt: skip
    messages = [str(w.message) for w in caught]
    failed = [m for m in messages if m.startswith("torch.onnx.export could not export CumMax (")]
    assert len(failed) == 1 and "Leave onnx out of artifacts=" in failed[0]
    assert any("is the pt2 file instead of the onnx file" in m for m in messages)
    data = assert_valid(item)
    assert data["assets"]["model"]["mlm:artifact_type"] == "torch.export.save"
    assert _model_files(tmp_path) == ["cummax.json", "cummax.pt2", "cummax.safetensors"]


@pytest.mark.slow
def test_resnet18_pt2_runs_the_sizes_the_item_allows(tmp_path, assert_valid):
    # exported the usual way at 64x64 the .pt2 of a ResNet refuses 32x32 (its last feature map becomes 1x1, where
    # torch.export specialises), which the eager model and the Item ([-1, 3, -1, -1]) accept: it is exported
    # size-oblivious instead, runs 32x32, and its asset says so
    model = torchvision.models.resnet18(num_classes=4)
    item = export_mlm(
        model, example_input=torch.randn(2, 3, 64, 64), tasks="classification", out_dir=tmp_path,
        artifacts="pt2", **WHEN,
    )  # fmt: skip
    data = assert_valid(item)
    assert data["properties"]["mlm:input"][0]["input"]["shape"] == [-1, 3, -1, -1]
    description = data["assets"]["model"]["description"]
    assert description.startswith("Exported size-oblivious") and "smallest size (1x3x32x32)" in description
    assert "Refuses" not in description
    checks = {c.name: c for c in verify_item(tmp_path / "resnet.json")}
    assert checks["parity model (pt2)"].ok, checks["parity model (pt2)"].detail


class MetaNamed(nn.Module):
    """A submodule named ``meta``: its .pt2 saves but does not load back (a PyTorch bug)."""

    def __init__(self) -> None:
        super().__init__()
        self.meta = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.meta(x)


def test_pt2_that_does_not_load_back_is_not_the_model(tmp_path, assert_valid):
    with pytest.warns(MLMExportWarning) as caught:
        item = export_mlm(
            MetaNamed(), example_input=torch.randn(2, 3, 16, 16), tasks="semantic-segmentation", out_dir=tmp_path,
            **WHEN,
        )  # fmt: skip
    assert any("does not load back" in str(w.message) for w in caught)
    data = assert_valid(item)
    assert data["assets"]["model"]["mlm:artifact_type"] == "torch.jit.save"
    assert not list(tmp_path.glob("*.pt2")) and not list(tmp_path.glob(".*"))


def test_export_save_failure_leaves_no_orphan(tmp_path, monkeypatch, assert_valid):
    def broken_save(*args, **kwargs):
        raise RuntimeError("SerializeError: Failed serializing node ceil")

    monkeypatch.setattr(torch.export, "save", broken_save)
    with pytest.warns(MLMExportWarning) as caught:
        item = export_mlm(SmallUNet(3, 2), example_input=torch.randn(2, 3, 32, 32), out_dir=tmp_path, **WHEN)
    assert str(caught[0].message).startswith("torch.export could not export SmallUNet (RuntimeError: Serial")
    assert assert_valid(item)["assets"]["model"]["mlm:artifact_type"] == "torch.jit.save"
    assert _model_files(tmp_path) == [
        "smallunet.json", "smallunet.safetensors", "smallunet.torchscript",
    ]  # fmt: skip


def test_item_write_failure_removes_the_model_files(tmp_path, monkeypatch):
    import mlm_export._api

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(mlm_export._api, "atomic_write_json", broken)
    with pytest.raises(OSError, match="disk full"):
        export_mlm(SmallUNet(3, 2), example_input=torch.randn(2, 3, 32, 32), out_dir=tmp_path, **WHEN)
    assert list(tmp_path.iterdir()) == []


class SlowToExport(nn.Module):
    """Fast to run, slow to export (as timm davit_tiny is in torch.export): the export waits for ``GATE``."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # only the .pt2 export's own thread waits: torch.export's flag (and the module calls it traces) are
        # process-wide, so another thread's forward may run while that export is on, and must not wait
        if threading.current_thread().name.startswith(PT2_THREAD) and not EXPORTING.is_set():
            EXPORTING.set()
            GATE.wait(60)
        return self.conv(x)


GATE = threading.Event()
EXPORTING = threading.Event()
PT2_THREAD = "mlm-export: writing the pt2"


def _export_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(PT2_THREAD)]


@pytest.mark.parametrize("on_main_thread", [True, False], ids=["main-thread", "other-thread"])
def test_slow_export_is_abandoned_with_a_message_and_its_late_file_never_lands(tmp_path, assert_valid, on_main_thread):
    GATE.clear()
    EXPORTING.clear()
    result: list[Any] = []

    def export() -> None:
        with pytest.warns(MLMExportWarning) as caught:
            item = export_mlm(
                SlowToExport(), example_input=torch.randn(2, 3, 8, 8), tasks="semantic-segmentation",
                out_dir=tmp_path, artifacts=("pt2", "torchscript"), artifact_timeout=0.5, **WHEN,
            )  # fmt: skip
        result.extend([item, [str(w.message) for w in caught]])

    if on_main_thread:
        export()
    else:  # a notebook's or the callback's thread: bounded too (a signal could not do it there)
        thread = threading.Thread(target=export)
        thread.start()
        thread.join(120)
    item, messages = result
    late = _export_threads()
    assert late and all(t.is_alive() for t in late)  # returned while the export still ran: not waited for
    assert any("took longer than 0.5 s and was abandoned; raise artifact_timeout=" in m for m in messages)
    assert assert_valid(item)["assets"]["model"]["mlm:artifact_type"] == "torch.jit.save"
    GATE.set()  # the abandoned export now finishes; its file must be discarded, not land beside the Item
    for t in late:
        t.join(60)
    assert not any(t.is_alive() for t in late)
    assert not list(tmp_path.glob("*.pt2"))
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_verify_prints_max_abs_diff_per_model_file(tmp_path):
    from mlm_export.cli import main

    export_mlm(SmallUNet(3, 2), example_input=torch.randn(2, 3, 32, 32), out_dir=tmp_path, artifacts=ALL, **WHEN)
    checks = {c.name: c for c in verify_item(tmp_path / "smallunet.json")}
    assert checks["parity model (pt2)"].ok
    for key, fmt in [("torchscript", "torchscript"), ("onnx", "onnx")]:
        c = checks[f"parity {key} ({fmt})"]
        assert c.ok and c.detail.startswith("vs 'model': max abs diff ")
        assert float(c.detail.split("max abs diff ")[1].split(";")[0]) <= 1e-4
    assert main(["verify", str(tmp_path / "smallunet.json"), "--quiet"]) == 0


def test_verify_finds_a_file_that_differs(tmp_path):
    export_mlm(SmallUNet(3, 2), example_input=torch.randn(2, 3, 32, 32), out_dir=tmp_path, artifacts="pt2,onnx", **WHEN)
    import onnx

    path = tmp_path / "smallunet.onnx"
    model = onnx.load(str(path))
    init = model.graph.initializer[0]
    values = onnx.numpy_helper.to_array(init).copy() + np.float32(0.5)
    init.CopyFrom(onnx.numpy_helper.from_array(values, init.name))
    onnx.save(model, str(path))
    item_path = tmp_path / "smallunet.json"
    item = json.loads(item_path.read_text())
    item["assets"]["onnx"]["file:size"] = path.stat().st_size
    item["assets"]["onnx"]["file:checksum"] = file_checksum(path)
    item_path.write_text(json.dumps(item))
    c = next(c for c in verify_item(item_path) if c.name == "parity onnx (onnx)")
    assert not c.ok and "exceeds 0.0001" in c.detail


@pytest.mark.slow
@pytest.mark.parametrize(
    "builder",
    [
        torchvision.models.detection.fasterrcnn_mobilenet_v3_large_320_fpn,
        torchvision.models.detection.retinanet_resnet50_fpn,
        torchvision.models.detection.maskrcnn_resnet50_fpn,
    ],
)
def test_torchvision_detection_falls_back_to_torchscript(tmp_path, assert_valid, builder):
    # min_size/max_size: the model resizes images to 96 px instead of 800 (the same graph, far less compute)
    model = builder(weights=None, weights_backbone=None, num_classes=3, min_size=96, max_size=96)
    with pytest.warns(MLMExportWarning) as caught:
        item = export_mlm(model, example_input=torch.rand(2, 3, 96, 96), out_dir=tmp_path, **WHEN)
    assert any("is the torchscript file instead of the pt2 file" in str(w.message) for w in caught)
    data = assert_valid(item)
    assert data["assets"]["model"]["mlm:artifact_type"] == "torch.jit.save"
    scripted = torch.jit.load(str(tmp_path / data["assets"]["model"]["href"]))
    detections = scripted(torch.rand(3, 3, 96, 96))  # the Item's interface: a batch tensor in, one dict per image
    assert len(detections) == 3 and {"boxes", "labels", "scores"} <= set(detections[0])


@pytest.mark.slow
def test_timm_mobilevit_serialize_error_falls_back(tmp_path, assert_valid):
    timm = pytest.importorskip("timm")
    model = timm.create_model("mobilevit_xxs", pretrained=False, num_classes=5)
    with pytest.warns(MLMExportWarning) as caught:
        item = export_mlm(
            model, example_input=torch.randn(2, 3, 64, 64), tasks="classification", out_dir=tmp_path, **WHEN
        )
    assert any("torch.export could not export" in str(w.message) for w in caught)
    assert assert_valid(item)["assets"]["model"]["mlm:artifact_type"] == "torch.jit.save"
    assert not list(tmp_path.glob("*.pt2")) and not list(tmp_path.glob(".*"))


def test_without_out_dir_the_item_names_the_primary_file(tmp_path, monkeypatch, assert_valid):
    monkeypatch.chdir(tmp_path)
    item = export_mlm(SmallUNet(3, 2), example_input=torch.randn(2, 3, 32, 32), artifacts="onnx,safetensors", **WHEN)
    model = assert_valid(item)["assets"]["model"]
    assert model["href"] == "./smallunet.onnx" and model["mlm:artifact_type"] == "torch.onnx.export"
    assert list(tmp_path.iterdir()) == []


def test_demo_unet_item_states_the_odd_size_neither_runs(tmp_path, assert_valid):
    # the demo's U-Net (and its .pt2: Guard failed ... == 2 * (... // 2)) takes even sizes only, while the Item
    # says any size: the model file's asset states it, and verify accepts what is stated
    from mlm_export.demo import TinyUNet

    item = export_mlm(
        TinyUNet(6, 3), example_input=torch.randn(2, 6, 64, 64), out_dir=tmp_path, artifacts="pt2", **WHEN
    )
    description = assert_valid(item)["assets"]["model"]["description"]
    assert "odd size (1x6x63x63): the model itself fails too" in description
    checks = {c.name: c for c in verify_item(tmp_path / "tinyunet.json")}
    assert checks["parity model (pt2)"].ok and "odd size (1x6x63x63)" in checks["parity model (pt2)"].detail


def test_verify_rows_say_what_they_found(tmp_path, capsys, monkeypatch):
    """A row never says "ok" beside a failure: a check that holds only where it ran says "limited", and why.
    The file is this test's own, so it is trusted: the point here is the row, not the archive checks."""
    from mlm_export.cli import main
    from mlm_export.demo import TinyUNet

    monkeypatch.setenv("COLUMNS", "400")
    export_mlm(TinyUNet(6, 3), example_input=torch.randn(2, 6, 64, 64), out_dir=tmp_path, artifacts="pt2", **WHEN)
    checks = {c.name: c for c in verify_item(tmp_path / "tinyunet.json", trust=True)}
    parity = checks["parity model (pt2)"]
    assert (parity.ok, parity.status, parity.limited) == (True, "limited", True)
    assert parity.detail.startswith("the reference; refuses the sizes its description says it refuses: odd size")
    assert {c.status for n, c in checks.items() if n != "parity model (pt2)"} == {"ok"}
    assert main(["verify", str(tmp_path / "tinyunet.json"), "--trust-checkpoint"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if "parity model (pt2)" in line]
    assert len(rows) == 1 and " limited " in rows[0] and " ok " not in rows[0] and "Guard failed" in rows[0]
    assert main(["verify", str(tmp_path / "tinyunet.json"), "--json", "--trust-checkpoint"]) == 0
    results = {c["check"]: c for c in json.loads(capsys.readouterr().out)["results"]}
    assert results["parity model (pt2)"]["status"] == "limited" and results["schema"]["status"] == "ok"


def test_default_files_need_neither_onnx_nor_integrations(tmp_path):
    import subprocess
    import sys

    code = (
        "import sys, torch, datetime\nfrom mlm_export import export_mlm\n"
        f"export_mlm(torch.nn.Conv2d(3, 2, 1), example_input=torch.zeros(2, 3, 8, 8), out_dir={str(tmp_path)!r},"
        " tasks='semantic-segmentation', datetime=datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC))\n"
        "names = ('onnx', 'onnxruntime', 'onnxscript', 'lightning', 'torchvision')\n"
        "print(sorted(n for n in names if n in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"
    assert sorted(Path(p).suffix for p in _model_files(tmp_path)) == [".json", ".pt2", ".safetensors"]


def test_verify_checks_runnable_files_when_the_model_is_weights_only(tmp_path):
    export_mlm(
        SmallUNet(3, 2), example_input=torch.randn(2, 3, 32, 32), out_dir=tmp_path,
        artifacts="safetensors,torchscript,onnx", **WHEN,
    )  # fmt: skip
    checks = {c.name: c for c in verify_item(tmp_path / "smallunet.json")}
    assert not checks["load model"].ok and "model=" in checks["load model"].detail  # the API spells the keyword
    assert checks["parity torchscript (torchscript)"].ok
    assert checks["parity onnx (onnx)"].ok and "max abs diff" in checks["parity onnx (onnx)"].detail
