"""Provenance: software versions, runtime files, source code, lineage, citation and a run's version chain.

The model classes live in a real git repository made per test module (with a remote carrying credentials, a
CITATION.cff and a commit), imported from there, so every fact is read from real files and real git.
"""

from __future__ import annotations

import datetime as dt
import importlib
import importlib.metadata as md
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from packaging.requirements import Requirement

import mlm_export
from mlm_export import export_mlm
from mlm_export._sources import citation as cit
from mlm_export._sources.runtime import compile_method, cpu_name, model_distributions, runtime_facts
from mlm_export._sources.vcs import public_url, read_git, source_facts
from mlm_export._write import file_checksum
from mlm_export.errors import InvalidOptionError, MLMExportWarning

from .conftest import plain_validate

L = pytest.importorskip("lightning")
from lightning.pytorch.callbacks import ModelCheckpoint  # noqa: E402

from mlm_export import MLMExportCallback  # noqa: E402
from mlm_export.cli import main  # noqa: E402

from .test_callback import fit, items_in  # noqa: E402

WHEN = dt.datetime(2024, 6, 1, tzinfo=dt.UTC)
REMOTE = "https://alice:s3cr3t-token@github.com/example/fair-project.git"
CFF = """\
cff-version: 1.2.0
message: If you use this model, please cite it.
title: "Fair water model"
version: 0.3.1
doi: 10.5281/zenodo.1234567
date-released: 2025-02-03
authors:
  - family-names: Doe
    given-names: Jane
  - family-names: Roe
    given-names: Rick
preferred-citation:
  type: article
  title: "Mapping water with small networks"
  doi: 10.1000/journal.2025.42
  year: 2025
  journal: "Journal of Examples"
  authors:
    - family-names: Doe
      given-names: Jane
"""
CFF_PAPER = "Doe, Jane (2025). Mapping water with small networks. Journal of Examples."
MODULE = """\
import torch
from torch import nn
from tests.test_callback import TinyClassifier


class FairNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 3, padding=1)

    def forward(self, x):
        return self.conv(x)


class FairClassifier(TinyClassifier):
    def validation_step(self, batch, batch_idx):
        super().validation_step(batch, batch_idx)
        self.log("progress", -float(self.current_epoch))  # better every epoch: top-k prunes the oldest
"""


def git(root: Path, *args: str) -> str:
    cmd = ["git", "-c", "user.name=Test", "-c", "user.email=test@example.org", "-C", str(root), *args]
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A training project in git: ``fairproj.net`` defines the models; HEAD's commit is returned with it."""
    root = tmp_path_factory.mktemp("project")
    (root / "fairproj").mkdir()
    (root / "fairproj" / "__init__.py").write_text("")
    (root / "fairproj" / "net.py").write_text(MODULE)
    (root / "CITATION.cff").write_text(CFF)
    git(root, "init", "-q", "-b", "main")
    git(root, "remote", "add", "origin", REMOTE)
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "model")
    sys.path.insert(0, str(root))
    try:
        module = importlib.import_module("fairproj.net")
        yield root, git(root, "rev-parse", "HEAD"), module
    finally:
        sys.path.remove(str(root))
        for name in [n for n in sys.modules if n.startswith("fairproj")]:
            del sys.modules[name]


def assert_pins_installed(path: Path) -> dict[str, str]:
    """Parse a requirements file: every line is ``name==version`` and that version is what is installed."""
    pins = {}
    for line in path.read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        req = Requirement(line)
        (spec,) = req.specifier
        assert spec.operator == "=="
        assert md.version(req.name) == spec.version, req.name
        pins[req.name] = spec.version
    return pins


def assert_file_asset(directory: Path, asset: dict) -> Path:
    path = directory / asset["href"]
    assert asset["file:size"] == path.stat().st_size
    assert asset["file:checksum"] == file_checksum(path)
    return path


# ------------------------------------------------------------------------------------------ sources


def test_software_versions_are_exact_and_name_the_model_distributions():
    import torchvision

    model = torchvision.models.resnet18(num_classes=3)
    facts = runtime_facts(model)
    assert facts.software["torch"] == torch.__version__
    assert facts.software["torchvision"] == torchvision.__version__
    assert facts.software["Python"] == ".".join(map(str, sys.version_info[:3]))
    assert facts.software["mlm-export"] == md.version("mlm-export")
    assert facts.model_distributions == {"torch": md.version("torch"), "torchvision": md.version("torchvision")}
    if torch.version.cuda:
        assert facts.software["CUDA"] == torch.version.cuda


