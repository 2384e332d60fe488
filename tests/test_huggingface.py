"""The Hugging Face folder (``layout="huggingface"``) and ``mlm-export hf-card``: parsed by huggingface_hub itself."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import pytest
import torch
from huggingface_hub import ModelCard, PyTorchModelHubMixin

from mlm_export import InvalidOptionError, export_mlm
from mlm_export._write import file_checksum
from mlm_export.cli import main

from .models import SmallUNet

KW = {
    "bands": ["B02", "B03", "B04", "B08"],
    "classes": {0: "water", 1: "land", 2: "cloud"},
    "license": "CC-BY-4.0",
    "bbox": (5.0, 45.0, 6.0, 46.0),
    "start_datetime": dt.datetime(2020, 1, 1),
    "end_datetime": dt.datetime(2021, 1, 1),
    "description": "Water masks from Sentinel-2.",
}


class HubUNet(SmallUNet, PyTorchModelHubMixin):
    """A model as Hub users write them: its init arguments are its config."""


def test_folder_is_what_save_pretrained_writes_and_loads_back(tmp_path: Path, assert_valid):
    model = HubUNet(in_channels=4, num_classes=3).eval()
    item = export_mlm(
        model, example_input=torch.randn(2, 4, 32, 32), out_dir=tmp_path, layout="huggingface",
        hyperparameters={"in_channels": 4, "num_classes": 3}, **KW,
    )  # fmt: skip
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "README.md", "config.json", "mlm.json", "model.environment.txt", "model.pt2", "model.requirements.txt",
        "model.safetensors",
    ]  # fmt: skip
    data = json.loads((tmp_path / "mlm.json").read_text())
    assert data == item.to_dict(include_self_link=False, transform_hrefs=False)
    assert_valid(data)
    for asset in data["assets"].values():  # relative hrefs to the files beside it, each hashed
        assert asset["href"].startswith("./")
        assert asset["file:checksum"] == file_checksum(tmp_path / asset["href"])
    assert data["assets"]["card"]["href"] == "./README.md" and data["assets"]["config"]["href"] == "./config.json"
    assert json.loads((tmp_path / "config.json").read_text()) == {"in_channels": 4, "num_classes": 3}

    loaded = HubUNet.from_pretrained(tmp_path)  # huggingface_hub's own loader: config.json + model.safetensors
    x = torch.randn(1, 4, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded.eval()(x), model(x))


def test_card_metadata_and_summary_parse_in_huggingface_hub(tmp_path: Path):
    export_mlm(SmallUNet(4, 3).eval(), example_input=torch.randn(2, 4, 32, 32), out_dir=tmp_path,
               layout="huggingface", **KW)  # fmt: skip
    card = ModelCard.load(tmp_path / "README.md")
    assert card.data.license == "cc-by-4.0"
    assert card.data.library_name == "pytorch"
    assert card.data.pipeline_tag == "image-segmentation"
    assert {"stac-mlm", "semantic-segmentation"} <= set(card.data.tags)
    text = card.text
    for expected in ("B02, B03, B04, B08", "| 2 | cloud |", "`-1, 4, -1, -1`", "batch, class, height, width",
                     "2020-01-01T00:00:00Z to 2021-01-01T00:00:00Z", "`5.0, 45.0, 6.0, 46.0`",
                     "Water masks from Sentinel-2.", 'torch.export.load("model.pt2")'):  # fmt: skip
        assert expected in text


def test_cards_loading_snippet_runs_with_torch_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A newcomer copies the card's snippet into a shell in the folder: it loads the .pt2 and predicts."""
    export_mlm(SmallUNet(4, 3).eval(), example_input=torch.randn(2, 4, 32, 32), out_dir=tmp_path,
               layout="huggingface", **KW)  # fmt: skip
    code = re.search(r"```python\n(.*?)```", (tmp_path / "README.md").read_text(), re.S).group(1)
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(code, scope)  # our own generated snippet
    assert scope["prediction"].shape == (1, 3, 64, 64)


