"""Attack tests: model files from strangers are data. Code hidden in a ``.pt2`` archive's symbolic sizes or
guards, or TorchScript calling operators that touch files, is refused before anything loads; each model file is
opened once, never through a link."""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from mlm_export import export_mlm, verify_item
from mlm_export._artifact_safety import UnsafeArtifactError, check_pt2, check_torchscript
from mlm_export._model_code import GrammarError, check_guard, check_size_expression
from mlm_export._write import file_checksum

from .models import SmallUNet

WHEN = {"datetime": dt.datetime(2024, 1, 1, tzinfo=dt.UTC)}
SRC = Path(__file__).resolve().parents[1] / "src"


def _export(tmp_path: Path, artifacts: str) -> tuple[Path, dict[str, Any]]:
    out = tmp_path / "model"
    export_mlm(
        SmallUNet(in_channels=3, num_classes=2), example_input=torch.randn(2, 3, 32, 32), out_dir=out,
        name="Small UNet", artifacts=artifacts, **WHEN,
    )  # fmt: skip
    item_path = out / "small-unet.json"
    return item_path, json.loads(item_path.read_text())


def _rewrite(path: Path, edit: Any) -> None:
    """Rewrite a zip archive, each member's bytes passed through ``edit(name, data)``."""
    with zipfile.ZipFile(path) as z:
        members = [(i.filename, z.read(i.filename)) for i in z.infolist()]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        for name, data in members:
            z.writestr(name, edit(name, data))


def _restamp(item_path: Path, key: str = "model") -> None:
    """The Item states the tampered file's size and checksum, as an attacker who wrote both would."""
    item = json.loads(item_path.read_text())
    f = item_path.parent / item["assets"][key]["href"]
    item["assets"][key]["file:size"] = f.stat().st_size
    item["assets"][key]["file:checksum"] = file_checksum(f)
    item_path.write_text(json.dumps(item))


def _edit_model_json(pt2: Path, change: Any) -> None:
    def edit(name: str, data: bytes) -> bytes:
        if name.endswith("models/model.json"):
            doc = json.loads(data)
            change(doc)
            return json.dumps(doc).encode()
        return data

    _rewrite(pt2, edit)


def test_pt2_with_a_member_twice_is_refused(tmp_path):
    item_path, _ = _export(tmp_path, "pt2")
    pt2 = item_path.parent / "small-unet.pt2"
    with zipfile.ZipFile(pt2, "a") as z, pytest.warns(UserWarning, match="Duplicate name"):
        z.writestr("archive/models/model.json", b"{}")
    with pytest.raises(UnsafeArtifactError, match=r"holds 'archive/models/model\.json' twice"):
        check_pt2(pt2)


def _first_expr(doc: dict[str, Any]) -> dict[str, Any]:
    for value in doc["graph_module"]["graph"]["tensor_values"].values():
        for size in value["sizes"]:
            if "as_expr" in size:
                return size["as_expr"]  # type: ignore[no-any-return]
    raise AssertionError("no symbolic size in the archive")


# ---------------------------------------------------------------------------------------------- .pt2


def test_pt2_expression_running_python_is_refused_before_loading(tmp_path):
    item_path, _ = _export(tmp_path, "pt2")
    pt2 = item_path.parent / "small-unet.pt2"
    marker = tmp_path / "MARKER"
    payload = f"__import__('os').system('touch {marker}') + 2"
    _edit_model_json(pt2, lambda doc: _first_expr(doc).update(expr_str=payload))
    _restamp(item_path)

    with pytest.raises(UnsafeArtifactError, match=r"small-unet\.pt2: .*archive/models/model\.json.*'__import__'"):
        check_pt2(pt2)
    checks = verify_item(item_path)
    load = next(c for c in checks if c.name == "load model")
    assert not load.ok and "model.json" in load.detail
    assert not marker.exists()
    # the control: torch's own loader runs the payload, so the check is what stops it
    with contextlib.suppress(Exception):
        torch.export.load(str(pt2))
    assert marker.exists()


