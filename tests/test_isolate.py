"""Attack tests: a stranger's model runs (and is rebuilt) only in a limited child process; the user's process
sees nothing change while it does."""

from __future__ import annotations

import datetime as dt
import json
import logging
import resource
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from mlm_export import export_mlm, verify_item
from mlm_export._convert import ConvertSettings, IsolatedConverter
from mlm_export._isolate import MAX_MEMORY, Child, Limits, size_of
from mlm_export._pipeline import ExportOptions
from mlm_export._write import file_checksum
from mlm_export.cli import main

from .models import SmallUNet

#: The real ``connect``, taken before the suite's autouse fixture refuses every connection: the user's thread
#: below connects to a loopback server of its own.
LOOPBACK_CONNECT = socket.socket.connect
WHEN = {"datetime": dt.datetime(2024, 1, 1, tzinfo=dt.UTC)}
GiB = 1 << 30


def _export(tmp_path: Path, artifacts: str) -> tuple[Path, dict[str, Any]]:
    out = tmp_path / "model"
    export_mlm(
        SmallUNet(in_channels=3, num_classes=2), example_input=torch.randn(2, 3, 32, 32), out_dir=out,
        name="Small UNet", artifacts=artifacts, **WHEN,
    )  # fmt: skip
    item_path = out / "small-unet.json"
    return item_path, json.loads(item_path.read_text())


def _restamp(item_path: Path, item: dict[str, Any], key: str) -> None:
    """The Item states the tampered file's size and checksum, as an attacker who controls both would."""
    f = item_path.parent / item["assets"][key]["href"]
    item["assets"][key]["file:size"] = f.stat().st_size
    item["assets"][key]["file:checksum"] = file_checksum(f)
    item_path.write_text(json.dumps(item))


def _memory_bomb(path: Path, gib: float = 3.0) -> None:
    """Replace an ONNX model's graph by one that adds the sum of a ``gib`` GiB tensor of ones to its input."""
    import onnx
    from onnx import TensorProto, helper

    model = onnx.load(str(path))
    inp, out = model.graph.input[0], model.graph.output[0]
    count = int(gib * GiB) // 4
    nodes = [
        helper.make_node("Constant", [], ["n"], value=helper.make_tensor("c", TensorProto.INT64, [1], [count])),
        helper.make_node("ConstantOfShape", ["n"], ["big"], value=helper.make_tensor("v", TensorProto.FLOAT, [1], [1])),
        helper.make_node("ReduceSum", ["big"], ["s"], keepdims=0),
        helper.make_node("Add", [inp.name, "s"], [out.name]),
    ]
    graph = helper.make_graph(nodes, "bomb", [inp], [out])
    bomb = helper.make_model(graph, opset_imports=list(model.opset_import))
    bomb.ir_version = model.ir_version
    onnx.save(bomb, str(path))


def test_onnx_allocating_3_gib_ends_with_a_memory_limit_line(tmp_path: Path) -> None:
    item_path, item = _export(tmp_path, "onnx")
    _memory_bomb(item_path.parent / "small-unet.onnx")
    _restamp(item_path, item, "model")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    started = time.monotonic()
    checks = verify_item(item_path)
    took = time.monotonic() - started
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    failed = [c for c in checks if "memory limit" in c.detail]
    assert failed, [c.as_dict() for c in checks]
    assert all(not c.ok for c in failed)
    assert all("\n" not in c.detail for c in checks)
    assert f"{MAX_MEMORY / GiB:g} GiB" in failed[0].detail and "max_memory=" in failed[0].detail
    assert took < 240, took  # the child's start (torch imported) dominates on a loaded machine
    assert grown < GiB // 2, grown  # the parent never held the allocation


def test_verify_no_run_checks_the_files_and_runs_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    item_path, item = _export(tmp_path, "onnx")
    _memory_bomb(item_path.parent / "small-unet.onnx")
    _restamp(item_path, item, "model")
    checks = verify_item(item_path, run=False)
    names = {c.name: c for c in checks}
    assert names["files"].ok and names["file model (onnx)"].ok
    assert names["run"].skipped and "not run" in names["run"].detail
    assert not any("memory" in c.detail for c in checks)  # the bomb never ran
    code = main(["verify", str(item_path), "--no-run"])
    out = capsys.readouterr().out
    assert code == 0 and "skipped" in out and "not run (--no-run)" in out


