"""One place that turns any error into one line on stderr and an exit code, with options spelled as flags."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping

from ..errors import MLMExportError, UsageError, first_line

#: Exit codes of every command.
OK, FAILED, USAGE, INTERRUPTED = 0, 1, 2, 130

#: ``export_mlm`` option names -> the command line's flags (rendered into error messages, see ``errors.option``).
FLAGS: Mapping[str, str] = {
    "example_input": "--input-shape",
    "tasks": "--tasks",
    "bands": "--bands",
    "classes": "--classes",
    "name": "--name",
    "license": "--license",
    "model": "--model",
    "init_args": "--init-args",
    "weights": "--weights",
    "trust": "--trust-checkpoint",
    "allow_modules": "--allow-module",
    "download": "--download",
    "profile": "--profile",
    "base_url": "--base-url",
    "primary": "--primary",
    "artifacts": "--artifacts",
    "overwrite": "--overwrite",
    "allow_outside": "--allow-outside",
    "on_conflict": "--on-conflict",
    "skip_invalid": "--skip-invalid",
    "doi": "--doi",
    "version": "--item-version",
    "citation": "--citation",
    "architecture": "--architecture",
    "max_memory": "--max-memory",
    "timeout": "--timeout",
}

#: Set to 1 to get the traceback of an unexpected error instead of its one line.
DEBUG_ENV = "MLM_EXPORT_DEBUG"


def describe(error: BaseException) -> tuple[str, int]:
    """The one line to print for an error that ended a command, and the exit code it ends with."""
    if isinstance(error, KeyboardInterrupt):
        return "interrupted", INTERRUPTED
    if isinstance(error, UsageError):  # commands turn their flags' InvalidOptionErrors into UsageErrors
        return first_line(error), USAGE
    if isinstance(error, MLMExportError):
        return first_line(error), FAILED
    if isinstance(error, json.JSONDecodeError):
        return f"not JSON: {first_line(error)}", FAILED
    # paths named on the command line are checked before any work (cli/_paths.py: usage errors, exit 2); a
    # file missing or a directory met later is a failure of the run, not of its arguments
    if isinstance(error, IsADirectoryError):
        return f"{error.filename} is a directory; name a file", FAILED
    if isinstance(error, FileNotFoundError):
        return f"no such file or directory: {error.filename}", FAILED
    if isinstance(error, OSError):
        where = f"{error.filename}: " if error.filename else ""
        return f"{where}{error.strerror or first_line(error)}", FAILED
    hint = f" (set {DEBUG_ENV}=1 for the traceback)"
    return f"unexpected {type(error).__name__}: {first_line(error, 300)}{hint}", FAILED


def debugging() -> bool:
    """Whether unexpected errors should propagate with their traceback."""
    return os.environ.get(DEBUG_ENV, "") not in ("", "0")
