"""Atomic writes, the safetensors writer and checksums."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import safetensors.torch
import torch

from mlm_export._artifacts import safetensors_metadata, safetensors_size, weights, write_safetensors
from mlm_export._write import atomic_path, atomic_write_json, file_checksum

from .models import TiedWeights


def test_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "item.json"
    atomic_write_json(target, {"v": 1})
    with pytest.raises(RuntimeError, match="crash"), atomic_path(target) as tmp:  # noqa: PT012 - the crash is the point
        tmp.write_text("{half")
        raise RuntimeError("crash mid-write")
    assert json.loads(target.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["item.json"]


def test_written_files_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_json(tmp_path / "a.json", {})
    finally:
        os.umask(old)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o644


WRITER = """
import importlib.util, sys
# load write.py alone (no torch import), so that each writer process starts in a blink
spec = importlib.util.spec_from_file_location("w", sys.argv[2])
w = importlib.util.module_from_spec(spec)
spec.loader.exec_module(w)
atomic_write_json = w.atomic_write_json
path = sys.argv[1]
big = {"payload": "x" * 2_000_000}
i = 0
print("ready", flush=True)
while True:
    i += 1
    atomic_write_json(path, {**big, "i": i})
"""


def test_killing_the_writer_never_leaves_a_torn_file(tmp_path):
    import mlm_export._write

    write_module = mlm_export._write.__file__
    target = tmp_path / "item.json"
    atomic_write_json(target, {"i": 0})
    for delay in (0.05, 0.13, 0.21, 0.37):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(target), write_module], stdout=subprocess.PIPE)
        assert proc.stdout.readline().strip() == b"ready"
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        data = json.loads(target.read_text())  # always a whole JSON document: the old one or the new one
        assert data["i"] >= 0


def test_safetensors_writer_round_trips_every_dtype(tmp_path):
    tensors = {
        "f32": torch.randn(3, 4),
        "bf16": torch.randn(5, dtype=torch.bfloat16),
        "f16": torch.randn(2, 2, dtype=torch.float16),
        "i64": torch.arange(7),
        "i8": torch.tensor([-1, 2], dtype=torch.int8),
        "u8": torch.tensor([255, 0], dtype=torch.uint8),
        "bool": torch.tensor([True, False, True]),
        "scalar": torch.tensor(3.5),
        "empty": torch.zeros(0, 3),
        "strided": torch.randn(4, 6)[:, ::2],
    }
    meta = {"format": "pt"}
    path = tmp_path / "w.safetensors"
    written = write_safetensors(tensors, path, meta)
    loaded = safetensors.torch.load_file(path)
    assert loaded.keys() == tensors.keys()
    for k, v in tensors.items():
        assert loaded[k].dtype == v.dtype and torch.equal(loaded[k], v)
    assert written.size == path.stat().st_size == safetensors_size(tensors, meta)
    assert written.checksum == file_checksum(path)
    assert written.checksum.startswith("1220") and len(written.checksum) == 68
    with safetensors.safe_open(path, "pt") as f:
        assert f.metadata() == meta


def test_tied_weights_stored_once_with_their_aliases(tmp_path):
    model = TiedWeights()
    kept, aliases = weights(model)
    assert aliases == {
        "decode.weight": "encode.weight",
        "proj_again.weight": "proj.weight",
        "proj_again.bias": "proj.bias",
    }
    path = tmp_path / "t.safetensors"
    write_safetensors(kept, path, safetensors_metadata(aliases))
    with safetensors.safe_open(path, "pt") as f:
        assert json.loads(f.metadata()["mlm_export.aliases"]) == aliases
