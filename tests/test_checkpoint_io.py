"""The callback sees checkpoints through the Trainer's CheckpointIO: every Item's checksum is the file's, the
checkpoint is never read back to compute it, and the user's own CheckpointIO is wrapped, never replaced."""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import threading
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch

L = pytest.importorskip("lightning")
from lightning.pytorch.callbacks import ModelCheckpoint  # noqa: E402
from lightning.pytorch.plugins.io import AsyncCheckpointIO, CheckpointIO  # noqa: E402

from mlm_export import MLMExportCallback, MLMExportWarning  # noqa: E402
from mlm_export import _checkpoint_io as checkpoint_io  # noqa: E402
from mlm_export._write import atomic_save_hashed  # noqa: E402

from .test_callback import WHEN, assert_catalog_true, fit, items_in  # noqa: E402


def sha256_multihash(path: Path) -> str:
    return "1220" + hashlib.sha256(path.read_bytes()).hexdigest()


def assert_checksums_are_the_files(directory: Path) -> dict[str, dict[str, Any]]:
    """Each Item's checkpoint asset states the size and sha256 of the file its href names (a link: its target)."""
    items = items_in(directory)
    assert items
    for name, item in items.items():
        assets = [a for a in item["assets"].values() if "mlm:checkpoint" in a["roles"]]
        assert len(assets) == 1, name
        path = directory / assets[0]["href"]
        assert assets[0]["file:size"] == path.stat().st_size, name
        assert assets[0]["file:checksum"] == sha256_multihash(path), name
    return items


