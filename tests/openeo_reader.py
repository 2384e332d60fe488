"""What openeo-processes-dask-ml (openEO's ML back-end) does with an MLM Item, re-done step by step.

The package cannot be installed here (it is not on PyPI, and it pins GDAL 3.13.1, a pystac fork from git and
openeo-processes-dask), so this helper repeats its checks and its loading and prediction path, each citing
the file and lines of github.com/Open-EO/openeo-processes-dask-ml at commit 60a75c8 (``P`` = ``openeo_processes_dask_ml/
process_implementations``). Where it uses xarray and dask, this uses a dict of dim sizes and numpy. Our code,
written from reading theirs.
"""

from __future__ import annotations

import json
import re
import urllib.request
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pystac
import torch
from pystac.validation.stac_validator import JsonSchemaSTACValidator

from .conftest import plain_validate, schema_dirs

# P/utils/dim_utils.py lines 12-17: the dim names a data cube may use, compared lower-cased.
BAND_DIMS = ["band", "bands", "b", "channel", "channels"]
TIME_DIMS = ["time", "times", "t", "date", "dates"]
X_DIMS = ["x", "lon", "lng", "longitude"]
Y_DIMS = ["y", "lat", "latitude"]
#: load_model.py line 48: the MLM extension URI pattern it requires.
MLM_URI = re.compile(r"^https:\/\/stac-extensions\.github\.io\/mlm\/v(\d+\.){0,2}\d*\/schema\.json$")
#: data_model.py line 506: batch size when neither the shape nor mlm:batch_size_suggestion gives one.
FALLBACK_BATCH = 12


class OpenEOReaderError(Exception):
    """openeo-processes-dask-ml would refuse the Item (its plain ``Exception`` / ``DimensionMissing`` / ...)."""


CLASSIFICATION_V1 = "https://stac-extensions.github.io/classification/v1.1.0/schema.json"
CLASSIFICATION_V2 = "https://stac-extensions.github.io/classification/v2.0.0/schema.json"


def offline_pystac_validator() -> JsonSchemaSTACValidator:
    """pystac's own JSON-Schema validator with every schema read from the local bundle (no network).

    ``pystac.Item.from_dict`` migrates a declared classification v1.1.0 to v2.0.0 (pystac's default), which the
    bundle lacks. v2.0.0 differs from v1.1.0 in its class object (stac-extensions/classification commit 0ef9ba8):
    ``name`` required and matching ``^[0-9A-Za-z-_]+$``, ``title`` allowed, ``description`` optional; the
    v2.0.0 entry here is the v1.1.0 schema with exactly that change.
    """
    validator = JsonSchemaSTACValidator()
    for root in reversed(schema_dirs()):  # the bundle, then the override directories over it
        for path in root.rglob("*.json"):
            validator.schema_cache["https://" + path.relative_to(root).as_posix()] = json.loads(path.read_text())
    v1 = validator.schema_cache[CLASSIFICATION_V1]
    v2 = json.loads(json.dumps(v1).replace("classification/v1.1.0", "classification/v2.0.0"))
    v2["definitions"]["class_object"]["required"] = ["value", "name"]
    v2["definitions"]["class_object"]["properties"]["name"]["pattern"] = "^[0-9A-Za-z-_]+$"
    v2["definitions"]["class_object"]["properties"]["title"] = {"type": "string"}
    validator.schema_cache[CLASSIFICATION_V2] = v2
    return validator


