"""The safetensors asset: mlm-export's own encoder (hashing while it writes) against the library's reader."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import safetensors.torch
import torch

from mlm_export._artifacts import safetensors_size, write_safetensors
from mlm_export._write import file_checksum


def test_every_dtype_width_reads_back_with_the_library(tmp_path):
    tensors = {
        "a": torch.randn(2000, dtype=torch.complex64),
        "b": torch.ones(1, dtype=torch.float64),
        "c": torch.arange(3, dtype=torch.int16),
        "d": torch.tensor([1, 2**40], dtype=torch.int64).to(torch.uint64),
        "e": torch.ones(3, dtype=torch.float8_e4m3fn),
        "f": torch.arange(5).to(torch.uint32),
    }
    meta = {"format": "pt"}
    path = tmp_path / "w.safetensors"
    written = write_safetensors(tensors, path, meta)
    assert written.size == path.stat().st_size == safetensors_size(tensors, meta)
    assert written.checksum == file_checksum(path)
    loaded = safetensors.torch.load_file(path)
    assert {k: v.dtype for k, v in loaded.items()} == {k: v.dtype for k, v in tensors.items()}
    assert all(torch.equal(loaded[k].view(torch.uint8), v.view(torch.uint8)) for k, v in tensors.items())


def test_overlapping_views_are_each_stored(tmp_path):
    # weights() drops exact duplicates only: views into another tensor's memory are written in full
    base = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    tensors = {"whole": base, "row": base[1], "strided": base[:, ::2]}
    path = tmp_path / "v.safetensors"
    write_safetensors(tensors, path, {"format": "pt"})
    loaded = safetensors.torch.load_file(path)
    assert all(torch.equal(loaded[k], v) for k, v in tensors.items())


def test_weights_file_follows_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        write_safetensors({"w": torch.zeros(3)}, tmp_path / "w.safetensors", {"format": "pt"})
    finally:
        os.umask(old)
    assert (tmp_path / "w.safetensors").stat().st_mode & 0o777 == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["w.safetensors"]


FULL_DISK = """
import resource, signal, sys, torch
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG, as on a full disk
from mlm_export._artifacts import write_safetensors
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
try:
    write_safetensors({"w": torch.zeros(100_000)}, sys.argv[1], {"format": "pt"})
except OSError as e:
    print(type(e).__name__, e.errno)
"""


def test_full_disk_is_an_oserror_and_leaves_no_file(tmp_path):
    target = tmp_path / "model.safetensors"
    root = Path(__file__).parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root / "src"), *sys.path])}
    proc = subprocess.run(
        [sys.executable, "-c", FULL_DISK, str(target)], capture_output=True, text=True, env=env, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["OSError", "27"]  # EFBIG: the disk error itself, for the caller to report
    assert list(tmp_path.iterdir()) == []  # neither the file nor a temporary one beside it
