"""Attacks on convert, validate and verify: each test builds its own hostile input, and proves that no code
ran (a marker file does not appear), that nothing outside the folder was touched (a file there survives),
and that nothing hangs or connects."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import zipfile
from pathlib import Path
from typing import Any

import pytest
import torch

from mlm_export import _runs as runs
from mlm_export._guard import Policy, UntrustedModelError
from mlm_export._sources.archive_limits import ArchiveBombError, check_declared_sizes
from mlm_export._sources.checkpoint import import_object
from mlm_export._write import file_checksum

from .conftest import plain_validate, run
from .models import SmallUNet


def lightning_checkpoint(
    path: Path, hyper_parameters: dict[str, Any], state_dict: dict[str, Any] | None = None
) -> Path:
    """A plain-data Lightning checkpoint: loads with torch.load(weights_only=True), no allowlist needed."""
    state = state_dict if state_dict is not None else {"w": torch.zeros(2)}
    torch.save({"state_dict": state, "hyper_parameters": hyper_parameters, "epoch": 0, "global_step": 1}, path)
    return path


def minimal_item(href: str, **asset: Any) -> dict[str, Any]:
    """An MLM-looking Item whose only asset is the given href (schema problems do not matter here)."""
    return {
        "type": "Feature",
        "stac_version": "1.1.0",
        "stac_extensions": ["https://stac-extensions.github.io/mlm/v1.5.2/schema.json"],
        "id": "hostile",
        "geometry": None,
        "properties": {"datetime": "2024-01-01T00:00:00Z"},
        "links": [],
        "assets": {
            "model": {"href": href, "roles": ["mlm:model"], "mlm:artifact_type": "torch.save", **asset},
        },
    }


# ------------------------------------------------------------------------------------------ code execution


@pytest.mark.parametrize(
    ("class_path", "args"),
    [
        ("subprocess.run", lambda m: {"args": ["touch", str(m)]}),
        ("os.system", lambda m: {"command": f"touch {m}"}),
        ("subprocess:Popen", lambda m: {"args": ["touch", str(m)]}),
    ],
)
def test_class_path_naming_a_function_is_refused_before_import(tmp_path, capsys, class_path, args):
    marker = tmp_path / "pwned"
    folder = tmp_path / "run"
    folder.mkdir()
    lightning_checkpoint(folder / "evil.ckpt", {"_class_path": class_path, **args(marker)})
    module = class_path.partition(":")[0] if ":" in class_path else class_path.rpartition(".")[0]
    was_imported = module in sys.modules
    code, _, err = run(capsys, "convert", folder, "--quiet")
    assert code == 1
    assert not marker.exists()
    assert "refusing to build" in err and "--allow-module" in err and "--trust-checkpoint" in err
    assert len(err.strip().splitlines()) == 1
    assert not list(folder.glob("*.mlm.json"))
    if not was_imported:
        assert module not in sys.modules  # refused from the name alone, before import


def test_functions_and_non_modules_inside_allowed_packages_are_refused():
    # torch.hub.load would fetch and run code; torch.save writes files: allowed package, not a model class
    for target in ("torch.hub:load", "torch:save", "torchvision.io:write_file", "torch.nn:functional"):
        with pytest.raises(UntrustedModelError, match="refusing to build"):
            import_object(target)
    # a re-export does not smuggle another package's function in: torch.os is the os module
    with pytest.raises(UntrustedModelError, match="refusing to build"):
        import_object("torch:os.system")
    assert import_object("torch.nn:Linear") is torch.nn.Linear
    assert callable(import_object("torchvision.models:resnet18"))
    assert import_object("tests.models:SmallUNet", Policy(allow_modules=("tests",))) is SmallUNet
    assert import_object("subprocess:run", Policy(trust=True)) is not None  # the trust flag opens it


def test_verify_does_not_build_what_a_checkpoint_names(tmp_path, capsys):
    marker = tmp_path / "pwned"
    folder = tmp_path / "item"
    folder.mkdir()
    lightning_checkpoint(folder / "evil.ckpt", {"_class_path": "subprocess.run", "args": ["touch", str(marker)]})
    item = folder / "evil.mlm.json"
    item.write_text(json.dumps(minimal_item("./evil.ckpt")))
    code, out, _ = run(capsys, "verify", item, "--json")
    assert code == 1
    assert not marker.exists()
    load = next(c for c in json.loads(out)["results"] if c["check"] == "load model")
    assert not load["ok"] and "refusing to build 'subprocess.run'" in load["detail"]


@pytest.fixture
def closed_port_proxies(monkeypatch):
    """Every proxy at a local server that accepts and drops each connection, and a record of every connection
    it saw (from this process or the child process that rebuilds models: the server counts, not a patch)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    server.settimeout(0.1)
    port = server.getsockname()[1]
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.setenv(var, f"http://127.0.0.1:{port}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    # urlopen keeps the opener (with the proxies of that moment) it built first: build a new one from these
    monkeypatch.setattr(urllib.request, "_opener", None)
    attempts: list[Any] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, address = server.accept()
            except TimeoutError:
                continue
            attempts.append(address)
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield attempts
    stop.set()
    thread.join()
    server.close()


@pytest.mark.parametrize("weights", [True, "ResNet18_Weights.SENTINEL2_RGB_MOCO"])
def test_torchgeo_weights_in_hyperparameters_never_reach_a_hub(tmp_path, capsys, closed_port_proxies, weights):
    from torchgeo.tasks import Classification

    task = Classification(model="resnet18", in_channels=3, num_classes=2, weights=None)
    hparams = {k: v for k, v in task.hparams.items() if k in ("model", "in_channels", "num_classes", "task")}
    folder = tmp_path / "run"
    folder.mkdir()
    lightning_checkpoint(folder / "tg.ckpt", {**hparams, "weights": weights}, task.state_dict())
    code, out, err = run(capsys, "convert", folder, "--json")
    assert closed_port_proxies == []
    assert code == 0, err
    assert json.loads(out)["results"][0]["status"] == "converted"


def test_download_flag_lets_a_constructor_connect(tmp_path, capsys, closed_port_proxies):
    from torchgeo.tasks import Classification

    task = Classification(model="resnet18", in_channels=3, num_classes=2, weights=None)
    folder = tmp_path / "run"
    folder.mkdir()
    hparams = {
        "model": "resnet18",
        "in_channels": 3,
        "num_classes": 2,
        "weights": "ResNet18_Weights.SENTINEL2_RGB_MOCO",
    }
    lightning_checkpoint(folder / "tg.ckpt", hparams, task.state_dict())
    code, out, _ = run(capsys, "convert", folder, "--download", "--json")
    # --download did open the network: the constructor (in the limited child) fetched the weights through the
    # proxy, whose server counted the connections
    assert closed_port_proxies and {host for host, _ in closed_port_proxies} == {"127.0.0.1"}
    # the closed proxy refused it, so nothing was converted (not a success read from the exit code alone)
    report = json.loads(out[out.index("{\n") :])
    assert code == 1 and [r["status"] for r in report["results"]] == ["failed"]


# ------------------------------------------------------------------------------------------ files outside


def test_planted_item_pointing_outside_never_deletes_there(tmp_path, capsys):
    victim = tmp_path / "victim"
    victim.mkdir()
    precious = {n: victim / n for n in ("model.ckpt", "model.safetensors", "model.pt2", "model.mlm.json")}
    for p in precious.values():
        p.write_text("precious")
    folder = tmp_path / "run"
    folder.mkdir()
    torch.save(SmallUNet(3, 2).state_dict(), folder / "a.pth")
    args = ["convert", folder, "--model", "tests.models:SmallUNet", "--allow-module", "tests", "--init-args",
            '{"in_channels": 3, "num_classes": 2}', "--input-shape", "1,3,32,32", "--quiet"]  # fmt: skip
    assert run(capsys, *args)[0] == 0
    collection = json.loads((folder / "collection.json").read_text())
    planted = json.loads((folder / "a.mlm.json").read_text())
    for name in ("../victim/model.ckpt", str(precious["model.ckpt"]), "file://" + str(precious["model.ckpt"])):
        planted["assets"]["model"]["href"] = name
        planted["collection"] = collection["id"]
        (folder / "model.mlm.json").write_text(json.dumps(planted))
        assert run(capsys, *args, "--overwrite")[0] == 0
        assert all(p.read_text() == "precious" for p in precious.values())
        links = [link["href"] for link in json.loads((folder / "collection.json").read_text())["links"]]
        assert "./model.mlm.json" not in links  # not adopted either


@pytest.mark.parametrize(
    "href",
    ["../outside/secret.bin", "{outside}/secret.bin", "file://{outside}/secret.bin", "./link.bin", "/etc/passwd"],
)
def test_validate_and_verify_do_not_read_outside_the_folder(tmp_path, capsys, href):
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / "secret.bin"
    secret.write_bytes(b"secret bytes")
    folder = tmp_path / "item"
    folder.mkdir()
    (folder / "link.bin").symlink_to(secret)
    href = href.format(outside=outside)
    item = folder / "i.json"
    item.write_text(json.dumps(minimal_item(href, **{"file:size": 1, "file:checksum": "1220" + "0" * 64})))
    for command in ("validate", "verify"):
        code, out, err = run(capsys, command, item, "--json")
        assert code == 1
        assert "outside the Item's folder" in out + err or "file:// URL" in out + err
        assert "12 bytes" not in out + err  # nothing about the file was read or told
    assert secret.read_bytes() == b"secret bytes"
    code, out, _ = run(capsys, "validate", item, "--allow-outside", "--json")
    if href != "/etc/passwd":
        assert "has 12 bytes" in out  # the flag does open it


def _finishes(fn, seconds: float = 30.0) -> bool:
    done = threading.Event()

    def target() -> None:
        try:
            fn()
        finally:
            done.set()

    threading.Thread(target=target, daemon=True).start()
    return done.wait(seconds)


@pytest.mark.parametrize("kind", ["fifo", "dev-zero", "directory"])
def test_special_files_as_hrefs_do_not_hang(tmp_path, capsys, kind):
    folder = tmp_path / "item"
    folder.mkdir()
    if kind == "fifo":
        os.mkfifo(folder / "model.ckpt")
    elif kind == "directory":
        (folder / "model.ckpt").mkdir()
    else:
        (folder / "model.ckpt").symlink_to("/dev/zero")
    item = folder / "i.json"
    item.write_text(json.dumps(minimal_item("./model.ckpt", **{"file:checksum": "1220" + "0" * 64})))
    results: dict[str, Any] = {}
    flags = ["--allow-outside"] if kind == "dev-zero" else []  # even when allowed out: /dev/zero is not read
    assert _finishes(lambda: results.update(validate=run(capsys, "validate", item, *flags, "--json")))
    code, out, _ = results["validate"]
    assert code == 1 and "not a regular file" in out


@pytest.mark.parametrize("kind", ["fifo", "dev-zero"])
def test_special_files_among_checkpoints_do_not_hang_convert(tmp_path, capsys, kind):
    """A folder from strangers may hold a FIFO (or a link to /dev/zero) named like a checkpoint. The folder's
    walk passes over it; named on the command line (as a shell's ``*.ckpt`` names it), convert says what it is
    instead of blocking on its open or reading forever."""
    folder = tmp_path / "run"
    folder.mkdir()
    if kind == "fifo":
        os.mkfifo(folder / "epoch=0-step=1.ckpt")
    else:
        (folder / "epoch=0-step=1.ckpt").symlink_to("/dev/zero")
    results: dict[str, Any] = {}
    assert _finishes(lambda: results.update(folder=run(capsys, "convert", folder, "--json")))
    assert results["folder"][0] == 2 and "no checkpoint files" in results["folder"][1]
    assert _finishes(lambda: results.update(named=run(capsys, "convert", folder / "epoch=0-step=1.ckpt", "--json")))
    code, out, _ = results["named"]
    assert code == 1 and "not a regular file" in out
    assert sorted(p.name for p in folder.iterdir()) == ["epoch=0-step=1.ckpt"]  # nothing written beside it


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (("validate", "{fifo}"), "not a regular file"),
        (("verify", "{fifo}"), "not a regular file"),
        (("hf-card", "{fifo}"), "not a regular file"),
        (("hf-card", "{folder}"), "holds 0 MLM Items"),  # the folder's walk passes over it
        (("match", "{fifo}", "{folder}"), "not a regular file"),
        (("publish", "{fifo}", "--to", "{catalog}"), "not a regular file"),
        (("publish", "{folder}", "--to", "{catalog}"), "not a regular file"),
    ],
    ids=["validate", "verify", "hf-card", "hf-card-folder", "match", "publish", "publish-folder"],
)
def test_a_fifo_named_like_an_item_does_not_hang_a_reader(tmp_path, capsys, argv, said):
    """Items and Collections come from strangers too: a FIFO among them (named, or in a folder that is walked)
    is reported as not a regular file, never opened for a blocking read."""
    folder = tmp_path / "items"
    folder.mkdir()
    os.mkfifo(folder / "item.json")
    names = {"fifo": folder / "item.json", "folder": folder, "catalog": tmp_path / "catalog"}
    results: dict[str, Any] = {}
    assert _finishes(lambda: results.update(out=run(capsys, *(a.format(**names) for a in argv))))
    code, out, err = results["out"]
    assert code != 0 and said in out + err


