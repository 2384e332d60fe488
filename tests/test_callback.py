"""MLMExportCallback in real Trainer.fit runs: one valid Item per live checkpoint and a true Collection."""

from __future__ import annotations

import datetime as dt
import json
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

L = pytest.importorskip("lightning")
from lightning.pytorch.callbacks import ModelCheckpoint  # noqa: E402

from mlm_export import InvalidOptionError, MLMExportCallback, MLMExportWarning, TraceError  # noqa: E402
from mlm_export._callback import EMBED_KEY  # noqa: E402

from .conftest import plain_validate  # noqa: E402

WHEN = {"datetime": dt.datetime(2024, 6, 1, tzinfo=dt.UTC)}


class TinyClassifier(L.LightningModule):
    def __init__(self, in_channels: int = 3, num_classes: int = 4, lr: float = 0.05) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, 8, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(8, num_classes),
        )
        self.example_input_array = torch.zeros(2, in_channels, 16, 16)

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.cross_entropy(self(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", nn.functional.cross_entropy(self(x), y))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


class Data(L.LightningDataModule):
    bands = ["red", "green", "blue"]
    classes = ["a", "b", "c", "d"]

    def __init__(self, batch_size: int = 8) -> None:
        super().__init__()
        self.batch_size = batch_size
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(32, 3, 16, 16, generator=g)
        self.y = torch.randint(0, 4, (32,), generator=g)

    def train_dataloader(self):
        return DataLoader(TensorDataset(self.x, self.y), batch_size=self.batch_size)

    def val_dataloader(self):
        return DataLoader(TensorDataset(self.x[:16], self.y[:16]), batch_size=self.batch_size)


def fit(tmp_path: Path, *callbacks, epochs: int = 4, ckpt_path=None, model=None, **trainer_kwargs):
    trainer = L.Trainer(
        default_root_dir=tmp_path,
        max_epochs=epochs,
        callbacks=list(callbacks),
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        devices=1,
        **trainer_kwargs,
    )
    torch.manual_seed(0)
    model = model or TinyClassifier()
    trainer.fit(model, Data(), ckpt_path=ckpt_path)
    return trainer, model


def items_in(directory: Path) -> dict[str, dict]:
    return {p.name: json.loads(p.read_text()) for p in sorted(directory.glob("*.mlm.json"))}


def assert_catalog_true(directory: Path) -> dict:
    """Every Item valid and pointing at existing files; the Collection valid and linking exactly them."""
    items = items_in(directory)
    collection = json.loads((directory / "collection.json").read_text())
    assert plain_validate(collection) == []
    linked = sorted(link["href"].removeprefix("./") for link in collection["links"] if link["rel"] == "item")
    assert linked == sorted(items)
    for name, item in items.items():
        assert plain_validate(item) == [], name
        assert item["collection"] == collection["id"]
        for asset in item["assets"].values():
            if "://" not in asset["href"]:  # the code repository (a remote URL) is not a local file
                assert (directory / asset["href"]).exists(), (name, asset["href"])
    leftovers = [p.name for p in directory.iterdir() if p.name.startswith(".")]
    assert leftovers == []
    return collection


def test_top_k_pruning_leaves_two_items_plus_last(tmp_path):
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", monitor="val_loss", save_top_k=2, save_last=True)
    cb = MLMExportCallback(name="Tiny classifier", license="MIT", **WHEN)
    trainer, model = fit(tmp_path, ckpt, cb)
    directory = tmp_path / "ckpt"
    ckpts = sorted(p.name for p in directory.glob("*.ckpt"))
    assert len(ckpts) == 3 and "last.ckpt" in ckpts
    items = items_in(directory)
    assert sorted(items) == sorted(c.removesuffix(".ckpt") + ".mlm.json" for c in ckpts)
    collection = assert_catalog_true(directory)
    best = next(link for link in collection["links"] if link["rel"] == "best")
    assert best["href"] == "./" + Path(ckpt.best_model_path).name.replace(".ckpt", ".mlm.json")
    latest = next(link for link in collection["links"] if link["rel"] == "latest-version")
    newest_step = max(i["properties"]["lightning:global_step"] for i in items.values())
    latest_item = items[latest["href"].removeprefix("./")]["properties"]
    assert latest_item["lightning:global_step"] == newest_step
    assert latest["href"] != "./last.mlm.json"  # an equally new named checkpoint is preferred to its last copy
    last = items["last.mlm.json"]["properties"]
    saved = torch.load(directory / "last.ckpt", weights_only=False)
    assert (last["lightning:epoch"], last["lightning:global_step"]) == (saved["epoch"], saved["global_step"])
    assert last["lightning:monitor"] == "val_loss" and last["lightning:mode"] == "min"
    assert set(last["lightning:metrics"]) >= {"val_loss", "train_loss"}
    assert last["mlm:hyperparameters"] == {"in_channels": 3, "num_classes": 4, "lr": 0.05}
    assert last["mlm:total_parameters"] == sum(p.numel() for p in model.parameters())
    assert last["mlm:input"][0]["bands"] == ["red", "green", "blue"]
    assert last["mlm:tasks"] == ["classification"]
    assert last["mlm:batch_size_suggestion"] == 8
    asset = items["last.mlm.json"]["assets"]["model"]
    assert asset["roles"] == ["mlm:model", "mlm:checkpoint"]
    assert asset["file:size"] == (directory / "last.ckpt").stat().st_size
    best_item = items[Path(ckpt.best_model_path).name.replace(".ckpt", ".mlm.json")]
    assert best_item["properties"]["lightning:score"] == pytest.approx(float(ckpt.best_model_score))
    assert type(trainer.strategy.checkpoint_io).__name__ == "TorchCheckpointIO"  # its own IO back after fit


def test_mlm_properties_embedded_in_each_checkpoint(tmp_path):
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_top_k=-1)
    fit(tmp_path, ckpt, MLMExportCallback(**WHEN), epochs=2)
    for path in (tmp_path / "ckpt").glob("*.ckpt"):
        data = torch.load(path, weights_only=True)  # the embedded Item needs no allowlisted type
        embedded = data[EMBED_KEY]["item"]
        assert embedded["properties"]["mlm:output"][0]["result"]["shape"] == [-1, 4]
        assert plain_validate(embedded) == []


@pytest.mark.parametrize("save_last", [True, "link"])
def test_save_last_variants(tmp_path, save_last):
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", monitor="val_loss", save_top_k=1, save_last=save_last)
    fit(tmp_path, ckpt, MLMExportCallback(**WHEN), epochs=3)
    directory = tmp_path / "ckpt"
    assert (directory / "last.ckpt").is_symlink() == (save_last == "link")
    items = items_in(directory)
    assert len(items) == 2 and "last.mlm.json" in items
    assert_catalog_true(directory)
    target = (directory / "last.ckpt").resolve()
    assert items["last.mlm.json"]["assets"]["model"]["file:size"] == target.stat().st_size


def test_save_weights_only_and_every_n_train_steps(tmp_path):
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_weights_only=True, every_n_train_steps=3, save_top_k=-1)
    fit(tmp_path, ckpt, MLMExportCallback(**WHEN), epochs=2)
    directory = tmp_path / "ckpt"
    ckpts = sorted(p for p in directory.glob("*.ckpt"))
    assert len(ckpts) == 2 * 4 // 3
    items = items_in(directory)
    assert len(items) == len(ckpts)
    assert all(i["properties"]["lightning:weights_only"] for i in items.values())
    assert_catalog_true(directory)


