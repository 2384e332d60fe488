"""The command line as a newcomer meets it: one line and an exit code per error, flags in messages, one --json
envelope, convert that says what it skipped, verify that rebuilds what convert rebuilt, models from the cwd."""

from __future__ import annotations

import datetime as dt
import json
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
import torch

from mlm_export import export_mlm
from mlm_export.cli import main

from .models import SmallUNet

WHEN = dt.datetime(2024, 6, 1, tzinfo=dt.UTC)

#: A model module a user keeps in their working directory (not installed, not on sys.path).
USER_MODELS = textwrap.dedent(
    """
    import torch
    from torch import nn


    class FixedNet(nn.Module):
        '''A classifier that only runs at 8 x 8 pixels (its Linear layer fixes the size).'''

        def __init__(self, in_channels: int = 3, num_classes: int = 4) -> None:
            super().__init__()
            self.conv = nn.Conv2d(in_channels, 2, 3, padding=1)
            self.head = nn.Linear(2 * 8 * 8, num_classes)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.conv(x).flatten(1))
    """
)


def run(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def honest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An Item whose model (a .pt2 archive) verify can run without code (tests write only beside it)."""
    folder = tmp_path_factory.mktemp("honest") / "item"
    export_mlm(
        SmallUNet(in_channels=3, num_classes=2),
        example_input=torch.randn(2, 3, 32, 32),
        out_dir=folder,
        name="Small UNet",
        classes=["land", "water"],
        datetime=WHEN,
    )
    return folder / "small-unet.json"


@pytest.fixture
def user_models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory holding mymodels.py; the module is forgotten again afterwards."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "mymodels.py").write_text(USER_MODELS)
    monkeypatch.chdir(work)
    yield work
    sys.modules.pop("mymodels", None)


# ------------------------------------------------------------------------------- 1. errors: one line, exit code


def test_verify_of_an_item_whose_input_lacks_input_is_a_failed_check(honest: Path, capsys) -> None:
    data = json.loads(honest.read_text())
    del data["properties"]["mlm:input"][0]["input"]
    broken = honest.with_name("broken.json")
    broken.write_text(json.dumps(data))
    code, out, err = run(capsys, "verify", broken, "--json")
    assert code == 1, err
    checks = {c["check"]: c for c in json.loads(out)["results"]}
    assert not checks["schema"]["ok"]
    assert not checks["run"]["ok"] and "mlm:input lacks 'input'" in checks["run"]["detail"]
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("change", "failing"),
    [
        (lambda d: d["properties"].__setitem__("mlm:input", {"a": 1}), "consistency"),
        (lambda d: d.__setitem__("assets", [1]), "load model"),
        (lambda d: d["properties"]["mlm:output"][0].pop("result"), "outputs"),
        (lambda d: d.clear(), "load model"),
    ],
    ids=["input-not-a-list", "assets-not-a-mapping", "output-without-result", "empty-object"],
)
def test_verify_and_validate_of_broken_items_fail_checks_not_the_program(honest: Path, capsys, change, failing):
    data = json.loads(honest.read_text())
    change(data)
    broken = honest.with_name("broken.json")
    broken.write_text(json.dumps(data))
    code, out, err = run(capsys, "verify", broken, "--json")
    assert code == 1
    checks = {c["check"]: c["ok"] for c in json.loads(out)["results"]}
    assert checks["schema"] is False and checks[failing] is False
    assert "unexpected" not in err
    code, out, err = run(capsys, "validate", broken)
    assert code == 1 and "unexpected" not in err and err.startswith(f"{broken}: ")


def test_a_missing_path_is_a_usage_error_in_every_command(tmp_path: Path, capsys) -> None:
    missing = tmp_path / "nothing-here.json"
    for argv in (
        ["convert", missing],
        ["validate", missing],
        ["verify", missing],
        ["hf-card", missing],
        ["publish", missing, "--to", tmp_path / "models"],
        ["match", missing, tmp_path],
        ["search", tmp_path / "no-catalog-here"],
    ):
        code, _, err = run(capsys, *argv)
        assert code == 2, argv
        assert err.strip().splitlines() == [f"error: no such file or directory: {argv[1]}"], argv


def test_validate_and_verify_of_a_directory_say_it_is_one(honest: Path, capsys) -> None:
    for command in ("validate", "verify"):
        code, _, err = run(capsys, command, honest.parent)
        assert code == 2
        lines = err.strip().splitlines()
        assert len(lines) == 1 and f"{honest.parent} is a directory; name an" in lines[0]
        assert "Errno" not in err


def test_non_json_input_says_it_is_not_json(tmp_path: Path, capsys) -> None:
    text = tmp_path / "notes.json"
    text.write_text("model: unet\n")
    code, _, err = run(capsys, "verify", text)
    assert code == 1
    assert err.strip().splitlines() == [
        f"error: {text} is not JSON (Expecting value: line 1 column 1 (char 0)); name a STAC Item or Collection file"
    ]
    code, _, err = run(capsys, "validate", text)
    assert code == 1 and f"{text} is not JSON" in err


def test_an_unexpected_error_or_ctrl_c_is_one_line(honest: Path, capsys, monkeypatch) -> None:
    import mlm_export.cli._validate as validate_command

    def explode(path: Path, **_: object) -> list[object]:
        raise RuntimeError("a bug\nwith a second line")

    monkeypatch.setattr(validate_command, "check_file", explode)
    code, out, err = run(capsys, "validate", honest, "--json")
    assert code == 1
    assert err.strip().splitlines() == [
        "error: unexpected RuntimeError: a bug (set MLM_EXPORT_DEBUG=1 for the traceback)"
    ]
    assert json.loads(out) == {"command": "validate", "ok": False, "results": [], "errors": [err.strip()]}

    def interrupt(path: Path, **_: object) -> list[object]:
        raise KeyboardInterrupt

    monkeypatch.setattr(validate_command, "check_file", interrupt)
    code, _, err = run(capsys, "validate", honest)
    assert (code, err.strip()) == (130, "error: interrupted")


def test_a_bad_checkpoint_is_named_once(tmp_path: Path, capsys) -> None:
    (tmp_path / "notes.ckpt").write_text("not a checkpoint\n")
    code, _, err = run(capsys, "convert", tmp_path / "notes.ckpt", "--quiet")
    assert code == 1
    assert err.strip().splitlines() == [
        f"{tmp_path / 'notes.ckpt'}: not a PyTorch checkpoint, state dict or safetensors file"
    ]


# ------------------------------------------------------------------------------------ 2. convert says what it did


def test_convert_says_how_many_it_skipped_and_how_to_redo(tmp_path: Path, capsys) -> None:
    folder = tmp_path / "ckpts"
    folder.mkdir()
    for name in ("a.pt", "b.pt"):
        torch.save(SmallUNet(3, 2).state_dict(), folder / name)
    args = ["convert", folder, "--model", "tests.models:SmallUNet", "--init-args",
            "{in_channels: 3, num_classes: 2}", "--input-shape", "1,3,32,32"]  # fmt: skip
    assert run(capsys, *args)[0] == 0
    code, out, err = run(capsys, *args)
    assert code == 0
    assert "0 converted, 2 skipped, 0 failed" in out
    assert "2 file(s) skipped: an Item exists beside each; pass --overwrite to write them anew" in err


def test_convert_shows_each_warning_once(tmp_path: Path, user_models: Path, capsys) -> None:
    sys.path.insert(0, str(user_models))  # only to make the checkpoints; the CLI finds the module by itself
    try:
        from mymodels import FixedNet  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(user_models))
        sys.modules.pop("mymodels", None)
    for name in ("a.pt", "b.pt"):
        torch.save(FixedNet().state_dict(), user_models / name)
    code, _, err = run(
        capsys, "convert", "a.pt", "b.pt", "--model", "mymodels:FixedNet", "--input-shape", "1,3,8,8",
        "--tasks", "classification",
    )  # fmt: skip
    assert code == 0, err
    warned = [line for line in err.splitlines() if line.startswith("warning: the model ran only at")]
    assert len(warned) == 1, err
    code, out, _ = run(capsys, "convert", "a.pt", "b.pt", "--model", "mymodels:FixedNet", "--input-shape", "1,3,8,8",
                       "--tasks", "classification", "--overwrite", "--json")  # fmt: skip
    assert [w for w in json.loads(out)["warnings"] if w.startswith("the model ran only at")] == [warned[0][9:]]


def test_a_typo_in_tasks_is_one_usage_error_before_any_file_is_read(tmp_path: Path, capsys) -> None:
    (tmp_path / "a.pt").write_text("not read")
    (tmp_path / "b.pt").write_text("not read")
    code, out, err = run(capsys, "convert", tmp_path, "--tasks", "segmentaton")
    assert (code, out) == (2, "")
    assert "argument --tasks/--task: unknown task(s) segmentaton; MLM tasks: regression, classification" in err
    assert "a.pt" not in err and "b.pt" not in err


# --------------------------------------------------------------- 3. verify rebuilds what convert rebuilt


@pytest.fixture(scope="module")
def torchgeo_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A TorchGeo semantic-segmentation task saved as Lightning saves it (full checkpoint, hyper_parameters)."""
    tasks = pytest.importorskip("torchgeo.trainers")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the 0.8 name; 0.9+ has SemanticSegmentation too
        task = tasks.SemanticSegmentationTask(model="fcn", in_channels=3, num_classes=2, num_filters=4, loss="ce")
    path = tmp_path_factory.mktemp("torchgeo") / "fcn.ckpt"
    checkpoint = {"state_dict": task.state_dict(), "hyper_parameters": dict(task.hparams), "epoch": 1, "global_step": 5}
    torch.save({**checkpoint, "pytorch-lightning_version": "2.6.0"}, path)
    return path


def test_verify_rebuilds_a_torchgeo_task_checkpoint_as_convert_does(torchgeo_checkpoint: Path, capsys) -> None:
    code, _, err = run(capsys, "convert", torchgeo_checkpoint, "--input-shape", "1,3,32,32", "--quiet")
    assert code == 0, err
    code, out, err = run(capsys, "verify", torchgeo_checkpoint.with_name("fcn.mlm.json"), "--json")
    assert code == 0, out
    checks = {c["check"]: c for c in json.loads(out)["results"]}
    assert (
        checks["load model"]["detail"] == "fcn.ckpt (torch.save) into torchgeo.tasks.segmentation:SemanticSegmentation"
    )
    assert checks["run"]["ok"] and all(c["ok"] for c in checks.values())


def test_verify_of_a_lightning_checkpoint_without_its_class_says_so(tmp_path: Path, user_models: Path, capsys):
    """A full Lightning checkpoint is not called "weights only"; --model from the working directory runs it."""
    (user_models / "mytask.py").write_text(
        "import lightning as L\nfrom mymodels import FixedNet\n\n\n"
        "class Task(L.LightningModule):\n"
        "    def __init__(self, num_classes: int = 4) -> None:\n"
        "        super().__init__()\n        self.save_hyperparameters()\n"
        "        self.net = FixedNet(3, num_classes)\n\n"
        "    def forward(self, x):\n        return self.net(x)\n"
    )
    sys.path.insert(0, str(user_models))
    try:
        from mytask import Task  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(user_models))
    task = Task(num_classes=4)
    torch.save({"state_dict": task.state_dict(), "hyper_parameters": dict(task.hparams), "epoch": 0}, "last.ckpt")
    for name in ("mytask", "mymodels"):
        sys.modules.pop(name, None)
    code, _, err = run(capsys, "convert", "last.ckpt", "--model", "mytask:Task", "--input-shape", "1,3,8,8",
                       "--tasks", "classification", "--quiet")  # fmt: skip
    assert code == 0, err
    code, out, _ = run(capsys, "verify", "last.mlm.json", "--json")
    assert code == 1
    load = next(c for c in json.loads(out)["results"] if c["check"] == "load model")
    assert load["detail"].startswith("last.ckpt is a full Lightning checkpoint whose LightningModule class is not")
    assert "--model module:Class" in load["detail"] and "weights only" not in load["detail"]
    code, out, err = run(capsys, "verify", "last.mlm.json", "--model", "mytask:Task", "--quiet")
    assert (code, err) == (0, "")


