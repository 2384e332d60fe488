"""Facts from a datamodule (any LightningDataModule, duck-typed): batch, bands, classes, normalization, batch size.

Nothing here imports Lightning: a datamodule is read through the attributes Lightning and TorchGeo use.
"""

from __future__ import annotations

import contextlib
import inspect
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch

from .. import mlm
from .._facts import DataFacts
from .._times import data_time
from ..errors import MLMExportError
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
    example = target = setup_error = None
    if load_batch:  # first: asking for a batch may set the datamodule up, and so make its datasets
        example, where, target, setup_error = example_batch(dm)
        if example is not None:
            sources["example_input"] = where
    hparams = _hparams(dm)
    datasets = list(_datasets(dm))

    batch_size = _first_int(dm, hparams, ("batch_size",), sources, "batch_size")

    bands = None
    # TerraTorch's generic datamodules: output_bands (fed to the model) of dataset_bands (in the files)
    band_attrs = ("output_bands", "bands", "band_names", "channels", "all_bands", "all_band_names", "dataset_bands")
    for where, value in _candidates(dm, hparams, datasets, band_attrs):
        if _is_name_list(value):
            bands = coerce_bands(value, what=where)
            sources["bands"] = where
            break

    classes = None
    for where, value in _class_candidates(dm, hparams, datasets):
        value = _by_value(value)
        if not (_is_name_list(value) or (isinstance(value, Mapping) and value)):
            continue
        colors, colors_where = _colors(dm, datasets, len(value))
        try:
            classes = coerce_classes(value, colors, what=where)
        except (MLMExportError, ValueError, TypeError):  # not a class list after all: keep looking
            continue
        sources["classes"] = where
        if colors_where and any(c.color_hint for c in classes):
            sources["class_colors"] = colors_where
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
        setup_error=setup_error,
        sources=sources,
    )


def example_batch(dm: Any) -> tuple[Any, str, tuple[str, torch.Tensor] | None, OSError | None]:
    """The model input of one real batch from the datamodule's loaders, where it came from and the batch's
    training target (:func:`.targets.batch_target`), or (None, "", None, error) if no loader gives one.

    ``setup()`` is the user's own code: any error in it is raised, but an ``OSError`` (its data is not on disk,
    TorchGeo's ``DatasetNotFoundError``) is returned, to be raised only if nothing else states a batch."""
    setup_error: OSError | None = None
    for name, stage in LOADER_STAGES:
        loader_fn = getattr(dm, f"{name}_dataloader", None)
        if not callable(loader_fn):
            continue
        batch = _first_batch(loader_fn)
        if batch is None and callable(getattr(dm, "setup", None)):
            try:
                dm.setup(stage)
            except OSError as e:
                setup_error = setup_error or e
                continue
            batch = _first_batch(loader_fn)
        if batch is not None:
            found = model_input(batch)
            if found is not None:
                return found, f"datamodule.{name}_dataloader()", batch_target(batch), None
    return None, "", None, setup_error


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
    except Exception:  # noqa: BLE001 - not set up yet, no data, an empty loader: the datamodule gives no batch
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


#: Attributes that hold the class names: a list by class value, or a mapping either way ({value: name}, as
#: Hugging Face's ``id2label``; {name: value}, as torchvision's ``class_to_idx`` and ``label2id``).
CLASS_ATTRS = ("classes", "class_names", "labels", "id2label", "class_to_idx", "label2id")


def _class_candidates(dm: Any, hparams: Mapping[str, Any], datasets: Sequence[Any]) -> Iterator[tuple[str, Any]]:
    """Where a datamodule's classes may be, best first: attributes named like a class list, the class set a
    dataset picks by its class count (``class_sets[num_classes]``), then the class list a folder-per-class
    dataset documents (read without its data)."""
    yield from _candidates(dm, hparams, datasets, CLASS_ATTRS)
    for ds in datasets:
        label = ds.__name__ if isinstance(ds, type) else type(ds).__name__
        sets = getattr(ds, "class_sets", None)
        count = hparams.get("num_classes", _default(ds, "num_classes"))
        if isinstance(sets, Mapping) and count in sets:
            yield f"{label}.class_sets[{count}]", sets[count]
    for ds in datasets:
        documented = documented_classes(ds if isinstance(ds, type) else type(ds))
        if documented is not None:
            yield documented


def _default(ds: Any, name: str) -> Any:
    """The default of a dataset constructor's argument ``name`` (None if it has none)."""
    with contextlib.suppress(TypeError, ValueError):
        param = inspect.signature(ds if isinstance(ds, type) else type(ds)).parameters.get(name)
        if param is not None and param.default is not inspect.Parameter.empty:
            return param.default
    return None


