"""mlm-export: a complete, schema-valid STAC Item with the MLM extension for every PyTorch model.

Facts flow one way: sources (model, datamodule) -> one builder -> one validator
(:func:`validate_item`) -> one atomic writer.
"""

from __future__ import annotations

from ._about import __version__
from ._api import export_mlm
from ._facts import ModelFacts, ParameterFacts, TensorFacts
from ._sources.model import inspect_model
from ._validate import SchemaStore, validation_problems
from ._validate import check as validate_item
from ._verify import Check, verify_item
from .errors import (
    InputRequiredError,
    InvalidOptionError,
    ItemValidationError,
    MLMExportError,
    MLMExportWarning,
    Problem,
    SchemaNotFoundError,
    TaskInferenceError,
    TraceError,
    UnsupportedOutputError,
)
from .mlm import MLM_SCHEMA, MLM_VERSION


def __getattr__(name: str) -> object:
    """Lightning integrations are imported on first use, so that the core needs torch alone."""
    if name == "MLMExportCallback":
        try:
            from ._callback import MLMExportCallback
        except ModuleNotFoundError as e:
            raise ImportError("MLMExportCallback needs Lightning: pip install 'mlm-export[lightning]'") from e
        return MLMExportCallback
    raise AttributeError(f"module 'mlm_export' has no attribute {name!r}")


__all__ = [
    "MLM_SCHEMA",
    "MLM_VERSION",
    "Check",
    "InputRequiredError",
    "InvalidOptionError",
    "ItemValidationError",
    "MLMExportCallback",
    "MLMExportError",
    "MLMExportWarning",
    "ModelFacts",
    "ParameterFacts",
    "Problem",
    "SchemaNotFoundError",
    "SchemaStore",
    "TaskInferenceError",
    "TensorFacts",
    "TraceError",
    "UnsupportedOutputError",
    "__version__",
    "export_mlm",
    "inspect_model",
    "validate_item",
    "validation_problems",
    "verify_item",
]
