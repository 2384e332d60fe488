"""Export a ResNet-18 scene classifier for 4-band (RGB + NIR) imagery: the notebook way, with no datamodule.

Run: .venv/bin/python examples/export_resnet.py [OUT_DIR]
"""

from __future__ import annotations

import datetime as dt
import sys

import torch
import torchvision

from mlm_export import export_mlm


def main(out_dir: str = "example-output") -> None:
    model = torchvision.models.resnet18(num_classes=10)
    model.conv1 = torch.nn.Conv2d(4, 64, kernel_size=7, stride=2, padding=3, bias=False)  # RGB + NIR
    item = export_mlm(
        model,
        example_input=torch.randn(2, 4, 64, 64),
        out_dir=out_dir,
        name="ResNet-18 EuroSAT RGBN",
        bands=["B04", "B03", "B02", "B08"],
        classes=[
            "AnnualCrop",
            "Forest",
            "HerbaceousVegetation",
            "Highway",
            "Industrial",
            "Pasture",
            "PermanentCrop",
            "Residential",
            "River",
            "SeaLake",
        ],
        value_scaling=[{"type": "scale", "value": 1 / 10000}],
        datetime=dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
        license="MIT",
    )
    print(item.get_self_href())
    print(item.properties["mlm:input"][0]["input"])


if __name__ == "__main__":
    main(*sys.argv[1:])
