"""The openEO-ready profile, checked by re-doing what openeo-processes-dask-ml does (tests/openeo_reader.py).

Cited lines are of github.com/Open-EO/openeo-processes-dask-ml at commit 60a75c8, under
``openeo_processes_dask_ml/process_implementations`` unless a path says otherwise.
"""

from __future__ import annotations

import _socket
import functools
import http.server
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from mlm_export import InvalidOptionError, export_mlm
from mlm_export._torchscript import write_torchscript
from mlm_export._write import file_checksum
from mlm_export.errors import TorchScriptError

from .models import DictInput, SmallUNet
from .openeo_reader import Cube, OpenEOReaderError, check_cube, fetch_model, load_stac_ml, predict

BANDS = ["B02", "B03", "B04", "B08"]
KW: dict[str, Any] = {
    "bands": BANDS,
    "classes": ["water", "land", "cloud"],
    "value_scaling": [{"type": "z-score", "mean": 1000.0, "stddev": 500.0}],
    "datetime": None,
    "start_datetime": __import__("datetime").datetime(2020, 1, 1),
    "end_datetime": __import__("datetime").datetime(2021, 1, 1),
}


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, str]]:
    """A real HTTP server on 127.0.0.1 serving a folder (the only address tests may connect to)."""

    def loopback_only(sock: socket.socket, address: Any) -> Any:
        if not (isinstance(address, tuple) and address[0] == "127.0.0.1"):
            raise OSError("network access is disabled in tests")
        return _socket.socket.connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", loopback_only)
    folder = tmp_path / "published"
    folder.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *a, **k: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield folder, f"http://127.0.0.1:{server.server_address[1]}/models/unet"
    finally:
        server.shutdown()
        server.server_close()


def test_openeo_item_loads_checks_and_predicts_in_openeos_path(served: tuple[Path, str], tmp_path: Path, assert_valid):
    """load_model.py 32-96 accepts the Item, data_model.py 376-392 the cube, run_pytorch_model.py 61 loads the
    TorchScript file downloaded from the Item's absolute href (download_utils.py 89-99) and the result chunk has
    the shape the Item states (data_model.py 617-646): equal to the eager model on the same scaled chunks."""
    folder, url = served
    model = SmallUNet(4, 3).eval()
    item = export_mlm(
        model, example_input=torch.randn(2, 4, 32, 32), out_dir=folder / "models" / "unet", profile="openeo",
        base_url=url, pretrained=True, batch_size=4, **KW,
    )  # fmt: skip
    data = assert_valid(item)
    props = data["properties"]
    assert props["mlm:input"][0]["input"] == {"shape": [-1, 4, 32, 32], "dim_order": ["batch", "bands", "y", "x"],
                                              "data_type": "float32"}  # fmt: skip
    assert props["mlm:output"][0]["result"]["shape"] == [-1, 3, 32, 32]
    assert props["mlm:output"][0]["result"]["dim_order"] == ["batch", "class", "y", "x"]
    assert props["mlm:framework"].lower() == "pytorch"
    model_asset = data["assets"]["model"]
    assert model_asset["href"] == f"{url}/smallunet.torchscript"
    assert model_asset["mlm:artifact_type"] == "torch.jit.save"
    assert all(a["href"].startswith(url + "/") for a in data["assets"].values())

    stac_item = load_stac_ml(data)
    cube = Cube(("bands", "y", "x"), ["B01", *BANDS], np.random.default_rng(0).uniform(0, 3000, (5, 64, 64)))
    check_cube(stac_item, cube)
    cache = tmp_path / "cache"
    cache.mkdir()
    model_file = fetch_model(model_asset["href"], cache)
    assert file_checksum(model_file) == model_asset["file:checksum"]
    result = predict(stac_item, cube, model_file)
    assert result.shape == (4, 3, 32, 32)
    chunk = (cube.values[1:, :32, 32:64] - 1000.0) / 500.0  # second chunk: y 0-32, x 32-64
    with torch.no_grad():
        want = model(torch.from_numpy(chunk[None].astype("float32")))
    np.testing.assert_allclose(result[1], want[0].numpy(), atol=1e-4)


def test_the_default_item_is_refused_by_openeo(tmp_path: Path):
    """Without the profile openEO refuses our spec-first Item: ``height``/``width`` match no cube dim
    (dim_utils.py 126-160, data_model.py 238-248) and the .pt2 href is relative (download_utils.py 93-99)."""
    item = export_mlm(SmallUNet(4, 3).eval(), example_input=torch.randn(2, 4, 32, 32), out_dir=tmp_path, **KW)
    data = item.to_dict(include_self_link=False, transform_hrefs=False)
    stac_item = load_stac_ml(data)  # the metadata itself loads
    cube = Cube(("bands", "y", "x"), BANDS, np.zeros((4, 64, 64)))
    with pytest.raises(OpenEOReaderError, match="missing the following dimensions.*height"):
        check_cube(stac_item, cube)
    with pytest.raises(OpenEOReaderError, match="cannot download the model from './smallunet.pt2'"):
        fetch_model(data["assets"]["model"]["href"], tmp_path)


