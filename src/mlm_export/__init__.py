"""mlm-export: a complete, schema-valid STAC Item with the MLM extension for every PyTorch model.

Facts flow one way: sources (model, datamodule) -> one builder -> one validator
(:func:`validate_item`) -> one atomic writer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

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

if TYPE_CHECKING:
    from ._about import __version__
    from ._api import export_mlm
    from ._callback import MLMExportCallback
    from ._facts import ModelFacts, ParameterFacts, TensorFacts
    from ._sources.model import inspect_model
    from ._validate import SchemaStore, validation_problems
    from ._validate import check as validate_item
    from ._verify import Check, verify_item

#: Public names whose modules import torch (or Lightning), imported on first use: ``import mlm_export`` and the
#: command line's commands that touch no model start without torch. Name -> (module, attribute).
_LAZY: dict[str, tuple[str, str]] = {
    "export_mlm": ("._api", "export_mlm"),
    "ModelFacts": ("._facts", "ModelFacts"),
    "ParameterFacts": ("._facts", "ParameterFacts"),
    "TensorFacts": ("._facts", "TensorFacts"),
    "inspect_model": ("._sources.model", "inspect_model"),
    "SchemaStore": ("._validate", "SchemaStore"),
    "validation_problems": ("._validate", "validation_problems"),
    "validate_item": ("._validate", "check"),
    "Check": ("._verify", "Check"),
    "verify_item": ("._verify", "verify_item"),
}


def __getattr__(name: str) -> object:
    """Torch and Lightning integrations are imported on first use, so that ``import mlm_export`` stays light."""
    import importlib

    if name == "MLMExportCallback":
        try:
            from ._callback import MLMExportCallback
        except ModuleNotFoundError as e:
            raise ImportError("MLMExportCallback needs Lightning: pip install 'mlm-export[lightning]'") from e
        return MLMExportCallback
    if name == "__version__":  # read from the package's metadata on first use
        from ._about import package_version

        return package_version()
    if name in _LAZY:
        module, attribute = _LAZY[name]
        value = getattr(importlib.import_module(module, __name__), attribute)
        globals()[name] = value
        return value
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
