"""``--model mymodels:Net`` imports from the current directory, as ``python -m`` would.

A module in the current directory that the user names with ``--model``/``--factory`` is user code the user
chose to run, so it is added to the allowlist (as ``--allow-module`` would) and imported from there first (as
``python -m`` would); an installed package outside the allowlist still needs ``--allow-module``. The modules it
imports from that directory are found there too, but only after every installed package: nothing in the
directory can shadow torch, torchgeo or another allowlisted package, and a checkpoint's ``_class_path`` stays
checked against the allowlist (which names no other module of the directory).
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

from .._guard import MODEL_PACKAGES


class _DirectoryFinder(importlib.abc.MetaPathFinder):
    """Finds top-level modules (or packages) in one directory: only ``name``, or any when ``name`` is None."""

    def __init__(self, directory: Path, name: str | None = None, never: frozenset[str] = frozenset()) -> None:
        self.name = name
        self.directory = directory
        #: Top-level names never taken from the directory (the allowlisted model packages).
        self.never = never

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,  # noqa: ARG002 - finder protocol
    ) -> ModuleSpec | None:
        if path is not None or (self.name is not None and fullname != self.name) or fullname in self.never:
            return None  # submodules are found through their package's __path__
        return importlib.machinery.PathFinder.find_spec(fullname, [str(self.directory)])


def module_of(target: str) -> str:
    """``pkg.mod:Name`` or ``pkg.mod.Name`` -> ``pkg.mod``."""
    return target.partition(":")[0] if ":" in target else target.rpartition(".")[0]


def in_directory(top: str, directory: Path) -> bool:
    """Whether ``top`` is a module file or a package folder in ``directory``."""
    return (directory / f"{top}.py").is_file() or (directory / top / "__init__.py").is_file()


@contextmanager
def user_modules_from_cwd(args: argparse.Namespace) -> Iterator[None]:
    """While a command runs: a module of the cwd named by ``--model``/``--factory`` allowed and importable."""
    target = getattr(args, "model", None) or getattr(args, "factory", None)
    module = module_of(target) if isinstance(target, str) else ""
    if not module:
        yield
        return
    top = module.split(".")[0]
    cwd = Path.cwd()
    if not in_directory(top, cwd):
        yield
        return
    if isinstance(getattr(args, "allow_module", None), list) and module not in args.allow_module:
        args.allow_module.append(module)
    if top in sys.modules:
        yield
        return
    # the catch-all comes after every installed package, and never supplies an allowlisted one: a checkpoint's
    # weights enum or class names a package such as torchgeo, which must not come from the directory
    first, last = _DirectoryFinder(cwd, top), _DirectoryFinder(cwd, never=frozenset(MODEL_PACKAGES))
    sys.meta_path.insert(0, first)
    sys.meta_path.append(last)
    try:
        yield
    finally:
        sys.meta_path.remove(first)
        sys.meta_path.remove(last)
