"""Shared set-up of the form tests: a derived Item on disk, a running form server, loopback-only network."""

from __future__ import annotations

import datetime as dt
import shutil
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import torch

from mlm_export import export_mlm
from mlm_export.form.server import FormServer
from mlm_export.form.session import FormSession

from .models import SmallUNet

WHEN = dt.datetime(2024, 6, 1, tzinfo=dt.UTC)


def allow_loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Connections to 127.0.0.1 (the form server, chromedriver) pass; anything else fails at once."""
    real_connect = socket.socket.connect

    def connect(self: socket.socket, address: Any) -> Any:
        host = address[0] if isinstance(address, tuple) else address
        if host in ("127.0.0.1", "localhost", "::1"):
            return real_connect(self, address)
        raise OSError("network access is disabled in tests")

    monkeypatch.setattr(socket.socket, "connect", connect)


def make_derived_item(folder: Path) -> Path:
    """An Item made by export_mlm on a tiny segmenter, with its weights file, written in ``folder``."""
    item = export_mlm(
        SmallUNet(in_channels=4, num_classes=3),
        example_input=torch.randn(2, 4, 32, 32),
        bands=["B02", "B03", "B04", "B08"],
        classes=["land", "water", "cloud"],
        name="Small UNet",
        datetime=WHEN,
        out_dir=folder,
        export_program=False,
    )
    return Path(item.get_self_href())


def copy_item(src: Path, dst_dir: Path) -> Path:
    """A fresh copy of the Item's folder (the Item and its assets)."""
    target = dst_dir / "item"
    shutil.copytree(src.parent, target)
    return target / src.name


@contextmanager
def running(path: Path | None) -> Iterator[FormServer]:
    """A form server for ``path`` answering on a background thread."""
    server = FormServer(FormSession(path))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