def test_pt2_guard_code_running_python_is_refused(tmp_path):
    item_path, _ = _export(tmp_path, "pt2")
    pt2 = item_path.parent / "small-unet.pt2"
    marker = tmp_path / "GUARD"
    guard = f"__import__('os').system('touch {marker}') == 0"
    _edit_model_json(pt2, lambda doc: doc["guards_code"].append(guard))
    _restamp(item_path)
    with pytest.raises(UnsafeArtifactError, match=r"guards_code.*'__import__'"):
        check_pt2(pt2)
    verify_item(item_path)
    assert not marker.exists()
    with contextlib.suppress(Exception):  # the control: .module() compiles the guards into Python, a call runs them
        torch.export.load(str(pt2)).module()(torch.randn(2, 3, 32, 32))
    assert marker.exists()


def test_pt2_node_calling_a_file_operator_is_refused(tmp_path):
    item_path, _ = _export(tmp_path, "pt2")
    pt2 = item_path.parent / "small-unet.pt2"

    def retarget(doc: dict[str, Any]) -> None:
        doc["graph_module"]["graph"]["nodes"][0]["target"] = "torch.ops.aten.from_file.default"

    _edit_model_json(pt2, retarget)
    with pytest.raises(UnsafeArtifactError, match=r"calls the operator aten::from_file"):
        check_pt2(pt2)
    _edit_model_json(pt2, lambda doc: doc["graph_module"]["graph"]["nodes"][0].update(target="torch.save"))
    with pytest.raises(UnsafeArtifactError, match=r"calls 'torch\.save'"):
        check_pt2(pt2)


@pytest.mark.parametrize(
    "text",
    [
        "s0 + 2",
        "Min(s0, 4) // 2 + Max(u3, 1) % 3",
        "Mul(Integer(-3), Symbol('s77', positive=True, integer=True))",
        "Add(FloorDiv(Add(Symbol('s53', positive=True, integer=True), Integer(-1)), Integer(2)), Integer(1))",
        "Eq(Mod(Symbol('u0', integer=True), Integer(2)), Integer(0))",
    ],
)
def test_symbolic_sizes_torch_writes_are_accepted(text):
    check_size_expression(text)


@pytest.mark.parametrize(
    "text",
    [
        "__import__('os').system('id')",
        "s0.__class__",
        "Symbol('s0').__class__",
        "Symbol('os', positive=True)",
        "Symbol('s0', positive=exec)",
        "lambda: 1",
        "s0 ** 2",
        "[s0 for s0 in ()]",
        "open('x')",
        "Integer(1)(2)",
        "s0; 1",
        "'s0'",
        "(" * 200 + "s0" + ")" * 200,
        "x",
    ],
)
def test_anything_else_in_a_size_is_refused(text):
    with pytest.raises(GrammarError):
        check_size_expression(text)


def test_guards_read_only_input_sizes():
    check_guard("(1 + (((-1) + L['x'].size()[3]) // 2)) != 1")
    check_guard("L['x'].size()[2] == (4 + 4*(((-1) + L['x'].size()[2]) // 4)) and not L['y'].stride()[0] < 2")
    # what torch 2.14 writes for a U-Net that pools twice (the demo's)
    check_guard("(torch.sym_max(1, L['image'].size()[3] // 2)*torch.sym_max(1, L['image'].size()[2] // 2)) != 1")
    bad_guards = ("L['x'].numpy()", "L['x'].__class__", "L[x]", "print(1) == 1", "L['x'].size()[0] == \"a\"")
    for bad in (*bad_guards, "torch.load('f') == 1", "torch.sym_max.__globals__ == 1", "torch == 1"):
        with pytest.raises(GrammarError):
            check_guard(bad)


# ---------------------------------------------------------------------------------------------- TorchScript


class _FromFile(nn.Module):
    """Maps a file outside the folder (``shared=True``: writes go to the file) and overwrites it."""

    def __init__(self, victim: str, marker: str) -> None:
        super().__init__()
        self.victim = victim
        self.marker = marker

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = torch.from_file(self.victim, shared=True, size=8, dtype=torch.uint8).fill_(88)
        m = torch.from_file(self.marker, shared=True, size=8, dtype=torch.uint8).fill_(1)
        return x + (t.sum() + m.sum()).to(x.dtype) * 0


class _LeakFile(nn.Module):
    """Reads a file outside the folder into the message of the error it raises."""

    def __init__(self, secret: str) -> None:
        super().__init__()
        self.secret = secret

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = torch.from_file(self.secret, shared=False, size=16, dtype=torch.uint8)
        text = ""
        for i in range(16):
            text += chr(int(t[i]))
        raise RuntimeError(text)


