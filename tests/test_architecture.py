"""The README's ARCHITECTURE section is the import graph: every module is placed in one layer, none imports upward."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "mlm_export"


def _layers() -> list[tuple[str, list[str]]]:
    """The layers as the README lists them, lowest first: ``| N. name | `mod`, `mod` | ... |`` table rows."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Architecture", 1)[1].split("\n## ", 1)[0]
    layers = []
    for line in section.splitlines():
        m = re.match(r"\|\s*(\d+)\.\s*([^|]+)\|([^|]+)\|", line)
        if m:
            layers.append((m.group(2).strip(), re.findall(r"`([\w./]+)`", m.group(3))))
    return layers


def _module_names() -> set[str]:
    names = set()
    for py in PACKAGE.rglob("*.py"):
        rel = py.relative_to(PACKAGE).with_suffix("")
        parts = [p for p in rel.parts if p != "__init__"]
        if parts and parts[-1] == "__main__":
            continue
        names.add(".".join(parts) or "mlm_export")
    return names


def _owner(module: str, layers: list[tuple[str, list[str]]]) -> int:
    """Index of the layer that lists ``module``, or of the package (``pkg/``) that holds it."""
    for i, (_, mods) in enumerate(layers):
        for entry in mods:
            if entry.endswith("/") and module.startswith(entry[:-1].replace("/", ".") + "."):
                return i
            if entry.endswith("/") and module == entry[:-1].replace("/", "."):
                return i
            if module == entry:
                return i
    raise AssertionError(f"module {module} is not placed in the README's Architecture section")


def _imports(module: str) -> set[str]:
    """Package modules that ``module`` imports (at import time or inside functions)."""
    path = PACKAGE.joinpath(*module.split(".")) if module != "mlm_export" else PACKAGE
    path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    tree = ast.parse(path.read_text())
    package = module.split(".") if path.name == "__init__.py" and module != "mlm_export" else module.split(".")[:-1]
    if module == "mlm_export":
        package = []
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                target = [*base, *(node.module.split(".") if node.module else [])]
            elif node.module and node.module.startswith("mlm_export"):
                target = node.module.split(".")[1:]
            else:
                continue
            for alias in node.names:
                candidate = ".".join([*target, alias.name])
                out.add(candidate if candidate in _MODULES else ".".join(target) or "mlm_export")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("mlm_export."):
                    out.add(alias.name.split(".", 1)[1])
    return {m for m in out if m in _MODULES and m != module}


_MODULES = _module_names()


def test_every_module_has_one_layer() -> None:
    layers = _layers()
    assert len(layers) >= 5, "the Architecture section lists its layers as a table: | 1. name | `module`, ... |"
    listed = [entry for _, mods in layers for entry in mods]
    assert len(listed) == len(set(listed)), "a module is listed in two layers"
    for module in _MODULES - {"mlm_export"}:
        _owner(module, layers)
    for entry in listed:
        name = entry.rstrip("/").replace("/", ".")
        assert name in _MODULES, f"the Architecture section names {entry}, which is not a module of the package"


@pytest.mark.parametrize("module", sorted(_MODULES - {"mlm_export"}))
def test_no_module_imports_a_higher_layer(module: str) -> None:
    layers = _layers()
    own = _owner(module, layers)
    for imported in _imports(module):
        other = _owner(imported, layers)
        assert other <= own, (
            f"{module} (layer {own + 1}, {layers[own][0]}) imports {imported} (layer {other + 1}, "
            f"{layers[other][0]}): move the code, or the module, so that facts flow one way"
        )
