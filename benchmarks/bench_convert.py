"""``mlm-export convert`` over one run's checkpoint directory, against hashlib's sha256 of the same files.

Ten weights-only checkpoints of a ~100M-parameter model (~4 GB). Every byte must be hashed once for
``file:checksum``, so the floor is hashlib's own sha256 rate, measured in this run on the same files (the
coreutils ``sha256sum`` is several times slower than hashlib on some machines: no fair floor).
Targets: convert <= 1.3x that floor (the architecture is traced once for all files; convert's time includes
starting Python and importing torch), and the convert process's absolute peak resident memory below the
largest checkpoint plus 500 MB. The peak is explained too: what ``import torch`` alone costs, and how much
of that is the CUDA libraries' pages a CUDA build of torch maps even without a GPU.
Run: ./dev bench  (or python benchmarks/bench_convert.py [--files N] [--repeat N])
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import side_by_side, step, verdict  # noqa: E402

WIDTH = 4096
#: Memory figures of this process from the kernel: peak (VmHWM), and the resident pages of CUDA libraries.
MEMORY = """
def memory():
    import re
    from pathlib import Path
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    cuda = 0
    name = ""
    for line in Path("/proc/self/smaps").read_text().splitlines():
        if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
            name = line.split()[-1] if len(line.split()) >= 6 else ""
        elif line.startswith("Rss:") and re.search(r"/(libcu|libnv|libtorch_cuda|libcudnn|libnccl|libc10_cuda)", name):
            cuda += int(line.split()[1]) * 1024
    return {"peak": int(status["VmHWM"].split()[0]) * 1024, "cuda": cuda}
"""
#: Runs the command line and records its own memory figures.
RUNNER = (
    MEMORY
    + """
import json, sys
from pathlib import Path
from mlm_export.cli import main
code = main(sys.argv[2:])
Path(sys.argv[1]).write_text(json.dumps(memory()))
sys.exit(code)
"""
)
BASELINE = MEMORY + "\nimport json, torch\nprint(json.dumps(memory()))\n"
#: The same after tracing the model once on the meta device (no weights), as convert does for a run.
TRACED = (
    MEMORY
    + """
import json, torch
from bench_convert import Wide
from mlm_export import inspect_model
with torch.device("meta"):
    model = Wide()
inspect_model(model, torch.zeros(2, 4096, device="meta"))
print(json.dumps(memory()))
"""
)


class Wide(nn.Module):
    """~100M parameters: six 4096x4096 layers and a head."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(*[nn.Linear(WIDTH, WIDTH) for _ in range(6)], nn.Linear(WIDTH, 10))
        self.example_input_array = torch.zeros(2, WIDTH)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def hash_files(files: list[Path]) -> None:
    """sha256 of each file with hashlib, read in large chunks (what ``file:checksum`` needs at the least)."""
    for f in files:
        h = hashlib.sha256()
        with open(f, "rb") as fh:
            while chunk := fh.read(8 << 20):
                h.update(chunk)
        h.digest()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10, help="checkpoints in the run directory")
    parser.add_argument("--repeat", type=int, default=2, help="rounds (each times hashlib and convert once)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=".") as d:
        directory = Path(d)
        model = Wide()
        for i in range(args.files):
            with torch.no_grad():
                for p in model.parameters():
                    p.add_(0.001)  # each checkpoint holds other weights, as in a real run
            state = {"epoch": i, "global_step": 100 * i, "state_dict": model.state_dict()}
            torch.save(state, directory / f"epoch={i}.ckpt")
            step(f"wrote checkpoint {i + 1}/{args.files}")
        del model
        gc.collect()
        files = sorted(directory.glob("*.ckpt"))
        total = sum(f.stat().st_size for f in files)
        largest = max(f.stat().st_size for f in files)

        # the command itself, in a process of its own: its time includes starting Python and importing torch
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parent), *sys.path])}
        report = directory / "memory.json"
        cmd = [sys.executable, "-c", RUNNER, str(report), "convert", str(directory), "--model", "bench_convert:Wide",
               "--allow-module", "bench_convert", "--tasks", "classification", "--json", "--overwrite"]  # fmt: skip
        runs: list[subprocess.CompletedProcess[str]] = []
        step(f"{args.files} checkpoints, {total / 1e9:.2f} GB; hashlib and convert in turn, {args.repeat} rounds")
        t = side_by_side(
            {
                "hashlib sha256": lambda: hash_files(files),
                "convert": lambda: runs.append(subprocess.run(cmd, capture_output=True, text=True, env=env)),
            },
            repeat=args.repeat,
        )
        proc = runs[-1]
        memory = json.loads(report.read_text()) if report.exists() else {"peak": 0, "cuda": 0}
        results = json.loads(proc.stdout)["results"] if proc.stdout else []
        failed = [r for r in results if r["status"] != "converted"] or ([] if proc.returncode == 0 else [proc.stderr])
    step("measuring 'import torch' alone, then with one trace of the model")
    baseline, traced = (
        json.loads(
            subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout
        )
        for code in (BASELINE, TRACED)
    )
    t_hash, t_convert = t["hashlib sha256"], t["convert"]
    ratio = t_convert / t_hash
    peak, limit = memory["peak"], largest + 500e6
    print(f"checkpoints          {args.files} files, {total / 1e9:.2f} GB, largest {largest / 1e9:.2f} GB")
    print(f"hashlib sha256       {t_hash:.2f} s ({total / t_hash / 1e9:.2f} GB/s on this CPU)")
    print(f"convert              {t_convert:.2f} s ({len(results) - len(failed)} Items and a collection)")
    print(f"beyond hashing       {t_convert - t_hash:.2f} s (starting Python, importing torch, one trace, Items)")
    print(f"ratio convert/hashlib = {ratio:.2f}  (target <= 1.30: {verdict(ratio, 1.3)})")
    print(f"peak memory          {peak / 1e9:.2f} GB, the convert process's own peak (VmHWM)")
    print(f"peak vs limit        {peak / 1e9:.2f} GB against largest checkpoint + 0.5 GB = {limit / 1e9:.2f} GB: "
          f"{verdict(peak, limit)}")  # fmt: skip
    print(f"  of which           {baseline['peak'] / 1e9:.2f} GB is 'import torch' alone ({torch_build()} build), "
          f"{baseline['cuda'] / 1e9:.2f} GB of it CUDA libraries' pages (no GPU used); "
          f"{(peak - baseline['peak']) / 1e9:.2f} GB is convert's own")  # fmt: skip
    print(f"  tracing            {(traced['peak'] - baseline['peak']) / 1e9:.2f} GB over 'import torch': one trace of "
          "the model on the meta device (no weights: what torch's tracing machinery loads)")  # fmt: skip
    print(f"  convert mapped     {memory['cuda'] / 1e9:.2f} GB of CUDA library pages")
    for r in failed:
        print(f"failed: {r}")
    return 0 if ratio <= 1.3 and peak <= limit and not failed else 1


def torch_build() -> str:
    return f"CUDA {torch.version.cuda}" if torch.version.cuda else "CPU-only"


if __name__ == "__main__":
    sys.exit(main())