def test_compile_method_of_compiled_and_scripted_models():
    model = torch.nn.Conv2d(3, 2, 1)
    assert compile_method(model) is None
    assert compile_method(torch.compile(model)) == "jit"  # compiles lazily: nothing is compiled here
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # TorchScript is deprecated, still met in checkpoints
        scripted = torch.jit.script(model)
    assert compile_method(scripted) == "jit"


def test_classes_outside_any_distribution_are_local(project):
    _, _, module = project
    dists, local = model_distributions(module.FairNet())
    assert dists == {"torch": md.version("torch")}
    assert local == ("fairproj",)


def test_source_code_from_the_git_files(project):
    root, commit, module = project
    facts = source_facts(module.FairNet())
    assert facts is not None
    assert (facts.root, facts.commit, facts.branch, facts.dirty) == (root, commit, "main", False)
    assert facts.entrypoint == "fairproj.net:FairNet"
    assert facts.href == f"https://github.com/example/fair-project/tree/{commit}"


SCRIPT = """\
import datetime, json, torch, torchvision
import mlm_export
from mlm_export import export_mlm
item = export_mlm(torchvision.models.resnet18(num_classes=3), example_input=torch.zeros(1, 3, 32, 32),
                  tasks=["classification"], datetime=datetime.datetime(2024, 1, 1))
print(json.dumps(item.to_dict()["assets"]["source_code"]))
"""


def test_a_library_class_trained_by_a_script_points_at_the_scripts_project(project):
    root, commit, _ = project
    script = root / "train_resnet.py"
    script.write_text(SCRIPT)
    try:
        env = {**os.environ, "PYTHONPATH": str(Path(mlm_export.__file__).parents[1])}  # this tree's package
        out = subprocess.run(
            [sys.executable, str(script)], capture_output=True, text=True, timeout=120, cwd=root, env=env
        )
    finally:
        script.unlink()
    assert out.returncode == 0, out.stderr[-2000:]
    asset = json.loads(out.stdout.strip().splitlines()[-1])
    assert asset["href"] == f"https://github.com/example/fair-project/tree/{commit}"
    assert asset["mlm:entrypoint"] == "torchvision.models.resnet:ResNet"
    assert asset["vcs:dirty"] is False  # the script is untracked: tracked files are unchanged


def test_credentials_in_remote_urls_never_leave(project):
    assert public_url(REMOTE) == "https://github.com/example/fair-project.git"
    assert public_url("git@gitlab.com:group/proj.git") == "https://gitlab.com/group/proj.git"
    assert public_url("ssh://bob:pw@host.example.org:2222/x.git") == "https://host.example.org:2222/x.git"
    assert public_url("/home/alice/repos/x") is None
    assert public_url("file:///home/alice/repos/x") is None


def test_a_crafted_git_dir_cannot_escape_or_run_code(tmp_path):
    outside = tmp_path / "secret"
    outside.write_text("0" * 40)
    dotgit = tmp_path / "repo" / ".git"
    (dotgit / "refs" / "heads").mkdir(parents=True)
    (dotgit / "HEAD").write_text("ref: refs/heads/../../../secret\n")
    (dotgit / "config").write_text('[remote "origin"]\n\turl = /home/alice/private\n')
    assert read_git(dotgit) == (None, None, None)


def test_git_status_runs_no_hook_from_the_repository(project, tmp_path):
    """A repository's fsmonitor hook would run on ``git status``: it is switched off."""
    root, _, module = project
    marker = tmp_path / "pwned"
    hook = tmp_path / "hook.sh"
    hook.write_text(f"#!/bin/sh\ntouch {marker}\n")
    hook.chmod(0o755)
    git(root, "config", "core.fsmonitor", str(hook))
    try:
        (root / "fairproj" / "net.py").write_text(MODULE + "\n# changed\n")
        facts = source_facts(module.FairNet())
        assert facts is not None and facts.dirty is True
        assert not marker.exists()
    finally:
        (root / "fairproj" / "net.py").write_text(MODULE)
        git(root, "config", "--unset", "core.fsmonitor")


