"""Tasks from evidence: classifiers and feature extractors say what they are; a bare [batch, K] still asks."""

from __future__ import annotations

import datetime as dt
import warnings
from types import SimpleNamespace

import pytest
import torch
import torchvision
from torch import nn

from mlm_export import MLMExportWarning, TaskInferenceError, export_mlm

WHEN = {"datetime": dt.datetime(2024, 6, 1, tzinfo=dt.UTC)}
X = torch.zeros(1, 3, 64, 64)


def output(item) -> dict:
    return item.properties["mlm:output"][0]


def test_torchvision_classifier_needs_no_tasks(assert_valid):
    item = export_mlm(torchvision.models.resnet18(num_classes=10), example_input=X, **WHEN)
    assert_valid(item)
    assert item.properties["mlm:tasks"] == ["classification"]
    assert output(item)["result"]["dim_order"] == ["batch", "class"]
    assert "torchvision classification model ResNet" in output(item)["description"]


def test_torchvision_video_classifier_needs_no_tasks(assert_valid):
    item = export_mlm(torchvision.models.video.r3d_18(num_classes=5), **WHEN)
    assert_valid(item)
    assert item.properties["mlm:tasks"] == ["classification"]


def test_timm_vit_with_head_is_a_classifier(assert_valid):
    timm = pytest.importorskip("timm")
    item = export_mlm(timm.create_model("vit_tiny_patch16_224", num_classes=4), **WHEN)
    assert_valid(item)
    assert item.properties["mlm:tasks"] == ["classification"]
    assert output(item)["result"]["shape"] == [-1, 4]


def test_timm_without_classifier_is_a_feature_extractor(assert_valid):
    timm = pytest.importorskip("timm")
    model = timm.create_model("resnet10t", num_classes=0)
    item = export_mlm(model, example_input=X, **WHEN)
    assert_valid(item)
    assert item.properties["mlm:tasks"] == ["similarity-search"]
    assert output(item)["result"]["dim_order"] == ["batch", "embedding"]
    assert output(item)["description"].startswith("Embeddings (features)")


class TinyViTForImageClassification(nn.Module):
    """Shaped like a Hugging Face image classifier: a config, pixel_values in, a mapping with logits out."""

    def __init__(self) -> None:
        super().__init__()
        labels = {0: "cloud", 1: "clear", 2: "shadow"}
        self.config = SimpleNamespace(
            model_type="vit", num_labels=3, id2label=labels, image_size=32, num_channels=4
        )  # what transformers' PretrainedConfig states
        self.embed = nn.Conv2d(4, 8, 8, stride=8)
        self.classifier = nn.Linear(8, 3)

    def forward(self, pixel_values: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"logits": self.classifier(self.embed(pixel_values).mean((2, 3)))}


def test_hugging_face_image_classifier_duck_typed(assert_valid):
    item = export_mlm(TinyViTForImageClassification(), **WHEN)  # no example: config states channels and size
    assert_valid(item)
    assert item.properties["mlm:tasks"] == ["classification"]
    out = output(item)
    assert out["name"] == "logits"
    assert [c["name"] for c in out["classification:classes"]] == ["cloud", "clear", "shadow"]
    assert "zeros [2, 4, 32, 32]" in item.properties["mlm:input"][0]["description"]


def test_bare_batch_by_k_from_an_unknown_module_still_asks():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 7))
    with pytest.raises(TaskInferenceError, match=r"\[batch, K\] output may be class logits.*tasks="):
        export_mlm(model, example_input=X, **WHEN)


def test_self_supervised_weights_do_not_make_a_1000_class_classifier(assert_valid):
    pytest.importorskip("torchgeo")
    from mlm_export._pipeline import ExportOptions, gather
    from mlm_export._sources.weights import build_model

    name = "ResNet50_Weights.SENTINEL2_ALL_MOCO"
    model = build_model(name)
    item = export_mlm(model, weights=name, **WHEN)
    assert_valid(item)
    assert item.properties["mlm:tasks"] == ["similarity-search"]
    assert output(item)["result"]["shape"] == [-1, 2048]
    assert "1000-class head 'fc' of ResNet is not part of" in output(item)["description"]
    described = gather(model, None, None, ExportOptions(weights=name, **WHEN)).module
    assert "fc.weight" not in described.state_dict()  # the untrained head is not in the weights file
    assert isinstance(model.fc, nn.Linear) and model.num_classes == 1000  # the model itself is unchanged