CASES = {
    "top_k": {"monitor": "val_loss", "save_top_k": 2},
    "save_last": {"monitor": "val_loss", "save_top_k": 1, "save_last": True},
    "save_last_link": {"monitor": "val_loss", "save_top_k": 1, "save_last": "link"},
    "weights_only": {"save_weights_only": True, "save_top_k": -1, "every_n_train_steps": 3},
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_item_checksum_is_sha256_of_the_file(tmp_path: Path, case: str) -> None:
    directory = tmp_path / "ckpt"
    ckpt = ModelCheckpoint(dirpath=directory, **CASES[case])
    fit(tmp_path, ckpt, MLMExportCallback(strict=True, **WHEN), epochs=3)
    items = assert_checksums_are_the_files(directory)
    assert_catalog_true(directory)
    assert len(items) == len(list(directory.glob("*.ckpt")))
    if case == "save_last_link":
        assert (directory / "last.ckpt").is_symlink()
        target = (directory / "last.ckpt").resolve().name
        assert (
            items["last.mlm.json"]["properties"]["lightning:global_step"]
            == (items[target.replace(".ckpt", ".mlm.json")]["properties"]["lightning:global_step"])
        )  # described as the checkpoint it links to


def test_item_checksum_after_resume(tmp_path: Path) -> None:
    directory = tmp_path / "ckpt"
    options = {"dirpath": directory, "monitor": "val_loss", "save_top_k": 2, "save_last": True}
    fit(tmp_path, ModelCheckpoint(**options), MLMExportCallback(strict=True, **WHEN), epochs=2)
    before = {name: item["assets"]["model"]["file:checksum"] for name, item in items_in(directory).items()}
    fit(tmp_path, ModelCheckpoint(**options), MLMExportCallback(strict=True, **WHEN), epochs=4,
        ckpt_path=str(directory / "last.ckpt"))  # fmt: skip
    items = assert_checksums_are_the_files(directory)
    assert items["last.mlm.json"]["assets"]["model"]["file:checksum"] != before["last.mlm.json"]  # saved again
    assert_catalog_true(directory)


class ReadsOf:
    """Counts the opens for reading of files under one directory, in every thread (an audit hook: it stays
    installed for the process, so it only counts while a test has it armed)."""

    armed: ReadsOf | None = None
    installed = False

    def __init__(self, directory: Path, suffix: str) -> None:
        self.directory, self.suffix = str(directory), suffix
        self.paths: list[str] = []
        self._lock = threading.Lock()
        if not ReadsOf.installed:
            sys.addaudithook(ReadsOf._hook)
            ReadsOf.installed = True

    @staticmethod
    def _hook(event: str, args: tuple[Any, ...]) -> None:
        reads = ReadsOf.armed
        if reads is None or event != "open" or not isinstance(args[0], str | os.PathLike):
            return
        path, mode, flags = os.fspath(args[0]), args[1], args[2]
        reading = ("r" in mode and "+" not in mode) if isinstance(mode, str) else (flags & os.O_ACCMODE) == 0
        if reading and path.startswith(reads.directory) and path.endswith(reads.suffix):
            with reads._lock:
                reads.paths.append(path)

    def __enter__(self) -> ReadsOf:
        ReadsOf.armed = self
        return self

    def __exit__(self, *exc: object) -> None:
        ReadsOf.armed = None


@pytest.mark.parametrize("when", ["by the worker", "at once", "while serialised"])
def test_checkpoints_are_hashed_as_written_never_read_back(tmp_path: Path, monkeypatch, when: str) -> None:
    if when == "at once":
        monkeypatch.setattr(checkpoint_io, "HELD_BYTES", 0)  # no bytes may wait in memory for their checksum
    if when == "while serialised":
        monkeypatch.setattr(checkpoint_io, "HASH_WHILE_SAVING", 0)  # every checkpoint counts as large
    directory = tmp_path / "ckpt"
    ckpt = ModelCheckpoint(dirpath=directory, monitor="val_loss", save_top_k=2, save_last="link")
    with ReadsOf(directory, ".ckpt") as reads:
        fit(tmp_path, ckpt, MLMExportCallback(strict=True, **WHEN), epochs=3)
    assert_checksums_are_the_files(directory)  # (reads them, after the fit)
    assert reads.paths == []


class UserIO(CheckpointIO):
    """A user's own CheckpointIO: its own file layout (a 16-byte header, then torch.save), its own bookkeeping."""

    def __init__(self) -> None:
        self.saved: list[str] = []
        self.removed: list[str] = []
        self.torn_down = False

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        self.saved.append(os.fspath(path))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.part"
        with open(tmp, "wb") as f:
            f.write(b"USER-IO-FORMAT\n\n")
            torch.save(checkpoint, f)
        os.replace(tmp, path)

    def load_checkpoint(self, path: Any, map_location: Any = None, weights_only: bool | None = None) -> dict[str, Any]:
        with open(path, "rb") as f:
            f.read(16)
            return dict(torch.load(f, map_location=map_location, weights_only=False))

    def remove_checkpoint(self, path: Any) -> None:
        self.removed.append(os.fspath(path))
        os.remove(path)

    def teardown(self) -> None:
        self.torn_down = True


def test_a_users_checkpoint_io_is_wrapped_not_replaced(tmp_path: Path) -> None:
    directory = tmp_path / "ckpt"
    io = UserIO()
    ckpt = ModelCheckpoint(dirpath=directory, save_top_k=1, every_n_train_steps=2, save_last=True)  # prunes
    with ReadsOf(directory, ".ckpt") as reads:
        trainer, _ = fit(tmp_path, ckpt, MLMExportCallback(strict=True, **WHEN), epochs=3, plugins=[io])
    assert trainer.strategy.checkpoint_io is io  # given back after fit
    assert io.torn_down
    files = sorted(p.name for p in directory.glob("*.ckpt"))
    assert {Path(p).name for p in io.saved} >= set(files) and io.removed  # every save and prune was its own
    assert all((directory / f).read_bytes().startswith(b"USER-IO-FORMAT") for f in files)
    assert_checksums_are_the_files(directory)  # the bytes its own format wrote
    assert_catalog_true(directory)
    assert reads.paths  # a file this wrapper did not write is hashed by reading it, once it is complete


def test_async_checkpoint_io_items_describe_the_written_files(tmp_path: Path) -> None:
    directory = tmp_path / "ckpt"
    ckpt = ModelCheckpoint(dirpath=directory, monitor="val_loss", save_top_k=2, save_last=True)
    fit(tmp_path, ckpt, MLMExportCallback(strict=True, **WHEN), epochs=3, plugins=[AsyncCheckpointIO()])
    items = assert_checksums_are_the_files(directory)
    assert len(items) == len(list(directory.glob("*.ckpt"))) == 3
    assert_catalog_true(directory)


class DirectoryIO(UserIO):
    """Writes each checkpoint as a directory, as sharded strategies do."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        os.makedirs(path, exist_ok=True)
        torch.save(checkpoint["state_dict"], os.path.join(path, "shard0.pt"))

    def remove_checkpoint(self, path: Any) -> None:
        shutil.rmtree(path)


def test_directory_checkpoints_get_one_warning_and_no_item(tmp_path: Path) -> None:
    directory = tmp_path / "ckpt"
    ckpt = ModelCheckpoint(dirpath=directory, save_top_k=-1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer, _ = fit(tmp_path, ckpt, MLMExportCallback(**WHEN), epochs=3, plugins=[DirectoryIO()])
    assert trainer.current_epoch == 3 and len([p for p in directory.iterdir() if p.is_dir()]) == 3
    ours = [str(w.message) for w in caught if issubclass(w.category, MLMExportWarning)]
    assert len(ours) == 1 and "is a directory (a sharded FSDP/DeepSpeed checkpoint)" in ours[0], ours
    assert not list(directory.glob("*.mlm.json"))


@pytest.mark.parametrize("hash_from", [0, 100, 1 << 40])
@pytest.mark.parametrize("keep", [True, False])
def test_atomic_save_hashed_states_the_files_bytes(tmp_path: Path, hash_from: int, keep: bool) -> None:
    state = {"w": torch.randn(64, 64), "b": torch.arange(10), "note": "x"}
    written = atomic_save_hashed(tmp_path / "a.ckpt", lambda f: torch.save(state, f), keep=lambda n: keep,
                                 hash_from=hash_from)  # fmt: skip
    path = tmp_path / "a.ckpt"
    held = keep and written.size <= hash_from  # small and allowed to wait: hashed when asked, not before
    assert written.size == path.stat().st_size and written.held_bytes == (written.size if held else 0)
    assert written.checksum() == sha256_multihash(path) and written.held_bytes == 0
    assert torch.equal(torch.load(path, weights_only=True)["w"], state["w"])
    assert [p.name for p in tmp_path.iterdir()] == ["a.ckpt"]  # no temporary file left
