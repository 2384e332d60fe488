"""Start-up of the commands that touch no model, against ``python -c pass`` in the same run.

Each command runs in a fresh interpreter (as a user starts it), in turn with the anchor, ``--repeat`` times;
the table gives the median wall time, CPU time (user + system: what the wall time is on a quiet machine, and
far less sensitive to other jobs on the cores) and peak resident memory (the child's VmHWM, from ``wait4``) of
each, and their ratios to the anchor. Targets: under 0.5 s and under 150 MB on a quiet machine.
Run: python benchmarks/bench_startup.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from _util import step, verdict  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TARGET_SECONDS, TARGET_MB = 0.5, 150.0


def _example_items(folder: Path) -> None:
    """Three model Items: the official MLM examples the tests carry (their STAC 1.0.0 schemas with them)."""
    for name in ("item_basic", "item_bands_expression", "item_eo_bands"):
        item = json.loads((ROOT / "tests" / "fixtures" / "mlm_examples" / f"{name}.json").read_text())
        item["id"] = name
        (folder / f"{name}.json").write_text(json.dumps(item))


def _run(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float, float, int]:
    """Wall seconds, CPU seconds, peak resident MB and exit code of one child process."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    cpu = usage.ru_utime + usage.ru_stime
    return seconds, cpu, usage.ru_maxrss / 1024, proc.returncode  # ru_maxrss is in KiB on Linux


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mlm-startup-") as folder:  # the catalogs and the bytecode cache
        return _measure(Path(folder), args.repeat)


def _measure(work: Path, repeat: int) -> int:
    """Run every command ``repeat`` times in turn with the anchors, in ``work``; print the table."""
    items = work / "items"
    items.mkdir()
    _example_items(items)
    env = dict(os.environ)
    # compiled bytecode, as an installed package has it: written once (a warm-up round) under the work folder,
    # whatever PYTHONDONTWRITEBYTECODE says here, never beside the sources
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.update(
        PYTHONPYCACHEPREFIX=str(work / "pycache"),
        PYTHONPATH=str(ROOT / "src"),
        MLM_EXPORT_OFFLINE="1",
        MLM_EXPORT_SCHEMA_DIR=str(ROOT / "tests" / "fixtures" / "schemas"),
    )
    cli = [sys.executable, "-m", "mlm_export"]
    subprocess.run([*cli, "publish", str(items), "--to", "catalog"], env=env, cwd=work, check=True, capture_output=True)
    cases: dict[str, list[str]] = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "python -c 'import torch' (each command's floor before)": [sys.executable, "-c", "import torch"],
        "mlm-export --help": [*cli, "--help"],
        "mlm-export search CATALOG --task classification": [*cli, "search", "catalog", "--task", "classification"],
        "mlm-export search CATALOG --json": [*cli, "search", "catalog", "--json"],
        "mlm-export match --example-scene sentinel-2-l2a CATALOG": [
            *cli,
            "match",
            "--example-scene",
            "sentinel-2-l2a",
            "catalog",
        ],  # fmt: skip
        "mlm-export validate ITEM.json": [*cli, "validate", str(items / "item_basic.json")],
        "mlm-export publish ITEMS --to NEW": [*cli, "publish", str(items), "--to", "fresh", "--on-conflict", "update"],
        "mlm-export convert --help": [*cli, "convert", "--help"],
    }
    seconds: dict[str, list[float]] = {name: [] for name in cases}
    cpus: dict[str, list[float]] = {name: [] for name in cases}
    peaks: dict[str, list[float]] = {name: [] for name in cases}
    for i in range(-1, repeat):  # round -1 warms the bytecode cache and is not counted
        for name, argv in cases.items():
            s, cpu, mb, code = _run(argv, env, work)
            if code not in (0, 1):
                raise SystemExit(f"{name} exited {code}")
            if i < 0:
                continue
            seconds[name].append(s)
            cpus[name].append(cpu)
            peaks[name].append(mb)
        step(f"round {i + 1}/{repeat}" if i >= 0 else "warm-up round (bytecode cache)")
    anchor_s = statistics.median(seconds["python -c pass"])
    anchor_mb = statistics.median(peaks["python -c pass"])
    anchor_cpu = max(statistics.median(cpus["python -c pass"]), 0.001)
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; median of {repeat}")
    target = f"target < {TARGET_SECONDS} s, < {TARGET_MB:.0f} MB"
    head = f"{'command':58} {'time':>8} {'x pass':>7} {'CPU':>7} {'x pass':>7} {'peak RSS':>9} {'x pass':>7}"
    print(f"{head}  {target} (time, CPU, RSS)")
    for name in cases:
        s, mb = statistics.median(seconds[name]), statistics.median(peaks[name])
        cpu = statistics.median(cpus[name])
        line = (
            f"{name:58} {s:7.2f}s {s / anchor_s:6.1f}x {cpu:6.2f}s {cpu / anchor_cpu:6.0f}x "
            f"{mb:7.0f}MB {mb / anchor_mb:6.1f}x"
        )
        if name.startswith("mlm-export"):
            line += f"  {verdict(s, TARGET_SECONDS)} {verdict(cpu, TARGET_SECONDS)} {verdict(mb, TARGET_MB)}"
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
