"""One Trainer fit per TorchGeo task family with MLMExportCallback: the right tasks, shapes and networks."""

from __future__ import annotations

import datetime as dt
import json
import warnings

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

pytest.importorskip("torchgeo")
L = pytest.importorskip("lightning")
tasks = pytest.importorskip("torchgeo.tasks")  # TorchGeo 0.9+ names
from lightning.pytorch.callbacks import ModelCheckpoint  # noqa: E402

from mlm_export import MLMExportCallback  # noqa: E402

from .conftest import plain_validate  # noqa: E402


class Synthetic(Dataset):
    """TorchGeo-style samples (dicts with image, label, mask or boxes) for one task family."""

    def __init__(self, kind: str, channels: int = 3, size: int = 64, times: int | None = None) -> None:
        self.kind, self.channels, self.size, self.times = kind, channels, size, times

    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        g = torch.Generator().manual_seed(i)
        lead = (self.times,) if self.times else ()
        x = torch.rand((*lead, self.channels, self.size, self.size), generator=g)
        s = self.size
        return {
            "cls": lambda: {"image": x, "label": torch.tensor(i % 3)},
            "reg": lambda: {"image": x, "label": torch.rand(1, generator=g)},
            "seg": lambda: {"image": x, "mask": torch.randint(0, 3, (s, s), generator=g)},
            "preg": lambda: {"image": x, "mask": torch.rand(1, s, s, generator=g)},
            "chg": lambda: {"image": x, "mask": torch.randint(0, 2, (1, s, s), generator=g)},
            "det": lambda: {
                "image": x,
                "bbox_xyxy": torch.tensor([[4.0, 4.0, 20.0, 20.0]]),
                "label": torch.tensor([1]),
            },
            "ins": lambda: {
                "image": x,
                "bbox_xyxy": torch.tensor([[4.0, 4.0, 20.0, 20.0]]),
                "label": torch.tensor([1]),
                "mask": (torch.rand(1, s, s, generator=g) > 0.5).to(torch.uint8),
            },
            "ssl": lambda: {"image": x},
        }[self.kind]()


def collate(samples: list[dict[str, torch.Tensor]]) -> dict[str, object]:
    ragged = "bbox_xyxy" in samples[0]  # detection: boxes, labels and masks stay one tensor per image
    return {
        k: [s[k] for s in samples]
        if ragged and k in ("bbox_xyxy", "label", "mask")
        else torch.stack([s[k] for s in samples])
        for k in samples[0]
    }


CASES = {
    "classification": (lambda: tasks.Classification(model="resnet18", in_channels=3, num_classes=3), "cls", {}),
    "regression": (lambda: tasks.Regression(model="resnet18", in_channels=3, num_outputs=1), "reg", {}),
    "segmentation": (
        lambda: tasks.SemanticSegmentation(model="unet", backbone="resnet18", in_channels=3, num_classes=3),
        "seg",
        {},
    ),
    "pixelwise-regression": (
        lambda: tasks.PixelwiseRegression(model="unet", backbone="resnet18", in_channels=3),
        "preg",
        {},
    ),
    "change-detection": (
        lambda: tasks.ChangeDetection(model="unet", backbone="resnet18", in_channels=3),
        "chg",
        {"times": 2},
    ),
    "object-detection": (
        lambda: tasks.ObjectDetection(model="faster-rcnn", backbone="resnet18", in_channels=3, num_classes=3),
        "det",
        {},
    ),
    "instance-segmentation": (
        lambda: tasks.InstanceSegmentation(model="mask-rcnn", backbone="resnet50", in_channels=3, num_classes=3),
        "ins",
        {},
    ),
    "moco": (
        lambda: tasks.MoCo(model="resnet18", in_channels=3, size=32, version=2, layers=2, hidden_dim=32, output_dim=16),
        "ssl",
        {},
    ),
    "simclr": (
        lambda: tasks.SimCLR(model="resnet18", in_channels=3, size=32, layers=2, hidden_dim=32, output_dim=16),
        "ssl",
        {},
    ),
    "byol": (lambda: tasks.BYOL(model="resnet18", in_channels=3), "ssl", {}),
}
EXPECTED_TASKS = {
    "classification": ["classification"],
    "regression": ["regression"],
    "segmentation": ["semantic-segmentation"],
    "pixelwise-regression": ["regression"],
    "change-detection": ["semantic-segmentation"],
    "object-detection": ["object-detection"],
    "instance-segmentation": ["instance-segmentation"],
    "moco": ["similarity-search"],
    "simclr": ["similarity-search"],
    "byol": ["similarity-search"],
}


@pytest.mark.parametrize("family", list(CASES))
def test_task_family_fit_with_callback(family, tmp_path):
    make, kind, kw = CASES[family]
    torch.manual_seed(0)
    task = make()
    loader = DataLoader(Synthetic(kind, **kw), batch_size=2, collate_fn=collate)
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt")
    export = MLMExportCallback(datetime=dt.datetime(2024, 6, 1, tzinfo=dt.UTC), strict=True)
    trainer = L.Trainer(
        max_epochs=1, accelerator="cpu", logger=False, callbacks=[ckpt, export],
        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=1,
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        trainer.fit(task, loader, loader if kind != "ssl" else None)
    (item_path,) = (tmp_path / "ckpt").glob("*.mlm.json")
    item = json.loads(item_path.read_text())
    assert plain_validate(item) == []
    p = item["properties"]
    assert p["mlm:tasks"] == EXPECTED_TASKS[family]
    if kind == "ssl":  # only the backbone does inference: no projection head, no momentum copy
        backbone = task.backbone if hasattr(task, "backbone") else task.model.backbone
        assert p["mlm:total_parameters"] == sum(x.numel() for x in backbone.parameters())
        assert p["mlm:total_parameters"] < sum(x.numel() for x in task.parameters())
    else:
        assert p["mlm:total_parameters"] == sum(x.numel() for x in task.model.parameters())
    assert (task.hparams.get("backbone") or task.hparams["model"]) in p["mlm:architecture"]
    inp = p["mlm:input"][0]["input"]
    out = p["mlm:output"][0]["result"]
    if family == "change-detection":
        assert inp["dim_order"][:2] == ["batch", "time"] and inp["shape"][1] == 2
    if family == "segmentation":
        assert p["mlm:architecture"] == "unet (resnet18)"
        assert out["dim_order"] == ["batch", "class", "height", "width"] and out["shape"][1] == 3
    if family == "classification":
        assert out["shape"] == [-1, 3]
    if family == "object-detection":
        assert {o["name"] for o in p["mlm:output"]} == {"boxes", "labels", "scores"}
    if family == "instance-segmentation":
        assert {o["name"] for o in p["mlm:output"]} == {"boxes", "labels", "scores", "masks"}
    assert p["mlm:hyperparameters"]["model"] == task.hparams["model"]  # the task's hyperparameters, JSON-safe