# --------------------------------------------------------------------- 4. --model imports from the working dir


def test_model_from_the_working_directory_without_pythonpath(user_models: Path, capsys) -> None:
    torch.save({"conv.weight": torch.zeros(2, 3, 3, 3)}, "weights.pt")
    assert "mymodels" not in sys.modules
    code, _, err = run(capsys, "convert", "weights.pt", "--model", "mymodels:FixedNet", "--quiet")
    assert code == 1  # the module was imported (no --allow-module needed); the weights lack the head
    assert "the weights do not fit mymodels:FixedNet: 3 missing (e.g. conv.bias)" in err


def test_a_checkpoint_cannot_name_a_module_of_the_working_directory(user_models: Path, capsys) -> None:
    """Only what --model names is looked up in the cwd; a checkpoint's _class_path stays on the allowlist."""
    hparams = {"_class_path": "mymodels.FixedNet", "num_classes": 4}
    torch.save({"state_dict": {"w": torch.zeros(1)}, "hyper_parameters": hparams}, "evil.ckpt")
    code, _, err = run(capsys, "convert", "evil.ckpt", "--quiet")
    assert code == 1
    assert "refusing to build 'mymodels.FixedNet': 'mymodels' is not a model package" in err
    assert "mymodels" not in sys.modules
    code, _, err = run(capsys, "convert", "evil.ckpt", "--model", "json:JSONDecoder", "--quiet")
    assert code == 1  # an installed package outside the allowlist is not user code of this directory
    assert "refusing to build 'json:JSONDecoder': 'json' is not a model package" in err