def _pickle_bomb(path: Path, inflated: int) -> None:
    """A zip checkpoint whose data.pkl (a dict holding one long string) is deflated: tiny file, huge pickle."""
    head = b"\x80\x02}q\x00(X\n\x00\x00\x00state_dictq\x01}q\x02X\x10\x00\x00\x00hyper_parametersq\x03}q\x04"
    head += b"X\x04\x00\x00\x00noteq\x05X" + inflated.to_bytes(4, "little")
    tail = b"q\x06su."
    with zipfile.ZipFile(path, "w") as z:
        info = zipfile.ZipInfo("archive/data.pkl")
        info.compress_type = zipfile.ZIP_DEFLATED
        with z.open(info, "w", force_zip64=True) as f:
            f.write(head)
            chunk = b"a" * (1 << 22)
            for start in range(0, inflated, len(chunk)):
                f.write(chunk[: min(len(chunk), inflated - start)])
            f.write(tail)
        z.writestr("archive/version", "3\n")
        z.writestr("archive/byteorder", "little")


def test_zip_bomb_checkpoint_is_refused_before_inflating(tmp_path, capsys):
    folder = tmp_path / "run"
    folder.mkdir()
    bomb = folder / "bomb.ckpt"
    _pickle_bomb(bomb, 300 << 20)
    assert bomb.stat().st_size < 2 << 20
    with pytest.raises(ArchiveBombError, match="MLM_EXPORT_MAX_INFLATE"):
        check_declared_sizes(bomb)
    code, _, err = run(capsys, "convert", folder, "--quiet")
    assert code == 1 and "zip bomb" in err
    assert not list(folder.glob("*.mlm.json"))
    ok = folder / "ok.ckpt"
    lightning_checkpoint(ok, {"x": 1})  # an ordinary torch.save archive passes the same check
    check_declared_sizes(ok)