def test_train_time_interval(tmp_path):
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", train_time_interval=dt.timedelta(microseconds=1), save_top_k=-1)
    fit(tmp_path, ckpt, MLMExportCallback(**WHEN), epochs=1)
    directory = tmp_path / "ckpt"
    assert len(list(directory.glob("*.ckpt"))) >= 2
    assert len(items_in(directory)) == len(list(directory.glob("*.ckpt")))
    assert_catalog_true(directory)


class BuiltInConfigureModel(TinyClassifier):
    """Makes its layers in configure_model, as models sharded by FSDP do: none exist in setup."""

    def __init__(self):
        L.LightningModule.__init__(self)
        self.example_input_array = torch.zeros(2, 3, 16, 16)
        self.hparams.lr = 0.05

    def configure_model(self):
        if not hasattr(self, "net"):
            self.net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 4))


def test_model_built_in_configure_model_is_traced_at_train_start(tmp_path):
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt")
    _, model = fit(
        tmp_path, ckpt, MLMExportCallback(tasks="classification", **WHEN), epochs=1, model=BuiltInConfigureModel()
    )
    (item,) = items_in(tmp_path / "ckpt").values()
    assert item["properties"]["mlm:total_parameters"] == sum(p.numel() for p in model.parameters()) > 0


def test_two_checkpoint_callbacks_at_once(tmp_path):
    by_loss = ModelCheckpoint(dirpath=tmp_path / "best", monitor="val_loss", save_top_k=1)
    every = ModelCheckpoint(dirpath=tmp_path / "every", save_top_k=-1, every_n_epochs=2)
    fit(tmp_path, by_loss, every, MLMExportCallback(**WHEN), epochs=4)
    assert len(items_in(tmp_path / "best")) == 1
    assert len(items_in(tmp_path / "every")) == 2
    assert_catalog_true(tmp_path / "best")
    assert_catalog_true(tmp_path / "every")


def test_weights_and_program_written_per_checkpoint_and_pruned(tmp_path):
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", monitor="val_loss", save_top_k=1)
    fit(tmp_path, ckpt, MLMExportCallback(write_weights=True, export_program=True, **WHEN), epochs=3)
    directory = tmp_path / "ckpt"
    stems = {p.name.split(".")[0] for p in directory.iterdir() if p.suffix in (".ckpt", ".pt2", ".safetensors")}
    assert len(stems) == 1  # files of pruned checkpoints went with them
    (item,) = items_in(directory).values()
    assert item["assets"]["model"]["mlm:artifact_type"] == "torch.export.save"
    assert item["assets"]["checkpoint"]["roles"] == ["mlm:checkpoint"]
    assert_catalog_true(directory)