# ------------------------------------------------------------------------------ 5. flags, not Python keywords


def test_errors_name_the_flags_of_the_command_line(tmp_path: Path, capsys) -> None:
    torch.save(torch.nn.Linear(4, 3).state_dict(), tmp_path / "linear.pt")
    args = [
        "convert",
        tmp_path / "linear.pt",
        "--model",
        "torch.nn:Linear",
        "--init-args",
        "{in_features: 4, out_features: 3}",
    ]
    code, _, err = run(capsys, *args, "--quiet")
    assert code == 1
    assert err.strip().endswith("mlm-export needs an example input to trace the model. Pass --input-shape N,C,H,W.")
    code, _, err = run(capsys, *args, "--input-shape", "1,4", "--quiet")
    assert code == 1
    assert "Pass --tasks classification (or 'regression'" in err and "--classes NAME,NAME,..." in err
    assert "=" not in err.replace("==", "")  # no keyword= anywhere


# ---------------------------------------------------------------------------- 6. output a newcomer can read


def test_demo_json_quiet_and_a_summary_without_output_output(tmp_path: Path, capsys) -> None:
    code, out, err = run(capsys, "demo", tmp_path, "--epochs", "1")
    assert code == 0, err
    rows = [line for line in out.splitlines() if "float32 [batch=any" in line]
    assert any(" output " in row for row in rows) and not any("output output" in row for row in rows)
    item = tmp_path / "tinyunet-water-segmentation.json"
    before = item.read_bytes()
    code, out, err = run(capsys, "demo", tmp_path, "--epochs", "1")  # the one overwrite rule: kept, before training
    assert (code, out) == (1, "") and err.strip() == (
        f"error: {item} exists; pass --overwrite to replace the demo's Item and model files (the one rule of "
        "every command)"
    )
    assert item.read_bytes() == before
    code, out, err = run(capsys, "demo", tmp_path, "--epochs", "1", "--json", "--overwrite")
    envelope = json.loads(out)
    assert (code, envelope["command"], envelope["ok"], envelope["errors"]) == (0, "demo", True, [])
    assert envelope["results"][0]["item"] == str(tmp_path.resolve() / "tinyunet-water-segmentation.json")
    assert run(capsys, "demo", tmp_path, "--epochs", "1", "--quiet", "--overwrite")[1:] == ("", "")
    code, out, _ = run(capsys, "demo", "--help")
    assert code == 0 and "training epochs" in out


