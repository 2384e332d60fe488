"""Items from the wild, offline: every official MLM example of every release, and Items pystac has rewritten,
validate with the bundled schemas alone (no $MLM_EXPORT_SCHEMA_DIR, no cache, no network)."""

from __future__ import annotations

import glob
import json
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pystac
import pytest

from mlm_export import SchemaStore, validate_item, validation_problems
from mlm_export._schema_cache import quick_check
from mlm_export._validate import BUNDLED_DIR, WRITTEN_AS, schema_path, schema_urls
from mlm_export.cli import main
from mlm_export.errors import ItemValidationError, MLMExportWarning

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
#: The examples of MLM v1.0.0 to v1.5.1 (a file appears under the first release that has its exact content),
#: then the v1.5.2 examples.
EXAMPLES = sorted((FIXTURES / "mlm_examples_releases").glob("v*/*.json")) + sorted(
    (FIXTURES / "mlm_examples").glob("item_*.json")
)
#: Mistakes in the examples themselves, fixed in the next release: the rules a schema cannot state find them.
KNOWN_MISTAKES = {
    "v1.2.0/item_bands_expression.json": ["lists 4 bands but its 'channel' dim is 13"],
    "v1.3.0/item_bands_expression.json": ["lists 4 bands but its 'channel' dim is 13"],
}
CLASSIFICATION_V2 = "https://stac-extensions.github.io/classification/v2.0.0/schema.json"
CLASSIFICATION_V11 = "https://stac-extensions.github.io/classification/v1.1.0/schema.json"


@pytest.fixture
def bundled_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SchemaStore:
    """The schemas shipped in the package, nothing else: no override folder, an empty cache, offline."""
    monkeypatch.delenv("MLM_EXPORT_SCHEMA_DIR", raising=False)
    monkeypatch.setenv("MLM_EXPORT_OFFLINE", "1")
    monkeypatch.setenv("MLM_EXPORT_CACHE_DIR", str(tmp_path / "empty-cache"))
    return SchemaStore(override_dirs=[], cache_dir=tmp_path / "empty-cache", offline=True)


def _key(path: Path) -> str:
    return f"{path.parent.name}/{path.name}"


def test_the_fixtures_hold_every_release_of_the_examples() -> None:
    releases = {p.parent.name for p in EXAMPLES if p.parent.name.startswith("v")}
    assert releases == {"v1.0.0", "v1.1.0", "v1.2.0", "v1.3.0", "v1.4.0", "v1.5.0", "v1.5.1"}
    assert len(EXAMPLES) == 63  # 54 distinct older files + the nine v1.5.2 Items (its Collection equals v1.5.0's)
    declared = {u for p in EXAMPLES for u in json.loads(p.read_text())["stac_extensions"]}
    assert any("crim-ca.github.io/mlm-extension/v1.0.0" in u for u in declared)  # the MLM schema's first home


@pytest.mark.parametrize("path", EXAMPLES, ids=_key)
def test_each_official_example_validates_offline_with_the_bundled_schemas(path: Path, bundled_only) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    for url in schema_urls(data):  # every schema it names, and all they reference, ships in the package
        assert (BUNDLED_DIR / schema_path(url)).is_file(), url
    problems = validation_problems(data, bundled_only)
    assert [p.message for p in problems] == KNOWN_MISTAKES.get(_key(path), [])
    if not problems:
        quick_check(data)  # the crawled validators (every $ref loaded up front) find every schema too


@pytest.mark.parametrize("path", [p for p in EXAMPLES if p.name.startswith("item_")], ids=_key)
def test_each_official_example_read_by_pystac_validates_offline(path: Path, bundled_only) -> None:
    item = pystac.Item.from_file(str(path))  # migrates: file v1.0.0 -> v2.1.0 and the like
    problems = validation_problems(item, bundled_only)
    assert [p.message for p in problems] == KNOWN_MISTAKES.get(_key(path), [])


