"""The command line: convert existing checkpoints safely, validate Items, verify that Items tell the truth."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
from pathlib import Path

import pytest
import safetensors.torch
import torch
import torchvision

from mlm_export import export_mlm

from .conftest import plain_validate, run
from .models import SmallUNet

L = pytest.importorskip("lightning")
from lightning.pytorch.callbacks import ModelCheckpoint  # noqa: E402

from mlm_export import MLMExportCallback  # noqa: E402

from .test_callback import TinyClassifier, fit  # noqa: E402

WHEN = dt.datetime(2024, 6, 1, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def run_dirs(tmp_path_factory):
    """Two real Lightning runs: one with the callback (embedded Items), one without."""
    root = tmp_path_factory.mktemp("runs")
    with_cb = root / "with"
    fit(with_cb, ModelCheckpoint(dirpath=with_cb / "ckpt", save_top_k=-1), MLMExportCallback(datetime=WHEN), epochs=2)
    for item in (with_cb / "ckpt").glob("*.mlm.json"):
        item.unlink()  # keep the checkpoints only: convert must rebuild the Items from what is embedded
    (with_cb / "ckpt" / "collection.json").unlink()
    plain = root / "plain"
    fit(plain, ModelCheckpoint(dirpath=plain / "ckpt", save_top_k=-1), epochs=2)
    return with_cb / "ckpt", plain / "ckpt"


def fresh(src: Path, tmp_path: Path) -> Path:
    dst = tmp_path / src.parent.name
    shutil.copytree(src, dst)
    return dst


def test_convert_run_with_embedded_items(run_dirs, tmp_path, capsys):
    directory = fresh(run_dirs[0], tmp_path)
    code, out, err = run(capsys, "convert", directory, "--json")
    assert code == 0, err
    report = json.loads(out)
    assert [r["status"] for r in report["results"]] == ["converted", "converted"]
    assert report["collections"] == [str(directory / "collection.json")]
    for ckpt in directory.glob("*.ckpt"):
        item = json.loads((directory / (ckpt.stem + ".mlm.json")).read_text())
        assert plain_validate(item) == []
        assert item["properties"]["mlm:input"][0]["bands"] == ["red", "green", "blue"]
        assert item["assets"]["model"]["file:size"] == ckpt.stat().st_size
        saved = torch.load(ckpt, weights_only=False)
        assert item["properties"]["lightning:global_step"] == saved["global_step"]
    assert plain_validate(json.loads((directory / "collection.json").read_text())) == []


def test_convert_plain_run_needs_model_then_uses_hyperparameters(run_dirs, tmp_path, capsys):
    directory = fresh(run_dirs[1], tmp_path)
    code, _, err = run(capsys, "convert", directory, "--quiet")
    assert code == 1
    assert "--model module:Class" in err
    assert not list(directory.glob("*.mlm.json"))
    code, out, err = run(
        capsys,
        "convert",
        directory,
        "--model",
        "tests.test_callback:TinyClassifier",
        "--allow-module",
        "tests",
        "--tasks",
        "classification",
        "--json",
    )
    assert code == 0, err
    results = json.loads(out)["results"]
    assert {r["parameters"] for r in results} == {sum(p.numel() for p in TinyClassifier().parameters())}
    item = json.loads(next(directory.glob("*.mlm.json")).read_text())
    assert plain_validate(item) == []
    assert item["properties"]["mlm:hyperparameters"] == {"in_channels": 3, "num_classes": 4, "lr": 0.05}
    assert item["properties"]["mlm:output"][0]["result"]["shape"] == [-1, 4]


def test_bare_state_dict_with_a_factory(tmp_path, capsys):
    model = torchvision.models.resnet18(num_classes=5)
    torch.save(model.state_dict(), tmp_path / "resnet.pth")
    safetensors.torch.save_file(model.state_dict(), tmp_path / "resnet.safetensors")
    code, out, err = run(
        capsys, "convert", tmp_path / "resnet.pth", tmp_path / "resnet.safetensors",
        "--factory", "torchvision.models:resnet18", "--init-args", "{num_classes: 5}",
        "--input-shape", "1,3,64,64", "--tasks", "classification", "--name", "ResNet-18", "--json",
    )  # fmt: skip
    assert code == 0, err
    item = json.loads((tmp_path / "resnet.mlm.json").read_text())
    assert plain_validate(item) == []
    assert item["properties"]["mlm:total_parameters"] == sum(p.numel() for p in model.parameters())
    assert item["properties"]["mlm:input"][0]["input"]["shape"] == [-1, 3, -1, -1]
    assert item["assets"]["model"]["mlm:artifact_type"] == "torch.save"
    results = json.loads(out)["results"]
    assert [r["status"] for r in results] == ["converted", "skipped"]  # both stems are "resnet": one Item


def test_weights_that_do_not_fit_are_refused(tmp_path, capsys):
    torch.save(torchvision.models.resnet18(num_classes=5).state_dict(), tmp_path / "r.pth")
    code, _, err = run(
        capsys, "convert", tmp_path / "r.pth", "--factory", "torchvision.models:resnet18", "--init-args",
        '{"num_classes": 7}', "--input-shape", "1,3,32,32", "--tasks", "classification",
    )  # fmt: skip
    assert code == 1
    assert "do not fit torchvision.models:resnet18: 2 of another shape (e.g. fc.bias: [5] vs [7])" in err
    assert not (tmp_path / "r.mlm.json").exists()


def test_missing_class_is_a_one_line_error(tmp_path, capsys):
    torch.save({"w": torch.zeros(2)}, tmp_path / "m.pt")
    code, _, err = run(
        capsys, "convert", tmp_path / "m.pt", "--model", "no_such_module:Model", "--allow-module", "no_such_module"
    )
    assert code == 1
    assert "cannot import no_such_module" in err


class Evil:
    """Unpickling this runs a shell command: a crafted checkpoint."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


