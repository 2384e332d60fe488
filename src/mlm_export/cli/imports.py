"""``--model mymodels:Net`` imports from the current directory, as ``python -m`` would.

The module the user names with ``--model``/``--factory`` is user code the user chose to run, so it is added to
the allowlist (``--allow-module``) and, when it lives in the current directory, made importable from there.
Only that one top-level name is looked up in the current directory: a checkpoint's ``_class_path`` can neither
reach other files there nor shadow an installed package, and stays checked against the allowlist.
"""

from __future__ import annotations

import argparse
import importlib.abc
import importlib.machinery
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType


class _CurrentDirectoryFinder(importlib.abc.MetaPathFinder):
    """Finds one top-level module (or package) in a directory, and nothing else."""

    def __init__(self, name: str, directory: Path) -> None:
        self.name = name
        self.directory = directory

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname != self.name:
            return None
        return importlib.machinery.PathFinder.find_spec(fullname, [str(self.directory)])


def module_of(target: str) -> str:
    """``pkg.mod:Name`` or ``pkg.mod.Name`` -> ``pkg.mod``."""
    return target.partition(":")[0] if ":" in target else target.rpartition(".")[0]


def in_directory(top: str, directory: Path) -> bool:
    """Whether ``top`` is a module file or a package folder in ``directory``."""
    return (directory / f"{top}.py").is_file() or (directory / top / "__init__.py").is_file()


@contextmanager
def user_modules_from_cwd(args: argparse.Namespace) -> Iterator[None]:
    """While a command runs: the module named by ``--model``/``--factory`` allowed, and importable from cwd."""
    target = getattr(args, "model", None) or getattr(args, "factory", None)
    module = module_of(target) if isinstance(target, str) else ""
    if not module:
        yield
        return
    if isinstance(getattr(args, "allow_module", None), list) and module not in args.allow_module:
        args.allow_module.append(module)
    top = module.split(".")[0]
    cwd = Path.cwd()
    finder = None
    if top not in sys.modules and in_directory(top, cwd):
        finder = _CurrentDirectoryFinder(top, cwd)
        sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        if finder is not None:
            sys.meta_path.remove(finder)
