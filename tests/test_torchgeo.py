"""TorchGeo: weights enums (offline: .meta and .transforms only), task checkpoints, and convert --weights."""

from __future__ import annotations

import datetime as dt
import json

import pytest
import torch

tg = pytest.importorskip("torchgeo")
import torchgeo.models as tgm  # noqa: E402

from mlm_export import InvalidOptionError, MLMExportWarning, export_mlm, inspect_model  # noqa: E402
from mlm_export._sources.evidence import feature_module  # noqa: E402
from mlm_export._sources.weights import build_model, first_layer_channels, weights_facts  # noqa: E402
from mlm_export.cli import main  # noqa: E402

from .conftest import plain_validate  # noqa: E402

WHEN = {"datetime": dt.datetime(2024, 6, 1, tzinfo=dt.UTC)}
#: One member of each common family; small enough to build for real and compare with a real forward.
MEMBERS = [
    "ResNet18_Weights.SENTINEL2_ALL_MOCO",
    "ResNet50_Weights.LANDSAT_TM_TOA_MOCO",
    "ResNet50_Weights.SENTINEL1_ALL_MOCO",
    "ViTSmall16_Weights.SENTINEL2_ALL_DINO",
    "Unet_Weights.SENTINEL2_2CLASS_FTW",
    "Swin_V2_T_Weights.SENTINEL2_MI_MS_SATLAS",
]


@pytest.mark.parametrize("name", MEMBERS)
def test_weights_member_item(name):
    weights = tgm.get_weight(name)
    model = build_model(weights, on_meta=False)
    item = export_mlm(model, weights=weights, tasks="similarity-search", **WHEN)
    data = item.to_dict(include_self_link=False, transform_hrefs=False)
    assert plain_validate(data) == []
    p = data["properties"]
    # the network described: the model, less a classifier head the weights do not hold (MoCo, DINO, Satlas)
    model, _ = feature_module(model, weights_facts(weights))
    assert p["mlm:total_parameters"] == sum(x.numel() for x in model.parameters())
    (inp,) = p["mlm:input"]
    channels = first_layer_channels(model)
    assert inp["input"]["shape"][1] == channels == len(inp["bands"])
    assert p["mlm:pretrained"] is True and p["mlm:pretrained_source"] == weights.meta["dataset"]
    assert data["assets"]["model"]["href"] == weights.url  # nothing written: the published file
    # the output shapes are those of a real forward at the input size the Item states, its -1 dims at sizes the
    # trace did not use (batch 3: the meta trace runs batch 2)
    size = [64 if s == -1 else s for s in inp["input"]["shape"][2:]]
    with torch.no_grad():
        real = model.eval()(torch.zeros(3, channels, *size))
    real = real if isinstance(real, torch.Tensor) else real[0]
    stated = p["mlm:output"][0]["result"]["shape"]
    assert all(s in (-1, r) for s, r in zip(stated, real.shape, strict=True))


def test_bands_scaling_and_provenance_from_the_enum():
    facts = weights_facts("ResNet50_Weights.SENTINEL2_ALL_MOCO")
    assert [b.name for b in facts.data.bands][:3] == ["B1", "B2", "B3"]
    assert facts.data.bands[7].common_name == "nir" and facts.data.bands[7].center_wavelength == 0.842
    assert [(s.mean, s.stddev) for s in facts.data.value_scaling] == [(0.0, 10000.0)]
    assert facts.image_size == 224 and facts.resize_type == "interpolation-linear"
    satlas = weights_facts("Swin_V2_B_Weights.SENTINEL2_MI_MS_SATLAS")
    assert [s.stddev for s in satlas.data.value_scaling] == [255.0] * 3 + [8160.0] * 6  # per band
    ftw = weights_facts("Unet_Weights.SENTINEL2_2CLASS_FTW")
    assert [b.name for b in ftw.data.bands] == ["B4", "B3", "B2", "B8", "B4_t2", "B3_t2", "B2_t2", "B8_t2"]
    assert ftw.license == "CC-BY-4.0"


def test_publication_becomes_a_doi_and_code_an_asset():
    weights = tgm.get_weight("ResNet18_Weights.SENTINEL2_ALL_MOCO")
    item = export_mlm(build_model(weights), weights=weights, tasks="similarity-search", **WHEN)
    data = item.to_dict(include_self_link=False, transform_hrefs=False)
    assert data["properties"]["sci:doi"] == "10.48550/arXiv.2211.07044"
    assert "https://stac-extensions.github.io/scientific/v1.0.0/schema.json" in data["stac_extensions"]
    assert any(link["rel"] == "cite-as" for link in data["links"])
    assert data["assets"]["source_code"]["roles"] == ["mlm:source_code", "code"]


def test_weights_that_do_not_match_the_model_are_reported():
    import timm

    model = timm.create_model("resnet18", in_chans=3)
    with pytest.raises(InvalidOptionError, match="13-channel input but the model's first layer takes 3"):
        export_mlm(model, weights="ResNet18_Weights.SENTINEL2_ALL_MOCO", tasks="similarity-search", **WHEN)


def test_large_vit_builds_and_traces_on_meta_only():
    weights = tgm.get_weight("ViTHuge14_Weights.SENTINEL2_ALL_MAE")
    model = build_model(weights)  # meta: 630M parameters, no memory
    facts = inspect_model(model, torch.empty(2, 13, 224, 224, device="meta"))
    assert facts.parameters.total > 600_000_000
    assert facts.inputs[0].shape == (-1, 13, 224, 224)


