"""Train TinyClassifier with MLMExportCallback; run as a script so Lightning's DDP launcher can start rank 1.

Usage: python tests/ddp_fit.py OUT_DIR DEVICES
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import lightning as L  # noqa: E402
import torch  # noqa: E402
from lightning.pytorch.callbacks import ModelCheckpoint  # noqa: E402

from mlm_export import MLMExportCallback  # noqa: E402
from tests.test_callback import Data, TinyClassifier  # noqa: E402


def main(out: str, devices: int) -> None:
    torch.manual_seed(0)
    export = MLMExportCallback(name="Tiny classifier", datetime=dt.datetime(2024, 6, 1, tzinfo=dt.UTC))
    ckpt = ModelCheckpoint(dirpath=Path(out) / "ckpt", monitor="val_loss", save_top_k=2, save_last=True)
    trainer = L.Trainer(
        default_root_dir=out,
        max_epochs=3,
        accelerator="cpu",
        devices=devices,
        strategy="ddp" if devices > 1 else "auto",
        callbacks=[ckpt, export],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(TinyClassifier(), Data())
    # what this rank did: only global rank zero spends time writing Items (the files are compared by the test)
    report = {"rank": trainer.global_rank, "blocking": export.blocking_seconds}
    (Path(out) / f"rank{trainer.global_rank}.json").write_text(json.dumps(report))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
