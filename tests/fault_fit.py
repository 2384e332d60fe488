"""Train with MLMExportCallback until killed: a checkpoint every step, top-2 pruning and ``last.ckpt``.

Prints "training" once the first batch ran, so that a test can kill -9 it at a random moment of training.
Usage: python tests/fault_fit.py OUT_DIR STEPS
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import lightning as L  # noqa: E402
import torch  # noqa: E402
from lightning.pytorch.callbacks import Callback, ModelCheckpoint  # noqa: E402

from mlm_export import MLMExportCallback  # noqa: E402
from tests.test_callback import Data, TinyClassifier  # noqa: E402


class Announce(Callback):
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == 1:
            print("training", flush=True)


def main(out: str, steps: int) -> None:
    torch.manual_seed(0)
    export = MLMExportCallback(license="CC-BY-4.0", datetime=dt.datetime(2024, 6, 1, tzinfo=dt.UTC))
    ckpt = ModelCheckpoint(dirpath=Path(out), monitor="train_loss", save_top_k=2, save_last=True, every_n_train_steps=1)
    trainer = L.Trainer(
        default_root_dir=out,
        max_steps=steps,
        accelerator="cpu",
        devices=1,
        callbacks=[ckpt, export, Announce()],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
    )
    trainer.fit(TinyClassifier(), Data())


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