def load_stac_ml(stac: Mapping[str, Any], input_index: int = 0, output_index: int = 0) -> pystac.Item:
    """P/load_model.py ``load_stac_ml`` lines 32-96 and data_model.py ``_get_model_asset`` lines 105-141."""
    # lines 35-38: stac-validator must accept the JSON (stac-validator fetches schemas online; the same JSON
    # Schemas, read from the local bundle, stand in for it)
    if plain_validate(dict(stac)):
        raise OpenEOReaderError("The provided URI does not point to a valid STAC-Item")
    # lines 41-43
    if stac["type"] != "Feature":
        raise OpenEOReaderError("The provided URI does not point to a STAC-Item.")
    # lines 46-55
    if not any(MLM_URI.match(s) for s in stac["stac_extensions"]):
        raise OpenEOReaderError("The provided STAC Item does not implement the STAC:MLM standard")
    # lines 57-65: pystac's validate() (their pystac fork; upstream pystac here, with offline schemas)
    item = pystac.Item.from_dict(dict(stac))
    try:
        item.validate(validator=offline_pystac_validator())
    except pystac.errors.STACValidationError as e:
        raise OpenEOReaderError(f"does not implement STAC:MLM extension correctly: {e}") from e
    # lines 70-77: mlm:framework through pystac's MLM extension, compared lower-cased with "PyTorch"
    framework = item.ext.mlm.framework
    if framework is None or framework.lower() not in ["pytorch"]:
        raise OpenEOReaderError(f"The ML framework {framework} is not supported by this backend.")
    # lines 80-91
    if input_index >= len(item.ext.mlm.input) or output_index >= len(item.ext.mlm.output):
        raise OpenEOReaderError("input_index or output_index is invalid")
    # data_model.py lines 112-141: `"mlm:model" in asset.roles` on every asset (a TypeError when an asset has no
    # roles), and exactly one such asset when no asset name is given
    model_assets = {k: a for k, a in item.assets.items() if "mlm:model" in a.roles}  # type: ignore[operator]
    if not model_assets:
        raise OpenEOReaderError("The given STAC Item does not have an asset with role mlm:model")
    if len(model_assets) != 1:
        raise OpenEOReaderError("Multiple assets with role=mlm:model are found in the provided STAC-Item.")
    return item


@dataclass
class Cube:
    """A data cube as openEO hands it to ml_predict: dims with sizes, band labels, values (numpy)."""

    dims: tuple[str, ...]
    bands: list[str]
    values: np.ndarray


def _cube_dim(cube: Cube, name: str) -> str | None:
    """P/utils/dim_utils.py ``get_alternative_datacube_dim_name`` lines 126-160."""
    if name in cube.dims:
        return name
    for options in (TIME_DIMS, BAND_DIMS, X_DIMS, Y_DIMS):
        if name in options:
            return next((d for d in options if d in cube.dims), None)
    return None


def batch_size(item: pystac.Item) -> int:
    """data_model.py ``get_batch_size`` lines 494-537."""
    spec = item.ext.mlm.input[0].input
    suggestion = item.ext.mlm.batch_size_suggestion
    if "batch" not in spec.dim_order:
        return 1 if suggestion is None else suggestion
    size = spec.shape[spec.dim_order.index("batch")]
    if size == -1:
        return FALLBACK_BATCH if suggestion is None else suggestion
    return size


def check_cube(item: pystac.Item, cube: Cube) -> None:
    """data_model.py ``check_datacube_dimensions`` (lines 376-392) with ignore_batch_dim=True, as run_model
    calls it (line 1044): dims present (223-248), sizes (250-296), bands (298-374); and ml_predict.py line 8."""
    # ml_predict.py lines 8-12
    if item.ext.mlm.pretrained is False:
        raise OpenEOReaderError("Model is not (pre)trained.")
    spec = item.ext.mlm.input[0]
    dims, shape = spec.input.dim_order, spec.input.shape
    missing = [d for d in dims if _cube_dim(cube, d) is None and d != "batch"]
    if missing:
        raise OpenEOReaderError(f"Datacube is missing the following dimensions required by the input: {missing}")
    for d, size in zip(dims, shape, strict=True):
        if d == "batch" or size == -1:
            continue
        if cube.values.shape[cube.dims.index(_cube_dim(cube, d))] < size:  # type: ignore[arg-type]
            raise OpenEOReaderError(f"The model input requires dimension {d} to have {size} values.")
    names = [b if isinstance(b, str) else b.name for b in spec.bands]
    unavailable = [b for b in names if b not in cube.bands]
    if unavailable:
        raise OpenEOReaderError(f"The following bands are unavailable in the datacube: {unavailable}")


def fetch_model(href: str, cache: Path) -> Path:
    """data_model.py ``_get_model`` lines 143-166 with download_utils.py ``download`` lines 89-99: only
    http(s) and s3 hrefs are fetched (any other protocol is never downloaded)."""
    protocol = href.split("://")[0]
    if protocol not in ("http", "https", "s3"):
        raise OpenEOReaderError(f"cannot download the model from {href!r}: protocol {protocol!r}")
    target = cache / href.split("/")[-1]
    with urllib.request.urlopen(href, timeout=30) as response:  # download_http, lines 16-55
        target.write_bytes(response.read())
    return target