def test_crafted_checkpoint_does_not_run_code(tmp_path, capsys):
    target = tmp_path / "pwned"
    ckpt = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "hyper_parameters": {"x": Evil(target)}}, ckpt)
    good = tmp_path / "good.pth"
    torch.save(SmallUNet(3, 2).state_dict(), good)
    code, out, err = run(
        capsys, "convert", ckpt, good, "--model", "tests.models:SmallUNet", "--allow-module", "tests",
        "--init-args", '{"in_channels": 3, "num_classes": 2}', "--input-shape", "1,3,32,32", "--json",
    )  # fmt: skip
    assert code == 1
    assert not target.exists()
    assert "system" in err and "--trust-checkpoint" in err
    statuses = {Path(r["path"]).name: r["status"] for r in json.loads(out)["results"]}
    assert statuses == {"evil.ckpt": "failed", "good.pth": "converted"}  # the other file is still converted
    assert not (tmp_path / "evil.mlm.json").exists()


def test_truncated_and_fake_checkpoints(tmp_path, capsys):
    model = SmallUNet(3, 2)
    torch.save(model.state_dict(), tmp_path / "whole.pt")
    data = (tmp_path / "whole.pt").read_bytes()
    (tmp_path / "truncated.pt").write_bytes(data[: len(data) // 2])
    (tmp_path / "text.ckpt").write_text("this is not a checkpoint\n")
    (tmp_path / "empty.pth").write_bytes(b"")
    code, out, err = run(
        capsys, "convert", tmp_path, "--model", "tests.models:SmallUNet", "--allow-module", "tests",
        "--init-args", '{"in_channels": 3, "num_classes": 2}', "--input-shape", "1,3,32,32", "--json",
    )  # fmt: skip
    assert code == 1
    by_name = {Path(r["path"]).name: r for r in json.loads(out)["results"]}
    assert by_name["whole.pt"]["status"] == "converted"
    assert "truncated or corrupt" in by_name["truncated.pt"]["error"]
    assert "not a PyTorch checkpoint" in by_name["text.ckpt"]["error"]
    assert "empty file" in by_name["empty.pth"]["error"]
    assert len(err.strip().splitlines()) == 3  # one line per failed file
    assert sorted(p.name for p in tmp_path.glob("*.mlm.json")) == ["whole.mlm.json"]


def test_existing_items_kept_unless_overwrite(tmp_path, capsys):
    torch.save(SmallUNet(3, 2).state_dict(), tmp_path / "m.pt")
    args = ["convert", tmp_path / "m.pt", "--model", "tests.models:SmallUNet", "--allow-module", "tests",
            "--init-args", '{"in_channels": 3, "num_classes": 2}', "--input-shape", "1,3,32,32", "--json"]  # fmt: skip
    assert run(capsys, *args)[0] == 0
    item = tmp_path / "m.mlm.json"
    item.write_text(json.dumps({**json.loads(item.read_text()), "id": "edited-by-hand"}))
    code, out, _ = run(capsys, *args)
    assert code == 0 and json.loads(out)["results"][0]["status"] == "skipped"
    assert json.loads(item.read_text())["id"] == "edited-by-hand"
    code, out, _ = run(capsys, *args, "--overwrite")
    assert code == 0 and json.loads(item.read_text())["id"] != "edited-by-hand"


def test_usage_errors_exit_2(tmp_path, capsys):
    assert run(capsys, "convert", tmp_path / "nothing-here")[0] == 2
    assert run(capsys, "convert", tmp_path, "--input-shape", "a,b")[0] == 2
    (tmp_path / "d.yaml").write_text("nmae: typo\n")
    torch.save({"w": torch.zeros(1)}, tmp_path / "x.pt")
    code, _, err = run(capsys, "convert", tmp_path / "x.pt", "--defaults", tmp_path / "d.yaml")
    assert code == 2 and "unknown option(s) ['nmae']" in err
    assert run(capsys, "frobnicate")[0] == 2


def test_help_has_examples(capsys):
    for command in ("convert", "validate", "verify"):
        code, out, _ = run(capsys, command, "--help")
        assert code == 0
        assert "example" in out and f"mlm-export {command}" in out


# ------------------------------------------------------------------------------------------ validate, verify


@pytest.fixture
def honest(tmp_path):
    model = SmallUNet(in_channels=4, num_classes=3)
    export_mlm(
        model,
        example_input=torch.randn(2, 4, 32, 32),
        out_dir=tmp_path,
        name="Honest UNet",
        bands=["B02", "B03", "B04", "B08"],
        classes=["land", "water", "cloud"],
        datetime=WHEN,
    )
    return tmp_path / "honest-unet.json"


def edit(path: Path, change) -> Path:
    data = json.loads(path.read_text())
    change(data)
    lying = path.with_name("lying.json")
    lying.write_text(json.dumps(data))
    return lying


def test_verify_honest_item(honest, capsys):
    code, out, err = run(capsys, "verify", honest, "--json")
    assert code == 0, out
    checks = {c["check"]: c for c in json.loads(out)["results"]}
    assert all(c["ok"] for c in checks.values())
    assert {"schema", "files", "consistency", "load model", "run", "output output"} <= set(checks)


def _drop_band(d):
    d["properties"]["mlm:input"][0]["bands"].pop()
    d["properties"]["mlm:input"][0]["input"]["shape"][1] = 3
    d["properties"]["bands"].pop()
    d["assets"]["model"]["bands"].pop()


def _drop_class(d):
    d["properties"]["mlm:output"][0]["classification:classes"].pop()
    d["properties"]["mlm:output"][0]["result"]["shape"][1] = 2


def _edit_checksum(d):
    c = d["assets"]["model"]["file:checksum"]
    d["assets"]["model"]["file:checksum"] = c[:-4] + ("0000" if not c.endswith("0000") else "1111")


def _band_names_only(d):
    d["properties"]["mlm:input"][0]["bands"].pop()  # 3 names for a 4-band dim: the schema cannot tell


@pytest.mark.parametrize(
    ("change", "failing"),
    [(_drop_band, "run"), (_drop_class, "output output"), (_edit_checksum, "files"), (_band_names_only, "consistency")],
    ids=["wrong-band-count", "wrong-class-count", "edited-checksum", "bands-vs-shape"],
)
def test_verify_catches_each_lie(honest, capsys, change, failing):
    lying = edit(honest, change)
    code, out, _ = run(capsys, "verify", lying, "--json")
    assert code == 1
    failed = {c["check"] for c in json.loads(out)["results"] if not c["ok"]}
    assert failing in failed


def test_validate_reports_cross_field_and_file_problems(honest, capsys):
    assert run(capsys, "validate", honest)[0] == 0
    lying = edit(honest, _edit_checksum)
    code, out, err = run(capsys, "validate", lying, "--json")
    assert code == 1
    problems = json.loads(out)["results"][0]["problems"]
    assert any(p["schema"] == "asset-checksum" and p["json_path"] == "$.assets['model']" for p in problems)
    broken = edit(honest, lambda d: d["properties"].__setitem__("mlm:accelerator", "cpu"))
    code, _, err = run(capsys, "validate", broken)
    assert code == 1 and "mlm:accelerator" in err and "lying.json" in err


def test_verify_weights_only_needs_the_architecture(tmp_path, capsys):
    model = SmallUNet(in_channels=3, num_classes=2)
    export_mlm(model, example_input=torch.randn(1, 3, 32, 32), out_dir=tmp_path, export_program=False, datetime=WHEN)
    item = tmp_path / "smallunet.json"
    code, out, _ = run(capsys, "verify", item, "--json")
    assert code == 1
    assert any("--model" in c["detail"] for c in json.loads(out)["results"] if not c["ok"])
    code, out, _ = run(
        capsys,
        "verify",
        item,
        "--model",
        "tests.models:SmallUNet",
        "--allow-module",
        "tests",
        "--init-args",
        "in_channels: 3\nnum_classes: 2",
    )
    assert code == 0, out


class Exploding(torch.nn.Module):
    """A model whose constructor fails with an error of its own."""

    def __init__(self) -> None:
        super().__init__()
        raise RuntimeError("cannot build here")


def test_a_failing_model_constructor_fails_that_file_only(tmp_path, capsys):
    torch.save({"w": torch.zeros(1)}, tmp_path / "a.pt")
    code, out, err = run(
        capsys, "convert", tmp_path / "a.pt", "--model", "tests.test_cli:Exploding", "--allow-module", "tests", "--json"
    )
    assert code == 1
    assert json.loads(out)["results"][0]["error"] == "RuntimeError: cannot build here"
