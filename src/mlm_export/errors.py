"""Errors and warnings raised by mlm-export; each message says what went wrong and what to do."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


def first_line(error: BaseException, limit: int | None = None) -> str:
    """The first line of an error's message (its type's name when it has none), cut to ``limit`` characters."""
    lines = str(error).strip().splitlines()
    line = lines[0] if lines else type(error).__name__
    return line if limit is None or len(line) <= limit else line[: limit - 3] + "..."


class MLMExportError(Exception):
    """Base class of every error mlm-export raises."""


class MLMExportWarning(UserWarning):
    """Something was defaulted or skipped; the Item is still valid."""


class InputRequiredError(MLMExportError, ValueError):
    """No example input could be found for tracing the model."""

    def __init__(self, missing: Sequence[str] = ()) -> None:
        self.missing = tuple(missing)
        lacking = f" A batch cannot be built from the objects: missing {'; '.join(missing)}." if missing else ""
        super().__init__(
            f"mlm-export needs an example input to trace the model.{lacking} Pass example_input=<tensor, tuple, "
            "list or dict of tensors> (one batch, any batch size), datamodule=<a LightningDataModule whose "
            "dataloaders can give a batch or that states bands and patch_size>, or set example_input_array on "
            "the LightningModule."
        )


class TraceError(MLMExportError, RuntimeError):
    """The model could not run on the example batch."""

    def __init__(self, tried: str, cause: BaseException) -> None:
        self.tried = tried
        super().__init__(
            f"the model failed on the example batch {tried}: {type(cause).__name__}: {cause}. "
            "Pass example_input= with a batch the model accepts (the shape and dtype it is trained on)."
        )


class UnsupportedOutputError(MLMExportError, TypeError):
    """The model returned something that is not a tensor or a container of tensors."""


class TaskInferenceError(MLMExportError, ValueError):
    """The task of an output cannot be told from its shape alone."""


class InvalidOptionError(MLMExportError, ValueError):
    """An option passed to export_mlm (or the CLI) cannot be used."""


class SchemaNotFoundError(MLMExportError, FileNotFoundError):
    """A JSON Schema is neither in the override directory, nor cached, nor reachable."""


class SchemaURLRefusedError(SchemaNotFoundError, PermissionError):
    """A schema URL is not fetched: not ``https``, not on an allowed host, or not a plain path."""


@dataclass(frozen=True)
class Problem:
    """One schema or consistency violation, located by JSON path."""

    json_path: str
    message: str
    schema: str = ""

    def __str__(self) -> str:
        where = f" [{self.schema}]" if self.schema else ""
        return f"{self.json_path}: {self.message}{where}"


class ItemValidationError(MLMExportError, ValueError):
    """An Item or Collection fails the STAC/MLM JSON Schemas."""

    def __init__(self, problems: Sequence[Problem], what: str = "Item") -> None:
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"the {what} fails {len(self.problems)} schema check(s):\n{lines}")


class TorchScriptError(MLMExportError, RuntimeError):
    """A model cannot be written as TorchScript, or its TorchScript copy does not match it."""


class ItemChangedError(MLMExportError, FileExistsError):
    """The Item file changed on disk since it was opened for editing; saving would overwrite someone's work."""


class ItemFileError(MLMExportError, ValueError):
    """A file given to edit is not a STAC Item, or there is no file to save the edited Item to."""