def _plant_script(item_path: Path, module: nn.Module) -> Path:
    ts = item_path.parent / "small-unet.torchscript"
    torch.jit.save(torch.jit.script(module), str(ts))
    _restamp(item_path)
    return ts


def test_torchscript_from_file_is_refused_and_the_victim_survives(tmp_path):
    item_path, _ = _export(tmp_path, "torchscript")
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"precious content")
    marker = tmp_path / "MARKER"
    ts = _plant_script(item_path, _FromFile(str(victim), str(marker)))

    with pytest.raises(UnsafeArtifactError, match=r"small-unet\.torchscript: .*calls the operator torch\.from_file"):
        check_torchscript(ts)
    checks = verify_item(item_path)
    load = next(c for c in checks if c.name == "load model")
    assert not load.ok and "from_file" in load.detail
    assert victim.read_bytes() == b"precious content"
    assert not marker.exists()
    # the control: loaded and run as torch does, the file is overwritten
    torch.jit.load(str(ts))(torch.zeros(1))
    assert victim.read_bytes().startswith(b"X" * 8)


def test_torchscript_reading_a_file_into_an_error_prints_nothing_of_it(tmp_path, capsys):
    from mlm_export.cli import main

    item_path, _ = _export(tmp_path, "torchscript")
    _plant_script(item_path, _LeakFile("/etc/passwd"))
    head = Path("/etc/passwd").read_bytes()[:16].decode("latin-1")
    assert main(["verify", str(item_path)]) == 1
    out, err = capsys.readouterr()
    assert "from_file" in out + err
    assert head not in out + err
    with pytest.raises(Exception, match=head[:8]):  # the control: run as torch does, it leaks the file
        torch.jit.load(str(item_path.parent / "small-unet.torchscript"))(torch.zeros(1))


def test_torchscript_calling_an_undefined_function_or_method_is_refused(tmp_path):
    item_path, _ = _export(tmp_path, "torchscript")
    ts = item_path.parent / "small-unet.torchscript"
    for extra, said in [
        ("\n_ = fork(print, 1)\n", r"calls fork\(\)"),
        ("\n_ = torch._C._nn.gelu(1)\n", r"refers to torch\._C\._nn\.gelu"),
        ("\n_ = ops.prim.PythonOp(1)\n", r"calls the operator prim::PythonOp"),
        ("\n_ = torch.save(1, 'x')\n", r"calls the operator torch\.save"),
        ("\n_ = (x).wait()\n", r"calls the method wait\(\)"),
        ("\n_ = getattr(torch, 'from_file')\n", r"uses torch as a value"),
        ("\n_ = getattr(ops.aten, 'from_file')\n", r"refers to ops\.aten"),
        ("\nclass E(Module):\n  def from_file(self):\n    return 1\n_ = (x).from_file()\n", r"also an operator's name"),
        ("\nimport os\n", r"holds a import statement"),
        ("\n_ = x" + "[0]" * 100_000 + "\n", r"models\.py does not parse \(RecursionError\)"),
        ("\n_ = " + "-" * 100_000 + "1\n", r"models\.py does not parse \(MemoryError\)"),
        ("\n_ = 1\x00\n", r"models\.py does not parse"),
        ("\ndef f(:\n", r"models\.py does not parse \(invalid syntax"),
    ]:
        original = ts.read_bytes()

        def edit(name: str, data: bytes, extra: str = extra) -> bytes:
            return data + extra.encode() if "/code/" in name and name.endswith("models.py") else data

        _rewrite(ts, edit)
        with pytest.raises(UnsafeArtifactError, match=said):
            check_torchscript(ts)
        ts.write_bytes(original)
    check_torchscript(ts)  # the project's own file passes


# ---------------------------------------------------------------------------------------------- one open


_AUDIT = """
import sys, json, os
opened = []
target = {targets!r}
def hook(event, args):
    if event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
        p = os.fsdecode(args[0])
        if os.path.basename(p) in target:
            opened.append(os.path.basename(p))
sys.addaudithook(hook)
sys.path.insert(0, {src!r})
from mlm_export.cli import main
code = main({argv!r})
print("OPENED " + json.dumps(opened))
"""