def test_citation_cff_with_and_without_pyyaml(project, monkeypatch):
    root, _, _ = project
    with_yaml = cit.read_cff(root / "CITATION.cff")
    assert with_yaml.doi == "10.5281/zenodo.1234567"
    assert with_yaml.citation == "Doe, Jane; Roe, Rick (2025). Fair water model (version 0.3.1)."
    assert with_yaml.publications == ({"doi": "10.1000/journal.2025.42", "citation": CFF_PAPER},)
    monkeypatch.setitem(sys.modules, "yaml", None)  # PyYAML is optional at run time
    tiny = cit.read_cff(root / "CITATION.cff")
    assert (tiny.doi, tiny.citation) == (with_yaml.doi, with_yaml.citation)


def test_a_huge_or_hostile_citation_file_is_not_parsed(tmp_path):
    (tmp_path / "CITATION.cff").write_text("doi: !!python/object/apply:os.system ['touch pwned']\n")
    assert cit.read_cff(tmp_path / "CITATION.cff").doi is None
    assert not (tmp_path / "pwned").exists()
    (tmp_path / "CITATION.cff").write_text("doi: 10.1234/x\n" + "#" * cit.MAX_CFF_BYTES)
    assert cit.read_cff(tmp_path / "CITATION.cff").doi is None


# ------------------------------------------------------------------------------------------ export_mlm


def test_export_mlm_item_carries_provenance(project, tmp_path, assert_valid):
    root, commit, module = project
    item = export_mlm(
        module.FairNet(), example_input=torch.zeros(2, 3, 16, 16), tasks=["semantic-segmentation"],
        out_dir=tmp_path, datetime=WHEN, version="1.2.0",
    )  # fmt: skip
    data = assert_valid(item)
    props = data["properties"]
    assert props["processing:software"]["torch"] == torch.__version__
    assert props["processing:software"]["mlm-export"] == md.version("mlm-export")
    assert "fairproj.net.FairNet" in props["processing:lineage"]
    assert props["processing:datetime"] == props["created"]
    assert props["version"] == "1.2.0"
    assert props["sci:doi"] == "10.5281/zenodo.1234567"  # from the project's CITATION.cff
    assert props["sci:citation"].startswith("Doe, Jane; Roe, Rick (2025). Fair water model")
    assert props["sci:publications"][0]["doi"] == "10.1000/journal.2025.42"
    assert {"rel": "cite-as", "href": "https://doi.org/10.5281/zenodo.1234567", "title": "Citation (DOI)"} in data[
        "links"
    ]
    assert props["mlm:accelerator"] == "amd64" and props["mlm:accelerator_constrained"] is False
    assert props["mlm:accelerator_count"] == 1 and props["mlm:accelerator_summary"] == cpu_name()
    for ext in ("processing/v1.2.0", "version/v1.2.0", "scientific/v1.0.0"):
        assert any(ext in e for e in data["stac_extensions"])
    code = data["assets"]["source_code"]
    assert code["href"] == f"https://github.com/example/fair-project/tree/{commit}"
    assert code["mlm:entrypoint"] == "fairproj.net:FairNet" and code["vcs:dirty"] is False
    assert "s3cr3t" not in json.dumps(data)
    assert data["assets"]["model"]["mlm:compile_method"] == "aot"  # the torch.export archive
    inference = assert_file_asset(tmp_path, data["assets"]["inference_runtime"])
    training = assert_file_asset(tmp_path, data["assets"]["training_runtime"])
    assert data["assets"]["inference_runtime"]["roles"] == ["mlm:inference-runtime"]
    assert assert_pins_installed(inference) == {"torch": md.version("torch")}
    everything = assert_pins_installed(training)
    assert everything["torch"] == md.version("torch") and len(everything) > 20
    on_disk = json.loads((tmp_path / f"{item.id}.json").read_text())
    assert plain_validate(on_disk) == []