def test_resume_keeps_items_without_duplicates(tmp_path):
    directory = tmp_path / "ckpt"
    ckpt = ModelCheckpoint(dirpath=directory, monitor="val_loss", save_top_k=2, save_last=True)
    fit(tmp_path, ckpt, MLMExportCallback(**WHEN), epochs=2)
    before = sorted(items_in(directory))
    ckpt2 = ModelCheckpoint(dirpath=directory, monitor="val_loss", save_top_k=2, save_last=True)
    fit(tmp_path, ckpt2, MLMExportCallback(**WHEN), epochs=4, ckpt_path=str(directory / "last.ckpt"))
    after = items_in(directory)
    assert len(after) == 3
    collection = assert_catalog_true(directory)
    assert len([link for link in collection["links"] if link["rel"] == "item"]) == 3
    assert before  # the first run wrote Items too
    saved = torch.load(directory / "last.ckpt", weights_only=False)
    assert after["last.mlm.json"]["properties"]["lightning:epoch"] == saved["epoch"]
    assert saved["epoch"] >= 2  # the resumed run saved


class Broken(TinyClassifier):
    """forward fails on the example: the export fails, training must not."""

    def __init__(self):
        super().__init__()
        self.example_input_array = torch.zeros(2, 5, 16, 16)  # wrong channel count


def test_export_error_warns_and_training_finishes(tmp_path):
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt")
    with pytest.warns(MLMExportWarning, match="MLM export failed, training goes on: TraceError"):
        trainer, _ = fit(tmp_path, ckpt, MLMExportCallback(**WHEN), epochs=2, model=Broken())
    assert trainer.current_epoch == 2
    assert list((tmp_path / "ckpt").glob("*.ckpt"))
    assert not list((tmp_path / "ckpt").glob("*.mlm.json"))


def test_strict_mode_raises(tmp_path):
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt")
    with pytest.raises(TraceError, match="failed on the example batch"):
        fit(tmp_path, ckpt, MLMExportCallback(strict=True, **WHEN), epochs=1, model=Broken())


def test_unknown_option_is_rejected_at_construction():
    with pytest.raises(TypeError, match=r"unexpected keyword argument 'nme'"):
        MLMExportCallback(nme="x")  # type: ignore[call-arg]


def test_bad_option_is_rejected_at_construction():
    with pytest.raises(InvalidOptionError, match="bbox="):
        MLMExportCallback(bbox=(1, 2, 3))


def test_no_warning_on_a_clean_run(tmp_path):
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt")
    with warnings.catch_warnings():
        warnings.simplefilter("error", MLMExportWarning)
        fit(tmp_path, ckpt, MLMExportCallback(**WHEN), epochs=1)


RUN_SPECIFIC = {"created", "lightning:epoch", "lightning:global_step", "lightning:metrics", "lightning:score"}
RUN_SPECIFIC |= {"processing:datetime", "processing:lineage", "version", "mlm:accelerator_count"}


def test_ddp_two_cpu_processes_write_one_item_per_checkpoint(tmp_path):
    """Real DDP (gloo, 2 processes): only rank zero writes, and the Items equal a single-process run's."""
    import subprocess
    import sys

    script = Path(__file__).with_name("ddp_fit.py")
    for name, devices in (("single", 1), ("ddp", 2)):
        result = subprocess.run(
            [sys.executable, str(script), str(tmp_path / name), str(devices)],
            capture_output=True,
            text=True,
            timeout=280,
        )
        assert result.returncode == 0, result.stderr[-3000:]
    single, ddp = tmp_path / "single" / "ckpt", tmp_path / "ddp" / "ckpt"
    reports = [json.loads((tmp_path / "ddp" / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert reports[0]["json_writes"] > 0
    assert reports[1]["json_writes"] == 0  # rank 1 wrote no Item and no Collection
    ddp_items = items_in(ddp)
    assert sorted(p.name.removesuffix(".ckpt") for p in ddp.glob("*.ckpt")) == sorted(
        n.removesuffix(".mlm.json") for n in ddp_items
    )
    assert_catalog_true(ddp)
    a = items_in(single)["last.mlm.json"]
    b = ddp_items["last.mlm.json"]
    strip = lambda p: {k: v for k, v in p.items() if k not in RUN_SPECIFIC}  # noqa: E731
    assert strip(a["properties"]) == strip(b["properties"])
    assert (a["properties"]["mlm:accelerator_count"], b["properties"]["mlm:accelerator_count"]) == (1, 2)
    assert b["properties"]["mlm:total_parameters"] == a["properties"]["mlm:total_parameters"]