# ------------------------------------------------------------------------------------------ checkpoints


def _tasks():
    try:
        from torchgeo.tasks import Classification, SemanticSegmentation
    except ImportError:  # TorchGeo 0.8
        from torchgeo.trainers import ClassificationTask as Classification
        from torchgeo.trainers import SemanticSegmentationTask as SemanticSegmentation
    return Classification, SemanticSegmentation


def test_torchgeo_task_checkpoint_converts_from_its_hyperparameters(tmp_path, capsys):
    Classification, SemanticSegmentation = _tasks()
    for i, task in enumerate(
        [
            Classification(model="resnet18", in_channels=4, num_classes=5),
            SemanticSegmentation(model="unet", backbone="resnet18", in_channels=4, num_classes=3),
        ]
    ):
        state = {"epoch": 1, "global_step": 10, "state_dict": task.state_dict(), "hyper_parameters": dict(task.hparams)}
        torch.save(state, tmp_path / f"task{i}.ckpt")
    code = main(["convert", str(tmp_path / "task0.ckpt"), str(tmp_path / "task1.ckpt"), "--json"])
    out = capsys.readouterr()
    assert code == 0, out.err
    results = json.loads(out.out)["results"]
    assert [r["tasks"] for r in results] == [["classification"], ["semantic-segmentation"]]
    assert "Classification" in results[0]["model"] and "SemanticSegmentation" in results[1]["model"]
    item = json.loads((tmp_path / "task1.mlm.json").read_text())
    assert plain_validate(item) == []
    assert item["properties"]["mlm:output"][0]["result"]["shape"] == [-1, 3, -1, -1]
    assert item["properties"]["mlm:input"][0]["input"]["shape"][1] == 4


def test_convert_bare_state_dict_with_weights(tmp_path, capsys):
    name = "ResNet18_Weights.SENTINEL2_ALL_MOCO"
    model = build_model(tgm.get_weight(name), on_meta=False)
    torch.save(model.state_dict(), tmp_path / "resnet18_s2_moco.pth")
    code = main(["convert", str(tmp_path / "resnet18_s2_moco.pth"), "--weights", name, "--tasks", "similarity-search"])
    assert code == 0, capsys.readouterr().err
    item = json.loads((tmp_path / "resnet18_s2_moco.mlm.json").read_text())
    assert plain_validate(item) == []
    p = item["properties"]
    assert len(p["mlm:input"][0]["bands"]) == 13 and p["bands"][1]["eo:common_name"] == "blue"
    assert p["mlm:input"][0]["value_scaling"] == [{"type": "z-score", "mean": 0.0, "stddev": 10000.0}]
    described, _ = feature_module(model, weights_facts(name))  # its random 1000-way fc is not described
    assert p["mlm:total_parameters"] == sum(x.numel() for x in described.parameters())
    assert item["assets"]["model"]["href"] == "./resnet18_s2_moco.pth"


@pytest.mark.parametrize(
    ("name", "inputs"),
    [
        ("DOFABase16_Weights.DOFA_MAE", [("x", [-1, 3, 224, 224])]),  # wavelengths passed as a constant
        ("Tessera_Weights.TESSERA", [("x", [-1, 16, 14])]),  # a pixel time series: [batch, time, bands]
        ("SatCLIP_Weights.SATCLIP_VIT16_L40", [("x", [-1, 2])]),  # (longitude, latitude)
        ("CROMABase_Weights.CROMA_VIT", [("x_sar", [-1, 2, 120, 120]), ("x_optical", [-1, 12, 120, 120])]),
        # dims the second trace showed the model accepts at another size are dynamic
        ("Presto_Weights.PRESTO", [("x", [-1, 12, -1]), ("dynamic_world", [-1, 12]), ("latlons", [-1, 2])]),
        ("CopernicusFM_Base_Weights.CopernicusFM_ViT", [("x", [-1, 3, -1, -1]), ("metadata", [-1, 4])]),
        ("Panopticon_Weights.VIT_BASE14", [("imgs", [-1, 3, 224, 224]), ("chn_ids", [-1, 3])]),  # one dict argument
    ],
)
def test_models_with_other_inputs(name, inputs):
    data_dependent = name.startswith(
        ("Presto", "CopernicusFM", "Panopticon")
    )  # .item() in forward: built for real, not on meta
    model = build_model(name, on_meta=not data_dependent)
    if name.startswith("Panopticon"):  # its position embedding is for 224x224 only: stated fixed, with the reason
        with pytest.warns(MLMExportWarning, match=r"ran only at the example's size 224x224"):
            item = export_mlm(model, weights=name, tasks="similarity-search", **WHEN)
    else:
        item = export_mlm(model, weights=name, tasks="similarity-search", **WHEN)
    data = item.to_dict(include_self_link=False, transform_hrefs=False)
    assert plain_validate(data) == []
    assert [(i["name"], i["input"]["shape"]) for i in data["properties"]["mlm:input"]] == inputs
    if name.startswith("Tessera"):
        assert data["properties"]["mlm:input"][0]["input"]["dim_order"] == ["batch", "time", "bands"]
