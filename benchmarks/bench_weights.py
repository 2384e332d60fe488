"""Writing the safetensors asset with its sha256 checksum: mlm-export's writer against the library, side by side.

mlm-export encodes safetensors itself so that each buffer is hashed on a second thread while the next is
written. The alternative is the library: ``safetensors.torch.save_file``, then sha256 of the written file
(read back once). Both, plain ``save_file`` (no checksum) and hashlib's sha256 of the same bytes in memory
are timed in turn, in one run.
Target: mlm-export's writer at least as fast as the library with its checksum (<= 1.00x), else the library
should be used. Shown too: both against plain ``save_file``, and the floor, max(write, sha256) / write.
Run: ./dev bench  (or python benchmarks/bench_weights.py [--quick] [--repeat N])
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
from pathlib import Path

import safetensors.torch
import torch
import torchvision

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from _util import side_by_side, step, verdict  # noqa: E402

from mlm_export._artifacts import safetensors_metadata, weights, write_safetensors  # noqa: E402
from mlm_export._write import file_checksum  # noqa: E402


def library_way(tensors: dict[str, torch.Tensor], path: Path, meta: dict[str, str]) -> str:
    """The library's writer, then the written file hashed once: what mlm-export would do without its encoder."""
    safetensors.torch.save_file(tensors, path, meta)
    return file_checksum(path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="ResNet-18 (47 MB) instead of ViT-L/16 (1.2 GB)")
    parser.add_argument("--repeat", type=int, default=5, help="rounds (each times every way once)")
    args = parser.parse_args()
    step("building the model")
    model = torchvision.models.resnet18() if args.quick else torchvision.models.vit_l_16()
    tensors, aliases = weights(model)
    meta = safetensors_metadata(aliases)
    contiguous = {k: v.contiguous() for k, v in tensors.items()}
    size = sum(t.numel() * t.element_size() for t in contiguous.values())
    with tempfile.TemporaryDirectory(dir=".") as d:
        plain, library, ours = (Path(d) / f"{n}.safetensors" for n in ("plain", "library", "ours"))
        safetensors.torch.save_file(contiguous, plain, meta)
        blob = memoryview(plain.read_bytes())
        step(f"{size / 1e9:.2f} GB of weights; four ways in turn, {args.repeat} rounds")
        t = side_by_side(
            {
                "mlm-export": lambda: write_safetensors(tensors, ours, meta),
                "save_file + hash": lambda: library_way(contiguous, library, meta),
                "save_file": lambda: safetensors.torch.save_file(contiguous, plain, meta),
                "sha256": lambda: hashlib.sha256(blob).digest(),
            },
            repeat=args.repeat,
        )
        step("checking the files")
        written = write_safetensors(tensors, ours, meta)
        assert written.checksum == file_checksum(ours)
        loaded = safetensors.torch.load_file(ours)
        assert loaded.keys() == contiguous.keys() and all(torch.equal(loaded[k], v) for k, v in contiguous.items())
        assert safetensors.torch.load_file(library).keys() == loaded.keys()
    ours_t, lib_t, plain_t, sha_t = t["mlm-export"], t["save_file + hash"], t["save_file"], t["sha256"]
    print(f"state dict              {size / 1e9:.2f} GB ({'resnet18' if args.quick else 'vit_l_16'})")
    print(f"save_file               {plain_t:.2f} s ({size / plain_t / 1e9:.2f} GB/s), no checksum")
    print(f"sha256 alone (hashlib)  {sha_t:.2f} s ({size / sha_t / 1e9:.2f} GB/s on this CPU)")
    print(f"save_file + hash        {lib_t:.2f} s = {lib_t / plain_t:.2f}x save_file (write, then read back and hash)")
    print(f"mlm-export writer       {ours_t:.2f} s = {ours_t / plain_t:.2f}x save_file (hashed while written)")
    print(f"floor on this CPU       max(write, sha256) = {max(plain_t, sha_t) / plain_t:.2f}x save_file")
    ratio = ours_t / lib_t
    print(f"ratio mlm-export/(save_file + hash) = {ratio:.2f}  (target <= 1.00: {verdict(ratio, 1.0)})")
    return 0 if ratio <= 1.0 else 1


if __name__ == "__main__":
    sys.exit(main())
