"""Form tests: loopback-only network, and a derived Item made once per session and copied per test."""

from __future__ import annotations

from pathlib import Path

import pytest

from .helpers import allow_loopback_only, copy_item, make_derived_item


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    """Overrides the suite's: the form server and chromedriver are on 127.0.0.1; everything else stays unreachable."""
    allow_loopback_only(monkeypatch)


@pytest.fixture(scope="session")
def derived(tmp_path_factory) -> Path:
    """An Item made by export_mlm on a tiny segmenter (do not modify: copy it with ``item_path``)."""
    return make_derived_item(tmp_path_factory.mktemp("derived"))


@pytest.fixture
def item_path(derived, tmp_path) -> Path:
    """A fresh copy of the derived Item and its weights file."""
    return copy_item(derived, tmp_path)
