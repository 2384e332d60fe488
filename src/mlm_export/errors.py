"""Errors and warnings raised by mlm-export; each message says what went wrong and what to do."""

from __future__ import annotations

import pickle
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path

#: An option named in a message (see :func:`option`) and text meant for Python callers only.
_OPTION = re.compile(r"\u27e8option:(\w+)\|([^|\u27e9]*)\|([^\u27e9]*)\u27e9")
_PYTHON_ONLY = re.compile(r"\u27e8python:([^\u27e9]*)\u27e9")
#: How the running entry point spells options: None for Python (``name=``), else option name -> CLI flag.
_FLAGS: ContextVar[Mapping[str, str] | None] = ContextVar("mlm_export_flags", default=None)


def option(name: str, hint: str = "", cli_hint: str = "") -> str:
    """An option named in an error message: ``name=hint`` for Python callers, ``--flag cli_hint`` in the CLI.

    The message keeps the option's name (:attr:`MLMExportError.options`); it is rendered when the error is
    printed, so ``mlm-export convert`` says ``--input-shape N,C,H,W`` where ``export_mlm`` says ``example_input=``.
    """
    return f"\u27e8option:{name}|{hint}|{cli_hint}\u27e9"


def current_flags() -> Mapping[str, str] | None:
    """The flag spelling in force (:func:`flag_spelling`), handed to a child process that renders messages."""
    return _FLAGS.get()


def python_only(text: str) -> str:
    """Part of a message that only applies to Python callers (a remedy no command-line flag offers)."""
    return f"\u27e8python:{text}\u27e9"


@contextmanager
def flag_spelling(flags: Mapping[str, str]) -> Iterator[None]:
    """Render options as these command-line flags (option name -> flag text) while inside."""
    token = _FLAGS.set(flags)
    try:
        yield
    finally:
        _FLAGS.reset(token)


def render(text: str) -> str:
    """A message with its options spelled for the running entry point."""
    flags = _FLAGS.get()

    def spell(m: re.Match[str]) -> str:
        name, hint, cli_hint = m.groups()
        if flags is not None and name in flags:
            return f"{flags[name]} {cli_hint}" if cli_hint else flags[name]
        return f"{name}={hint}"

    text = _OPTION.sub(spell, text)
    return _PYTHON_ONLY.sub(lambda m: "" if flags is not None else m.group(1), text)


def first_line(error: BaseException, limit: int | None = None) -> str:
    """The first line of an error's message (its type's name when it has none), cut to ``limit`` characters."""
    lines = str(error).strip().splitlines()
    line = lines[0] if lines else type(error).__name__
    return line if limit is None or len(line) <= limit else line[: limit - 3] + "..."


class MLMExportError(Exception):
    """Base class of every error mlm-export raises."""

    def __str__(self) -> str:
        return render(super().__str__())

    @property
    def options(self) -> tuple[str, ...]:
        """The options (``export_mlm`` keyword names) the message tells the user to pass or change."""
        return tuple(m.group(1) for m in _OPTION.finditer(super().__str__()))


class UsageError(MLMExportError, ValueError):
    """A command-line argument cannot be used (a missing path, a directory for a file, an unknown value)."""


class NotJSONError(MLMExportError, ValueError):
    """A file that should hold a STAC Item or Collection is not JSON."""

    def __init__(self, path: Path, cause: ValueError) -> None:
        self.path = path
        super().__init__(f"{path} is not JSON ({first_line(cause, 160)}); name a STAC Item or Collection file")


class MLMExportWarning(UserWarning):
    """Something was defaulted or skipped; the Item is still valid."""


class InputRequiredError(MLMExportError, ValueError):
    """No example input could be found for tracing the model."""

    def __init__(self, missing: Sequence[str] = ()) -> None:
        self.missing = tuple(missing)
        lacking = f" A batch cannot be built from the objects: missing {'; '.join(missing)}." if missing else ""
        example = option(
            "example_input", "<tensor, tuple, list or dict of tensors> (one batch, any batch size)", "N,C,H,W"
        )
        others = python_only(
            ", datamodule=<a LightningDataModule whose dataloaders can give a batch or that states bands and "
            "patch_size>, or set example_input_array on the LightningModule"
        )
        super().__init__(f"mlm-export needs an example input to trace the model.{lacking} Pass {example}{others}.")