def test_export_mlm_without_out_dir_writes_no_runtime_files(project, tmp_path, assert_valid):
    _, _, module = project
    item = export_mlm(
        module.FairNet(), example_input=torch.zeros(2, 3, 16, 16), tasks=["semantic-segmentation"],
        datetime=WHEN, doi="https://doi.org/10.5555/users.own", citation="Me (2026). My model.",
    )  # fmt: skip
    data = assert_valid(item)
    assert "inference_runtime" not in data["assets"] and "training_runtime" not in data["assets"]
    assert data["properties"]["sci:doi"] == "10.5555/users.own"
    assert data["properties"]["sci:citation"] == "Me (2026). My model."
    assert "version" not in data["properties"]
    assert not any("version/" in e for e in data["stac_extensions"])  # declared only when used


def test_a_bad_doi_is_refused_naming_the_option():
    with pytest.raises(InvalidOptionError, match=r"doi= must be a DOI"):
        export_mlm(torch.nn.Conv2d(3, 2, 1), example_input=torch.zeros(1, 3, 8, 8), doi="not a doi")


# ------------------------------------------------------------------------------------------ runs


def assert_chain(directory: Path, *, deprecated: bool = False, base: str | None = None) -> list[str]:
    """Versions and predecessor/successor/latest links agree with the live Items' steps; returns the chain."""
    items = items_in(directory)
    by_step: dict[int, list[str]] = {}
    for name, item in items.items():
        by_step.setdefault(item["properties"]["lightning:global_step"], []).append(name)
    chain = [sorted(names, key=lambda n: (n.startswith("last"), n))[0] for _, names in sorted(by_step.items())]
    for i, head in enumerate(chain):
        step = items[head]["properties"]["lightning:global_step"]
        for name in by_step[step]:
            item = items[name]
            p = item["properties"]
            own = f"epoch{p['lightning:epoch']}-step{step}"
            assert p["version"] == (f"{base}-{own}" if base else own)
            rels = {link["rel"]: link["href"].removeprefix("./") for link in item["links"] if "version" in link["rel"]}
            expected = {}
            if i > 0:
                expected["predecessor-version"] = chain[i - 1]
            if i + 1 < len(chain):
                expected["successor-version"] = chain[i + 1]
            if head != chain[-1]:
                expected["latest-version"] = chain[-1]
            assert rels == expected, name
            assert p.get("deprecated", False) is (deprecated and head != chain[-1]), name
            assert plain_validate(item) == [], name
    return chain


def test_callback_run_version_chain_survives_pruning_and_resume(project, tmp_path):
    _, commit, module = project
    directory = tmp_path / "ckpt"
    options = {"datetime": WHEN, "version": "v2", "deprecate_superseded": True}
    ckpt = ModelCheckpoint(dirpath=directory, monitor="progress", save_top_k=3, save_last=True)
    fit(tmp_path, ckpt, MLMExportCallback(**options), epochs=5, model=module.FairClassifier())
    chain = assert_chain(directory, deprecated=True, base="v2")
    assert chain == ["epoch=2-step=12.mlm.json", "epoch=3-step=16.mlm.json", "epoch=4-step=20.mlm.json"]
    items = items_in(directory)
    last = items["last.mlm.json"]
    props = last["properties"]
    assert props["processing:software"]["lightning"] == md.version("lightning")
    assert props["mlm:accelerator"] == "amd64" and props["mlm:accelerator_count"] == 1
    assert props["mlm:accelerator_summary"]
    assert props["lightning:datamodule"] == {"class": "tests.test_callback.Data"}  # it holds no split datasets
    assert (
        f"epoch {props['lightning:epoch']}, global step {props['lightning:global_step']}" in props["processing:lineage"]
    )
    assert last["assets"]["source_code"]["mlm:entrypoint"] == "fairproj.net:FairClassifier"
    assert last["assets"]["source_code"]["href"].endswith(commit)
    pins = assert_pins_installed(assert_file_asset(directory, last["assets"]["inference_runtime"]))
    assert pins == {"torch": md.version("torch"), "lightning": md.version("lightning")}
    assert_pins_installed(assert_file_asset(directory, last["assets"]["training_runtime"]))
    runtime_files = sorted(p.name for p in directory.glob("*.txt"))
    assert len(runtime_files) == 2 * len(items)  # the pruned checkpoints' files went with them
    collection = json.loads((directory / "collection.json").read_text())
    assert collection["stats:items"]["count"] == len(items)
    assert collection["stats:items"]["assets"]["text/plain"] == 2 * len(items)
    assert plain_validate(collection) == []

    ckpt2 = ModelCheckpoint(dirpath=directory, monitor="progress", save_top_k=3, save_last=True)
    fit(tmp_path, ckpt2, MLMExportCallback(**options), epochs=7, model=module.FairClassifier(),
        ckpt_path=str(directory / "last.ckpt"))  # fmt: skip
    resumed = assert_chain(directory, deprecated=True, base="v2")
    assert resumed == ["epoch=4-step=20.mlm.json", "epoch=5-step=24.mlm.json", "epoch=6-step=28.mlm.json"]
    assert json.loads((directory / "collection.json").read_text())["stats:items"]["count"] == len(items_in(directory))