def test_piped_tables_do_not_break_paths(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)
    deep = tmp_path / "a-rather-long-folder-name-for-runs" / "version_0" / "checkpoints-of-the-experiment"
    deep.mkdir(parents=True)
    torch.save(SmallUNet(3, 2).state_dict(), deep / "epoch=3-step=1200.pt")
    code, out, err = run(
        capsys, "convert", deep, "--model", "tests.models:SmallUNet", "--init-args",
        "{in_channels: 3, num_classes: 2}", "--input-shape", "1,3,32,32",
    )  # fmt: skip
    assert code == 0, err
    item = str(deep / "epoch=3-step=1200.mlm.json")
    assert any(item in line and str(deep / "epoch=3-step=1200.pt") in line for line in out.splitlines())


def test_one_json_envelope_for_every_command(honest: Path, tmp_path: Path, capsys) -> None:
    shapes = {}
    for argv in (["validate", honest], ["verify", honest], ["hf-card", honest, "-o", tmp_path / "card.md"],
                 ["publish", honest, "--to", tmp_path / "models"], ["search", tmp_path / "models"],
                 ["match", honest, tmp_path / "models"], ["convert", tmp_path / "nothing.pt"]):  # fmt: skip
        # search and match print their Items as an ItemCollection with --json; the envelope on request
        flag = "--json-envelope" if argv[0] in ("search", "match") else "--json"
        code, out, _ = run(capsys, *argv, flag)
        envelope = json.loads(out)
        assert envelope["command"] == argv[0]
        assert envelope["ok"] is (code == 0)
        shapes[argv[0]] = (type(envelope["results"]), type(envelope["errors"]))
    assert set(shapes.values()) == {(list, list)}
    code, out, err = run(capsys, "convert", tmp_path, "--tasks", "segmentaton", "--json")  # argparse refuses it
    line = err.strip().splitlines()[-1]
    assert code == 2
    assert line.startswith("mlm-export convert: error: argument --tasks/--task: unknown task(s) segmentaton")
    assert json.loads(out) == {"command": "convert", "ok": False, "results": [], "errors": [line]}


