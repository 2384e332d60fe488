"""Train TinyClassifier with MLMExportCallback; run as a script so Lightning's DDP launcher can start rank 1.

Usage: python tests/ddp_fit.py OUT_DIR DEVICES
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import lightning as L  # noqa: E402
import torch  # noqa: E402
from lightning.pytorch.callbacks import ModelCheckpoint  # noqa: E402

from mlm_export import MLMExportCallback  # noqa: E402
from tests.test_callback import Data, TinyClassifier  # noqa: E402


def count_json_writes(directory: Path) -> list[str]:
    """Every file this process opens for writing under ``directory`` whose name ends in .json (Items,
    Collections and their temporary files), seen by an audit hook."""
    written: list[str] = []

    def hook(event: str, args: tuple) -> None:
        if event == "open" and isinstance(args[0], str | os.PathLike):
            path, mode, flags = os.fspath(args[0]), args[1], args[2]
            writing = ("r" not in mode or "+" in mode) if isinstance(mode, str) else bool(flags & os.O_ACCMODE)
            if writing and path.startswith(str(directory)) and path.endswith(".json"):
                written.append(path)

    sys.addaudithook(hook)
    return written


def main(out: str, devices: int) -> None:
    torch.manual_seed(0)
    written = count_json_writes(Path(out).absolute() / "ckpt")
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
    # what this rank wrote: only global rank zero may write Items and Collections
    report = {"rank": trainer.global_rank, "json_writes": len(written)}
    (Path(out) / f"rank{trainer.global_rank}.json").write_text(json.dumps(report))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