# ------------------------------------------------------------------------------------------ terminal output


def test_file_names_with_rich_markup_print_literally(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "500")  # no folding: whole names in one cell line
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "[").mkdir()  # "[/b]" in a path: a folder named "[" holding "b]y.pth"
    names = ["[bold red]x.pth", "[/b]y.pth"]
    for name in names:
        torch.save(SmallUNet(3, 2).state_dict(), folder / name)
    (folder / "[/b]z.ckpt").write_text("not a checkpoint")
    code, out, err = run(
        capsys, "convert", folder, "--model", "tests.models:SmallUNet", "--allow-module", "tests",
        "--init-args", '{"in_channels": 3, "num_classes": 2}', "--input-shape", "1,3,32,32",
    )  # fmt: skip
    assert code == 1  # z failed, and said so; nothing crashed on the names
    for name in [*names, "[/b]z.ckpt"]:
        assert name in out
    assert "[/b]z.ckpt" in err
    assert "[bold red]x.mlm.json" in out
    item = folder / "[bold red]x.mlm.json"
    code, out, err = run(capsys, "verify", item, "--model", "tests.models:SmallUNet", "--allow-module", "tests",
                         "--init-args", '{"in_channels": 3, "num_classes": 2}')  # fmt: skip
    assert f"verify {item}" in out
    code, out, err = run(capsys, "validate", item)
    assert f"{item}: valid" in out