def _opens(argv: list[str], names: list[str]) -> tuple[list[str], str]:
    """The model files a command opens (by name) in a child process, through an audit hook on ``open``."""
    script = _AUDIT.format(targets=names, src=str(SRC), argv=argv)
    env = {**os.environ, "PYTHONPATH": str(SRC), "MLM_EXPORT_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    line = next(ln for ln in done.stdout.splitlines() if ln.startswith("OPENED "))
    return json.loads(line.removeprefix("OPENED ")), done.stdout + done.stderr


def test_verify_and_validate_open_each_model_file_once(tmp_path):
    item_path, _ = _export(tmp_path, "pt2,torchscript,onnx")
    files = ["small-unet.pt2", "small-unet.torchscript", "small-unet.onnx"]
    opened, output = _opens(["verify", str(item_path)], files)
    assert sorted(opened) == sorted(files), output
    opened, output = _opens(["validate", str(item_path)], files)
    assert sorted(opened) == sorted(files), output


def test_a_symlinked_model_file_is_refused(tmp_path):
    item_path, _ = _export(tmp_path, "pt2")
    pt2 = item_path.parent / "small-unet.pt2"
    elsewhere = item_path.parent / "real.bin"
    pt2.rename(elsewhere)
    pt2.symlink_to(elsewhere.name)  # inside the folder, but a link: swapped in, it could lead anywhere
    checks = verify_item(item_path)
    files = next(c for c in checks if c.name == "files")
    assert not files.ok and "symbolic link" in files.detail
    assert not next(c for c in checks if c.name == "load model").ok


def test_validate_never_hashes_a_file_through_a_link(tmp_path, capsys):
    from mlm_export.cli import main

    item_path, _ = _export(tmp_path, "pt2")
    pt2 = item_path.parent / "small-unet.pt2"
    secret = tmp_path / "secret.bin"
    secret.write_bytes(pt2.read_bytes())  # same size: a size check alone would pass it
    pt2.unlink()
    pt2.symlink_to(secret)
    assert main(["validate", str(item_path), "--json"]) == 1
    out, err = capsys.readouterr()
    assert file_checksum(secret) not in out + err
    assert "symbolic link" in out + err or "outside the Item's folder" in out + err


def test_model_bytes_reader_refuses_links_and_special_files(tmp_path):
    from mlm_export._hrefs import UnsafeHrefError
    from mlm_export._model_bytes import read_model_file

    folder = tmp_path / "f"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "m.pt2").write_bytes(b"12345")
    got = read_model_file(folder, "sub/m.pt2")
    assert got.data == b"12345" and got.checksum == file_checksum(folder / "sub" / "m.pt2")
    (folder / "linkdir").symlink_to(folder / "sub", target_is_directory=True)
    with pytest.raises(UnsafeHrefError, match=r"symbolic link"):
        read_model_file(folder, "linkdir/m.pt2")
    os.mkfifo(folder / "fifo.pt2")
    with pytest.raises(UnsafeHrefError, match=r"not a regular file"):
        read_model_file(folder, "fifo.pt2")
    (folder / "dir.pt2").mkdir()
    with pytest.raises(UnsafeHrefError, match=r"not a regular file"):
        read_model_file(folder, "dir.pt2")
    with pytest.raises(UnsafeHrefError, match=r"over the 4"):
        read_model_file(folder, "sub/m.pt2", limit=4)
    (tmp_path / "outside.pt2").write_bytes(b"12345")
    with pytest.raises(UnsafeHrefError, match=r"outside the Item's folder"):
        read_model_file(folder, "../outside.pt2")
    with pytest.raises(UnsafeHrefError, match=r"does not name a file inside the Item's folder"):
        read_model_file(folder, "../f/sub/m.pt2")  # no '..' at all, even one that comes back
    assert io.BytesIO(got.data).read() == b"12345"


