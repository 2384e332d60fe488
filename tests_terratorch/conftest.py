"""TerraTorch tests: run in their own environment (TerraTorch pins TorchGeo < 0.10), never online."""

from __future__ import annotations

import os
import socket
from typing import Any

import pytest

os.environ["MLM_EXPORT_OFFLINE"] = "1"


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never reach the network: any connection attempt fails at once (a backbone download would)."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise OSError("network access is disabled in tests")

    monkeypatch.setattr(socket.socket, "connect", refuse)