# ------------------------------------------------------------------------------------------ faults


def _assert_items_match_files(directory: Path) -> dict[str, Any]:
    """After any fault: every Item's checkpoint exists with the stated size and checksum; collection.json (when
    present) is whole and links only Items that exist."""
    items = {p.name: json.loads(p.read_text()) for p in directory.glob("*.mlm.json")}
    for name, item in items.items():
        for asset in item["assets"].values():
            path = directory / asset["href"]
            assert path.exists(), (name, asset["href"])
            assert asset["file:size"] == path.stat().st_size, name
            assert asset["file:checksum"] == file_checksum(path), name
    collection_file = directory / "collection.json"
    if collection_file.exists():
        collection = json.loads(collection_file.read_text())
        for link in collection["links"]:
            if link["rel"] in ("item", "latest-version", "best"):
                assert link["href"].removeprefix("./") in items, link
    return items


def test_pruned_checkpoint_never_gets_its_item_back(tmp_path, monkeypatch):
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.plugins.io import TorchCheckpointIO

    from mlm_export import MLMExportCallback

    from .test_callback import WHEN, assert_catalog_true, fit

    remove = TorchCheckpointIO.remove_checkpoint

    def slow_remove(self, path):  # a slow disk: the file lingers after its Item was dropped
        time.sleep(0.05)
        remove(self, path)

    monkeypatch.setattr(TorchCheckpointIO, "remove_checkpoint", slow_remove)
    checksum = runs.RunCatalog.checksum

    def slow_checksum(self, path):  # and a slow worker: the Item's job is still pending when the prune comes
        time.sleep(0.1)
        return checksum(self, path)

    monkeypatch.setattr(runs.RunCatalog, "checksum", slow_checksum)
    directory = tmp_path / "ckpt"
    ckpt = ModelCheckpoint(dirpath=directory, save_top_k=1, every_n_train_steps=1)  # keeps the newest only
    fit(tmp_path, ckpt, MLMExportCallback(strict=True, **WHEN), epochs=3, limit_val_batches=0)  # 12 saves, 11 prunes
    assert_catalog_true(directory)
    assert len(list(directory.glob("*.mlm.json"))) == len(list(directory.glob("*.ckpt"))) == 1