def test_hf_card_cli_for_a_flat_export(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    export_mlm(SmallUNet(4, 3).eval(), example_input=torch.randn(2, 4, 32, 32), out_dir=tmp_path,
               export_program=False, **KW)  # fmt: skip
    assert main(["hf-card", str(tmp_path)]) == 0
    card = ModelCard.load(tmp_path / "README.md")
    assert "stac-mlm" in card.data.tags
    assert 'load_file("smallunet.safetensors")' in card.text  # no .pt2: the weights and the architecture
    capsys.readouterr()
    assert main(["hf-card", str(tmp_path / "smallunet.json"), "--output", "-"]) == 0
    assert capsys.readouterr().out == (tmp_path / "README.md").read_text()


def test_hf_card_keeps_item_text_out_of_the_metadata_and_html(tmp_path: Path):
    """Attack: an Item's free text tries to open a YAML block, inject HTML and break the tables."""
    item = export_mlm(SmallUNet(4, 3).eval(), example_input=torch.randn(2, 4, 32, 32), **KW)
    data = item.to_dict(include_self_link=False, transform_hrefs=False)
    data["properties"]["description"] = "---\nlicense: mit\ntags: [evil]\n---\n<script>alert(1)</script>"
    data["properties"]["mlm:output"][0]["classification:classes"][0]["name"] = "a|b\n---"
    data["assets"]["model"]["href"] = "../../../etc/passwd"
    path = tmp_path / "item.json"
    path.write_text(json.dumps(data))
    assert main(["hf-card", str(path), "-q"]) == 0
    card = ModelCard.load(tmp_path / "README.md")
    assert card.data.license == "cc-by-4.0" and "evil" not in card.data.tags
    assert "<script>" not in card.text and "&lt;script&gt;" in card.text
    assert "| 0 | a\\|b --- |" in card.text
    assert "passwd" not in card.text and 'load_file("MODEL_FILE")' in card.text  # never read, nor shown in code


def test_hf_card_refuses_what_is_not_one_mlm_item(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    (tmp_path / "other.json").write_text(json.dumps({"type": "Feature", "properties": {}, "stac_extensions": []}))
    assert main(["hf-card", str(tmp_path / "other.json")]) == 1
    assert "is not a STAC Item with the MLM extension" in capsys.readouterr().err
    assert main(["hf-card", str(tmp_path)]) == 1
    assert "holds 0 MLM Items" in capsys.readouterr().err
    assert not (tmp_path / "README.md").exists()


def test_layout_option_errors():
    x = torch.randn(1, 4, 16, 16)
    with pytest.raises(InvalidOptionError, match="layout= must be one of 'flat', 'huggingface'"):
        export_mlm(SmallUNet(), example_input=x, layout="hf")
    with pytest.raises(InvalidOptionError, match="layout='huggingface' cannot be combined with profile='openeo'"):
        export_mlm(SmallUNet(), example_input=x, layout="huggingface", profile="openeo", base_url="https://e.org/")
    with pytest.raises(InvalidOptionError, match="layout='huggingface' keeps hrefs relative.*drop base_url="):
        export_mlm(SmallUNet(), example_input=x, layout="huggingface", base_url="https://e.org/")


def test_card_of_an_openeo_item_loads_the_torchscript_after_download(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Absolute hrefs: the snippet names the URL to fetch and loads the file by name; it runs once it is there."""
    export_mlm(SmallUNet(4, 3).eval(), example_input=torch.randn(2, 4, 32, 32), out_dir=tmp_path, profile="openeo",
               base_url="https://models.example.org/unet/", **KW)  # fmt: skip
    assert main(["hf-card", str(tmp_path / "smallunet.json"), "-q"]) == 0
    code = re.search(r"```python\n(.*?)```", (tmp_path / "README.md").read_text(), re.S).group(1)
    assert "# first download https://models.example.org/unet/smallunet.torchscript" in code
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(code, scope)  # our own generated snippet
    assert scope["prediction"].shape == (1, 3, 32, 32)


def test_hf_card_keeps_an_existing_readme_unless_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    """One overwrite rule for every command: a README.md beside the Item is the user's until --overwrite."""
    export_mlm(SmallUNet(4, 3).eval(), example_input=torch.randn(2, 4, 32, 32), out_dir=tmp_path,
               export_program=False, **KW)  # fmt: skip
    mine = "# My project\n\nNotes I wrote by hand.\n"
    (tmp_path / "README.md").write_text(mine)
    assert main(["hf-card", str(tmp_path / "smallunet.json")]) == 1
    err = capsys.readouterr().err
    assert err.strip() == f"error: {tmp_path / 'README.md'} exists; pass --overwrite to replace the model card " \
        "(the one rule of every command)"  # fmt: skip
    assert (tmp_path / "README.md").read_text() == mine
    assert main(["hf-card", str(tmp_path / "smallunet.json"), "-o", str(tmp_path / "README.md"), "-q"]) == 1
    assert (tmp_path / "README.md").read_text() == mine
    assert main(["hf-card", str(tmp_path / "smallunet.json"), "--overwrite", "-q"]) == 0
    assert "stac-mlm" in ModelCard.load(tmp_path / "README.md").data.tags


def test_hf_card_links_the_items_real_file_name(tmp_path: Path):
    export_mlm(SmallUNet(4, 3).eval(), example_input=torch.randn(2, 4, 32, 32), out_dir=tmp_path,
               export_program=False, **KW)  # fmt: skip
    assert not (tmp_path / "mlm.json").exists()
    assert main(["hf-card", str(tmp_path / "smallunet.json"), "-q"]) == 0
    text = (tmp_path / "README.md").read_text()
    links = re.findall(r"\]\((\S+?\.json)\)", text)
    assert links and set(links) == {"./smallunet.json"}
    assert all((tmp_path / link).is_file() for link in links)
    (tmp_path / "cards").mkdir()
    assert main(["hf-card", str(tmp_path / "smallunet.json"), "-o", str(tmp_path / "cards" / "card.md"), "-q"]) == 0
    links = re.findall(r"\]\((\S+?\.json)\)", (tmp_path / "cards" / "card.md").read_text())
    assert set(links) == {"../smallunet.json"}
    assert all((tmp_path / "cards" / link).resolve().is_file() for link in links)
