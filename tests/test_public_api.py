"""The public API is small and stated: ``__all__`` of the package and of its few public modules; the rest is private."""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import pytest

import mlm_export

ROOT = Path(__file__).resolve().parents[1]
#: Modules users import (besides the package itself); every other module's name starts with ``_``.
PUBLIC_MODULES = {"mlm_export.errors", "mlm_export.mlm", "mlm_export.catalog", "mlm_export.cli", "mlm_export.demo"}


def _all_modules() -> list[str]:
    names = []
    for info in pkgutil.walk_packages(mlm_export.__path__, "mlm_export."):
        if info.name.split(".")[-1] != "__main__":
            names.append(info.name)
    return names


def test_every_name_in_all_resolves() -> None:
    for module_name in ["mlm_export", *sorted(PUBLIC_MODULES)]:
        module = importlib.import_module(module_name)
        names = getattr(module, "__all__", None)
        assert names, f"{module_name} states no __all__"
        missing = [n for n in names if not hasattr(module, n)]
        assert not missing, f"{module_name}.__all__ names {missing}, which it does not define"


def test_modules_outside_the_public_api_are_private() -> None:
    public = {"mlm_export", *PUBLIC_MODULES}
    leaked = [
        name
        for name in _all_modules()
        if name not in public and not any(part.startswith("_") for part in name.split(".")[1:])
    ]
    assert not leaked, f"modules neither public nor _-private: {leaked}"


def test_the_package_exports_the_entry_points_and_errors() -> None:
    for name in ("export_mlm", "MLMExportCallback", "validate_item", "verify_item", "MLMExportError", "__version__"):
        assert name in mlm_export.__all__
    from mlm_export import errors

    classes = [n for n, v in vars(errors).items() if isinstance(v, type) and issubclass(v, Exception | Warning)]
    assert set(classes) <= set(errors.__all__), "every error class is listed in errors.__all__"


def _private_imports_of_public_names(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.ImportFrom) or not node.module:
            continue
        # the command line's modules import the package relatively: ``from .._api import export_mlm``
        name = node.module if node.level == 0 else "mlm_export." + node.module if node.level == 2 else ""
        if name.startswith("mlm_export._"):
            module = importlib.import_module(name)
            for alias in node.names:
                obj = getattr(module, alias.name, None)
                if alias.name in mlm_export.__all__ and obj is getattr(mlm_export, alias.name, object()):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} {name}.{alias.name}")
    return found


@pytest.mark.parametrize("folder", ["tests", "benchmarks", "examples", "src/mlm_export/cli"])
def test_tests_benchmarks_examples_and_cli_use_the_public_api_where_one_exists(folder: str) -> None:
    found = [hit for path in sorted((ROOT / folder).rglob("*.py")) for hit in _private_imports_of_public_names(path)]
    assert not found, "import these from mlm_export instead:\n" + "\n".join(found)
