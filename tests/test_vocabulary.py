"""Field names, roles, media and artifact types are spelled once, in ``mlm.py``; its mappings are pure."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from mlm_export import mlm

PACKAGE = Path(mlm.__file__).parent
#: Strings that are vocabulary: every str constant of mlm.py with a prefix ('mlm:'), a media type, an artifact type.
VOCABULARY = {
    value
    for name, value in vars(mlm).items()
    if name.isupper()
    and isinstance(value, str)
    and ((":" in value or "/" in value) and "://" not in value or name.startswith("ARTIFACT_"))
}


def _literals(path: Path) -> list[tuple[int, str]]:
    """The vocabulary words a module spells as plain string literals (docstrings and f-strings left out)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
    }
    in_fstrings = {id(v) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr) for v in node.values}
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and node.value in VOCABULARY
        and id(node) not in docstrings | in_fstrings
    ]


def test_the_vocabulary_is_what_mlm_py_defines() -> None:
    assert {
        "mlm:input",
        "file:checksum",
        "classification:classes",
        "lightning:epoch",
        mlm.MEDIA_SAFETENSORS,
    } <= VOCABULARY


def test_no_module_spells_a_field_name_role_or_media_type_itself() -> None:
    spelled = {
        f"{path.relative_to(PACKAGE)}:{line}: {value!r}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.name != "mlm.py"
        for line, value in _literals(path)
    }
    assert not spelled, "use the constants of mlm.py instead:\n" + "\n".join(sorted(spelled))


@pytest.mark.parametrize(
    ("kind", "machine", "system", "expected"),
    [
        ("cuda", "x86_64", "Linux", "cuda"),
        ("CUDAAccelerator", "x86_64", "Linux", "cuda"),
        ("mps", "arm64", "Darwin", "macos-arm"),
        ("MPSAccelerator", "arm64", "Darwin", "macos-arm"),
        ("xla", "x86_64", "Linux", "xla"),
        ("cpu", "x86_64", "Linux", "amd64"),
        ("CPUAccelerator", "AMD64", "Windows", "amd64"),
        ("cpu", "arm64", "Darwin", "macos-arm"),
        ("cpu", "aarch64", "Linux", None),  # the enum has no plain cpu or arm64 value
    ],
)
def test_accelerator_for_devices_and_trainers(kind: str, machine: str, system: str, expected: str | None) -> None:
    assert mlm.accelerator(kind, machine, system) == expected


def test_trainer_and_device_agree_on_the_accelerator() -> None:
    from mlm_export._resolve import accelerator
    from mlm_export._sources.runtime import accelerator_from_trainer

    class CPUAccelerator:
        pass

    class Trainer:
        accelerator = CPUAccelerator()
        num_devices = 1

    assert accelerator_from_trainer(Trainer())[0] == accelerator("cpu")[0]


def test_data_types_outside_the_raster_vocabulary_are_other() -> None:
    assert mlm.data_type("float32") == "float32"
    assert mlm.data_type("complex64") == "cfloat32"
    assert mlm.data_type("bfloat16") == "other"
    assert mlm.data_type("bool") == "other"


def test_a_dtype_outside_the_vocabulary_is_other_and_named(assert_valid) -> None:
    import datetime as dt

    import torch

    from mlm_export import export_mlm

    model = torch.nn.Linear(4, 2).to(torch.bfloat16)
    item = export_mlm(
        model, example_input=torch.zeros(2, 4, dtype=torch.bfloat16), tasks="regression",
        datetime=dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
    )  # fmt: skip
    (inp,), (out,) = item.properties[mlm.INPUT], item.properties[mlm.OUTPUT]
    assert (inp["input"]["data_type"], out["result"]["data_type"]) == ("other", "other")
    assert "data type bfloat16" in inp["description"]
    assert out["description"] == "data type bfloat16"
    assert_valid(item)