@pytest.mark.parametrize("artifacts", ["safetensors", "checkpoint"])
def test_verify_loads_a_weights_model_file_from_its_one_read(tmp_path, artifacts):
    out = tmp_path / "model"
    export_mlm(
        nn.Conv2d(3, 2, 1), example_input=torch.randn(2, 3, 8, 8), out_dir=out, name="Conv", artifacts=artifacts,
        tasks=["semantic-segmentation"], **WHEN,
    )  # fmt: skip
    item_path = out / "conv.json"
    item = json.loads(item_path.read_text())
    model_file = Path(item["assets"]["model"]["href"]).name
    argv = ["verify", str(item_path), "--model", "torch.nn:Conv2d", "--init-args",
            '{"in_channels": 3, "out_channels": 2, "kernel_size": 1}']  # fmt: skip
    opened, output = _opens(argv, [model_file])
    assert opened == [model_file], output  # hashed, sniffed, scanned and loaded from one read
    checks = {c.name: c for c in verify_item(item_path, model="torch.nn:Conv2d", init_args=json.loads(argv[-1]))}
    assert checks["load model"].ok and checks["run"].ok, checks
    (out / model_file).rename(out / "real.bin")
    (out / model_file).symlink_to("real.bin")
    checks = {c.name: c for c in verify_item(item_path, model="torch.nn:Conv2d", init_args=json.loads(argv[-1]))}
    assert not checks["files"].ok and "symbolic link" in checks["files"].detail
    assert not checks["load model"].ok


@pytest.mark.parametrize("member", ["archive/models/modelXjson", "archive/models/model.json.txt"])
def test_pt2_program_under_a_name_without_json_is_still_checked(tmp_path, member):
    """torch reads every member under ``models/`` as a program (its name cut by five characters), whatever its
    suffix: a program hidden in ``models/modelXjson`` must be checked like ``models/model.json``."""
    item_path, _ = _export(tmp_path, "pt2")
    pt2 = item_path.parent / "small-unet.pt2"
    marker = tmp_path / "MARKER"
    _edit_model_json(pt2, lambda doc: _first_expr(doc).update(expr_str=f"__import__('os').system('touch {marker}')+2"))
    with zipfile.ZipFile(pt2) as z:
        members = [(i.filename, z.read(i.filename)) for i in z.infolist()]
    with zipfile.ZipFile(pt2, "w", zipfile.ZIP_STORED) as z:
        for name, data in members:
            z.writestr(member if name == "archive/models/model.json" else name, data)
    _restamp(item_path)
    with pytest.raises(UnsafeArtifactError, match=re.escape(member.removeprefix("archive/"))):
        check_pt2(pt2)
    assert not next(c for c in verify_item(item_path) if c.name == "load model").ok
    assert not marker.exists()
    if member.endswith("Xjson"):  # the control: torch loads the program from that name and runs the payload
        with contextlib.suppress(Exception):
            torch.export.load(str(pt2))
        assert marker.exists()


def test_pt2_members_outside_the_layout_torch_export_writes_are_refused(tmp_path):
    """AOTInductor, ExecuTorch and MTIA members would be loaded or compiled as native code: refused by list."""
    item_path, _ = _export(tmp_path, "pt2")
    pt2 = item_path.parent / "small-unet.pt2"
    original = pt2.read_bytes()
    for name in [
        "archive/data/aotinductor/model/model.cpp",
        "archive/data/aotinductor/model/model_compile_flags.json",
        "archive/data/executorch/model.pte",
        "archive/xl_model_weights/model_param_config",
        "archive/other/file",
        "other_root/models/model.json",
    ]:
        with zipfile.ZipFile(pt2, "a") as z:
            z.writestr(name, b"{}")
        with pytest.raises(UnsafeArtifactError, match=re.escape(name)):
            check_pt2(pt2)
        pt2.write_bytes(original)
    check_pt2(pt2)


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("zipped", [True, False])
def test_a_weights_model_file_loaded_from_its_bytes_keeps_every_check(tmp_path, zipped):
    """The bytes verify read go through the same gates as a file: globals refused by name, nothing unpickled."""
    out = tmp_path / "model"
    export_mlm(
        nn.Conv2d(3, 2, 1), example_input=torch.randn(2, 3, 8, 8), out_dir=out, name="Conv", artifacts="checkpoint",
        tasks=["semantic-segmentation"], **WHEN,
    )  # fmt: skip
    item_path = out / "conv.json"
    model_file = out / Path(json.loads(item_path.read_text())["assets"]["model"]["href"]).name
    marker = tmp_path / "MARKER"
    payload = {"state_dict": {"weight": torch.zeros(2, 3, 1, 1)}, "hyper_parameters": {"x": _Evil(marker)}}
    torch.save(payload, model_file, _use_new_zipfile_serialization=zipped)
    _restamp(item_path)
    checks = {c.name: c for c in verify_item(item_path, model="torch.nn:Conv2d", init_args={"in_channels": 3,
              "out_channels": 2, "kernel_size": 1})}  # fmt: skip
    assert checks["files"].ok and not checks["load model"].ok
    assert "system" in checks["load model"].detail
    assert not marker.exists()