@pytest.mark.parametrize("release", sorted({p.parent.name for p in EXAMPLES}))
def test_publish_takes_the_official_examples_offline(
    release: str, bundled_only, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``publish`` validates before it adds: each release's example Items go into a catalog with no network."""
    items = [p for p in EXAMPLES if p.parent.name == release and p.name.startswith("item_")]
    valid = [p for p in items if _key(p) not in KNOWN_MISTAKES]
    assert valid
    for path in valid:  # one catalog each: several examples share an id
        code = main(["publish", str(path), "--to", str(tmp_path / path.stem)])
        out, err = capsys.readouterr()
        assert code == 0, err
        assert "1 added" in out and "SchemaNotFound" not in err


def test_an_item_pystac_rewrote_to_classification_v2_is_checked_as_written_and_says_so(
    item_dict: dict[str, Any], bundled_only, tmp_path: Path
) -> None:
    assert CLASSIFICATION_V11 in item_dict["stac_extensions"]
    path = tmp_path / "item.json"
    path.write_text(json.dumps(item_dict))
    item = pystac.Item.from_file(str(path))
    assert CLASSIFICATION_V2 in item.stac_extensions  # pystac names a schema nobody wrote against
    assert not (BUNDLED_DIR / schema_path(CLASSIFICATION_V2)).exists()
    with pytest.warns(MLMExportWarning, match=r"classification/v2\.0\.0.* checked against .*classification/v1\.1\.0"):
        validate_item(item)  # valid: no SchemaNotFoundError
    with pytest.warns(MLMExportWarning, match="the version the Item was written with"):
        assert validation_problems(item) == []
    with pytest.warns(MLMExportWarning):
        quick_check(item.to_dict(include_self_link=False, transform_hrefs=False))


def test_the_substitute_schema_still_finds_mistakes(item_dict: dict[str, Any], bundled_only) -> None:
    """Checked against v1.1.0, a colour that is no colour is still an error (not waved through)."""
    data = json.loads(json.dumps(item_dict))
    data["stac_extensions"] = [CLASSIFICATION_V2 if u == CLASSIFICATION_V11 else u for u in data["stac_extensions"]]
    data["properties"]["classification:classes"] = [
        {"value": 0, "name": "land", "description": "land", "color_hint": "not-a-colour"}
    ]
    with (
        pytest.warns(MLMExportWarning),
        pytest.raises(ItemValidationError, match=r"'not-a-colour' does not match.*classification/v1.1.0"),
    ):
        validate_item(data)


def test_an_override_folder_with_the_v2_schema_is_used_instead(item_dict: dict[str, Any], tmp_path: Path) -> None:
    target = tmp_path / "schemas" / schema_path(CLASSIFICATION_V2)
    target.parent.mkdir(parents=True)
    target.write_text(json.dumps({"$schema": "http://json-schema.org/draft-07/schema#", "required": ["nope"]}))
    data = dict(item_dict, stac_extensions=[*item_dict["stac_extensions"], CLASSIFICATION_V2])
    store = SchemaStore(override_dirs=[tmp_path / "schemas"], cache_dir=tmp_path / "cache", offline=True)
    assert [p.message for p in validation_problems(data, store)] == ["'nope' is a required property"]
    assert set(WRITTEN_AS) == {CLASSIFICATION_V2}


def test_cli_validate_of_a_pystac_saved_item_says_which_schema_it_used(item_dict: dict[str, Any], tmp_path: Path):
    data = json.loads(json.dumps(item_dict))
    for asset in data["assets"].values():  # published files: not looked for beside the Item
        asset["href"] = "https://example.com/models/" + asset["href"].removeprefix("./")
    source = tmp_path / "written.json"
    source.write_text(json.dumps(data))
    item = pystac.Item.from_file(str(source))
    saved = tmp_path / "saved.json"
    saved.write_text(json.dumps(item.to_dict(include_self_link=False, transform_hrefs=False)))
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "MLM_EXPORT_OFFLINE": "1", "PYTHONPATH": str(ROOT / "src")}
    run = subprocess.run(
        [sys.executable, "-m", "mlm_export", "validate", str(saved), "--json"],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    result = json.loads(run.stdout)["results"][0]
    assert result["valid"] is True
    assert "checked against https://stac-extensions.github.io/classification/v1.1.0" in result["notes"][0]
    assert "checked against" in run.stderr


def test_package_data_covers_every_bundled_schema() -> None:
    """A wheel ships what the tests use: every file under schemas/ matches the package-data globs."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = config["tool"]["setuptools"]["package-data"]["mlm_export"]
    package = ROOT / "src" / "mlm_export"
    shipped = {f for pattern in patterns for f in glob.glob(pattern, root_dir=package, recursive=True)}
    bundled = {str(p.relative_to(package)) for p in BUNDLED_DIR.rglob("*") if p.is_file()}
    assert bundled <= shipped, sorted(bundled - shipped)
    assert len([f for f in bundled if f.endswith(".json")]) >= 70