def predict(item: pystac.Item, cube: Cube, model_file: Path) -> np.ndarray:
    """data_model.py ``run_model`` lines 1034-1131 for one chunk, and model_execution/run_pytorch_model.py
    ``predict`` lines 52-75: preprocess, cut chunks of the input shape, batch them, torch.jit.load, run."""
    spec = item.ext.mlm.input[0]
    dims, shape = spec.input.dim_order, spec.input.shape
    # preprocess_datacube lines 1255-1265: select bands, scale (lines 1222-1253), cast to the input data type
    band_axis = cube.dims.index(_cube_dim(cube, "bands"))  # type: ignore[arg-type]
    names = [b if isinstance(b, str) else b.name for b in spec.bands]
    values = np.take(cube.values, [cube.bands.index(b) for b in names], axis=band_axis)
    # Upstream pystac (pystac-ext-mlm 1.4.1) wraps the whole list in one ValueScaling object; openEO runs its own
    # pystac fork (pyproject.toml line 17). The list itself, as the spec has it:
    scaling = [SimpleNamespace(**s) for s in spec.properties.get("value_scaling") or []]
    if len(scaling) not in (0, 1, len(names)):  # lines 1238-1245
        raise OpenEOReaderError("Number of ValueScaling entries does not match number of bands in Data Cube.")
    for i, s in enumerate(scaling):
        assert s.type == "z-score", "this helper re-does the z-score scaling only"
        index = [slice(None)] * values.ndim
        if len(scaling) > 1:
            index[band_axis] = slice(i, i + 1)
        values[tuple(index)] = (values[tuple(index)] - s.mean) / s.stddev
    values = values.astype(spec.input.data_type)
    # reorder_dc_dims_for_model_input lines 427-437 and reshape_dc_for_input lines 439-492 (get_index_subsets
    # lines 394-425): chunks of exactly the input's non-batch sizes, stacked along a new batch dim; a -1 here
    # makes range() steps of -1, so every non-batch size must be fixed
    order = [cube.dims.index(_cube_dim(cube, d)) for d in dims if d != "batch"]  # type: ignore[arg-type]
    values = np.transpose(values, order)
    sizes = [s for d, s in zip(dims, shape, strict=True) if d != "batch"]
    if any(s <= 0 for s in sizes):
        raise OpenEOReaderError(f"input sizes {sizes}: openEO cuts the cube into chunks of fixed size")
    starts = np.ndindex(*[values.shape[i] // s for i, s in enumerate(sizes)])
    chunks = [values[tuple(slice(j * s, (j + 1) * s) for j, s in zip(idx, sizes, strict=True))] for idx in starts]
    batch = np.stack(chunks[: batch_size(item)], axis=dims.index("batch") if "batch" in dims else 0)
    # run_pytorch_model.py line 61: always torch.jit.load, whatever mlm:artifact_type says
    with warnings.catch_warnings():  # torch 2.9+: "torch.jit.load is deprecated"
        warnings.simplefilter("ignore", FutureWarning)
        model = torch.jit.load(str(model_file)).to("cpu").eval()
    with torch.no_grad():  # lines 34-37
        out = model(torch.from_numpy(np.ascontiguousarray(batch)))
    result = out.cpu().numpy()  # lines 46-47, 71: one tensor out
    # get_model_out_shape lines 617-626 and get_chunk_output_shape 628-646: dask is told the result chunk
    # is the output shape with the batch size in place of -1; run_model line 1075: np.dtype(data_type)
    out_spec = item.ext.mlm.output[0].result
    expected = [
        len(chunks[: batch_size(item)]) if d == "batch" else s
        for d, s in zip(out_spec.dim_order, out_spec.shape, strict=True)
    ]
    if list(result.shape) != expected or result.dtype != np.dtype(out_spec.data_type):
        raise OpenEOReaderError(f"result chunk {list(result.shape)} {result.dtype}, the Item says {expected}")
    return result