def test_a_zip_bomb_model_file_is_refused_from_its_bytes(tmp_path):
    out = tmp_path / "model"
    export_mlm(
        nn.Conv2d(3, 2, 1), example_input=torch.randn(2, 3, 8, 8), out_dir=out, name="Conv", artifacts="checkpoint",
        tasks=["semantic-segmentation"], **WHEN,
    )  # fmt: skip
    item_path = out / "conv.json"
    model_file = out / Path(json.loads(item_path.read_text())["assets"]["model"]["href"]).name
    with zipfile.ZipFile(model_file, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("archive/data.pkl", b"\0" * (300 << 20))  # 300 MB of zeros in a few hundred KB
    _restamp(item_path)
    checks = {c.name: c for c in verify_item(item_path, model="torch.nn:Conv2d")}
    assert checks["files"].ok and not checks["load model"].ok
    assert "zip bomb" in checks["load model"].detail


def test_verify_of_assets_of_the_wrong_shape_says_so_in_one_check(tmp_path):
    item_path, item = _export(tmp_path, "pt2")
    item["assets"]["junk"] = "not an object"
    item["assets"]["model"]["roles"] = 7
    item_path.write_text(json.dumps(item))
    checks = {c.name: c for c in verify_item(item_path)}
    assert not checks["schema"].ok
    assert not checks["consistency"].ok and "cannot check: AttributeError" in checks["consistency"].detail


_SWAP = """
import sys, os, json
sys.path.insert(0, {src!r})
state = {{"seen": 0, "busy": False}}
def hook(event, args):
    if state["busy"] or state["seen"] > {after}:
        return
    if event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
        if os.path.basename(os.fsdecode(args[0])) == {name!r}:
            state["seen"] += 1
            if state["seen"] == {after}:  # the next open of that name (if any) finds a link to the other archive
                state["busy"] = True
                os.replace({link!r}, {model!r})
                state["busy"] = False
sys.addaudithook(hook)
from mlm_export.cli import main
main({argv!r})
"""


@pytest.mark.parametrize("after", [1, 2, 3])
def test_a_model_file_swapped_for_a_link_after_it_was_read_is_not_loaded(tmp_path, after):
    """The race, made deterministic: right after verify's k-th open of the .pt2 by name, the file becomes a link
    to a hostile archive outside. Reading once and loading those bytes leaves nothing to swap."""
    item_path, _ = _export(tmp_path, "pt2")
    pt2 = item_path.parent / "small-unet.pt2"
    evil = tmp_path / "evil.pt2"
    evil.write_bytes(pt2.read_bytes())
    marker = tmp_path / "MARKER"
    _edit_model_json(evil, lambda doc: _first_expr(doc).update(expr_str=f"__import__('os').system('touch {marker}')+2"))
    link = item_path.parent / "staged-link"
    link.symlink_to(evil)
    script = _SWAP.format(src=str(SRC), after=after, name=pt2.name, link=str(link), model=str(pt2),
                          argv=["verify", str(item_path)])  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(SRC), "MLM_EXPORT_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert not marker.exists(), done.stdout + done.stderr


def test_methods_the_archive_defines_are_told_from_operators_by_torchs_registry():
    """torchvision's detection models call ``(self.transform).__init__``-like dunder methods of their own
    classes: only names torch registers as operators are suspect."""
    from mlm_export._model_code import _is_operator, script_code_problems

    assert not _is_operator("__init__") and not _is_operator("forward") and not _is_operator("__class__")
    assert _is_operator("from_file") and _is_operator("wait") and _is_operator("save")
    own = "class T(Module):\n  def __init__(self) -> None:\n    return None\n  def forward(self, x):\n    return x\n"
    files = {"archive/code/__torch__/m.py": own + "def f(t: __torch__.m.T, x):\n  _ = (t).__init__()\n  return x\n"}
    assert list(script_code_problems(files)) == []


@pytest.mark.slow
@pytest.mark.parametrize(
    "builder",
    [
        "fasterrcnn_mobilenet_v3_large_320_fpn", "retinanet_resnet50_fpn", "maskrcnn_resnet50_fpn",
        "fcos_resnet50_fpn", "ssdlite320_mobilenet_v3_large", "keypointrcnn_resnet50_fpn",
    ],
)  # fmt: skip
def test_torchvision_detection_torchscript_passes_the_check(builder):
    """The allowlist grows from what real models call: torchvision's detectors are scripted (not traced), so
    their code holds their own methods, no_grad blocks and in-place tensor ops."""
    import torchvision

    model = getattr(torchvision.models.detection, builder)(weights=None, weights_backbone=None, num_classes=3)
    buf = io.BytesIO()
    torch.jit.save(torch.jit.script(model.eval()), buf)
    check_torchscript(buf.getvalue())


@pytest.mark.parametrize("arch", ["Unet", "FPN", "PSPNet", "DeepLabV3Plus", "Segformer"])
def test_segmentation_models_torchscript_passes_the_check(arch):
    """segmentation_models_pytorch decoders script with in-place feature dropout; their code passes."""
    smp = pytest.importorskip("segmentation_models_pytorch")
    model = getattr(smp, arch)("resnet18", encoder_weights=None, classes=3).eval()
    buf = io.BytesIO()
    torch.jit.save(torch.jit.script(model), buf)
    check_torchscript(buf.getvalue())


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["swin_v2_t", "vit_b_16", "transformer"])
def test_transformer_models_pass_both_checks(arch):
    """Attention models call norms, fused attention, nested tensors and autocast queries: scripted and
    exported, their files pass."""
    import torchvision

    if arch == "transformer":
        layer = nn.TransformerEncoderLayer(32, 4, 64, batch_first=True)
        model: nn.Module = nn.Sequential(nn.Flatten(2), nn.TransformerEncoder(layer, 2, enable_nested_tensor=True))
        x = torch.randn(2, 3, 4, 8)
    else:
        model = getattr(torchvision.models, arch)(**({"image_size": 64} if arch == "vit_b_16" else {}))
        x = torch.randn(2, 3, 64, 64)
    model.eval()
    buf = io.BytesIO()
    torch.jit.save(torch.jit.script(model), buf)
    check_torchscript(buf.getvalue())
    buf = io.BytesIO()
    torch.export.save(torch.export.export(model, (x,)), buf)
    check_pt2(buf.getvalue())


