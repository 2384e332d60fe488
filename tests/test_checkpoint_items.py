"""Checkpoint Items built by the one builder: ids, the checkpoint asset, and the run Collection's fields."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pystac
import torch

from mlm_export import export_mlm, mlm
from mlm_export._checkpoint_facts import plain, run_link
from mlm_export._item import CheckpointFacts, checkpoint_item
from mlm_export._runs import RunCatalog
from mlm_export._write import file_checksum
from mlm_export.cli import main

from .conftest import plain_validate
from .models import SmallUNet

WHEN = dt.datetime(2024, 6, 1, tzinfo=dt.UTC)


def test_convert_names_the_model_once_when_the_file_is_named_after_it(tmp_path: Path, capsys):
    """``smallunet.pt`` converted with ``--name SmallUNet`` gets the id ``smallunet``, not ``smallunet-smallunet``."""
    torch.save(SmallUNet(3, 2).state_dict(), tmp_path / "smallunet.pt")
    torch.save(SmallUNet(3, 2).state_dict(), tmp_path / "epoch=1.pt")
    code = main([
        "convert", str(tmp_path / "smallunet.pt"), str(tmp_path / "epoch=1.pt"), "--model", "tests.models:SmallUNet",
        "--allow-module", "tests", "--init-args", '{"in_channels": 3, "num_classes": 2}', "--input-shape",
        "1,3,32,32", "--name", "SmallUNet", "--quiet",
    ])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    named = json.loads((tmp_path / "smallunet.mlm.json").read_text())
    assert named["id"] == "smallunet"
    assert json.loads((tmp_path / "epoch=1.mlm.json").read_text())["id"] == "smallunet-epoch=1"
    assert plain_validate(named) == []


def test_a_checkpoint_beside_its_model_file_is_only_the_checkpoint(tmp_path: Path):
    """When a file written beside the checkpoint is the mlm:model, the checkpoint asset has role mlm:checkpoint
    and no mlm:artifact_type (the schema allows that field only on the model asset)."""
    model = export_mlm(SmallUNet(3, 2), example_input=torch.randn(1, 3, 32, 32), out_dir=tmp_path, datetime=WHEN)
    ckpt = tmp_path / "epoch=0-step=5.ckpt"
    ckpt.write_bytes(b"checkpoint bytes")
    catalog = RunCatalog(tmp_path, collection_id="run", title="run")
    files = {k: a.to_dict() for k, a in model.assets.items()}
    facts = CheckpointFacts(
        path=ckpt, size=ckpt.stat().st_size, checksum=file_checksum(ckpt), saved=WHEN, lineage="a test run",
        global_step=5, files=files, run=run_link(catalog),
    )  # fmt: skip
    template = pystac.Item.from_dict(model.to_dict(include_self_link=False, transform_hrefs=False))
    data = plain(checkpoint_item(template, facts))
    assert plain_validate(data) == []
    assert data["assets"]["checkpoint"]["roles"] == [mlm.ROLE_CHECKPOINT]
    assert mlm.ARTIFACT_TYPE not in data["assets"]["checkpoint"]
    assert data["assets"]["model"] == files["model"]
    assert template.id == model.id and "checkpoint" not in template.assets  # the template is left as it was
    assert mlm.LIGHTNING_GLOBAL_STEP not in template.properties and not template.get_links("collection")
    catalog.put(ckpt, data)
    collection = catalog.write_collection()
    assert plain_validate(collection) == []
    assert collection["summaries"][mlm.NAME] == [data["properties"][mlm.NAME]]
    assert [link["rel"] for link in collection["links"]] == ["root", "item", "latest-version"]
    assert collection[mlm.STATS_ITEMS]["count"] == 1
