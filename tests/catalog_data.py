"""Model Items for catalog tests: the nine official MLM v1.5.2 examples, plus variants with known answers."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from mlm_export.catalog import Query

FIXTURES = Path(__file__).parent / "fixtures"


def official_examples() -> list[dict[str, Any]]:
    """The nine examples; five share one id, so each gets its file stem as id."""
    items = []
    for path in sorted((FIXTURES / "mlm_examples").glob("item_*.json")):
        item = json.loads(path.read_text(encoding="utf-8"))
        item["id"] = path.stem
        items.append(item)
    return items


def naip_model() -> dict[str, Any]:
    """A model over the NAIP bands by common name, trained over California, PyTorch spelled 'PyTorch'."""
    item = copy.deepcopy(official_examples()[0])  # item_bands_expression: bands as objects
    item["id"] = "naip-rgbn-segmenter"
    w, s, e, n = -124.4, 32.5, -114.1, 42.0
    item["bbox"] = [w, s, e, n]
    item["geometry"] = {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]}
    props = item["properties"]
    props.update(
        {
            "start_datetime": "2020-01-01T00:00:00Z",
            "end_datetime": "2022-12-31T23:59:59Z",
            "mlm:framework": "PyTorch",
            "mlm:architecture": "UNet",
            "mlm:tasks": ["semantic-segmentation"],
            "mlm:total_parameters": 1_900_000,
        }
    )
    props["mlm:input"][0]["bands"] = [{"name": n} for n in ("red", "green", "blue", "nir")]
    props["mlm:input"][0]["input"]["shape"] = [-1, 4, 256, 256]
    props["mlm:output"][0]["tasks"] = ["semantic-segmentation"]
    asset = item["assets"]["weights"]
    asset["eo:bands"] = [{"name": n, "common_name": n} for n in ("red", "green", "blue", "nir")]
    return item


def model_items() -> list[dict[str, Any]]:
    return [*official_examples(), naip_model()]


#: Examples whose time range reaches past 2030 (end 9999 or 2100).
OPEN_ENDED = {
    "item_bands_expression",
    "item_basic",
    "item_datacube_variables",
    "item_eo_and_raster_bands",
    "item_eo_bands",
    "item_eo_bands_summarized",
    "item_multi_io",
    "item_raster_bands",
}
CUDA_CLASSIFIERS = OPEN_ENDED - {"item_basic", "item_datacube_variables"}

#: (name, query, expected ids) over model_items(); the same answers are expected from every backend.
SUITE: list[tuple[str, Query, set[str]]] = [
    (
        "everything",
        Query(),
        {p.stem for p in (FIXTURES / "mlm_examples").glob("item_*.json")} | {"naip-rgbn-segmenter"},
    ),
    ("task", Query(task="semantic-segmentation"), {"item_pytorch_geo_unet", "naip-rgbn-segmenter"}),
    (
        "band by name",
        Query(bands=("B8A",)),
        {"item_eo_bands", "item_eo_bands_summarized", "item_eo_and_raster_bands", "item_raster_bands"},
    ),
    (
        "band by common name",
        Query(bands=("red", "blue")),
        {
            "item_bands_expression",
            "item_eo_bands",
            "item_eo_bands_summarized",
            "item_eo_and_raster_bands",
            "naip-rgbn-segmenter",
        },
    ),
    ("framework any case", Query(framework="PYTORCH", max_parameters=5_000_000), {"naip-rgbn-segmenter"}),
    ("architecture", Query(architecture="unet"), {"naip-rgbn-segmenter"}),
    ("size", Query(filter='"mlm:total_parameters" > 12000000'), {"item_pytorch_geo_unet"}),
    ("bbox", Query(bbox=(-123.0, 37.0, -122.0, 38.0)), {"naip-rgbn-segmenter"}),
    ("datetime open end", Query(datetime="2030-01-01T00:00:00Z/.."), OPEN_ENDED),
    (
        "cql2 and",
        Query(filter="a_contains(\"mlm:tasks\", ('classification')) AND \"mlm:accelerator\" = 'cuda'"),
        CUDA_CLASSIFIERS,
    ),
    (
        "cql2 in",
        Query(filter="id IN ('item_basic', 'naip-rgbn-segmenter', 'absent')"),
        {"item_basic", "naip-rgbn-segmenter"},
    ),
    # eo:bands give B08 the common name nir; item_raster_bands has no common names
    (
        "bands all present",
        Query(bands=("nir", "B01")),
        {"item_eo_bands", "item_eo_bands_summarized", "item_eo_and_raster_bands"},
    ),
]