class TraceError(MLMExportError, RuntimeError):
    """The model could not run on the example batch."""

    def __init__(self, tried: str, cause: BaseException) -> None:
        self.tried = tried
        super().__init__(
            f"the model failed on the example batch {tried}: {type(cause).__name__}: {cause}. "
            f"Pass {option('example_input')} with a batch the model accepts (the shape and dtype it is trained on)."
        )


class UnsupportedOutputError(MLMExportError, TypeError):
    """The model returned something that is not a tensor or a container of tensors."""


class TaskInferenceError(MLMExportError, ValueError):
    """The task of an output cannot be told from its shape alone."""

    #: What could not be told, without the remedy (the callback's end-of-fit line says its own).
    what: str | None = None


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


class OutputExistsError(MLMExportError, FileExistsError):
    """A command would replace a file that exists; every command keeps it unless ``--overwrite`` is given."""

    def __init__(self, path: Path | str, what: str = "file") -> None:
        self.path = Path(path)
        super().__init__(f"{path} exists; pass --overwrite to replace the {what} (the one rule of every command)")


class ItemFileError(MLMExportError, ValueError):
    """A file given to edit is not a STAC Item, or there is no file to save the edited Item to."""


# ------------------------------------------------------------------ reading checkpoints and model files


class CheckpointError(MLMExportError, ValueError):
    """A file is not a checkpoint that can be read."""


class UntrustedCheckpointError(MLMExportError, pickle.UnpicklingError):
    """A checkpoint needs a type outside the allowlist to load: loading it could run code."""

    def __init__(self, path: Path, type_name: str) -> None:
        self.type_name = type_name
        super().__init__(
            f"{path.name} needs '{type_name}' to load, which is not on the allowlist of safe types; unpickling it "
            f"could run code. If you trust the file, pass {option('trust', 'True')}."
        )


class ArchitectureError(MLMExportError, ValueError):
    """The model a checkpoint holds cannot be rebuilt, or its weights do not fit."""


class ArchiveBombError(MLMExportError, ValueError):
    """A zip checkpoint declares more data than it can hold or than is safe to inflate."""


class InputTooLargeError(MLMExportError, ValueError):
    """A stranger's input is over one of the caps of ``mlm_export._limits`` (size, nesting, values, time)."""


class UntrustedModelError(MLMExportError, PermissionError):
    """A checkpoint (or ``--model``) names something that is not a model class of an allowed package."""

    def __init__(self, target: str, reason: str) -> None:
        from ._guard import MODEL_PACKAGES

        self.target = target
        super().__init__(
            f"refusing to build '{target}': {reason}. Only torch.nn.Module subclasses from "
            f"{', '.join(MODEL_PACKAGES)} are built from a checkpoint; pass {option('allow_modules', '(PKG,)', 'PKG')} "
            f"for your own package, or {option('trust', 'True')} if you trust the file"
        )


class DownloadRefusedError(MLMExportError, ConnectionRefusedError):
    """Building a model tried to reach the network, which is off unless asked for."""

    def __init__(self, address: object) -> None:
        super().__init__(
            f"building the model tried to connect to {address!r} (a download of pretrained weights?); mlm-export "
            f"works offline by default. Pass {option('download', 'True')} to allow it"
        )


class UnsafeArtifactError(MLMExportError, PermissionError):
    """A model file holds something loading it would run; refused unless trusted."""

    def __init__(self, path: Path, what: str) -> None:
        super().__init__(
            f"{path.name}: {what}; loading it could run code, so it was not loaded. Pass {option('trust', 'True')} "
            "only for a file you trust."
        )


class UnsafeHrefError(MLMExportError, PermissionError):
    """An href leads outside the Item's folder tree, or to something that is not a regular file."""


class ArtifactTimeoutError(MLMExportError, TimeoutError):
    """Exporting one model file took longer than its bound."""


class WriteFailedError(MLMExportError, OSError):
    """A file could not be written; the message names the path and the reason."""

    def __init__(self, path: Path | str, error: OSError) -> None:
        reason = error.strerror or str(error)
        super().__init__(
            error.errno,
            f"cannot write {path}: {reason}. Free space or fix permissions there and run again; "
            "files written before are kept",
        )
        self.path = str(path)

    def __str__(self) -> str:
        return render(str(self.args[1])) if len(self.args) > 1 else super().__str__()


# ------------------------------------------------------------------------------------------ catalogs