def test_openeo_reader_refuses_missing_bands_and_pretrained_false(tmp_path: Path):
    """data_model.py 370-374 (a band the cube lacks) and ml_predict.py 8-12 (mlm:pretrained false)."""
    item = export_mlm(
        SmallUNet(4, 3).eval(), example_input=torch.randn(2, 4, 32, 32), profile="openeo",
        base_url="https://example.org/m/", **KW,
    )  # fmt: skip
    stac_item = load_stac_ml(item.to_dict(include_self_link=False, transform_hrefs=False))
    with pytest.raises(OpenEOReaderError, match="unavailable in the datacube.*B08"):
        check_cube(stac_item, Cube(("bands", "y", "x"), [*BANDS[:3], "B05"], np.zeros((4, 64, 64))))
    stac_item.properties["mlm:pretrained"] = False
    with pytest.raises(OpenEOReaderError, match="not \\(pre\\)trained"):
        check_cube(stac_item, Cube(("bands", "y", "x"), BANDS, np.zeros((4, 64, 64))))


@pytest.mark.parametrize(
    "base_url",
    [
        "file:///etc/",
        "/srv/models/",
        "javascript:alert(1)",
        "ftp://example.org/models/",
        "https://user:secret@example.org/models/",
        "https://example.org/models/?sig=abc",
        "https://example.org/models/#x",
        "https:///models/",
        "https://exa mple.org/",
    ],
)
def test_base_url_must_be_a_plain_http_or_s3_url(base_url: str):
    """Only hrefs openEO downloads (download_utils.py 93-99), and none that leak credentials or signatures."""
    with pytest.raises(InvalidOptionError, match="base_url= must be an http://, https:// or s3:// URL"):
        export_mlm(SmallUNet(), example_input=torch.randn(1, 4, 16, 16), profile="openeo", base_url=base_url)


def test_openeo_profile_option_errors():
    x = torch.randn(1, 4, 16, 16)
    with pytest.raises(InvalidOptionError, match="profile='openeo' needs base_url="):
        export_mlm(SmallUNet(), example_input=x, profile="openeo")
    with pytest.raises(InvalidOptionError, match="profile= must be one of 'default', 'openeo'"):
        export_mlm(SmallUNet(), example_input=x, profile="openEO-ish", base_url="https://example.org/")
    with pytest.raises(InvalidOptionError, match="ml_predict refuses.*pretrained=False"):
        export_mlm(SmallUNet(), example_input=x, profile="openeo", base_url="s3://bucket/m/", pretrained=False)
    with pytest.raises(InvalidOptionError, match="one tensor in and one tensor out"):
        export_mlm(
            DictInput(), example_input={"optical": torch.randn(1, 4, 8, 8), "radar": torch.randn(1, 2, 8, 8)},
            profile="openeo", base_url="https://example.org/", tasks="classification", datetime=KW["start_datetime"],
        )  # fmt: skip


def test_base_url_alone_makes_default_hrefs_absolute(tmp_path: Path, assert_valid):
    item = export_mlm(
        SmallUNet(4, 3).eval(), example_input=torch.randn(2, 4, 32, 32), out_dir=tmp_path,
        base_url="https://example.org/models/v1", **KW,
    )  # fmt: skip
    data = assert_valid(item)
    assert data["assets"]["model"]["href"] == "https://example.org/models/v1/smallunet.pt2"
    assert data["assets"]["weights"]["href"] == "https://example.org/models/v1/smallunet.safetensors"
    assert data["properties"]["mlm:input"][0]["input"]["dim_order"] == ["batch", "bands", "height", "width"]