def test_convert_keeps_training_provenance_and_links_versions(project, tmp_path, capsys):
    _, commit, module = project
    directory = tmp_path / "ckpt"
    fit(tmp_path, ModelCheckpoint(dirpath=directory, save_top_k=-1), MLMExportCallback(datetime=WHEN), epochs=3,
        model=module.FairClassifier())  # fmt: skip
    for path in [*directory.glob("*.mlm.json"), *directory.glob("*.txt"), directory / "collection.json"]:
        path.unlink()
    argv = ["convert", str(directory), "--quiet", "--item-version", "v3", "--doi", "10.5281/zenodo.999999"]
    assert main([*argv, "--deprecate-superseded"]) == 0, capsys.readouterr().err
    chain = assert_chain(directory, deprecated=True, base="v3")
    assert len(chain) == 3
    item = items_in(directory)[chain[-1]]
    props = item["properties"]
    assert props["sci:doi"] == "10.5281/zenodo.999999"  # the user's, over the embedded CITATION.cff one
    assert {"doi": "10.1000/journal.2025.42", "citation": CFF_PAPER} in props["sci:publications"]
    assert props["processing:software"]["lightning"] == md.version("lightning")  # as trained, from the checkpoint
    assert "(convert)" in props["processing:lineage"]
    assert item["assets"]["source_code"]["href"].endswith(commit)
    pins = assert_pins_installed(assert_file_asset(directory, item["assets"]["inference_runtime"]))
    assert pins["torch"] == md.version("torch") and pins["lightning"] == md.version("lightning")
    assert "training_runtime" not in item["assets"]  # convert does not run in the training environment


# ------------------------------------------------------------------------------------------ training data


class SplitData:
    """A duck-typed datamodule that holds its split datasets."""

    batch_size = 4

    def __init__(self) -> None:
        self.train_dataset = torch.utils.data.TensorDataset(torch.zeros(10, 3, 16, 16))
        self.val_dataset = torch.utils.data.TensorDataset(torch.zeros(4, 3, 16, 16))


def label_collection(tmp_path: Path, tasks: list[str], classes: list[str]) -> Path:
    path = tmp_path / "labels" / "collection.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({
        "type": "Collection", "stac_version": "1.1.0", "id": "water-labels", "title": "Water labels",
        "description": "Label masks", "license": "CC-BY-4.0", "links": [],
        "stac_extensions": ["https://stac-extensions.github.io/label/v1.0.1/schema.json"],
        "extent": {"spatial": {"bbox": [[0, 0, 1, 1]]}, "temporal": {"interval": [["2024-01-01T00:00:00Z", None]]}},
        "summaries": {"label:tasks": tasks, "label:classes": [{"name": None, "classes": classes}]},
    }))  # fmt: skip
    return path


def test_split_sizes_and_a_label_collection_as_training_data(project, tmp_path, assert_valid):
    _, _, module = project
    collection = label_collection(tmp_path, ["segmentation"], ["land", "water"])
    item = export_mlm(
        module.FairNet(), SplitData(), example_input=torch.zeros(2, 3, 16, 16), tasks=["semantic-segmentation"],
        datetime=WHEN, training_data={"train": str(collection)},
    )  # fmt: skip
    data = assert_valid(item)
    assert data["properties"]["lightning:datamodule"] == {
        "class": f"{__name__}.SplitData",
        "splits": {"train": {"samples": 10, "batches": 3}, "validate": {"samples": 4, "batches": 1}},
    }
    (link,) = [lk for lk in data["links"] if lk["rel"] == "derived_from"]
    assert link["href"] == str(collection.resolve()) and link["ml-aoi:split"] == "train"
    assert any("ml-aoi/v0.2.0" in e for e in data["stac_extensions"])
    classes = data["properties"]["mlm:output"][0]["classification:classes"]
    assert [c["name"] for c in classes] == ["land", "water"]  # carried from the labels: they fit the class dim


