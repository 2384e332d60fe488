"""The README's "load the model from its Item" snippet, taken from the README, runs every model file format."""

from __future__ import annotations

import ast
import datetime as dt
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mlm_export import export_mlm

from .models import SmallUNet

README = Path(__file__).resolve().parents[1] / "README.md"
WHEN = {"datetime": dt.datetime(2024, 1, 1, tzinfo=dt.UTC)}


def snippet() -> str:
    text = README.read_text(encoding="utf-8")
    found = re.search(r"<!-- load-model-snippet -->\n```python\n(.*?)```", text, re.S)
    assert found, "the README lost its load-model snippet"
    return found.group(1)


def test_snippet_needs_only_torch_or_onnxruntime():
    imported = set()
    for node in ast.walk(ast.parse(snippet())):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add((node.module or "").split(".")[0])
    assert imported == {"json", "pathlib", "torch", "onnxruntime"}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out = tmp_path_factory.mktemp("readme")
    torch.manual_seed(0)
    model = SmallUNet(in_channels=3, num_classes=2).eval()
    export_mlm(
        model, example_input=torch.randn(2, 3, 32, 32), out_dir=out, name="Small UNet",
        artifacts=("pt2", "torchscript", "onnx", "safetensors", "checkpoint"), **WHEN,
    )  # fmt: skip
    return model, out / "small-unet.json"


@pytest.mark.parametrize("key", ["model", "torchscript", "onnx"])
def test_snippet_loads_every_runnable_format(exported, key):
    model, item = exported
    namespace: dict = {}
    exec(snippet(), namespace)
    loaded = namespace["load_from_item"](item, key=key)
    x = torch.randn(3, 3, 48, 40)
    got = loaded(x.numpy())[0] if key == "onnx" else loaded(x).detach().numpy()
    with torch.no_grad():
        want = model(x).numpy()
    assert got.shape == want.shape and np.abs(got - want).max() <= 1e-4


@pytest.mark.parametrize("key", ["weights", "checkpoint"])
def test_snippet_says_weights_need_the_code(exported, key):
    namespace: dict = {}
    exec(snippet(), namespace)
    with pytest.raises(ValueError, match=rf"{key} .* holds weights only"):
        namespace["load_from_item"](exported[1], key=key)


def test_snippet_runs_onnx_without_torch(exported):
    code = (
        "import sys, numpy\nsys.modules['torch'] = None  # importing torch now fails\n"
        f"exec({snippet()!r})\n"
        f"model = load_from_item({str(exported[1])!r}, key='onnx')\n"
        "out = model(numpy.zeros((1, 3, 32, 32), dtype=numpy.float32))\n"
        "assert 'torch' not in [m for m in sys.modules if sys.modules[m] is not None]\n"
        "print(out[0].shape)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "(1, 2, 32, 32)"
