"""The callback's Collection write beside the training loop (``run_flush.flush``): a removal that happens while
it is computed or written wins, and what is written is the same as the one-shot ``write_collection``."""

from __future__ import annotations

import datetime as dt
import json
import threading
from pathlib import Path
from typing import Any

import pystac
import pytest
import torch

from mlm_export import _run_flush as run_flush
from mlm_export import export_mlm
from mlm_export._checkpoint_facts import plain, run_link
from mlm_export._item import CheckpointFacts, checkpoint_item
from mlm_export._runs import COLLECTION_FILE, RunCatalog, item_path_for
from mlm_export._write import file_checksum

from .conftest import plain_validate
from .models import Regressor

STEPS = (10, 20, 30, 40)


@pytest.fixture(scope="module")
def base() -> dict[str, Any]:
    return export_mlm(
        Regressor(3).eval(), example_input=torch.randn(2, 3, 16, 16), tasks="regression",
        datetime=dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
    ).to_dict(include_self_link=False, transform_hrefs=False)  # fmt: skip


def run(tmp_path: Path, base: dict[str, Any]) -> tuple[RunCatalog, list[Path]]:
    """A run folder with one Item per step, counted in, Collection not yet written."""
    catalog = RunCatalog(tmp_path, collection_id="run", title="run")
    paths = []
    for step in STEPS:
        ckpt = tmp_path / f"epoch=0-step={step}.ckpt"
        ckpt.write_bytes(b"x" * step)
        catalog.put(ckpt, step_item(base, ckpt, step, catalog))
        paths.append(ckpt)
    return catalog, paths


def step_item(base: dict[str, Any], ckpt: Path, step: int, catalog: RunCatalog) -> dict[str, Any]:
    """The Item of a checkpoint at ``step`` of epoch 0, built as the callback builds it."""
    facts = CheckpointFacts(
        path=ckpt, size=step, checksum=file_checksum(ckpt), saved=dt.datetime(2024, 1, 2, tzinfo=dt.UTC),
        lineage="test run", epoch=0, global_step=step, run=run_link(catalog),
    )  # fmt: skip
    return plain(checkpoint_item(pystac.Item.from_dict(base), facts))


def linked(tmp_path: Path) -> set[str]:
    data = json.loads((tmp_path / COLLECTION_FILE).read_text())
    return {link["href"].removeprefix("./") for link in data["links"] if link["rel"] == "item"}


def test_flush_writes_what_write_collection_writes(tmp_path: Path, base: dict[str, Any]):
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir(), two.mkdir()
    catalog, _ = run(one, base)
    catalog.write_collection()
    catalog, _ = run(two, base)
    assert run_flush.flush(catalog, threading.Lock()) is True
    for name in sorted(p.name for p in one.iterdir()):
        if name.endswith(".json"):
            assert json.loads((one / name).read_text()) == json.loads((two / name).read_text()), name
    chain = json.loads(item_path_for(two / "epoch=0-step=10.ckpt").read_text())
    assert {link["rel"] for link in chain["links"]} >= {"successor-version", "latest-version"}
    assert plain_validate(json.loads((two / COLLECTION_FILE).read_text())) == []
    assert not [p for p in two.iterdir() if ".tmp" in p.name]


def test_removal_while_items_are_relinked_keeps_the_item_away(tmp_path: Path, base, monkeypatch):
    """The training loop removes a checkpoint's Item while the flush is encoding it: it must not come back."""
    catalog, paths = run(tmp_path, base)
    lock = threading.Lock()
    victim = paths[1]
    encode = run_flush.json_bytes

    def remove_meanwhile(obj: Any) -> bytes:
        out = encode(obj)
        if str(obj.get("id")).endswith("step=20"):
            with lock:
                catalog.forget(victim)
            victim.unlink()
        return out

    monkeypatch.setattr(run_flush, "json_bytes", remove_meanwhile)
    run_flush.flush(catalog, lock)
    assert not item_path_for(victim).exists()
    assert victim not in catalog.live()
    assert item_path_for(victim).name not in linked(tmp_path)
    assert linked(tmp_path) == {item_path_for(p).name for p in paths if p != victim}
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]


def test_removal_after_the_collection_is_computed_drops_that_collection(tmp_path: Path, base, monkeypatch):
    """A Collection computed before a removal links the removed Item: it is not written, and stays due."""
    catalog, paths = run(tmp_path, base)
    lock = threading.Lock()
    assert run_flush.flush(catalog, lock) is True
    victim = paths[2]
    collection = catalog.collection

    def remove_after(held: Any = None) -> dict[str, Any]:
        data = collection(held)
        with lock:
            catalog.forget(victim)  # what the training loop does before Lightning deletes the file
        victim.unlink()
        return data

    catalog.dirty = True
    monkeypatch.setattr(catalog, "collection", remove_after)
    assert run_flush.flush(catalog, lock) is False
    assert catalog.dirty is True
    assert item_path_for(victim).name not in linked(tmp_path)
    assert not item_path_for(victim).exists()
    monkeypatch.undo()
    assert run_flush.flush(catalog, lock) is True  # the next flush brings it up to date
    assert linked(tmp_path) == {item_path_for(p).name for p in paths if p != victim}
    successor = json.loads(item_path_for(paths[1]).read_text())
    assert {link["rel"]: link["href"] for link in successor["links"]}["successor-version"] == (
        f"./{item_path_for(paths[3]).name}"
    )


def links_of(path: Path) -> dict[str, str]:
    item = json.loads(item_path_for(path).read_text())
    return {link["rel"]: link["href"].removeprefix("./") for link in item["links"] if "version" in link["rel"]}


def test_a_flush_during_training_leaves_latest_links_that_still_resolve(tmp_path: Path, base: dict[str, Any]):
    """While training goes on, a new latest checkpoint does not rewrite every Item: those whose only change is a
    latest-version link to a live Item wait for the final flush; a link to a removed Item is rewritten at once."""
    catalog, paths = run(tmp_path, base)
    lock = threading.Lock()
    assert run_flush.flush(catalog, lock)
    newest = tmp_path / "epoch=0-step=50.ckpt"
    newest.write_bytes(b"y" * 50)
    catalog.put(newest, step_item(base, newest, 50, catalog))
    assert run_flush.flush(catalog, lock, final=False)
    old_latest = item_path_for(paths[-1]).name
    assert links_of(paths[0]) == {"successor-version": item_path_for(paths[1]).name, "latest-version": old_latest}
    assert links_of(paths[-1])["successor-version"] == item_path_for(newest).name  # its neighbour: rewritten
    with lock:
        catalog.forget(paths[-1])  # the old latest goes: links to it must not stay
    paths[-1].unlink()
    assert run_flush.flush(catalog, lock, final=False)
    for path in paths[:-1]:
        assert links_of(path)["latest-version"] == item_path_for(newest).name, path
    assert run_flush.flush(catalog, lock, final=True)
    assert links_of(paths[0])["latest-version"] == item_path_for(newest).name
    for name in linked(tmp_path):
        assert plain_validate(json.loads((tmp_path / name).read_text())) == []