def test_a_head_the_user_sized_is_kept_with_self_supervised_weights(assert_valid):
    """Fine-tuned from MoCo weights with a 10-class head: a classifier, head and all."""
    timm = pytest.importorskip("timm")
    pytest.importorskip("torchgeo")
    model = timm.create_model("resnet18", in_chans=13, num_classes=10)
    item = export_mlm(model, weights="ResNet18_Weights.SENTINEL2_ALL_MOCO", **WHEN)
    assert_valid(item)
    assert item.properties["mlm:tasks"] == ["classification"]
    assert output(item)["result"]["shape"] == [-1, 10]


def test_backbone_only_weights_on_a_torchvision_model(assert_valid):
    pytest.importorskip("torchgeo")
    from mlm_export._sources.weights import build_model

    name = "Swin_V2_T_Weights.SENTINEL2_SI_RGB_SATLAS"
    item = export_mlm(build_model(name), weights=name, **WHEN)
    assert_valid(item)
    assert item.properties["mlm:tasks"] == ["similarity-search"]
    assert output(item)["result"]["dim_order"] == ["batch", "embedding"]
    assert output(item)["result"]["shape"] != [-1, 1000]


#: The TorchGeo weights members that state a self-supervised method or have no classifier (DINOv2 SoftCon,
#: ViT-H MAE/FGMAE, CopernicusFM, EarthLoc, DEO, Presto, TileNet, Tessera): features, without tasks=.
FEATURE_MEMBERS = [
    *(f"vit_small_patch14_dinov2:{m}" for m in ("SENTINEL2_ALL_SOFTCON", "SENTINEL1_GRD_SOFTCON")),
    *(f"vit_base_patch14_dinov2:{m}" for m in ("SENTINEL2_ALL_SOFTCON", "SENTINEL1_GRD_SOFTCON")),
    *(
        f"vit_huge_patch14_224:{m}"
        for m in ("SENTINEL2_ALL_MAE", "SENTINEL2_ALL_FGMAE", "SENTINEL1_GRD_MAE", "SENTINEL1_GRD_FGMAE")
    ),
    "copernicusfm_base:CopernicusFM_ViT",  # built for real: .item() in its forward
    "earthloc:SENTINEL2_RESNET50",
    "deo_base:DEO_SWIN",
    "presto:PRESTO",
    "tilenet:NAIP_ALL_TILE2VEC",
    *(f"tessera:{m}" for m in ("TESSERA", "TESSERA_SENTINEL2_ENCODER", "TESSERA_SENTINEL1_ENCODER")),
]


@pytest.mark.parametrize("member", FEATURE_MEMBERS)
def test_torchgeo_feature_extractors_need_no_tasks(member, assert_valid):
    tgm = pytest.importorskip("torchgeo.models")
    from mlm_export._sources.weights import build_model

    builder, name = member.split(":")
    weights = tgm.get_model_weights(builder)[name]
    data_dependent = builder in ("copernicusfm_base", "presto")
    item = export_mlm(build_model(weights, on_meta=not data_dependent), weights=weights, **WHEN)
    assert_valid(item)
    assert item.properties["mlm:tasks"] == ["similarity-search"]
    for out in item.properties["mlm:output"]:
        assert out["description"].startswith("Embeddings (features)"), out


def test_conv_head_classifier_and_a_size_every_builder_agrees_on(assert_valid):
    item = export_mlm(torchvision.models.squeezenet1_1(num_classes=5), **WHEN)  # head: a 1x1 Conv2d
    assert_valid(item)
    assert item.properties["mlm:tasks"] == ["classification"]
    described = item.properties["mlm:input"][0]["description"]
    assert "224x224 px, the crop size of every torchvision SqueezeNet builder's weights" in described


@pytest.mark.slow
def test_every_torchvision_classification_and_video_builder_needs_neither_tasks_nor_example():
    import torchvision.models as tvm

    done = 0
    for module in (tvm, tvm.video):
        for name in tvm.list_models(module=module):
            try:
                with torch.device("meta"):
                    model = tvm.get_model(name, num_classes=10)
            except Exception:  # noqa: BLE001 - builders that cannot be built on meta (quantized): not this test's subject
                continue
            with warnings.catch_warnings():  # MaxViT runs only at 224 and says so; that is not this test's subject
                warnings.simplefilter("ignore", MLMExportWarning)
                item = export_mlm(model, **WHEN)
            assert item.properties["mlm:tasks"] == ["classification"], name
            assert item.properties["mlm:output"][0]["result"]["shape"] == [-1, 10], name
            done += 1
    assert done >= 70
