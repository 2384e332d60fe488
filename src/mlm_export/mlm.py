"""MLM v1.5.2 field names, vocabularies and typed field models (pydantic); the one place they are spelled.

pystac ships an MLM extension module pinned at MLM v1.4.0; this project writes v1.5.2, so it declares the
schema URI itself and shapes the fields with these models.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, TypeGuard, get_args

from pydantic import ConfigDict, Field, SerializerFunctionWrapHandler, TypeAdapter, field_validator, model_serializer
from pydantic.dataclasses import dataclass

MLM_VERSION = "1.5.2"
MLM_SCHEMA = f"https://stac-extensions.github.io/mlm/v{MLM_VERSION}/schema.json"
FILE_SCHEMA = "https://stac-extensions.github.io/file/v2.1.0/schema.json"
#: The classification version the MLM v1.5.2 schema references for ``classification:classes``.
CLASSIFICATION_SCHEMA = "https://stac-extensions.github.io/classification/v1.1.0/schema.json"
#: eo v2 is the eo extension for STAC 1.1 ``bands`` (``eo:common_name``, ``eo:center_wavelength``).
EO_SCHEMA = "https://stac-extensions.github.io/eo/v2.0.0/schema.json"
SCI_SCHEMA = "https://stac-extensions.github.io/scientific/v1.0.0/schema.json"
PROCESSING_SCHEMA = "https://stac-extensions.github.io/processing/v1.2.0/schema.json"
VERSION_SCHEMA = "https://stac-extensions.github.io/version/v1.2.0/schema.json"
ML_AOI_SCHEMA = "https://stac-extensions.github.io/ml-aoi/v0.2.0/schema.json"
STATS_SCHEMA = "https://stac-extensions.github.io/stats/v0.2.0/schema.json"

PREFIX = "mlm:"
NAME = PREFIX + "name"
ARCHITECTURE = PREFIX + "architecture"
TASKS = PREFIX + "tasks"
FRAMEWORK = PREFIX + "framework"
FRAMEWORK_VERSION = PREFIX + "framework_version"
MEMORY_SIZE = PREFIX + "memory_size"
TOTAL_PARAMETERS = PREFIX + "total_parameters"
PRETRAINED = PREFIX + "pretrained"
PRETRAINED_SOURCE = PREFIX + "pretrained_source"
BATCH_SIZE_SUGGESTION = PREFIX + "batch_size_suggestion"
ACCELERATOR = PREFIX + "accelerator"
ACCELERATOR_CONSTRAINED = PREFIX + "accelerator_constrained"
ACCELERATOR_SUMMARY = PREFIX + "accelerator_summary"
ACCELERATOR_COUNT = PREFIX + "accelerator_count"
COMPILE_METHOD = PREFIX + "compile_method"
ENTRYPOINT = PREFIX + "entrypoint"
INPUT = PREFIX + "input"
OUTPUT = PREFIX + "output"
HYPERPARAMETERS = PREFIX + "hyperparameters"
ARTIFACT_TYPE = PREFIX + "artifact_type"
#: The classification extension's field for an output's classes.
CLASSES = "classification:classes"

ROLE_MODEL = "mlm:model"
ROLE_WEIGHTS = "mlm:weights"
ROLE_CHECKPOINT = "mlm:checkpoint"
ROLE_SOURCE_CODE = "mlm:source_code"
ROLE_INFERENCE_RUNTIME = "mlm:inference-runtime"
ROLE_TRAINING_RUNTIME = "mlm:training-runtime"

#: ``mlm:artifact_type`` values (those the MLM README recommends), one per writer.
ARTIFACT_SAFETENSORS = "safetensors.torch.save_file"
ARTIFACT_EXPORT = "torch.export.save"
ARTIFACT_TORCH_SAVE = "torch.save"
ARTIFACT_TORCHSCRIPT = "torch.jit.save"
ARTIFACT_ONNX = "torch.onnx.export"

# ---------------------------------------------------------------- vocabulary of the other fields an Item uses
# Field names of the extensions written beside MLM, asset roles and media types: spelled here only.

#: file extension v2.1.0
FILE_SIZE = "file:size"
FILE_CHECKSUM = "file:checksum"
#: eo extension (``eo:bands`` is eo v1's list; ``raster:bands`` the raster extension's)
EO_COMMON_NAME = "eo:common_name"
EO_CENTER_WAVELENGTH = "eo:center_wavelength"
EO_BANDS = "eo:bands"
RASTER_BANDS = "raster:bands"
#: scientific extension
SCI_DOI = "sci:doi"
SCI_CITATION = "sci:citation"
#: processing extension
PROCESSING_SOFTWARE = "processing:software"
#: Fields of a Lightning run's checkpoint Items (no published schema: the prefix marks them as this tool's).
LIGHTNING_PREFIX = "lightning:"
LIGHTNING_EPOCH = "lightning:epoch"
LIGHTNING_GLOBAL_STEP = "lightning:global_step"
LIGHTNING_WEIGHTS_ONLY = "lightning:weights_only"
LIGHTNING_MONITOR = "lightning:monitor"
LIGHTNING_MODE = "lightning:mode"
LIGHTNING_SCORE = "lightning:score"
LIGHTNING_METRICS = "lightning:metrics"
#: STAC's generic asset roles used beside the ``mlm:`` ones.
ROLE_CODE = "code"
ROLE_METADATA = "metadata"
ROLE_DATA = "data"
#: Media types of the files an Item points at.
MEDIA_SAFETENSORS = "application/octet-stream; application=safetensors"
MEDIA_PT2 = "application/zip; application=pytorch"
#: A ``torch.save`` pickle (checkpoint, state dict); also what openEO's profile states for its TorchScript file.
MEDIA_PYTORCH = "application/octet-stream; application=pytorch"
MEDIA_TORCHSCRIPT = "application/zip; application=pytorch; profile=torchscript"
MEDIA_ONNX = "application/octet-stream; framework=onnx"
MEDIA_JSON = "application/json"
MEDIA_GEOJSON = "application/geo+json"
MEDIA_HTML = "text/html"
MEDIA_MARKDOWN = "text/markdown"
MEDIA_TEXT = "text/plain"
MEDIA_YAML = "application/yaml"

FRAMEWORK_PYTORCH = "PyTorch"

Task = Literal[
    "regression",
    "classification",
    "scene-classification",
    "detection",
    "object-detection",
    "segmentation",
    "semantic-segmentation",
    "instance-segmentation",
    "panoptic-segmentation",
    "similarity-search",
    "generative",
    "image-captioning",
    "super-resolution",
    "downscaling",
]
TASK_NAMES: tuple[Task, ...] = get_args(Task)

Accelerator = Literal["amd64", "cuda", "xla", "amd-rocm", "intel-ipex-cpu", "intel-ipex-gpu", "macos-arm"]

#: The raster extension's data types, which MLM uses for ``data_type``.
DataType = Literal[
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "float16",
    "float32",
    "float64",
    "cint16",
    "cint32",
    "cfloat32",
    "cfloat64",
    "other",
]
DATA_TYPES: tuple[DataType, ...] = get_args(DataType)
#: Torch dtypes with no raster data type; written as "other" and named in the input's description.
TORCH_TO_DATA_TYPE: dict[str, DataType] = {"complex64": "cfloat32", "complex128": "cfloat64"}

ResizeType = Literal[
    "crop",
    "pad",
    "interpolation-nearest",
    "interpolation-linear",
    "interpolation-cubic",
    "interpolation-area",
    "interpolation-lanczos4",
    "interpolation-max",
    "wrap-fill-outliers",
    "wrap-inverse-map",
]
RESIZE_TYPES: tuple[ResizeType, ...] = get_args(ResizeType)

#: ``value_scaling`` types with scalar parameters (``processing`` needs an expression, which is not written here).
ScalingType = Literal["min-max", "z-score", "clip", "clip-min", "clip-max", "offset", "scale"]
SCALING_TYPES: tuple[ScalingType, ...] = get_args(ScalingType)

NAME_PATTERN = re.compile(r"^[a-zA-Z][a-zA-Z0-9_.\-\s]+[a-zA-Z0-9]$")
DIM_PATTERN = re.compile(r"^[a-z-_]+$")
HYPERPARAMETER_KEY = re.compile(r"^[0-9a-zA-Z_.-]+$")
SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)"
    r"(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$"
)


def data_type(torch_dtype: str) -> DataType:
    """MLM ``data_type`` for a torch dtype name ('float32' -> 'float32', 'bfloat16' -> 'other')."""
    name = TORCH_TO_DATA_TYPE.get(torch_dtype, torch_dtype)
    return name if is_data_type(name) else "other"


def accelerator(device_kind: str, machine: str, system: str) -> Accelerator | None:
    """``mlm:accelerator`` for a torch device type or Lightning accelerator class name ('cuda', 'MPSAccelerator',
    'cpu'...) on a machine (``platform.machine()``, ``platform.system()``); None where the enum has no value
    (it has no plain ``cpu``)."""
    kind, machine = device_kind.lower(), machine.lower()
    if "cuda" in kind:
        return "cuda"
    if "mps" in kind:
        return "macos-arm"
    if "xla" in kind:
        return "xla"
    if machine in ("x86_64", "amd64"):
        return "amd64"
    if machine in ("arm64", "aarch64") and system == "Darwin":
        return "macos-arm"
    return None


def is_task(name: str) -> TypeGuard[Task]:
    """Whether ``name`` is one of MLM's tasks."""
    return name in TASK_NAMES


