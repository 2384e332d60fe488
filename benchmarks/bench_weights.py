"""Writing the safetensors asset with its sha256 checksum, against a plain safetensors.torch.save_file.

Target: <= 1.3x save_file. The checksum is computed on a second thread while the file is written; the
floor on any machine is max(write time, sha256 time), printed too, since sha256 speed depends on the CPU
(SHA extensions make it several times faster).
Run: ./dev bench  (or python benchmarks/bench_weights.py)
"""

from __future__ import annotations

import hashlib
import sys
import tempfile
from pathlib import Path

import safetensors.torch
import torchvision

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from _util import timed, verdict  # noqa: E402

from mlm_export.artifacts import safetensors_metadata, weights, write_safetensors  # noqa: E402
from mlm_export.write import file_checksum  # noqa: E402


def main() -> int:
    model = torchvision.models.vit_l_16()
    tensors, aliases = weights(model)
    meta = safetensors_metadata(aliases)
    contiguous = {k: v.contiguous() for k, v in tensors.items()}
    size = sum(t.numel() * t.element_size() for t in contiguous.values())
    with tempfile.TemporaryDirectory(dir=".") as d:
        plain = Path(d) / "plain.safetensors"
        ours = Path(d) / "ours.safetensors"
        naive = Path(d) / "naive.safetensors"
        # interleave the three so that disk and cache state affect each alike
        t_plain, _ = timed(lambda: safetensors.torch.save_file(contiguous, plain, meta), repeat=3)
        t_ours, written = timed(lambda: write_safetensors(tensors, ours, meta), repeat=3)
        t_naive, _ = timed(
            lambda: (safetensors.torch.save_file(contiguous, naive, meta), file_checksum(naive)), repeat=3
        )
        assert written.checksum == file_checksum(ours)
        assert safetensors.torch.load_file(ours).keys() == safetensors.torch.load_file(plain).keys()
        blob = memoryview(plain.read_bytes())
        t_hash, _ = timed(lambda: hashlib.sha256(blob).digest(), repeat=3)
    floor = max(t_plain, t_hash) / t_plain
    ratio = t_ours / t_plain
    print(f"state dict          {size / 1e9:.2f} GB (vit_l_16)")
    print(f"save_file           {t_plain:.2f} s ({size / t_plain / 1e9:.2f} GB/s)")
    print(f"sha256 alone        {t_hash:.2f} s ({size / t_hash / 1e9:.2f} GB/s on this CPU)")
    print(f"save_file + hash    {t_naive:.2f} s = {t_naive / t_plain:.2f}x (write, then read back and hash)")
    print(f"mlm-export writer   {t_ours:.2f} s = {ratio:.2f}x (hash overlapped with the write)")
    print(f"floor on this CPU   max(write, sha256) = {floor:.2f}x")
    print(f"ratio writer/save_file = {ratio:.2f}  (target <= 1.30: {verdict(ratio, 1.3)}; floor here {floor:.2f})")
    return 0 if ratio <= 1.3 else 1


if __name__ == "__main__":
    sys.exit(main())