class BatchBranch(nn.Module):
    """Not scriptable (numpy in forward); a trace at batch 2 freezes the ``> 1`` branch."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if np.prod(x.shape[:1]) > 1:
            return x * 2
        return x * 3


def test_write_torchscript_refuses_a_copy_that_differs(tmp_path: Path):
    path = tmp_path / "m.pt"
    with pytest.raises(TorchScriptError, match="differs from the model by 1 .*on a batch of 1"):
        write_torchscript(BatchBranch(), torch.ones(2, 1), path)
    assert list(tmp_path.iterdir()) == []  # nothing written, no temporary file left


def test_write_torchscript_loads_back_equal_and_hashes_the_file(tmp_path: Path):
    model = SmallUNet(4, 3).train()
    path = tmp_path / "m.pt"
    size, checksum = write_torchscript(model, torch.randn(2, 4, 32, 32), path)
    assert model.training  # mode restored
    assert (size, checksum) == (path.stat().st_size, file_checksum(path))
    loaded = torch.jit.load(str(path))
    x = torch.randn(3, 4, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model.eval()(x), atol=1e-4, rtol=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]


def test_callback_with_the_openeo_profile_writes_a_torchscript_per_checkpoint(tmp_path: Path):
    """Every live checkpoint's Item passes openEO's loading checks (load_model.py 32-96) and its TorchScript runs;
    a pruned checkpoint's TorchScript goes with it."""
    pytest.importorskip("lightning")
    from lightning.pytorch.callbacks import ModelCheckpoint

    from mlm_export import MLMExportCallback

    from .test_callback import fit, items_in

    ckpt_dir = tmp_path / "ckpts"
    callback = MLMExportCallback(
        profile="openeo", base_url="https://models.example.org/run1", datetime=KW["start_datetime"]
    )
    fit(tmp_path, ModelCheckpoint(dirpath=ckpt_dir, monitor="val_loss", save_top_k=1), callback, epochs=2)
    items = items_in(ckpt_dir)
    assert len(items) == 1
    ((name, data),) = items.items()
    stem = name.removesuffix(".mlm.json")
    assert sorted(p.name for p in ckpt_dir.glob("*.torchscript")) == [f"{stem}.torchscript"]
    load_stac_ml(data)
    model_asset = data["assets"]["model"]
    assert model_asset["href"] == f"https://models.example.org/run1/{stem}.torchscript"
    assert data["assets"]["checkpoint"]["roles"] == ["mlm:checkpoint"]
    assert data["properties"]["mlm:input"][0]["input"]["dim_order"] == ["batch", "bands", "y", "x"]
    assert data["properties"]["mlm:input"][0]["input"]["shape"] == [-1, 3, 16, 16]
    scripted = torch.jit.load(str(ckpt_dir / f"{stem}.torchscript"))
    assert scripted(torch.zeros(5, 3, 16, 16)).shape == (5, 4)
    assert file_checksum(ckpt_dir / f"{stem}.torchscript") == model_asset["file:checksum"]


def test_convert_with_the_openeo_profile(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    """``mlm-export convert --profile openeo --base-url``: TorchScript beside the checkpoint, openEO loads the Item."""
    from mlm_export.cli import main

    model = SmallUNet(4, 3).eval()
    torch.save(model.state_dict(), tmp_path / "unet.pth")
    code = main([
        "convert", str(tmp_path / "unet.pth"), "--model", "tests.models:SmallUNet",
        "--init-args", "{in_channels: 4, num_classes: 3}", "--input-shape", "2,4,32,32",
        "--bands", ",".join(BANDS), "--tasks", "semantic-segmentation",
        "--profile", "openeo", "--base-url", "https://models.example.org/unet/", "--allow-module", "tests", "--quiet",
    ])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    data = json.loads((tmp_path / "unet.mlm.json").read_text())
    load_stac_ml(data)
    assert data["assets"]["model"]["href"] == "https://models.example.org/unet/unet.torchscript"
    assert data["assets"]["checkpoint"]["roles"] == ["mlm:checkpoint"]
    assert data["properties"]["mlm:input"][0]["input"]["shape"] == [-1, 4, 32, 32]
    scripted = torch.jit.load(str(tmp_path / "unet.torchscript"))
    x = torch.randn(1, 4, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), model(x), atol=1e-4, rtol=0)
    assert main(["convert", str(tmp_path / "unet.pth"), "--profile", "openeo", "--overwrite", "--quiet"]) == 2
    assert "--profile openeo needs --base-url" in capsys.readouterr().err


class TimeSeriesSegmenter(nn.Module):
    """[batch, time, bands, height, width] -> [batch, class, height, width]."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Conv2d(4, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x.mean(1))


def test_a_time_series_model_matches_an_openeo_cube_with_t(tmp_path: Path):
    """A time dim is ``t`` (dim_utils.py 13): openEO reorders a (bands, t, x, y) cube to the model's
    (t, bands, y, x) (data_model.py 427-437) and cuts 16 x 16 chunks with all 6 dates."""
    model = TimeSeriesSegmenter().eval()
    item = export_mlm(
        model, example_input=torch.randn(2, 6, 4, 16, 16), out_dir=tmp_path, profile="openeo",
        base_url="https://example.org/ts/", bands=BANDS, tasks="semantic-segmentation", datetime=KW["start_datetime"],
    )  # fmt: skip
    data = item.to_dict(include_self_link=False, transform_hrefs=False)
    assert data["properties"]["mlm:input"][0]["input"]["dim_order"] == ["batch", "t", "bands", "y", "x"]
    stac_item = load_stac_ml(data)
    values = np.random.default_rng(1).normal(size=(4, 6, 32, 16)).astype("float32")  # bands, t, x, y
    cube = Cube(("bands", "t", "x", "y"), BANDS, values)
    check_cube(stac_item, cube)
    result = predict(stac_item, cube, tmp_path / "timeseriessegmenter.torchscript")
    assert result.shape == (2, 3, 16, 16)  # two chunks along x
    with torch.no_grad():
        want = model(torch.from_numpy(values.transpose(1, 0, 3, 2)[None, :, :, :, 16:32].copy()))
    np.testing.assert_allclose(result[1], want[0].numpy(), atol=1e-4)