def is_data_type(name: str) -> TypeGuard[DataType]:
    """Whether ``name`` is one of the raster extension's data types."""
    return name in DATA_TYPES


def is_resize_type(name: str) -> TypeGuard[ResizeType]:
    """Whether ``name`` is one of MLM's ``resize_type`` values."""
    return name in RESIZE_TYPES


def is_scaling_type(name: str) -> TypeGuard[ScalingType]:
    """Whether ``name`` is one of the ``value_scaling`` types written here."""
    return name in SCALING_TYPES


class _Field:
    """A field model: a frozen, validated dataclass whose ``dump()`` is the JSON the Item holds."""

    def dump(self) -> dict[str, Any]:
        """The object as MLM JSON: aliases spelled, unknown (None) fields left out."""
        dumped: dict[str, Any] = _adapter(type(self)).dump_python(self, mode="json", by_alias=True, exclude_none=True)
        return dumped


_ADAPTERS: dict[type[Any], TypeAdapter[Any]] = {}


def _adapter(kind: type[Any]) -> TypeAdapter[Any]:
    """One pydantic adapter per field model (building one compiles its serializer)."""
    if kind not in _ADAPTERS:
        _ADAPTERS[kind] = TypeAdapter(kind)
    return _ADAPTERS[kind]


_CONFIG = ConfigDict(extra="forbid")