class CatalogError(MLMExportError):
    """Base class of the catalog's errors."""


class CatalogUnreachableError(CatalogError, ConnectionError):
    """The database or STAC API named by the catalog string cannot be reached."""


class CatalogFormatError(CatalogError, ValueError):
    """A catalog folder, or something a server answered, is not what this catalog expects."""


class QueryError(CatalogError, ValueError):
    """A search option or CQL2 filter cannot be used (malformed, or naming an unknown field)."""


class ConflictError(CatalogError, FileExistsError):
    """Items with these ids are in the catalog already and ``on_conflict="error"``."""

    def __init__(self, ids: Sequence[str]) -> None:
        self.ids = list(ids)
        shown = ", ".join(self.ids[:5]) + (f" and {len(self.ids) - 5} more" if len(self.ids) > 5 else "")
        super().__init__(
            f"{len(self.ids)} Item id(s) already in the catalog: {shown}. Nothing was added; pass "
            "on_conflict='skip' or 'update' (--on-conflict skip|update) to keep or replace them."
        )


class RefusedItemsError(CatalogError, ValueError):
    """Items failed validation; nothing of the call was added (unless ``skip_invalid``)."""

    def __init__(self, refused: Mapping[str, Sequence[Problem]]) -> None:
        self.refused = {k: list(v) for k, v in refused.items()}
        lines = [f"  - {item_id}: {problems[0]}" for item_id, problems in list(self.refused.items())[:10]]
        super().__init__(
            f"{len(self.refused)} Item(s) fail validation and nothing was added; fix them or pass skip_invalid=True "
            "(--skip-invalid) to add the others:\n" + "\n".join(lines)
        )


class ItemNotFoundError(CatalogError, KeyError):
    """No Item with this id is in the catalog."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "Item not found"


class IsolatedRunError(MLMExportError, ChildProcessError):
    """The child process that runs a stranger's model failed (see :mod:`mlm_export._isolate`)."""


class IsolatedMemoryError(IsolatedRunError, MemoryError):
    """A stranger's model needed more memory than the child process may use."""

    def __init__(self, what: str, limit: int) -> None:
        self.limit = limit
        super().__init__(
            f"{what} went over the memory limit of {limit / (1 << 30):g} GiB and was stopped; pass "
            f"{option('max_memory', 'BYTES', 'SIZE')} to allow more if you trust the file"
        )


class IsolatedTimeoutError(IsolatedRunError, TimeoutError):
    """A stranger's model ran longer than the child process may (wall clock, or CPU time)."""

    def __init__(self, what: str, seconds: float, *, cpu: bool = False) -> None:
        self.seconds = seconds
        limit = f"the CPU time limit ({seconds:g} s per core)" if cpu else f"the time limit of {seconds:g} s"
        super().__init__(
            f"{what} timed out: it ran past {limit} and was killed; pass {option('timeout', 'SECONDS', 'SECONDS')} "
            "to allow longer if you trust the file"
        )


class IsolatedCrashError(IsolatedRunError):
    """The child process running a stranger's model died (a signal, an exit) without an answer."""

    def __init__(self, what: str, how: str, last_line: str = "") -> None:
        said = f" (its last words: {last_line})" if last_line else ""
        super().__init__(f"{what} crashed: the child process running it died of {how}{said}")


# fmt: off
__all__ = [
    "ArchitectureError", "ArchiveBombError", "ArtifactTimeoutError", "CatalogError", "CatalogFormatError",
    "CatalogUnreachableError", "CheckpointError", "ConflictError", "DownloadRefusedError", "first_line",
    "InputRequiredError", "InputTooLargeError", "InvalidOptionError", "ItemChangedError", "ItemFileError",
    "ItemNotFoundError", "ItemValidationError", "MLMExportError", "MLMExportWarning", "NotJSONError", "Problem",
    "QueryError", "RefusedItemsError", "SchemaNotFoundError", "SchemaURLRefusedError", "TaskInferenceError",
    "TorchScriptError", "TraceError", "UnsafeArtifactError", "UnsafeHrefError", "UnsupportedOutputError",
    "UntrustedCheckpointError", "UntrustedModelError", "UsageError", "WriteFailedError",
    "IsolatedRunError", "IsolatedMemoryError", "IsolatedTimeoutError", "IsolatedCrashError",
]
# fmt: on
__all__ += ["OutputExistsError"]
