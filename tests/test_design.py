"""The design, checked on the code: from ``item.py`` every Item field's source is one hop away.

Read from the builder's own source (not from a list kept here): each property it writes takes its value from an
attribute of the record it builds from (``ItemPlan``, ``CheckpointFacts``) whose ``#:`` comment names that field
and where its value comes from, or from a function named after the field, or is a fixed vocabulary value of
``mlm.py``. A built Item holds no property that none of these wrote, except those of the two documented bags
(``ItemPlan.extra_properties``, ``CheckpointFacts.kept``).
"""

from __future__ import annotations

import ast
import dataclasses
import datetime as dt
import inspect
import io
import tokenize
from pathlib import Path
from typing import Any

import pytest
import torch

from mlm_export import _item as builder
from mlm_export import mlm
from mlm_export._item import CheckpointFacts, ItemPlan, RunLink, build_item
from mlm_export._pipeline import ExportOptions, gather, plan

from .models import SmallUNet

RECORDS = {"plan": ItemPlan, "facts": CheckpointFacts}
WHEN = {"datetime": dt.datetime(2024, 6, 1, tzinfo=dt.UTC)}


def attribute_docs(cls: type) -> dict[str, str]:
    """The ``#:`` comments above each attribute of a dataclass, read from its source."""
    docs: dict[str, str] = {}
    pending: list[str] = []
    for tok in tokenize.generate_tokens(io.StringIO(inspect.getsource(cls)).readline):
        if tok.type == tokenize.COMMENT and tok.string.startswith("#:"):
            pending.append(tok.string[2:].strip())
        elif tok.type == tokenize.NAME and pending and tok.line.strip().startswith(f"{tok.string}:"):
            docs[tok.string] = " ".join(pending)
            pending = []
    return docs


