"""What MLMExportCallback costs a training run: ``fit`` wall time with it against without it, side by side.

``fit`` is timed whole, so everything the callback costs counts: the work in the training loop, the background
thread's checksums and Collection writes competing for the CPU (and the GIL), and the wait at the end of
``fit`` for pending Items. Two runs, each alternated with/without ``--repeat`` times, each fit printed as it ends:

- many saves: a small model checkpointed every step (``--saves``, default 200) with ``save_top_k=-1`` and
  ``save_last=True``: the run Collection grows to every checkpoint; ``--batch-size`` sets the work per step
  (the default made a fit of about 12 s under load, 6 s on a quiet machine; the case reported: 200 saves
  made it take 80 s);
- big checkpoints: a ~100M-parameter model checkpointed three times (0.4 GB each, no ``last.ckpt``).

Target: ratio with/without under 1.10 for both, checked on the medians. On a shared machine run it with
``--repeat 5`` or more: it also prints the ratio of the fastest fits, the median and range of the adjacent
with/without pairs, and the CPU time of all threads (the background thread's share shows there even when a
spare core hides it).
Run: python benchmarks/bench_callback.py [--saves N] [--repeat N]
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from _util import verdict  # noqa: E402

from mlm_export import MLMExportCallback  # noqa: E402

WHEN = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
TARGET = 1.10


class MLP(L.LightningModule):
    def __init__(self, width: int, depth: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for _ in range(depth):
            layers += [nn.Linear(width, width), nn.ReLU()]
        self.net = nn.Sequential(*layers, nn.Linear(width, 10))
        self.example_input_array = torch.zeros(2, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.cross_entropy(self(x), y)
        self.log("loss", loss)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=1e-3)


def fit_seconds(
    width: int,
    depth: int,
    steps: int,
    batches: int,
    *,
    every_n_steps: int,
    with_callback: bool,
    last: bool = True,
    batch_size: int = 8,
) -> tuple[float, int, int]:
    """Wall time of one fit; the checkpoints and Items it left."""
    torch.manual_seed(0)
    n = batch_size * batches
    data = TensorDataset(torch.randn(n, width), torch.randint(0, 10, (n,)))
    with tempfile.TemporaryDirectory(dir=".") as d:
        ckpt = ModelCheckpoint(dirpath=d, save_top_k=-1, save_last=last, every_n_train_steps=every_n_steps)
        callbacks: list[L.Callback] = [ckpt]
        if with_callback:
            callbacks.append(MLMExportCallback(tasks="classification", datetime=WHEN, license="CC-BY-4.0"))
        trainer = L.Trainer(
            max_steps=steps, callbacks=callbacks, logger=False, enable_progress_bar=False,
            enable_model_summary=False, accelerator="cpu", default_root_dir=d,
        )  # fmt: skip
        model = MLP(width, depth)
        start = time.perf_counter()
        trainer.fit(model, DataLoader(data, batch_size=batch_size))
        seconds = time.perf_counter() - start
        checkpoints = len(list(Path(d).glob("*.ckpt")))
        items = len(list(Path(d).glob("*.mlm.json")))
    return seconds, checkpoints, items


def compare(title: str, repeat: int, **kwargs: int) -> float:
    """Fits alternated without/with the callback (which goes first alternates too); prints each fit as it ends.

    Returns the ratio of the medians, the figure the target is checked against; the ratio of the fastest of
    each and the median of the adjacent pairs' ratios are printed beside it.
    """
    print(title, flush=True)
    without, with_, cpu_without, cpu_with = [], [], [], []
    items = checkpoints = 0
    for i in range(repeat):
        for callback in (False, True) if i % 2 == 0 else (True, False):
            cpu = time.process_time()
            seconds, checkpoints_, items_ = fit_seconds(**kwargs, with_callback=callback)
            (cpu_with if callback else cpu_without).append(time.process_time() - cpu)
            (with_ if callback else without).append(seconds)
            if callback:
                items, checkpoints = items_, checkpoints_
            print(f"  [{i + 1}/{repeat}] {'with' if callback else 'without'} callback: {seconds:.2f} s", flush=True)
    median = statistics.median(with_) / statistics.median(without)
    fastest = min(with_) / min(without)
    pairs = sorted(w / wo for w, wo in zip(with_, without, strict=True))
    print(f"  fit without callback {', '.join(f'{s:.2f}' for s in without)} s")
    print(f"  fit with callback    {', '.join(f'{s:.2f}' for s in with_)} s ({items} Items for {checkpoints} files)")
    print(f"  CPU time (all threads) without {min(cpu_without):.2f} s, with {min(cpu_with):.2f} s (fastest of each)")
    print(f"  ratio of adjacent pairs: median {statistics.median(pairs):.3f}, range {pairs[0]:.3f}-{pairs[-1]:.3f}")
    print(f"  ratio with/without, fastest of each: {fastest:.3f}")
    print(f"  ratio with/without, median of each:  {median:.3f}  (target < {TARGET}: {verdict(median, TARGET)})")
    return median


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--saves", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--batch-size",
        type=int,
        default=1024,
        help="many-saves run: sets the training work per step (default: a fit "
        "of about 12 s on 2 cores, as in the report that 200 saves made such a fit take 80 s)",
    )
    parser.add_argument("--skip-big", action="store_true", help="only the many-saves run")
    parser.add_argument("--skip-many", action="store_true", help="only the big-checkpoints run")
    args = parser.parse_args()
    torch.set_num_threads(1)
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # progress lines only
    warnings.filterwarnings("ignore", module="lightning")
    ratios = []
    if not args.skip_many:
        ratios.append(
            compare(
                f"many saves: {args.saves} checkpoints (and last.ckpt) of a 0.3M-parameter MLP, one per step",
                args.repeat,
                width=256,
                depth=4,
                steps=args.saves,
                batches=args.saves,
                every_n_steps=1,
                batch_size=args.batch_size,
            )
        )
    if not args.skip_big:
        ratios.append(
            compare(
                "big checkpoints: 3 checkpoints of a 100M-parameter MLP (0.4 GB each)",
                args.repeat,
                width=4096,
                depth=6,
                steps=6,
                batches=6,
                every_n_steps=2,
                last=False,
            )
        )
    return 0 if all(r < TARGET for r in ratios) else 1


if __name__ == "__main__":
    sys.exit(main())