def test_verify_cli_memory_limit_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    item_path, item = _export(tmp_path, "onnx")
    _memory_bomb(item_path.parent / "small-unet.onnx", gib=1.5)
    _restamp(item_path, item, "model")
    code = main(["verify", str(item_path), "--max-memory", "1G"])
    out = capsys.readouterr().out
    assert code == 1
    assert "memory limit of 1 GiB" in out and "--max-memory SIZE" in out


def _spinner(path: Path) -> None:
    """Replace an ONNX model's graph by one that loops 10**12 times before it returns its input."""
    import onnx
    from onnx import TensorProto, helper

    model = onnx.load(str(path))
    inp, out = model.graph.input[0], model.graph.output[0]
    body = helper.make_graph(
        [helper.make_node("Identity", ["c_in"], ["c_out"]), helper.make_node("Add", ["v_in", "one"], ["v_out"])],
        "spin",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("c_in", TensorProto.BOOL, []),
            helper.make_tensor_value_info("v_in", TensorProto.FLOAT, [1]),
        ],
        [
            helper.make_tensor_value_info("c_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("v_out", TensorProto.FLOAT, [1]),
        ],
        [helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0])],
    )
    nodes = [
        helper.make_node("Constant", [], ["m"], value=helper.make_tensor("m", TensorProto.INT64, [], [10**12])),
        helper.make_node("Constant", [], ["t"], value=helper.make_tensor("t", TensorProto.BOOL, [], [True])),
        helper.make_node("Constant", [], ["z"], value=helper.make_tensor("z", TensorProto.FLOAT, [1], [0.0])),
        helper.make_node("Loop", ["m", "t", "z"], ["n"], body=body),
        helper.make_node("Mul", ["n", "z"], ["nothing"]),
        helper.make_node("Add", [inp.name, "nothing"], [out.name]),
    ]
    graph = helper.make_graph(nodes, "spinner", [inp], [out])
    spinner = helper.make_model(graph, opset_imports=list(model.opset_import))
    spinner.ir_version = model.ir_version
    onnx.save(spinner, str(path))


