"""Nothing leaks into the user's process: a user thread that logs, prints and reads the signal table while an
export runs sees nothing change (no SIGALRM handler or timer, no redirected stream, no torch logger level, no
model swapped or flipped to eval under it)."""

from __future__ import annotations

import datetime as dt
import logging
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import torch
import torchvision
from torch import nn

from mlm_export import MLMExportCallback, export_mlm

from .test_callback import fit

WHEN = {"datetime": dt.datetime(2024, 6, 1, tzinfo=dt.UTC)}


def _torch_loggers() -> dict[str, tuple[Any, ...]]:
    return {
        name: (lg.level, lg.disabled, lg.propagate, tuple(lg.handlers), tuple(lg.filters))
        for name, lg in list(logging.root.manager.loggerDict.items())
        if isinstance(lg, logging.Logger) and (name == "torch" or name.startswith("torch."))
    }


def _model_view(model: nn.Module | None) -> Any:
    if model is None:
        return None
    return [
        (m.training, tuple((k, id(p)) for k, p in m._parameters.items()), tuple(sorted(m.__dict__)))
        for m in list(model.modules())
    ]


class _Recorder(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextmanager
def user_thread(model: nn.Module | None = None) -> Iterator[list[str]]:
    """A thread doing what a user's thread does while the block runs; yields what it saw change."""
    recorder = _Recorder()
    user_logger = logging.getLogger("torch.user_code")  # a logger under torch's, as a torch extension has
    user_logger.addHandler(recorder)
    user_logger.setLevel(logging.INFO)
    user_logger.propagate = False  # keep the test log short

    def state() -> dict[str, Any]:
        return {
            "SIGALRM handler": signal.getsignal(signal.SIGALRM),
            "ITIMER_REAL": signal.getitimer(signal.ITIMER_REAL) != (0.0, 0.0),
            "sys.stdout": sys.stdout,
            "sys.stderr": sys.stderr,
            "torch loggers": _torch_loggers(),
            "model": _model_view(model),
        }

    # torch's lazy trace handler removes itself at its first record (without TORCH_TRACE): let it, first
    logging.getLogger("torch.__trace").debug("warm-up")
    before = state()
    changed: list[str] = []
    stop = threading.Event()
    started = threading.Event()
    sent = 0

    def watch() -> None:
        nonlocal sent
        while not stop.is_set():
            now = state()
            for key, value in now.items():
                if key == "torch loggers":  # torch may add loggers lazily: the ones there must keep their state
                    old = before[key]
                    value = {k: v for k, v in value.items() if k in old}
                    if value != {k: v for k, v in old.items() if k in value} and key not in changed:
                        changed.append(key)
                elif value != before[key] and key not in changed:
                    changed.append(key)
            user_logger.info("user message %d", sent)
            sent += 1
            print(end="", file=sys.stdout)
            print(end="", file=sys.stderr)
            started.set()
            stop.wait(0.002)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    started.wait()
    try:
        yield changed
    finally:
        stop.set()
        thread.join()
        user_logger.removeHandler(recorder)
        user_logger.setLevel(logging.NOTSET)
        user_logger.propagate = True
    if len(recorder.messages) != sent:
        changed.append(f"torch logger records lost ({sent - len(recorder.messages)} of {sent})")


def _run_watched(work: Callable[[], Any], model: nn.Module | None = None) -> list[str]:
    with user_thread(model) as changed:
        work()
    return changed


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_export_mlm_changes_nothing_another_thread_sees(tmp_path):
    model = torchvision.models.resnet18(num_classes=4)
    model.train()
    model.layer1.eval()  # mixed modes, as in fine-tuning
    changed = _run_watched(
        lambda: export_mlm(
            model,
            example_input=torch.randn(2, 3, 64, 64),
            tasks="classification",
            out_dir=tmp_path,
            artifacts=("torchscript", "onnx", "safetensors"),
            artifact_timeout=600,
            **WHEN,
        ),
        model,
    )
    assert changed == []
    assert sorted(p.suffix for p in tmp_path.iterdir() if p.suffix in (".torchscript", ".onnx", ".safetensors")) == [
        ".onnx",
        ".safetensors",
        ".torchscript",
    ]


def test_fit_with_the_callback_changes_nothing_another_thread_sees(tmp_path):
    callback = MLMExportCallback(artifacts=("torchscript", "safetensors"), artifact_timeout=600, **WHEN)
    changed = _run_watched(lambda: fit(tmp_path, callback, epochs=1))
    assert changed == []
    assert list((tmp_path / "checkpoints").glob("*.torchscript")) or list(tmp_path.rglob("*.torchscript"))
