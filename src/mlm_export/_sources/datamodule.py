"""Facts from a datamodule (any LightningDataModule, duck-typed): batch, bands, classes, normalization, batch size.

Nothing here imports Lightning: a datamodule is read through the attributes Lightning and TorchGeo use.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch

from .. import mlm
from .._facts import DataFacts
from .._times import data_time
from .targets import batch_target
from .values import coerce_bands, coerce_classes, compose_zscores, normalizer_params, walk_transforms

#: Attributes that hold the transforms applied at inference, best first (train-time augmentation last).
TRANSFORM_ATTRS = (
    "predict_aug",
    "val_aug",
    "test_aug",
    "aug",
    "predict_transform",
    "predict_transforms",
    "val_transform",
    "val_transforms",
    "test_transform",
    "test_transforms",
    "transform",
    "transforms",
    "normalize",
    "train_aug",
    "train_transform",
    "train_transforms",
)
#: Keys of a dict batch that hold the model input, best first (TorchGeo uses "image").
INPUT_KEYS = ("image", "input", "inputs", "x", "images", "pixel_values")
#: Dataloaders asked for a batch, most inference-like first.
LOADER_STAGES = (("predict", "predict"), ("test", "test"), ("val", "validate"), ("train", "fit"))


def datamodule_facts(dm: Any, *, load_batch: bool = True) -> DataFacts:
    """Read batch size, bands, classes, normalization and (when it can give one) a real batch from ``dm``."""
    sources: dict[str, str] = {}
    example = target = None
    if load_batch:  # first: asking for a batch may set the datamodule up, and so make its datasets
        example, where, target = example_batch(dm)
        if example is not None:
            sources["example_input"] = where
    hparams = _hparams(dm)
    datasets = list(_datasets(dm))

    batch_size = _first_int(dm, hparams, ("batch_size",), sources, "batch_size")

    bands = None
    band_attrs = ("bands", "band_names", "channels", "all_bands", "all_band_names")
    for where, value in _candidates(dm, hparams, datasets, band_attrs):
        if _is_name_list(value):
            bands = coerce_bands(value, what=where)
            sources["bands"] = where
            break

    classes = None
    for where, value in _candidates(dm, hparams, datasets, ("classes", "class_names", "labels")):
        if _is_name_list(value) or (isinstance(value, Mapping) and value):
            colors = _colors(dm, datasets)
            classes = coerce_classes(value, colors, what=where)
            sources["classes"] = where
            break

    scaling = None
    steps, where = _normalization(dm)
    if steps:
        scaling = compose_zscores(steps, None)  # checked against the model's channels when resolved
        sources["value_scaling"] = where

    patch = _first_int(dm, hparams, ("patch_size", "size", "image_size", "img_size"), sources, "patch_size")
    bbox, start, end = _geo_extent(datasets)
    if bbox:
        sources["bbox"] = "dataset bounds"
    links = _data_links(dm)
    return DataFacts(
        bands=bands,
        value_scaling=scaling,
        classes=classes,
        batch_size=batch_size,
        patch_size=(patch, patch) if patch else None,
        bbox=bbox,
        start_datetime=start,
        end_datetime=end,
        links=tuple(links) or None,
        example_input=example,
        example_target=target,
        sources=sources,
    )


def example_batch(dm: Any) -> tuple[Any, str, tuple[str, torch.Tensor] | None]:
    """The model input of one real batch from the datamodule's loaders, where it came from and the batch's
    training target (:func:`.targets.batch_target`), or (None, "", None) if no loader gives one."""
    for name, stage in LOADER_STAGES:
        loader_fn = getattr(dm, f"{name}_dataloader", None)
        if not callable(loader_fn):
            continue
        batch = _first_batch(loader_fn)
        if batch is None and callable(getattr(dm, "setup", None)):
            with contextlib.suppress(Exception):
                dm.setup(stage)
                batch = _first_batch(loader_fn)
        if batch is not None:
            found = model_input(batch)
            if found is not None:
                return found, f"datamodule.{name}_dataloader()", batch_target(batch)
    return None, "", None


def model_input(batch: Any) -> Any:
    """The part of a batch that the model takes: a dict's image, a tuple's first item, or the tensor itself."""
    if isinstance(batch, torch.Tensor):
        return batch
    if isinstance(batch, Mapping):
        for key in INPUT_KEYS:
            if isinstance(batch.get(key), torch.Tensor):
                return batch[key]
        tensors = [v for v in batch.values() if isinstance(v, torch.Tensor)]
        return tensors[0] if tensors else None
    if isinstance(batch, Sequence) and batch and isinstance(batch[0], torch.Tensor):
        return batch[0]
    return None


def _first_batch(loader_fn: Any) -> Any:
    try:
        loader = loader_fn()
        if isinstance(loader, Sequence | Mapping) and loader:  # several loaders (Lightning allows lists and dicts)
            first = next(iter(loader.values())) if isinstance(loader, Mapping) else loader[0]
            if isinstance(first, torch.utils.data.DataLoader):
                loader = first
        return next(iter(loader))
    except Exception:  # not set up, no data, or an empty loader: the datamodule cannot give a batch
        return None


def _hparams(dm: Any) -> Mapping[str, Any]:
    h = getattr(dm, "hparams", None)
    merged: dict[str, Any] = {}
    if isinstance(h, Mapping):
        merged.update(h)
    kwargs = getattr(dm, "kwargs", None)  # TorchGeo datamodules keep dataset arguments here
    if isinstance(kwargs, Mapping):
        merged.update({k: v for k, v in kwargs.items() if k not in merged})
    return merged


def _datasets(dm: Any) -> Iterator[Any]:
    """The datamodule's datasets (through Subset and other wrappers), then its dataset class: TorchGeo
    datamodules name it before ``setup``, and its class attributes (``all_bands``, ``classes``) hold."""
    seen: set[int] = set()
    for attr in ("predict_dataset", "test_dataset", "val_dataset", "train_dataset", "dataset", "dataset_class"):
        ds = getattr(dm, attr, None)
        while ds is not None and id(ds) not in seen:
            seen.add(id(ds))
            yield ds
            ds = getattr(ds, "dataset", None)  # Subset and wrappers


def _candidates(
    dm: Any, hparams: Mapping[str, Any], datasets: Sequence[Any], names: Sequence[str]
) -> Iterator[tuple[str, Any]]:
    for n in names:
        with contextlib.suppress(Exception):
            yield f"datamodule.{n}", getattr(dm, n, None)
        yield f"datamodule.hparams['{n}']", hparams.get(n)
    for ds in datasets:
        label = ds.__name__ if isinstance(ds, type) else type(ds).__name__
        for n in names:
            with contextlib.suppress(Exception):
                yield f"{label}.{n}", getattr(ds, n, None)


def _first_int(
    dm: Any, hparams: Mapping[str, Any], names: Sequence[str], sources: dict[str, str], key: str
) -> int | None:
    for n in names:
        for where, v in ((f"datamodule.{n}", getattr(dm, n, None)), (f"datamodule.hparams['{n}']", hparams.get(n))):
            if isinstance(v, tuple | list) and len(v) == 2 and v[0] == v[1]:
                v = v[0]
            if isinstance(v, int) and not isinstance(v, bool) and v > 0:
                sources[key] = where
                return v
    return None


def _is_name_list(value: Any) -> bool:
    return (
        isinstance(value, Sequence)
        and not isinstance(value, str)
        and len(value) > 0
        and all(isinstance(v, str) and v for v in value)
    )


def _colors(dm: Any, datasets: Sequence[Any]) -> Any:
    for obj in (dm, *datasets):
        for n in ("cmap", "colormap", "colors", "class_colors", "ordinal_cmap"):
            value = getattr(obj, n, None)
            if isinstance(value, torch.Tensor) and value.ndim == 2 and value.shape[1] in (3, 4):
                return value.tolist()
            if isinstance(value, Mapping | Sequence) and not isinstance(value, str) and value:
                return value
    return None


def _normalization(dm: Any) -> tuple[list[tuple[list[float], list[float]]], str]:
    """Normalize steps (mean, std) of the first transform attribute that has any, in the order applied."""
    for attr in TRANSFORM_ATTRS:
        value = getattr(dm, attr, None)
        if value is None:
            continue
        steps = [p for p in (normalizer_params(t) for t in walk_transforms(value)) if p is not None]
        if steps:
            return steps, f"datamodule.{attr}"
    mean, std = getattr(dm, "mean", None), getattr(dm, "std", None)
    if mean is not None and std is not None:
        params = normalizer_params(dm)
        if params:
            return [params], "datamodule.mean/std"
    return [], ""


SPLITS = (("train_dataset", "train"), ("val_dataset", "validate"), ("test_dataset", "test"))


def _geo_extent(datasets: Sequence[Any]) -> tuple[tuple[float, float, float, float] | None, str | None, str | None]:
    """The union of the GeoDatasets' bounds in EPSG:4326, and their time span, when they have them."""
    boxes: list[tuple[float, float, float, float]] = []
    starts: list[str] = []
    ends: list[str] = []
    for ds in datasets:
        try:
            bounds, crs = ds.bounds, ds.crs
        except Exception:  # noqa: S112 - a non-geo dataset has no extent
            continue
        try:
            (x0, x1), (y0, y1), (t0, t1) = _bounds(bounds)
            from pyproj import CRS, Transformer

            to_wgs84 = Transformer.from_crs(CRS.from_user_input(crs), CRS.from_epsg(4326), always_xy=True)
            w, s, e, n = to_wgs84.transform_bounds(x0, y0, x1, y1)
        except Exception:  # noqa: S112 - no pyproj or an unknown CRS: no extent rather than a wrong one
            continue
        boxes.append((max(w, -180.0), max(s, -90.0), min(e, 180.0), min(n, 90.0)))
        for t, out in ((t0, starts), (t1, ends)):
            iso = data_time(t)
            if iso:
                out.append(iso)
    if not boxes:
        return None, None, None
    bbox = (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))
    return bbox, (min(starts) if starts else None), (max(ends) if ends else None)