def test_verify_cli_timeout_flag_kills_a_model_that_spins(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    item_path, item = _export(tmp_path, "onnx")
    _spinner(item_path.parent / "small-unet.onnx")
    _restamp(item_path, item, "model")
    started = time.monotonic()
    code = main(["verify", str(item_path), "--timeout", "4"])
    took = time.monotonic() - started
    out = capsys.readouterr().out
    assert code == 1
    assert "timed out" in out and "time limit of 4 s" in out and "--timeout SECONDS" in out
    assert took < 200, took  # the child's start (torch imported) and the 4 s, not the 10**12 loop


def _children() -> set[int]:
    """Ids of this process's child processes (every thread's)."""
    found: set[int] = set()
    for task in Path("/proc/self/task").iterdir():
        found.update(int(p) for p in (task / "children").read_text().split())
    return found


def test_a_child_started_early_is_ended_at_once_when_the_files_do_not_match(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    item_path, _ = _export(tmp_path, "onnx")
    with open(item_path.parent / "small-unet.onnx", "ab") as f:
        f.write(b"tampered")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where the child's scratch folder goes
    before = _children()
    started = time.monotonic()
    checks = verify_item(item_path)
    took = time.monotonic() - started
    names = {c.name: c for c in checks}
    assert not names["files"].ok and "not loaded" in names["load model"].detail
    assert _children() <= before and not list(tmp_path.glob("mlm-export-child-*"))
    assert took < 5, took  # killed while it still imports, not awaited


def test_size_flag_values() -> None:
    assert size_of("2G") == 2 * GiB and size_of("512M") == 512 << 20 and size_of("1.5GiB") == int(1.5 * GiB)
    assert size_of("1000") == 1000
    with pytest.raises(ValueError, match="not a size"):
        size_of("lots")


def test_the_child_is_limited_offline_and_clean(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    monkeypatch.setenv("SECRET_TOKEN", "s3cret")
    with Child(Limits(memory=GiB, timeout=60)) as child:
        seen = child.call("mlm_export._isolate:conditions")
        scratch = Path(seen["cwd"])
        assert scratch.name.startswith("mlm-export-child-") and scratch != Path.cwd()
        env = seen["env"]
        assert env["MLM_EXPORT_OFFLINE"] == "1" and env["HOME"] == seen["cwd"]
        assert env["TMPDIR"].startswith(seen["cwd"])
        assert "HTTPS_PROXY" not in env and "SECRET_TOKEN" not in env
        assert seen["stdin"] == "/dev/null"
        assert seen["network"].startswith("DownloadRefusedError")
        limits = seen["limits"]
        assert limits["RLIMIT_AS"][0] == seen["runtime"] + GiB or limits["RLIMIT_AS"][0] > 0
        assert limits["RLIMIT_AS"][1] == limits["RLIMIT_AS"][0]
        assert limits["RLIMIT_FSIZE"][0] > 0 and limits["RLIMIT_NOFILE"][0] <= 1024 and limits["RLIMIT_CPU"][0] > 0
        assert seen["pid"] == child.call("mlm_export._isolate:conditions")["pid"]  # one child for every call
    assert not scratch.exists()  # its folder goes with it


HOSTILE = '''
import os, signal, socket, time
import torch
from torch import nn


class Phone(nn.Module):
    """Opens a connection while it is built (a download, an exfiltration)."""

    def __init__(self, port: int = 0, marker: str = "") -> None:
        super().__init__()
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
        open(marker, "w").close()
        self.conv = nn.Conv2d(3, 2, 1)

    def forward(self, x):
        return self.conv(x)


class Sleeper(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        time.sleep(600)


class Liar(nn.Module):
    """Takes the child over and answers for it: a reply nested deeper than any JSON parser recurses."""

    def __init__(self) -> None:
        super().__init__()
        import json, sys

        fd = json.loads(sys.argv[1])["write"]
        body = b"[" * 200_000 + b"]" * 200_000
        os.write(fd, len(body).to_bytes(8, "big") + body)
        time.sleep(600)


class Crasher(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        os.kill(os.getpid(), signal.SIGSEGV)


class CrashesOnFlag(nn.Module):
    """Builds, until the file ``flag`` exists: then it crashes the process building it."""

    def __init__(self, flag: str = "") -> None:
        super().__init__()
        if os.path.exists(flag):
            os.kill(os.getpid(), signal.SIGSEGV)
        self.conv = nn.Conv2d(3, 2, 1)

    def forward(self, x):
        return self.conv(x)
'''


@pytest.fixture
def hostile_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    root = tmp_path / "pkgs"
    (root / "hostile_models").mkdir(parents=True)
    (root / "hostile_models" / "__init__.py").write_text(HOSTILE)
    monkeypatch.syspath_prepend(str(root))
    return "hostile_models"


class _Server:
    """A loopback server that counts the connections it accepts."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        self.sock.close()


def _checkpoint(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "weights.pt"
    torch.save({"conv.weight": torch.zeros(2, 3, 1, 1), "conv.bias": torch.zeros(2)}, path)
    return path


def _converter(model: str, package: str, **init_args: Any) -> IsolatedConverter:
    settings = ConvertSettings(
        model=f"{package}:{model}", init_args=init_args, input_shape=(1, 3, 8, 8), allow_modules=(package,),
        timeout=8,
    )  # fmt: skip
    return IsolatedConverter(ExportOptions(tasks=["semantic-segmentation"]), settings)


def test_a_constructor_that_connects_out_is_refused_in_the_child(tmp_path: Path, hostile_package: str) -> None:
    server = _Server()
    marker = tmp_path / "connected"
    connect, lookup = socket.socket.connect, socket.getaddrinfo
    try:
        with _converter("Phone", hostile_package, port=server.port, marker=str(marker)) as converter:
            result = converter.convert(_checkpoint(tmp_path / "ckpts"))
    finally:
        server.close()
    assert result.status == "failed"
    assert result.error and "tried to connect" in result.error and "download=True" in result.error
    assert server.accepted == 0 and not marker.exists()
    assert socket.socket.connect is connect and socket.getaddrinfo is lookup  # the parent's module untouched


def test_a_constructor_that_hangs_or_crashes_fails_alone(tmp_path: Path, hostile_package: str) -> None:
    with _converter("Sleeper", hostile_package) as converter:
        slow = converter.convert(_checkpoint(tmp_path / "a"))
    assert slow.status == "failed" and slow.error and "timed out" in slow.error and "time limit of 8 s" in slow.error
    with _converter("Crasher", hostile_package) as converter:
        crash = converter.convert(_checkpoint(tmp_path / "b"))
    assert crash.status == "failed" and crash.error and "crashed" in crash.error and "SIGSEGV" in crash.error


def test_a_crash_after_a_good_checkpoint_still_leaves_the_folders_collection(
    tmp_path: Path, hostile_package: str
) -> None:
    """The child that described the first checkpoint is ended by the second: the Collection is still written,
    listing the Item that was written (its catalog is rebuilt from the folder in a new child)."""
    folder, flag = tmp_path / "run", tmp_path / "crash-now"
    good = _checkpoint(folder)
    bad = folder / "bad.pt"
    bad.write_bytes(good.read_bytes())
    with _converter("CrashesOnFlag", hostile_package, flag=str(flag)) as converter:
        first = converter.convert(good, catalog_dir=folder)
        flag.touch()
        second = converter.convert(bad, catalog_dir=folder)
        written = converter.write_collections()
    assert first.status != "failed" and first.item_path is not None and first.item_path.is_file(), first
    assert second.status == "failed" and second.error and "crashed" in second.error
    assert written == [folder.absolute() / "collection.json"]
    collection = json.loads((folder / "collection.json").read_text())
    items = [link["href"] for link in collection["links"] if link["rel"] == "item"]
    assert items == ["./" + first.item_path.name], items


def test_a_child_taken_over_cannot_crash_the_parent_with_its_reply(tmp_path: Path, hostile_package: str) -> None:
    with _converter("Liar", hostile_package) as converter:
        lied = converter.convert(_checkpoint(tmp_path / "a"))
        assert converter._child._proc is None  # a child that lied once is not asked again
    assert lied.status == "failed" and lied.error and "not JSON" in lied.error and "\n" not in lied.error


def _observe(stop: threading.Event, port: int, seen: list[tuple[Any, ...]], log: logging.Logger) -> None:
    """A user's thread: connects to a local server and logs, noting what the process-wide state is."""
    torch_loggers = sorted(n for n in logging.root.manager.loggerDict if n.startswith("torch"))
    while not stop.is_set():
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass
        log.info("still training")
        seen.append(
            (
                socket.socket.connect,
                socket.socket.connect_ex,
                socket.getaddrinfo,
                sys.stdout,
                sys.stderr,
                signal.getsignal(signal.SIGALRM),
                signal.getsignal(signal.SIGINT),
                tuple(logging.getLogger(n).level for n in torch_loggers),
                log.level,
            )
        )
        time.sleep(0.01)


def _verify_rebuilding(tmp_path: Path) -> Callable[[], bool]:
    """``verify`` rebuilding a model from an Item's weights (the Item is exported before the thread watches)."""
    item_path, _ = _export(tmp_path, "safetensors")

    def work() -> bool:
        checks = verify_item(
            item_path, model="tests.models:SmallUNet", init_args={"in_channels": 3, "num_classes": 2},
            allow_modules=("tests",),
        )  # fmt: skip
        return any(c.name == "load model" and c.ok for c in checks)

    return work


def _convert_rebuilding(tmp_path: Path) -> Callable[[], bool]:
    """``convert`` rebuilding, tracing and writing the model of a state-dict checkpoint."""
    folder = tmp_path / "ckpts"
    folder.mkdir()
    torch.save(SmallUNet(in_channels=3, num_classes=2).state_dict(), folder / "small.pt")
    settings = ConvertSettings(
        model="tests.models:SmallUNet", init_args={"in_channels": 3, "num_classes": 2}, input_shape=(1, 3, 32, 32),
        allow_modules=("tests",),
    )  # fmt: skip

    def work() -> bool:
        with IsolatedConverter(ExportOptions(tasks=["semantic-segmentation"], **WHEN), settings) as converter:
            result = converter.convert(folder / "small.pt")
        return result.status == "converted" and (folder / "small.mlm.json").exists()

    return work


@pytest.mark.parametrize("prepare", [_verify_rebuilding, _convert_rebuilding], ids=["verify", "convert"])
def test_a_user_thread_sees_nothing_change_while_a_model_is_rebuilt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, prepare: Callable[[Path], Callable[[], bool]]
) -> None:
    monkeypatch.setattr(socket.socket, "connect", LOOPBACK_CONNECT)
    work = prepare(tmp_path)
    server = _Server()
    log = logging.getLogger("user.training")
    log.setLevel(logging.INFO)
    stop, seen = threading.Event(), []  # type: list[tuple[Any, ...]]
    observer = threading.Thread(target=_observe, args=(stop, server.port, seen, log))
    observer.start()
    try:
        rebuilt = work()
    finally:
        stop.set()
        observer.join()
        server.close()
    assert rebuilt
    assert len(seen) > 3 and server.accepted >= len(seen)
    assert len(set(seen)) == 1, "process-wide state changed while the model was rebuilt"
