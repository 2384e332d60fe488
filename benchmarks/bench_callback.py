"""How long MLMExportCallback blocks the training loop, against the time ModelCheckpoint spends saving.

A ~100M-parameter model, a checkpoint every epoch (weights + SGD momentum, ~0.8 GB each). Target: the callback
blocks for at most 10% of the saving time. The checksum runs on a background thread; its total is printed too
and is finished before fit returns.
Run: ./dev bench  (or python benchmarks/bench_callback.py)
"""

from __future__ import annotations

import datetime as dt
import sys
import tempfile
import time

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from _util import verdict  # noqa: E402

from mlm_export import MLMExportCallback  # noqa: E402
from mlm_export.callback import RunCatalog  # noqa: E402

WIDTH = 4096


class Wide(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(*[nn.Linear(WIDTH, WIDTH) for _ in range(6)], nn.Linear(WIDTH, 10))
        self.example_input_array = torch.zeros(2, WIDTH)

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.cross_entropy(self(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=1e-3, momentum=0.9)


def main() -> int:
    torch.manual_seed(0)
    data = TensorDataset(torch.randn(16, WIDTH), torch.randint(0, 10, (16,)))
    hashing = []
    original = RunCatalog.checksum

    def timed_checksum(self, path):
        start = time.perf_counter()
        try:
            return original(self, path)
        finally:
            hashing.append(time.perf_counter() - start)

    RunCatalog.checksum = timed_checksum
    with tempfile.TemporaryDirectory(dir=".") as d:
        ckpt = ModelCheckpoint(dirpath=d, save_top_k=-1)
        export = MLMExportCallback(tasks="classification", datetime=dt.datetime(2024, 1, 1, tzinfo=dt.UTC))
        trainer = L.Trainer(
            max_epochs=3, callbacks=[ckpt, export], logger=False, enable_progress_bar=False,
            enable_model_summary=False, accelerator="cpu", default_root_dir=d,
        )  # fmt: skip
        saving = []
        save = trainer.save_checkpoint

        def timed_save(*args, **kwargs):
            start = time.perf_counter()
            try:
                return save(*args, **kwargs)
            finally:
                saving.append(time.perf_counter() - start)

        trainer.save_checkpoint = timed_save
        model = Wide()
        start = time.perf_counter()
        trainer.fit(model, DataLoader(data, batch_size=8))
        fit_total = time.perf_counter() - start
        params = sum(p.numel() for p in model.parameters())
        sizes = [p.stat().st_size for p in __import__("pathlib").Path(d).glob("*.ckpt")]
        items = list(__import__("pathlib").Path(d).glob("*.mlm.json"))
    ratio = export.blocking_seconds / sum(saving)
    print(f"model                {params:,} parameters; {len(sizes)} checkpoints of {sizes[0] / 1e9:.2f} GB")
    print(f"ModelCheckpoint save {sum(saving):.2f} s in all ({', '.join(f'{s:.2f}' for s in saving)})")
    print(f"callback blocking    {export.blocking_seconds:.3f} s in all")
    print(f"background checksum  {sum(hashing):.2f} s in all, finished before fit returned ({len(items)} Items)")
    print(f"fit total            {fit_total:.2f} s")
    print(f"ratio blocking/save = {ratio:.3f}  (target <= 0.10: {verdict(ratio, 0.1)})")
    return 0 if ratio <= 0.1 and len(items) == len(sizes) else 1


if __name__ == "__main__":
    sys.exit(main())
