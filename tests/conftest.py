"""Test set-up: schemas resolve offline from the bundled copy (or $MLM_EXPORT_SCHEMA_DIR); no network."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import referencing
import referencing.jsonschema

ROOT = Path(__file__).resolve().parents[1]

os.environ["MLM_EXPORT_OFFLINE"] = "1"


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never reach the network: any connection attempt fails at once."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise OSError("network access is disabled in tests")

    monkeypatch.setattr(socket.socket, "connect", refuse)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLM_EXPORT_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "schema-cache"))


#: Schemas of Items other people wrote (the official MLM examples: STAC 1.0.0, file v1.0.0, datacube v2.3.0).
FOREIGN_SCHEMAS = ROOT / "tests" / "fixtures" / "schemas"


@pytest.fixture
def foreign_schemas(monkeypatch: pytest.MonkeyPatch) -> Path:
    """Resolve the schemas of other people's Items offline too (as a user would with $MLM_EXPORT_SCHEMA_DIR)."""
    monkeypatch.setenv("MLM_EXPORT_SCHEMA_DIR", str(FOREIGN_SCHEMAS))
    return FOREIGN_SCHEMAS


def schema_dirs() -> list[Path]:
    """The override directories if any are set, then the schemas bundled with the package."""
    from mlm_export._validate import BUNDLED_DIR

    overrides = [Path(d) for d in os.environ.get("MLM_EXPORT_SCHEMA_DIR", "").split(os.pathsep) if d]
    return [*overrides, BUNDLED_DIR]


def _schema(url: str) -> Any:
    rel = url.split("#")[0].removeprefix("https://").removeprefix("http://")
    for root in schema_dirs():
        if (root / rel).is_file():
            return json.loads((root / rel).read_text())
    raise FileNotFoundError(f"no offline copy of {url} in {schema_dirs()}")


def plain_validate(data: dict[str, Any]) -> list[str]:
    """Validate with jsonschema alone (no mlm_export code): core schema + every declared extension."""

    def retrieve(uri: str) -> referencing.Resource[Any]:
        return referencing.jsonschema.DRAFT7.create_resource(_schema(uri))

    registry = referencing.Registry(retrieve=retrieve)
    kind = {"Feature": "item-spec/json-schema/item.json", "Collection": "collection-spec/json-schema/collection.json"}
    urls = [f"https://schemas.stacspec.org/v{data['stac_version']}/{kind[data['type']]}", *data["stac_extensions"]]
    errors = []
    for url in urls:
        schema = _schema(url)
        cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)
        errors += [f"{url}: {e.json_path}: {e.message}" for e in cls(schema, registry=registry).iter_errors(data)]
    return errors


@pytest.fixture
def assert_valid():
    """Check an Item with both the project's validator and a plain jsonschema run over the real schemas."""
    from mlm_export import validation_problems

    def check(item: Any) -> dict[str, Any]:
        data = item if isinstance(item, dict) else item.to_dict(include_self_link=False, transform_hrefs=False)
        assert validation_problems(data) == []
        assert plain_validate(data) == []
        return data

    return check


@pytest.fixture(scope="module")
def item_dict() -> dict[str, Any]:
    """A small segmentation Item (bands, classes, a fixed datetime), as a plain dict."""
    import datetime as dt

    import torch

    from mlm_export import export_mlm

    from .models import SmallUNet

    item = export_mlm(
        SmallUNet(in_channels=3, num_classes=2),
        example_input=torch.randn(1, 3, 16, 16),
        bands=["red", "green", "blue"],
        classes=["land", "water"],
        datetime=dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
    )
    return item.to_dict(include_self_link=False, transform_hrefs=False)


def run(capsys: pytest.CaptureFixture[str], *argv: Any) -> tuple[int, str, str]:
    """Run the CLI in-process with ``argv`` (each made a string); its exit code, stdout and stderr."""
    from mlm_export.cli import main

    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err
