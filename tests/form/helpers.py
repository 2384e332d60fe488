"""Shared set-up of the form tests: a derived Item on disk, a running form server, loopback-only network."""

from __future__ import annotations

import datetime as dt
import http.client
import json
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
from mlm_export._form.server import TOKEN_HEADER, FormServer
from mlm_export._form.session import FormSession

from ..models import SmallUNet

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


def request(server: FormServer, method: str, path: str, *, body=None, headers=None, token=True):
    """One raw HTTP request (the path is sent exactly as given); returns (status, parsed or raw body)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    hdrs = {"Host": f"127.0.0.1:{server.port}"}
    if token:
        hdrs[TOKEN_HEADER] = server.token
    if body is not None:
        hdrs["Content-Type"] = "application/json"
        body = json.dumps(body).encode()
    hdrs.update(headers or {})
    conn.request(method, path, body=body, headers=hdrs)
    response = conn.getresponse()
    raw = response.read()
    conn.close()
    try:
        return response.status, json.loads(raw)
    except ValueError:
        return response.status, raw


def raw_post(server: FormServer, length: str) -> tuple[int, dict]:
    """A POST whose headers are sent, and no body: the server must answer from the headers alone."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.putrequest("POST", "/api/validate", skip_host=True)
    headers = {"Host": f"127.0.0.1:{server.port}", TOKEN_HEADER: server.token, "Content-Type": "application/json"}
    for key, value in {**headers, "Content-Length": length}.items():
        conn.putheader(key, value)
    conn.endheaders()
    response = conn.getresponse()
    result = response.status, json.loads(response.read())
    conn.close()
    return result