@dataclass(frozen=True, config=_CONFIG)
class Structure(_Field):
    """``input`` / ``result``: shape (-1 where dynamic), named dims and data type."""

    shape: Annotated[tuple[int, ...], Field(min_length=1)]
    dim_order: Annotated[tuple[str, ...], Field(min_length=1)]
    data_type: DataType

    @field_validator("shape")
    @classmethod
    def _shape(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if any(s < -1 for s in v):
            raise ValueError(f"shape sizes must be -1 (dynamic) or >= 0, got {list(v)}")
        return v

    @field_validator("dim_order")
    @classmethod
    def _dims(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        bad = [d for d in v if not DIM_PATTERN.match(d)]
        if bad or len(set(v)) != len(v):
            raise ValueError(f"dim names must be unique lowercase letters, '-' or '_', got {list(v)}")
        return v


@dataclass(frozen=True, config=_CONFIG)
class ValueScaling(_Field):
    """One value scaling step (per band, or one for all), as sources observe it and ``value_scaling`` spells it."""

    type: ScalingType
    mean: float | None = None
    stddev: float | None = None
    minimum: float | None = None
    maximum: float | None = None
    value: float | None = None


@dataclass(frozen=True, config=_CONFIG)
class ProcessingExpression(_Field):
    """A ``processing:expression``: how to run a pre- or post-processing step."""

    format: str
    expression: Any
    description: str | None = None


@dataclass(frozen=True, config=_CONFIG)
class ModelInput(_Field):
    """One ``mlm:input`` object: decided by :mod:`mlm_export._resolve` from the traced inputs and the data."""

    name: Annotated[str, Field(min_length=1)]
    #: Band names, one per channel of the channel dim (empty when the bands are not known).
    bands: tuple[str, ...]
    input: Structure
    description: str | None = None
    value_scaling: tuple[ValueScaling, ...] | None = None
    resize_type: ResizeType | None = None
    pre_processing_function: ProcessingExpression | None = None


@dataclass(frozen=True, config=_CONFIG)
class ClassObject(_Field):
    """A class of ``classification:classes``, as a datamodule, weights or the user name it.

    Classification v1.1.0 (the version MLM v1.5.2 references) requires ``description``: when none is known the
    class's name is written in its place, so the record keeps None (unknown) and the JSON stays valid.
    """

    value: int
    name: str
    description: str | None = None
    #: Six hex digits, no leading '#'.
    color_hint: str | None = Field(default=None, pattern=r"^[0-9A-Fa-f]{6}$")

    @model_serializer(mode="wrap")
    def _with_description(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        data.setdefault("description", self.name)
        return data


@dataclass(frozen=True, config=_CONFIG)
class ModelOutput(_Field):
    """One ``mlm:output`` object: decided by :mod:`mlm_export._resolve` from the traced outputs and the tasks."""

    name: Annotated[str, Field(min_length=1)]
    tasks: Annotated[tuple[Task, ...], Field(min_length=1)]
    result: Structure
    description: str | None = None
    classes: tuple[ClassObject, ...] | None = Field(default=None, serialization_alias=CLASSES)
    post_processing_function: ProcessingExpression | None = None


# -- Fields of checkpoint Items and run Collections (the builder's: item.py, collection.py) ----------------------
PROCESSING_DATETIME = "processing:datetime"
PROCESSING_LINEAGE = "processing:lineage"
STATS_ITEMS = "stats:items"
LIGHTNING_DATAMODULE = LIGHTNING_PREFIX + "datamodule"
PROCESSING_PREFIX = "processing:"
SCI_PREFIX = "sci:"
SCI_PUBLICATIONS = SCI_PREFIX + "publications"
ML_AOI_PREFIX = "ml-aoi:"
ML_AOI_SPLIT = ML_AOI_PREFIX + "split"

# fmt: off
__all__ = [
    "ACCELERATOR", "Accelerator", "accelerator", "ACCELERATOR_CONSTRAINED", "ACCELERATOR_COUNT",
    "ACCELERATOR_SUMMARY", "ARCHITECTURE", "ARTIFACT_EXPORT", "ARTIFACT_ONNX", "ARTIFACT_SAFETENSORS",
    "ARTIFACT_TORCH_SAVE", "ARTIFACT_TORCHSCRIPT", "ARTIFACT_TYPE", "BATCH_SIZE_SUGGESTION", "CLASSES",
    "CLASSIFICATION_SCHEMA", "ClassObject", "COMPILE_METHOD", "data_type", "DATA_TYPES", "DataType",
    "DIM_PATTERN", "ENTRYPOINT", "EO_BANDS", "EO_CENTER_WAVELENGTH", "EO_COMMON_NAME", "EO_SCHEMA",
    "FILE_CHECKSUM", "FILE_SCHEMA", "FILE_SIZE", "FRAMEWORK", "FRAMEWORK_PYTORCH", "FRAMEWORK_VERSION",
    "HYPERPARAMETER_KEY", "HYPERPARAMETERS", "INPUT", "is_data_type", "is_resize_type", "is_scaling_type",
    "is_task", "LIGHTNING_DATAMODULE", "LIGHTNING_EPOCH", "LIGHTNING_GLOBAL_STEP", "LIGHTNING_METRICS",
    "LIGHTNING_MODE", "LIGHTNING_MONITOR", "LIGHTNING_PREFIX", "LIGHTNING_SCORE", "LIGHTNING_WEIGHTS_ONLY",
    "MEDIA_GEOJSON", "MEDIA_HTML", "MEDIA_JSON", "MEDIA_MARKDOWN", "MEDIA_ONNX", "MEDIA_PT2", "MEDIA_PYTORCH",
    "MEDIA_SAFETENSORS", "MEDIA_TEXT", "MEDIA_TORCHSCRIPT", "MEDIA_YAML", "MEMORY_SIZE", "ML_AOI_PREFIX",
    "ML_AOI_SCHEMA", "ML_AOI_SPLIT", "MLM_SCHEMA", "MLM_VERSION", "ModelInput", "ModelOutput", "NAME",
    "NAME_PATTERN", "OUTPUT", "PREFIX", "PRETRAINED", "PRETRAINED_SOURCE", "PROCESSING_DATETIME", "PROCESSING_LINEAGE",
    "PROCESSING_PREFIX", "PROCESSING_SCHEMA", "PROCESSING_SOFTWARE", "ProcessingExpression", "RASTER_BANDS",
    "RESIZE_TYPES", "ResizeType", "ROLE_CHECKPOINT", "ROLE_CODE", "ROLE_DATA", "ROLE_INFERENCE_RUNTIME",
    "ROLE_METADATA", "ROLE_MODEL", "ROLE_SOURCE_CODE", "ROLE_TRAINING_RUNTIME", "ROLE_WEIGHTS", "SCALING_TYPES",
    "ScalingType", "SCI_CITATION", "SCI_DOI", "SCI_PREFIX", "SCI_PUBLICATIONS", "SCI_SCHEMA", "SEMVER",
    "STATS_ITEMS", "STATS_SCHEMA", "Structure", "Task", "TASK_NAMES", "TASKS", "TORCH_TO_DATA_TYPE",
    "TOTAL_PARAMETERS", "ValueScaling", "VERSION_SCHEMA",
]
# fmt: on