def test_labels_that_disagree_with_the_model_warn(project, tmp_path):
    _, _, module = project
    collection = label_collection(tmp_path, ["classification"], ["land", "water"])
    with pytest.warns(MLMExportWarning, match=r"label:tasks \['classification'\] do not match") as caught:
        export_mlm(
            module.FairNet(), example_input=torch.zeros(2, 3, 16, 16), tasks=["semantic-segmentation"],
            classes=["sea", "shore"], datetime=WHEN, training_data=str(collection),
        )  # fmt: skip
    assert any("differ from the model's classes ['sea', 'shore']" in str(w.message) for w in caught)
    three = label_collection(tmp_path / "3", ["segmentation"], ["land", "water", "cloud"])
    with pytest.warns(MLMExportWarning, match=r"its 3 label:classes do not fit output"):
        export_mlm(
            module.FairNet(), example_input=torch.zeros(2, 3, 16, 16), tasks=["semantic-segmentation"],
            datetime=WHEN, training_data=three,
        )  # fmt: skip


def test_training_data_is_never_fetched_and_must_be_stac(tmp_path):
    with pytest.raises(InvalidOptionError, match=r"is a URL: it is not downloaded"):
        MLMExportCallback(training_data="https://example.org/collection.json")
    (tmp_path / "x.json").write_text('{"type": "FeatureCollection"}')
    with pytest.raises(InvalidOptionError, match=r"must be a STAC Collection or Item"):
        export_mlm(torch.nn.Conv2d(3, 2, 1), example_input=torch.zeros(1, 3, 8, 8), training_data=tmp_path / "x.json")


def test_a_program_exported_on_a_gpu_is_accelerator_constrained(project, tmp_path):
    from dataclasses import replace

    from mlm_export._pipeline import ExportOptions, gather, plan
    from mlm_export._provenance import provenance_facts, with_runtime_files

    _, _, module = project
    model = module.FairNet()
    options = ExportOptions(tasks=["semantic-segmentation"], datetime=WHEN)
    prov = provenance_facts(model)
    cpu = plan(model, gather(model, None, torch.zeros(2, 3, 16, 16), options), options, provenance=prov)
    program = replace(cpu.artifacts[0], artifact_type="torch.export.save")
    on_gpu = replace(cpu, accelerator="cuda", artifacts=(program,))
    assert with_runtime_files(on_gpu, prov, tmp_path, "gpu", training=False).accelerator_constrained is True
    assert with_runtime_files(cpu, prov, tmp_path, "cpu", training=False).accelerator_constrained is False
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cpu.requirements.txt", "gpu.requirements.txt"]


def test_converting_exported_weights_keeps_the_export_item_true(tmp_path, assert_valid):
    """`convert` of the safetensors `export_mlm` wrote must not overwrite the export's own runtime file."""
    from tests.models import SmallUNet

    export_mlm(SmallUNet(3, 2), example_input=torch.randn(2, 3, 32, 32), out_dir=tmp_path, datetime=WHEN)
    before = (tmp_path / "smallunet.requirements.txt").read_bytes()
    code = main([
        "convert", str(tmp_path / "smallunet.safetensors"), "--model", "tests.models:SmallUNet",
        "--allow-module", "tests", "--init-args", '{"in_channels": 3, "num_classes": 2}',
        "--input-shape", "1,3,32,32", "--tasks", "semantic-segmentation", "--quiet",
    ])  # fmt: skip
    assert code == 0
    assert (tmp_path / "smallunet.requirements.txt").read_bytes() == before
    assert main(["validate", str(tmp_path / "smallunet.json"), str(tmp_path / "smallunet.mlm.json"), "--quiet"]) == 0
    converted = json.loads((tmp_path / "smallunet.mlm.json").read_text())
    assert converted["assets"]["inference_runtime"]["href"] == "./smallunet.mlm.requirements.txt"
    assert_valid(converted)