def test_dev_run_keeps_the_callers_directory(tmp_path: Path) -> None:
    """``./dev run CMD`` runs CMD where it was called (the environment set-up itself is left out here)."""
    import subprocess

    dev = tmp_path / "repo" / "dev"
    dev.parent.mkdir()
    script = (Path(__file__).parents[1] / "dev").read_text()
    assert "\nsetup() {\n" in script
    dev.write_text(script.replace("\nsetup() {\n", "\nsetup() {\n  return 0\n", 1))  # no venv is built
    dev.chmod(0o755)
    caller = tmp_path / "elsewhere"
    caller.mkdir()
    (caller / "item.json").write_text("{}")
    env = {"PATH": "/usr/bin:/bin", "MLM_EXPORT_VENV": str(tmp_path / "venv")}
    done = subprocess.run([dev, "run", "cat", "item.json"], cwd=caller, env=env, capture_output=True, text=True)
    assert (done.returncode, done.stdout) == (0, "{}")


def test_version(capsys) -> None:
    from mlm_export import __version__

    code, out, _ = run(capsys, "--version")
    assert (code, out.strip()) == (0, f"mlm-export {__version__}")


def test_the_working_directory_never_supplies_an_allowlisted_package(tmp_path, monkeypatch):
    """--model from the cwd finds the user's sibling modules there, but never a torchgeo (or other allowlisted
    package) planted in it: a checkpoint's weights enum names such a package, and it must come installed."""
    import argparse
    import importlib.util

    from mlm_export.cli._imports import _DirectoryFinder, user_modules_from_cwd

    (tmp_path / "mymodels.py").write_text("import helpers\n")
    (tmp_path / "helpers.py").write_text("")
    for planted in ("torchgeo", "timm"):
        (tmp_path / planted).mkdir()
        (tmp_path / planted / "__init__.py").write_text("raise SystemExit('planted package ran')\n")
    monkeypatch.chdir(tmp_path)
    args = argparse.Namespace(model="mymodels:Net", allow_module=[])
    with user_modules_from_cwd(args):
        finders = [f for f in sys.meta_path if isinstance(f, _DirectoryFinder)]
        assert len(finders) == 2
        assert importlib.util.find_spec("mymodels") is not None
        assert any(f.find_spec("helpers", None) is not None for f in finders)  # the user's own sibling module
        for planted in ("torchgeo", "timm"):
            assert all(f.find_spec(planted, None) is None for f in finders), planted
    assert args.allow_module == ["mymodels"]
    assert not [f for f in sys.meta_path if isinstance(f, _DirectoryFinder)]
