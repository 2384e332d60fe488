"""Air-gapped by default: bundled schemas, and schema URLs that can neither escape the cache nor reach odd hosts."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mlm_export import SchemaStore, validation_problems
from mlm_export._validate import BUNDLED_DIR, schema_path
from mlm_export.errors import SchemaNotFoundError, SchemaURLRefusedError

SRC = Path(__file__).resolve().parents[1] / "src"


def _closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _air_gapped_env(home: Path) -> dict[str, str]:
    """An empty HOME, no mlm-export variables, and every proxy pointing at a closed port."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLM_EXPORT_") and "proxy" not in k.lower()}
    proxy = f"http://127.0.0.1:{_closed_port()}"
    for name in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        env[name] = proxy
    env.pop("XDG_CACHE_HOME", None)
    env["HOME"] = str(home)
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")])
    return env


SCRIPT = textwrap.dedent(
    """
    import datetime as dt, sys, warnings
    from pathlib import Path
    import torch
    from torch import nn
    import lightning as L
    from torch.utils.data import DataLoader, TensorDataset
    from mlm_export import MLMExportCallback, export_mlm

    out = Path(sys.argv[1])
    when = dt.datetime(2024, 6, 1, tzinfo=dt.UTC)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    export_mlm(net, out_dir=out / "direct", example_input=torch.zeros(1, 3, 16, 16), tasks="classification",
               datetime=when, export_program=False)

    class Module(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
            self.example_input_array = torch.zeros(1, 3, 16, 16)
        def forward(self, x):
            return self.net(x)
        def training_step(self, batch, i):
            return nn.functional.cross_entropy(self(batch[0]), batch[1])
        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    data = DataLoader(TensorDataset(torch.zeros(4, 3, 16, 16), torch.zeros(4, dtype=torch.long)), batch_size=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        warnings.filterwarnings("ignore", module="lightning")
        warnings.filterwarnings("ignore", message=".*(num_workers|does not have many workers).*")
        trainer = L.Trainer(default_root_dir=out / "run", max_epochs=1, logger=False, enable_progress_bar=False,
                            enable_model_summary=False, accelerator="cpu", devices=1,
                            callbacks=[MLMExportCallback(tasks="classification", datetime=when, strict=True)])
        trainer.fit(Module(), data)
    """
)