def _key(node: ast.expr) -> str | None:
    """The field name a subscript or dict key spells: a literal, or a constant of ``mlm``."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "mlm":
        value = getattr(mlm, node.attr)
        return value if isinstance(value, str) else None
    return None


def _is_properties(node: ast.expr) -> bool:
    return (isinstance(node, ast.Name) and node.id == "props") or (
        isinstance(node, ast.Attribute) and node.attr == "properties"
    )


def written_properties() -> dict[str, list[ast.expr]]:
    """Every property ``item.py`` writes under a fixed name, with the expressions it writes."""
    written: dict[str, list[ast.expr]] = {}
    for node in ast.walk(ast.parse(inspect.getsource(builder))):
        targets = (
            node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        )
        value = getattr(node, "value", None)
        for target in targets:
            if isinstance(target, ast.Subscript) and _is_properties(target.value):
                key = _key(target.slice)
                assert key is not None, f"item.py line {node.lineno}: a property name that is not a constant"
                written.setdefault(key, []).append(value)
            elif isinstance(target, ast.Name) and target.id == "props" and isinstance(value, ast.Dict):
                for k, v in zip(value.keys, value.values, strict=True):
                    key = _key(k) if k is not None else None
                    assert key is not None, f"item.py line {node.lineno}: a property name that is not a constant"
                    written.setdefault(key, []).append(v)
    return written


def _sources(value: ast.expr) -> tuple[set[tuple[str, str]], set[str], bool]:
    """The record attributes (``plan.x``, ``facts.x``) and functions an expression reads, and whether it is fixed
    (only literals and ``mlm`` constants)."""
    attributes, calls, fixed = set(), set(), True
    for node in ast.walk(value):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if node.value.id in RECORDS:
                attributes.add((node.value.id, node.attr))
                fixed = False
            elif node.value.id != "mlm":
                fixed = False
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            calls.add(node.func.id)
            fixed = False
        elif isinstance(node, ast.Name) and node.id not in ("mlm", "None", "True", "False"):
            fixed = fixed and node.id in calls
    return attributes, calls, fixed


def _local(field: str) -> str:
    return field.split(":", 1)[-1]


def test_every_property_the_builder_writes_is_one_hop_from_its_source():
    docs = {name: attribute_docs(cls) for name, cls in RECORDS.items()}
    written = written_properties()
    assert {mlm.NAME, mlm.INPUT, mlm.LIGHTNING_EPOCH, mlm.PROCESSING_LINEAGE} <= set(written)  # the reader works
    for field, values in written.items():
        for value in values:
            attributes, calls, fixed = _sources(value)
            named_function = any(call.strip("_") in (_local(field), _local(field) + "s") for call in calls)
            documented = [(record, attr) for record, attr in attributes if f"``{field}``" in docs[record].get(attr, "")]
            assert documented or named_function or fixed, (
                f"{field} = {ast.unparse(value)}: no attribute documented as its source, no function named after it"
            )
            for record, attr in documented:
                doc = docs[record][attr]
                assert len(doc.split(f"``{field}``", 1)[1].strip(": ")) > 10, f"{record}.{attr}: names no source"


def test_every_attribute_of_the_records_says_what_it_becomes():
    for cls in RECORDS.values():
        docs = attribute_docs(cls)
        missing = [f.name for f in dataclasses.fields(cls) if f.name not in docs]
        assert not missing, f"{cls.__name__}: attributes without a #: comment: {missing}"


def _full_plan() -> ItemPlan:
    """A plan made by the pipeline from a small segmenter, with every optional attribute then set."""
    model = SmallUNet(in_channels=2, num_classes=2).eval()
    options = ExportOptions(tasks="segmentation", bands=["red", "nir"], classes=["land", "sea"], **WHEN)
    made = plan(model, gather(model, None, torch.randn(2, 2, 16, 16), options), options)
    return dataclasses.replace(
        made, accelerator="cuda", accelerator_summary="A GPU", accelerator_count=2, accelerator_constrained=True,
        description="A net.", pretrained=True, pretrained_source="a dataset", batch_size_suggestion=4,
        hyperparameters={"lr": 0.1}, license="MIT", bbox=(0.0, 0.0, 1.0, 1.0), created=dt.datetime(2024, 3, 1),
        start_datetime=dt.datetime(2024, 1, 1), end_datetime=dt.datetime(2024, 2, 1),
        extra_properties={"processing:lineage": "made", "sci:doi": "10.5281/zenodo.1234567"},
    )  # fmt: skip


def test_a_built_checkpoint_item_holds_only_fields_with_a_source(tmp_path: Path, assert_valid: Any):
    """Built from every input at once, the Item holds the fields found in the source and those of the bags."""
    ckpt = tmp_path / "epoch=1-step=9.ckpt"
    ckpt.write_bytes(b"weights")
    facts = CheckpointFacts(
        path=ckpt, size=7, checksum="1220" + "1" * 64, saved=dt.datetime(2024, 3, 2, tzinfo=dt.UTC), lineage="saved",
        title="Lightning checkpoint", epoch=1, global_step=9, weights_only=False, monitor="loss", mode="min",
        score=0.5, metrics={"loss": 0.5}, kept={"lightning:note": "kept"}, compile_method="jit",
        run=RunLink("run", "Net run"),
    )  # fmt: skip
    item_plan = _full_plan()
    data = assert_valid(build_item(item_plan, facts))
    bags = set(item_plan.extra_properties) | set(facts.kept)
    unexplained = set(data["properties"]) - set(written_properties()) - bags - {"datetime"}
    assert not unexplained
    assert data["id"] == f"{item_plan.id}-epoch=1-step=9"
    assert data["collection"] == "run"
    assert data["assets"]["model"]["href"] == "./epoch=1-step=9.ckpt"
    assert data["assets"]["model"]["mlm:compile_method"] == "jit"


@pytest.mark.parametrize(
    ("model_id", "stem", "expected"),
    [
        ("unet", "epoch=3-step=40", "unet-epoch=3-step=40"),
        ("unet", "unet", "unet"),  # the file is named after the model: not unet-unet
        ("unet", "unet-epoch=3", "unet-unet-epoch=3"),  # not "unet-epoch=3": a file "epoch=3" would take it
        ("my-net", "My Net", "my-net"),
        ("unet", "last", "unet-last"),
    ],
)
def test_a_checkpoint_item_id_names_the_model_once(model_id: str, stem: str, expected: str):
    assert builder.checkpoint_item_id(model_id, Path(f"/runs/{stem}.ckpt")) == expected