@pytest.mark.slow
def test_kill_9_at_random_moments_leaves_a_consistent_folder(tmp_path, capsys):
    import random
    import signal
    import subprocess

    rng = random.Random(11)
    script = Path(__file__).with_name("fault_fit.py")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1] / "src"), *sys.path])}
    for trial in range(4):
        out = tmp_path / f"trial{trial}"
        proc = subprocess.Popen(
            [sys.executable, str(script), str(out), "400"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env
        )
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == b"training"
        time.sleep(rng.uniform(0.0, 1.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        _assert_items_match_files(out)
        if trial == 0:
            (out / "collection.json").unlink(missing_ok=True)  # lost: must be rebuilt, not skipped
        code, _, err = run(capsys, "convert", out, "--quiet")  # the repair
        assert code == 0, err
        items = _assert_items_match_files(out)
        checkpoints = {p.name for p in out.glob("*.ckpt")}
        assert {name.removesuffix(".mlm.json") + ".ckpt" for name in items} == checkpoints
        collection = json.loads((out / "collection.json").read_text())
        assert plain_validate(collection) == []
        linked = {link["href"].removeprefix("./") for link in collection["links"] if link["rel"] == "item"}
        assert linked == set(items)
        assert collection["license"] == "CC-BY-4.0"


def test_convert_overwrite_on_a_callback_folder_keeps_every_fact(tmp_path, capsys):
    from lightning.pytorch.callbacks import ModelCheckpoint

    from mlm_export import MLMExportCallback

    from .test_callback import WHEN, assert_catalog_true, fit

    directory = tmp_path / "ckpt"
    ckpt = ModelCheckpoint(dirpath=directory, monitor="val_loss", save_top_k=2, save_last=True)
    fit(tmp_path, ckpt, MLMExportCallback(license="CC-BY-4.0", **WHEN), epochs=3)
    before_items = {p.name: json.loads(p.read_text()) for p in directory.glob("*.mlm.json")}
    before = json.loads((directory / "collection.json").read_text())
    code, _, err = run(capsys, "convert", directory, "--overwrite", "--quiet")
    assert code == 0, err
    after = assert_catalog_true(directory)
    assert after["license"] == before["license"] == "CC-BY-4.0"
    best = [link["href"] for link in before["links"] if link["rel"] == "best"]
    assert best and best == [link["href"] for link in after["links"] if link["rel"] == "best"]
    for name, old in before_items.items():
        new = json.loads((directory / name).read_text())["properties"]
        for key in ("lightning:monitor", "lightning:mode", "lightning:score", "lightning:metrics", "license"):
            assert new.get(key) == old["properties"].get(key), (name, key)
        assert "lightning:score" in new or name == "last.mlm.json"


def test_lost_collection_is_rebuilt_by_convert(tmp_path, capsys):
    from lightning.pytorch.callbacks import ModelCheckpoint

    from mlm_export import MLMExportCallback

    from .test_callback import WHEN, assert_catalog_true, fit

    directory = tmp_path / "ckpt"
    fit(tmp_path, ModelCheckpoint(dirpath=directory, save_top_k=-1), MLMExportCallback(license="MIT", **WHEN), epochs=2)
    before = json.loads((directory / "collection.json").read_text())
    (directory / "collection.json").unlink()
    code, out, err = run(capsys, "convert", directory, "--json")
    assert code == 0, err
    assert {r["status"] for r in json.loads(out)["results"]} == {"skipped"}
    after = assert_catalog_true(directory)
    assert after["id"] == before["id"] and after["license"] == "MIT"
    assert sorted(map(str, after["links"])) == sorted(map(str, before["links"]))


FULL_DISK = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG, as on a full disk
import torch
from mlm_export import export_mlm
from mlm_export.cli import main
from tests.models import SmallUNet
limit = int(sys.argv[2])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
if sys.argv[1] == "export":
    try:
        export_mlm(SmallUNet(3, 2), example_input=torch.zeros(1, 3, 32, 32), out_dir=sys.argv[3])
    except Exception as e:
        print(f"{type(e).__name__}: {e}")
        sys.exit(3)
else:
    sys.exit(main(["convert", *sys.argv[3:]]))
"""


def _limited(*args: Any) -> subprocess.CompletedProcess[str]:
    """Run export_mlm or the CLI in a process whose file writes fail past a size (a real EFBIG, like ENOSPC)."""
    root = Path(__file__).parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root / "src"), str(root), *sys.path])}
    return subprocess.run(
        [sys.executable, "-c", FULL_DISK, *map(str, args)], capture_output=True, text=True, env=env, timeout=300
    )


def test_full_disk_export_leaves_no_folder_and_one_line(tmp_path):
    out = tmp_path / "new" / "out"
    proc = _limited("export", 4096, out)
    assert proc.returncode == 3, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("WriteFailedError: cannot write ")
    assert "File too large" in lines[0] and str(out) in lines[0]
    assert not out.exists()  # the folder the call made is gone again (its parent was made by mkdir -p too)


def test_full_disk_convert_keeps_converted_files(tmp_path, capsys):
    folder = tmp_path / "run"
    folder.mkdir()
    torch.save(SmallUNet(3, 2).state_dict(), folder / "a.pth")
    args = ["--model", "tests.models:SmallUNet", "--allow-module", "tests", "--init-args",
            '{"in_channels": 3, "num_classes": 2}', "--input-shape", "1,3,32,32", "--quiet"]  # fmt: skip
    assert run(capsys, "convert", folder, *args)[0] == 0
    kept = {p.name: p.read_bytes() for p in folder.iterdir()}
    torch.save(SmallUNet(3, 2).state_dict(), folder / "b.pth")
    proc = _limited("convert", 512, folder, *args)
    assert proc.returncode == 1
    errors = proc.stderr.strip().splitlines()
    assert errors and all("cannot write" in e and "File too large" in e for e in errors), proc.stderr
    assert any(str(folder / "b.mlm.json") in e for e in errors), errors
    assert all(p.read_bytes() == data for p, data in ((folder / n, d) for n, d in kept.items()))
    assert sorted(p.name for p in folder.iterdir()) == sorted([*kept, "b.pth"])  # no half Item, no temp file


class Pretrainable(torch.nn.Module):
    """Records its arguments as a LightningModule's save_hyperparameters does."""

    def __init__(self, pretrained: bool = False, width: int = 2) -> None:
        super().__init__()
        self.hparams = {"pretrained": pretrained, "width": width}
        self.built_pretrained = pretrained
        self.net = torch.nn.Linear(width, width)


def test_hyperparameters_record_what_the_checkpoint_stated_not_the_offline_value():
    from mlm_export._sources.checkpoint import ModelSpec

    allowed = Policy(allow_modules=("tests",))
    model = ModelSpec("tests.test_security:Pretrainable", (("pretrained", True),), policy=allowed).build()
    assert model.built_pretrained is False  # built offline
    assert model.hparams["pretrained"] is True  # and described as the checkpoint stated


def test_a_fifo_named_like_an_item_does_not_hang_the_form(tmp_path):
    from mlm_export._form.session import FormSession

    os.mkfifo(tmp_path / "item.json")
    opened: dict[str, Any] = {}

    def open_it() -> None:
        try:
            FormSession(tmp_path / "item.json")
        except OSError as e:
            opened["error"] = e

    assert _finishes(open_it)
    assert "not a regular file" in str(opened["error"])