_SWAP_FOR_JUNK = """
import sys, os, json
sys.path.insert(0, {src!r})
state = {{"seen": 0}}
def hook(event, args):
    if state["seen"] == 1:  # the first event after that open (an audit hook runs before its event's call)
        state["seen"] = 2
        os.replace({junk!r}, {model!r})  # from now on the name holds another regular file
    elif event == "open" and isinstance(args[0], (str, bytes, os.PathLike)) and state["seen"] == 0:
        if os.path.basename(os.fsdecode(args[0])) == {name!r}:
            state["seen"] = 1
sys.addaudithook(hook)
from mlm_export import verify_item
checks = verify_item({item!r}, **{kwargs!r})
print("CHECKS " + json.dumps([c.as_dict() for c in checks]))
"""


@pytest.mark.parametrize("artifacts", ["pt2", "safetensors"])
def test_the_child_runs_the_bytes_the_parent_read_not_the_file_by_name(tmp_path, artifacts):
    """verify reads each model file once (in the parent), then the limited child loads and runs those same bytes:
    right after that one open the name is replaced by junk, and the model still loads and runs."""
    item_path, item = _export(tmp_path, artifacts)
    model_file = item_path.parent / Path(item["assets"]["model"]["href"]).name
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"not a model file at all" * 100)
    kwargs: dict[str, Any] = {}
    if artifacts == "safetensors":
        kwargs = {"model": "tests.models:SmallUNet", "init_args": {"in_channels": 3, "num_classes": 2},
                  "allow_modules": ("tests",)}  # fmt: skip
    script = _SWAP_FOR_JUNK.format(src=str(SRC), name=model_file.name, junk=str(junk), model=str(model_file),
                                   item=str(item_path), kwargs=kwargs)  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), str(SRC.parent)]), "MLM_EXPORT_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("CHECKS ")), None)
    assert line is not None, done.stdout + done.stderr
    checks = {c["check"]: c for c in json.loads(line.removeprefix("CHECKS "))}
    assert not junk.exists() and model_file.read_bytes().startswith(b"not a model file"), done.stderr  # swapped
    assert checks["files"]["ok"], checks
    assert checks["load model"]["ok"] and checks["run"]["ok"], checks