def test_export_callback_and_validate_work_air_gapped(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    out = tmp_path / "out"
    env = _air_gapped_env(home)
    run = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(out)], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert run.returncode == 0, run.stderr[-3000:]
    items = [*sorted((out / "direct").glob("*.json")), *sorted((out / "run").rglob("*.mlm.json"))]
    assert [p.parent.name for p in items] == ["direct", "checkpoints"], items
    check = subprocess.run(
        [sys.executable, "-m", "mlm_export", "validate", *map(str, items)],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert check.returncode == 0, check.stdout + check.stderr
    assert not (home / ".cache" / "mlm-export").exists()  # no schema was downloaded or cached


def test_bundled_schemas_cover_every_extension_the_product_declares():
    from mlm_export import mlm

    declared = [mlm.MLM_SCHEMA, mlm.FILE_SCHEMA, mlm.CLASSIFICATION_SCHEMA, mlm.EO_SCHEMA, mlm.SCI_SCHEMA]
    for url in declared:
        assert (BUNDLED_DIR / schema_path(url)).is_file(), url
    # every absolute $ref inside the bundle resolves inside the bundle (projjson/metaschemas excepted)
    for path in BUNDLED_DIR.rglob("*.json"):
        for ref in _refs(json.loads(path.read_text())):
            url = ref.split("#")[0]
            if url.startswith("http") and "json-schema.org" not in url:
                assert (BUNDLED_DIR / schema_path(url)).is_file(), (path, url)


def _refs(node):
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref" and isinstance(v, str):
                yield v
            else:
                yield from _refs(v)
    elif isinstance(node, list):
        for v in node:
            yield from _refs(v)


def test_bundled_schemas_come_after_the_override(tmp_path, item_dict):
    """An override directory still wins: a stricter copy of the MLM schema there is the one used."""
    target = tmp_path / "stac-extensions.github.io/mlm/v1.5.2/schema.json"
    target.parent.mkdir(parents=True)
    target.write_text(json.dumps({"$schema": "http://json-schema.org/draft-07/schema#", "required": ["nope"]}))
    store = SchemaStore(override_dirs=[tmp_path], cache_dir=tmp_path / "cache", offline=True)
    problems = validation_problems(item_dict, store)
    assert [p.message for p in problems] == ["'nope' is a required property"]
    assert validation_problems(item_dict, SchemaStore([], tmp_path / "cache", offline=True)) == []


@pytest.mark.parametrize(
    "url",
    [
        "https://stac-extensions.github.io/../../../../../{marker}/schema.json",
        "https://stac-extensions.github.io/x/%2e%2e/%2e%2e/{marker}/schema.json",
        "https://stac-extensions.github.io/x/..%2f..%2f{marker}.json",
        "https://stac-extensions.github.io//{marker}/schema.json",
        "https://stac-extensions.github.io/a\\..\\..\\{marker}.json",
        "https://user@stac-extensions.github.io/{marker}/schema.json",
        "https://stac-extensions.github.io:8443/{marker}/schema.json",
        "https://stac-extensions.github.io/{marker}/schema.json?x=../../y",
    ],
)
def test_schema_urls_cannot_escape_the_cache(tmp_path, url, item_dict):
    cache = tmp_path / "deep" / "cache"
    cache.mkdir(parents=True)
    marker = "planted-marker"
    data = dict(item_dict, stac_extensions=[*item_dict["stac_extensions"], url.format(marker=marker)])
    store = SchemaStore([], cache, offline=False)
    with pytest.raises(SchemaURLRefusedError, match=r"not a schema URL mlm-export can look up"):
        validation_problems(data, store)
    assert not list(tmp_path.rglob(f"*{marker}*"))


def test_a_symlink_in_the_cache_cannot_lead_out_of_it(tmp_path, item_dict):
    cache, outside = tmp_path / "cache", tmp_path / "outside"
    (cache / "stac-extensions.github.io").mkdir(parents=True)
    outside.mkdir()
    (outside / "schema.json").write_text('{"required": ["planted"]}')
    (cache / "stac-extensions.github.io" / "evil").symlink_to(outside, target_is_directory=True)
    url = "https://stac-extensions.github.io/evil/schema.json"
    data = dict(item_dict, stac_extensions=[*item_dict["stac_extensions"], url])
    with pytest.raises(SchemaURLRefusedError, match=r"would be cached outside"):
        validation_problems(data, SchemaStore([], cache, offline=False, bundled=True))


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com/schema.json",
        "https://127.0.0.1/x/schema.json",
        "http://stac-extensions.github.io/unknown/v9.9.9/schema.json",
    ],
)
def test_other_hosts_and_plain_http_are_refused_with_the_way_to_allow(tmp_path, url, item_dict):
    data = dict(item_dict, stac_extensions=[*item_dict["stac_extensions"], url])
    store = SchemaStore([], tmp_path / "cache", offline=False, hosts=())
    with pytest.raises(SchemaURLRefusedError, match=rf"{url}.*only https URLs.*MLM_EXPORT_SCHEMA_HOSTS"):
        validation_problems(data, store)


def test_a_host_the_user_adds_is_fetched(tmp_path, item_dict, monkeypatch):
    """With the host allowed the store goes to the network (which the tests block): not refused, just not found."""
    monkeypatch.setenv("MLM_EXPORT_SCHEMA_HOSTS", "schemas.example.org, other.example.org")
    url = "https://schemas.example.org/ext/v1.0.0/schema.json"
    data = dict(item_dict, stac_extensions=[*item_dict["stac_extensions"], url])
    store = SchemaStore([], tmp_path / "cache", offline=False)
    assert "schemas.example.org" in store.hosts
    with pytest.raises(SchemaNotFoundError, match=r"could not be fetched") as info:
        validation_problems(data, store)
    assert not isinstance(info.value, SchemaURLRefusedError)
