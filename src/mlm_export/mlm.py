"""MLM v1.5.2 field names, vocabularies and typed field models (pydantic); the one place they are spelled.

pystac ships an MLM extension module pinned at MLM v1.4.0; this project writes v1.5.2, so it declares the
schema URI itself and shapes the fields with these models.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

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

ROLE_MODEL = "mlm:model"
ROLE_WEIGHTS = "mlm:weights"
ROLE_CHECKPOINT = "mlm:checkpoint"
ROLE_SOURCE_CODE = "mlm:source_code"
ROLE_INFERENCE_RUNTIME = "mlm:inference-runtime"
ROLE_TRAINING_RUNTIME = "mlm:training-runtime"

ARTIFACT_SAFETENSORS = "safetensors.torch.save_file"
ARTIFACT_EXPORT = "torch.export.save"
ARTIFACT_TORCH_SAVE = "torch.save"

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
TASK_NAMES: tuple[str, ...] = Task.__args__  # type: ignore[attr-defined]

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
DATA_TYPES: tuple[str, ...] = DataType.__args__  # type: ignore[attr-defined]
#: Torch dtypes with no raster data type; written as "other" and named in the input's description.
TORCH_TO_DATA_TYPE = {"complex64": "cfloat32", "complex128": "cfloat64"}

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

NAME_PATTERN = re.compile(r"^[a-zA-Z][a-zA-Z0-9_.\-\s]+[a-zA-Z0-9]$")
DIM_PATTERN = re.compile(r"^[a-z-_]+$")
HYPERPARAMETER_KEY = re.compile(r"^[0-9a-zA-Z_.-]+$")
SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)"
    r"(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$"
)


def data_type(torch_dtype: str) -> str:
    """MLM ``data_type`` for a torch dtype name ('float32' -> 'float32', 'bfloat16' -> 'other')."""
    name = TORCH_TO_DATA_TYPE.get(torch_dtype, torch_dtype)
    return name if name in DATA_TYPES else "other"


class _Field(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    def dump(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class Structure(_Field):
    """``input`` / ``result``: shape (-1 where dynamic), named dims and data type."""

    shape: list[int] = Field(min_length=1)
    dim_order: list[str] = Field(min_length=1)
    data_type: DataType

    @field_validator("shape")
    @classmethod
    def _shape(cls, v: list[int]) -> list[int]:
        if any(s < -1 for s in v):
            raise ValueError(f"shape sizes must be -1 (dynamic) or >= 0, got {v}")
        return v

    @field_validator("dim_order")
    @classmethod
    def _dims(cls, v: list[str]) -> list[str]:
        bad = [d for d in v if not DIM_PATTERN.match(d)]
        if bad or len(set(v)) != len(v):
            raise ValueError(f"dim names must be unique lowercase letters, '-' or '_', got {v}")
        return v


class ValueScaling(_Field):
    """One value scaling object (per band, or one for all)."""

    type: Literal["min-max", "z-score", "clip", "clip-min", "clip-max", "offset", "scale"]
    mean: float | None = None
    stddev: float | None = None
    minimum: float | None = None
    maximum: float | None = None
    value: float | None = None


class ProcessingExpression(_Field):
    """A ``processing:expression``: how to run a pre- or post-processing step."""

    format: str
    expression: Any
    description: str | None = None


class ModelInput(_Field):
    """One ``mlm:input`` object."""

    name: str = Field(min_length=1)
    bands: list[str] = Field(default_factory=list)
    input: Structure
    description: str | None = None
    value_scaling: list[ValueScaling] | None = None
    resize_type: ResizeType | None = None
    pre_processing_function: ProcessingExpression | None = None


class ClassObject(_Field):
    """A class of ``classification:classes`` (classification v1.1.0: value and description required)."""

    value: int
    name: str
    description: str
    color_hint: str | None = Field(default=None, pattern=r"^[0-9A-Fa-f]{6}$")


class ModelOutput(_Field):
    """One ``mlm:output`` object."""

    name: str = Field(min_length=1)
    tasks: list[Task] = Field(min_length=1)
    result: Structure
    description: str | None = None
    classes: list[ClassObject] | None = Field(default=None, alias="classification:classes")
    post_processing_function: ProcessingExpression | None = None


# -- Fields of checkpoint Items and run Collections (the builder's: item.py, collection.py) ----------------------
FILE_SIZE = "file:size"
FILE_CHECKSUM = "file:checksum"
PROCESSING_DATETIME = "processing:datetime"
PROCESSING_LINEAGE = "processing:lineage"
PROCESSING_SOFTWARE = "processing:software"
LIGHTNING_PREFIX = "lightning:"
LIGHTNING_EPOCH = LIGHTNING_PREFIX + "epoch"
LIGHTNING_GLOBAL_STEP = LIGHTNING_PREFIX + "global_step"
LIGHTNING_WEIGHTS_ONLY = LIGHTNING_PREFIX + "weights_only"
LIGHTNING_MONITOR = LIGHTNING_PREFIX + "monitor"
LIGHTNING_MODE = LIGHTNING_PREFIX + "mode"
LIGHTNING_SCORE = LIGHTNING_PREFIX + "score"
LIGHTNING_METRICS = LIGHTNING_PREFIX + "metrics"
STATS_ITEMS = "stats:items"
MEDIA_PYTORCH = "application/octet-stream; application=pytorch"
MEDIA_SAFETENSORS = "application/octet-stream; application=safetensors"
MEDIA_JSON = "application/json"
MEDIA_GEOJSON = "application/geo+json"
LIGHTNING_DATAMODULE = LIGHTNING_PREFIX + "datamodule"
PROCESSING_PREFIX = "processing:"
SCI_PREFIX = "sci:"
SCI_DOI = SCI_PREFIX + "doi"
SCI_CITATION = SCI_PREFIX + "citation"
SCI_PUBLICATIONS = SCI_PREFIX + "publications"
ML_AOI_PREFIX = "ml-aoi:"
ML_AOI_SPLIT = ML_AOI_PREFIX + "split"
EO_COMMON_NAME = "eo:common_name"
EO_CENTER_WAVELENGTH = "eo:center_wavelength"
MEDIA_TEXT = "text/plain"
MEDIA_HTML = "text/html"