def _by_value(value: Any) -> Any:
    """A ``{name: value}`` or ``{name: {"id": value, ...}}`` mapping (torchvision's ``class_to_idx``, FAIR1M's
    classes) as ``{value: name}`` when its values are distinct integers; anything else unchanged."""
    if isinstance(value, Mapping) and value and all(isinstance(k, str) for k in value):
        ids = {k: v.get("id", v.get("value")) if isinstance(v, Mapping) else v for k, v in value.items()}
        if all(isinstance(i, int) and not isinstance(i, bool) for i in ids.values()) and len(set(ids.values())) == len(
            ids
        ):
            return {i: k for k, i in ids.items()}
    return value


#: A "Dataset classes:" heading in a dataset's docstring, and one bullet of the list after it.
_CLASSES_HEADING = re.compile(r"^\s*Dataset classes\s*:\s*$")
_BULLET = re.compile(r"^\s*(?:[*-]|(\d+)\.)\s+(\S.*?)\s*$")


def documented_classes(cls: type) -> tuple[str, Any] | None:
    """The class list a folder-per-class dataset (a torchvision ``DatasetFolder``, as TorchGeo's EuroSAT) states
    in its docstring, as (where, names); None otherwise.

    Such a dataset numbers its classes by the sorted names of its class folders, which exist only with the
    data. Its documented list is taken only when it is in that sorted order (letters and digits compared,
    case ignored), so that position i names class i.
    """
    if not any(k.__name__ == "DatasetFolder" for k in cls.__mro__):
        return None
    for klass in cls.__mro__:
        names = _doc_list(klass.__dict__.get("__doc__"))
        if names:
            keys = [re.sub(r"[^0-9a-z]", "", n.lower()) for n in names]
            if keys == sorted(keys) and len(set(keys)) == len(keys):
                return f"{klass.__name__} docstring ('Dataset classes', in class-folder order)", names
            return None
    return None


def _doc_list(doc: Any) -> list[str]:
    """The items after a "Dataset classes:" heading of a docstring: bullets, or a list numbered 0, 1, 2...
    (a list numbered otherwise gives nothing: its numbers are not positions)."""
    if not isinstance(doc, str):
        return []
    lines = inspect.cleandoc(doc).splitlines()
    for i, line in enumerate(lines):
        if _CLASSES_HEADING.match(line):
            names: list[str] = []
            for item in lines[i + 1 :]:
                if not item.strip() and not names:
                    continue
                bullet = _BULLET.match(item)
                if bullet is None:
                    break
                if bullet.group(1) is not None and int(bullet.group(1)) != len(names):
                    return []
                names.append(bullet.group(2))
            return names
    return []


#: Attributes that hold a colour per class (a list by class value, a {value: colour} dict or a colormap).
COLOR_ATTRS = ("cmap", "colormap", "colors", "class_colors", "ordinal_cmap")


def _colors(dm: Any, datasets: Sequence[Any], count: int) -> tuple[Any, str | None]:
    """Colours for ``count`` classes and where they were found: a {value: colour} mapping, or a list with one
    colour per class (a list of another length is not matched to the classes by guess)."""
    for obj in (dm, *datasets):
        label = "datamodule" if obj is dm else obj.__name__ if isinstance(obj, type) else type(obj).__name__
        for n in COLOR_ATTRS:
            value = _color_list(getattr(obj, n, None))
            if isinstance(value, Mapping) and value:
                return value, f"{label}.{n}"
            if isinstance(value, list) and len(value) == count:
                return value, f"{label}.{n}"
    return None, None


def _color_list(value: Any) -> Any:
    """A colour attribute as a {value: colour} mapping or a list of colours; matplotlib colormaps give their
    colour list, colour names their RGB (through matplotlib, only when the program has already imported it)."""
    if value is None or isinstance(value, str):
        return None
    if isinstance(value, Mapping):
        return value
    listed = getattr(value, "colors", None)  # a matplotlib ListedColormap
    if listed is not None and not callable(listed):
        value = listed
    if isinstance(value, torch.Tensor) or callable(getattr(value, "tolist", None)):
        with contextlib.suppress(Exception):
            value = value.tolist()
    if not isinstance(value, Sequence) or isinstance(value, str):
        return None
    named = sys.modules.get("matplotlib.colors")  # never imported here: reading colours must not load a library
    out = []
    for c in value:
        if isinstance(c, str) and not c.startswith("#") and named is not None:
            with contextlib.suppress(Exception):
                c = list(named.to_rgb(c))
        out.append(c)
    return out


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
        except Exception:  # noqa: BLE001, S112 - a non-geo dataset has no extent
            continue
        try:
            (x0, x1), (y0, y1), (t0, t1) = _bounds(bounds)
            from pyproj import CRS, Transformer

            to_wgs84 = Transformer.from_crs(CRS.from_user_input(crs), CRS.from_epsg(4326), always_xy=True)
            w, s, e, n = to_wgs84.transform_bounds(x0, y0, x1, y1)
        except Exception:  # noqa: BLE001, S112 - no pyproj or an unknown CRS: no extent rather than a wrong one
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