def _bounds(bounds: Any) -> tuple[tuple[float, float], tuple[float, float], tuple[Any, Any]]:
    """(x, y, t) ranges from TorchGeo 0.9+ slices or 0.8's BoundingBox(minx, maxx, miny, maxy, mint, maxt)."""
    if isinstance(bounds, tuple) and len(bounds) == 3 and all(isinstance(b, slice) for b in bounds):
        x, y, t = bounds
        return (float(x.start), float(x.stop)), (float(y.start), float(y.stop)), (t.start, t.stop)
    return (
        (float(bounds.minx), float(bounds.maxx)),
        (float(bounds.miny), float(bounds.maxy)),
        (bounds.mint, bounds.maxt),
    )


def _data_links(dm: Any) -> list[dict[str, Any]]:
    """``derived_from`` links to each split's files, with its ml-aoi split."""
    links = []
    for attr, split in SPLITS:
        ds = getattr(dm, attr, None)
        while ds is not None and not hasattr(ds, "paths") and hasattr(ds, "dataset"):
            ds = ds.dataset
        paths = getattr(ds, "paths", None)
        if paths is None:
            continue
        for p in [paths] if isinstance(paths, str | bytes) or not isinstance(paths, Sequence) else paths:
            links.append(
                {
                    "rel": "derived_from",
                    "href": str(p),
                    "title": f"{split} data ({type(ds).__name__})",
                    mlm.ML_AOI_SPLIT: split,
                }
            )
    return links
