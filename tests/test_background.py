"""The callback's worker thread: jobs linger before they run (so stale ones are skipped), Collection writes come
during a run, spaced by their cost, and the end of ``fit`` does not wait for the linger."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader, TensorDataset

from mlm_export import MLMExportCallback
from mlm_export import _background as background
from mlm_export import _runs as runs

from .test_callback import WHEN


def feed_until(worker: background.Worker, enough: threading.Event, every: float = 0.02) -> None:
    """A job every ``every`` s (stamped with the time it was queued) until ``enough`` is set: the queue is never
    drained while jobs linger. Ends on the event, not on a clock, so a slow machine only makes it longer."""
    for _ in range(int(LIMIT_SECONDS / every)):
        if enough.is_set():
            return
        worker.put((time.monotonic(),))
        enough.wait(every)
    raise AssertionError(f"the event did not come within {LIMIT_SECONDS} s of jobs")


#: A bound that only a broken worker reaches (the events below come within seconds on any machine).
LIMIT_SECONDS = 300.0


def test_collection_writes_come_during_a_run_not_only_at_its_end():
    ran: list[tuple[float, float]] = []
    idle: list[float] = []
    twice = threading.Event()

    def on_idle() -> None:
        idle.append(time.monotonic())
        if len(idle) >= 2:
            twice.set()

    worker = background.Worker(lambda job: ran.append((job[0], time.monotonic())), print, on_idle)
    feed_until(worker, twice)  # returns only once two Collection writes came while jobs kept coming
    closing = time.monotonic()
    assert worker.close() is None
    assert len([t for t in idle if t < closing]) >= 2
    before_close = [(queued, at) for queued, at in ran if at < closing]
    assert before_close
    assert all(at - queued >= background.LINGER_SECONDS * 0.9 for queued, at in before_close)  # each lingered


def test_collection_writes_are_spaced_by_their_cost():
    idle: list[float] = []
    three = threading.Event()

    def slow_collection() -> None:
        idle.append(time.monotonic())
        time.sleep(0.1)  # at least 0.1 s: the next write comes FLUSH_SPACING (20x) later, at least 2 s
        if len(idle) >= 3:
            three.set()

    worker = background.Worker(lambda job: None, print, slow_collection)
    feed_until(worker, three)
    worker.close()
    gaps = [b - a for a, b in zip(idle, idle[1:3], strict=False)]  # the writes during the run, not the final one
    assert len(gaps) == 2
    assert min(gaps) >= background.FLUSH_SPACING * 0.1 * 0.95, gaps


def test_close_does_not_wait_for_the_linger(monkeypatch):
    monkeypatch.setattr(background, "LINGER_SECONDS", 60.0)  # far longer than any machine takes to close
    ran: list[Any] = []
    worker = background.Worker(ran.append, print)
    worker.put(("a",))
    start = time.monotonic()
    assert worker.close() is None
    assert ran == [("a",)]
    assert time.monotonic() - start < 30


class Tiny(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Linear(4, 2)
        self.example_input_array = torch.zeros(2, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return torch.nn.functional.cross_entropy(self(batch[0]), batch[1])

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_a_last_ckpt_replaced_at_every_step_is_not_hashed_every_step(tmp_path: Path, monkeypatch):
    """40 steps, each saving a checkpoint and replacing last.ckpt: the replaced ones are skipped undescribed,
    no checkpoint is read back, and every Item left describes its checkpoint."""
    described: list[str] = []
    checksum = runs.RunCatalog.checksum
    monkeypatch.setattr(runs.RunCatalog, "checksum", lambda self, p: described.append(p.name) or checksum(self, p))
    read_back: list[str] = []
    monkeypatch.setattr(runs, "file_checksum", lambda p: read_back.append(str(p)) or "")
    data = TensorDataset(torch.randn(40, 4), torch.randint(0, 2, (40,)))
    ckpt = ModelCheckpoint(dirpath=tmp_path, save_top_k=-1, save_last=True, every_n_train_steps=1)
    export = MLMExportCallback(**WHEN, tasks="classification", strict=True)
    trainer = L.Trainer(max_steps=40, callbacks=[ckpt, export], logger=False, enable_progress_bar=False,
                        enable_model_summary=False, accelerator="cpu")  # fmt: skip
    trainer.fit(Tiny(), DataLoader(data, batch_size=1))
    assert len(list(tmp_path.glob("*.ckpt"))) == 41
    assert len(list(tmp_path.glob("*.mlm.json"))) == 41
    assert described.count("last.ckpt") < 20, described  # 40 saves of last.ckpt, most replaced within the linger
    assert read_back == []  # each checksum was computed as the file was written
    for item in tmp_path.glob("*.mlm.json"):
        data_ = json.loads(item.read_text())
        asset = data_["assets"]["model"]
        target = tmp_path / asset["href"].removeprefix("./")
        assert asset["file:size"] == target.stat().st_size
        assert asset["file:checksum"] == "1220" + hashlib.sha256(target.read_bytes()).hexdigest(), item.name
