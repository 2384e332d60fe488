"""Commands that touch no model start without torch: each runs in a fresh interpreter that reports its modules."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from .catalog_data import FIXTURES, official_examples
from .conftest import FOREIGN_SCHEMAS, ROOT

#: Runs ``main(argv)`` as ``mlm-export`` does, then writes the exit code and the imported modules to $MODULES_OUT.
WRAPPER = """
import json, os, sys
from mlm_export.cli import main
try:
    code = main(sys.argv[1:])
finally:
    with open(os.environ["MODULES_OUT"], "w") as f:
        json.dump({"modules": sorted(sys.modules), "code": locals().get("code")}, f)
sys.exit(code)
"""

HEAVY = ("torch", "lightning", "torchgeo", "torchvision")


def _env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        PYTHONPATH=str(ROOT / "src"),  # the worktree's package, whatever is installed
        MLM_EXPORT_OFFLINE="1",
        MLM_EXPORT_SCHEMA_DIR=str(FOREIGN_SCHEMAS),
        MODULES_OUT=str(tmp_path / "modules.json"),
        COLUMNS="200",
    )
    return env


def _command(tmp_path: Path, *argv: str | Path) -> tuple[int, set[str], str]:
    done = subprocess.run(
        [sys.executable, "-c", WRAPPER, *map(str, argv)],
        env=_env(tmp_path),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    report = json.loads((tmp_path / "modules.json").read_text())
    return done.returncode, set(report["modules"]), done.stdout + done.stderr


@pytest.fixture
def models(tmp_path: Path) -> Path:
    items = tmp_path / "items"
    items.mkdir()
    for item in official_examples()[:3]:
        (items / f"{item['id']}.json").write_text(json.dumps(item))
    return items


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["--version"],
        ["search", "--help"],
        ["convert", "--help"],
        ["verify", "--help"],
        ["validate", "{items}/item_basic.json"],
        ["publish", "{items}", "--to", "catalog"],
        ["search", "catalog", "--task", "classification"],
        ["search", "catalog", "--json"],
        ["match", str(FIXTURES / "data_items" / "naip.json"), "catalog"],
        ["match", "--example-scene", "sentinel-2-l2a", "catalog", "--json"],
        ["hf-card", "{items}/item_basic.json", "--output", "-"],
    ],
    ids=lambda argv: " ".join(a for a in argv if "/" not in a)[:40],
)
def test_commands_that_touch_no_model_do_not_import_torch(tmp_path: Path, models: Path, argv: list[str]) -> None:
    if "catalog" in argv and argv[0] != "publish":
        code, _, output = _command(tmp_path, "publish", models, "--to", "catalog")
        assert code == 0, output
    code, modules, output = _command(tmp_path, *(a.replace("{items}", str(models)) for a in argv))
    assert code in (0, 1), output  # 1: match finds no model that fits
    assert "Traceback" not in output, output
    assert not [m for m in HEAVY if m in modules], f"mlm-export {' '.join(argv)} imported {HEAVY}"


def test_help_and_version_import_neither_the_validator_nor_the_package_metadata(tmp_path: Path) -> None:
    """--help builds the parser only: the JSON Schema validator and pystac wait for a command that checks an Item,
    the distribution metadata (a scan of every installed package) for --version."""
    for argv in (["--help"], ["search", "--help"], ["validate", "--help"]):
        code, modules, output = _command(tmp_path, *argv)
        assert code == 0, output
        assert not {"jsonschema", "pystac", "importlib.metadata"} & modules, argv
    from mlm_export import _validate
    from mlm_export.cli import _offline

    assert _offline.OFFLINE_ENV == _validate.OFFLINE_ENV  # --offline sets the variable the validator reads
    code, modules, output = _command(tmp_path, "--version")
    assert code == 0 and output.startswith("mlm-export ") and "importlib.metadata" in modules


def test_a_command_that_touches_a_model_still_imports_torch(tmp_path: Path) -> None:
    """The check above can fail: convert (which rebuilds models) imports torch in the same wrapper."""
    (tmp_path / "none").mkdir()
    code, modules, output = _command(tmp_path, "convert", tmp_path / "none", "--tasks", "classification")
    assert code == 2, output  # no checkpoint in the folder: a usage error, after the run began
    assert "torch" in modules


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child process")
def test_form_starts_without_torch_and_ctrl_c_exits_130(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", WRAPPER, "form", "new.json", "--no-browser"],
        env=_env(tmp_path),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline()
        assert url.startswith("http://127.0.0.1:"), url
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert code == 130
    report = json.loads((tmp_path / "modules.json").read_text())
    assert report["code"] == 130
    assert not [m for m in HEAVY if m in report["modules"]]
