"""Caps on what strangers' files may make mlm-export read, expand or hash; one-line errors; no hidden network.

Each test builds the hostile input itself. Those that could hang or eat memory on a regression run the command
in a child process with a timeout and an address-space limit (``RLIMIT_AS``), so a failure is a failed test, not
a stuck or killed test run.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
import stat
import subprocess
import sys
import threading
import zipfile
from pathlib import Path
from typing import Any

import pytest
import torch

from mlm_export import _limits as limits

from .form.helpers import allow_loopback_only
from .test_security import minimal_item, run

#: Address space a child may grow by after importing torch and mlm-export (the attacks grow past 2 GB).
EXTRA_MEMORY = 1536 << 20

CHILD = """
import json, resource, sys
import torch
from mlm_export.cli import main
with open("/proc/self/status") as f:
    size = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
extra = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_AS, (size + extra, size + extra))
codes = [main(argv) for argv in json.loads(sys.argv[2])]
print("CODES", json.dumps(codes))
"""


def child(*argvs: list[Any], timeout: float = 240, env: dict[str, str] | None = None) -> tuple[list[int], str, str]:
    """Run ``mlm-export`` commands, one after the other, in a limited child; their exit codes, stdout, stderr."""
    root = Path(__file__).parents[1]
    path = os.pathsep.join([str(root / "src"), str(root), *sys.path])
    full_env = {**os.environ, "PYTHONPATH": path, "MLM_EXPORT_OFFLINE": "1", **(env or {})}
    commands = json.dumps([[str(a) for a in argv] for argv in argvs])
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(EXTRA_MEMORY), commands],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
    )
    codes_line = [line for line in proc.stdout.splitlines() if line.startswith("CODES ")]
    assert codes_line, f"the child died (exit {proc.returncode}): {proc.stderr[-2000:]}"
    return json.loads(codes_line[-1][6:]), proc.stdout, proc.stderr


def good_checkpoint(path: Path) -> Path:
    """A small checkpoint convert can describe (with ``--tasks semantic-segmentation``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conv = torch.nn.Conv2d(3, 2, 1)
    hparams = {"_class_path": "torch.nn.Conv2d", "in_channels": 3, "out_channels": 2, "kernel_size": 1}
    torch.save({"state_dict": conv.state_dict(), "hyper_parameters": hparams, "epoch": 0, "global_step": 1}, path)
    return path


CONVERT = ("convert", "--tasks", "semantic-segmentation")


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Overrides the suite's: the form server listens on 127.0.0.1; everything else stays unreachable."""
    allow_loopback_only(monkeypatch)


def deep_json(depth: int = 100_000) -> str:
    return "[" * depth + "]" * depth


def one_line_errors(text: str) -> None:
    """No traceback and no 'unexpected' error in a command's output."""
    assert "Traceback" not in text and "unexpected" not in text, text[-2000:]


# ------------------------------------------------------------------------------------------ one place for caps


def test_every_cap_is_in_one_module_and_the_readme_lists_it():
    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    security = readme.split("## Security", 1)[1].split("\n## ", 1)[0]
    for name in limits.__all__:
        assert isinstance(getattr(limits, name), int | float)
        assert f"`{name}`" in security, f"README Security does not list {name}"


# ------------------------------------------------------------------------------------------ hangs and memory


@pytest.mark.parametrize("kind", ["fifo", "dev-zero"])
def test_special_file_named_like_an_item_in_a_converted_folder(tmp_path, kind):
    """convert adopts the Items already in a folder: a FIFO or a link to /dev/zero named ``*.mlm.json`` there
    is passed over (never opened for a blocking or endless read), and the good checkpoint is converted."""
    folder = tmp_path / "run"
    good_checkpoint(folder / "good.ckpt")
    if kind == "fifo":
        os.mkfifo(folder / "planted.mlm.json")
    else:
        (folder / "planted.mlm.json").symlink_to("/dev/zero")
    codes, out, err = child([*CONVERT, folder, "--quiet"], timeout=240)
    assert codes == [0], err
    one_line_errors(out + err)
    assert (folder / "good.mlm.json").is_file()
    collection = json.loads((folder / "collection.json").read_text())
    assert [link["href"] for link in collection["links"] if link["rel"] == "item"] == ["./good.mlm.json"]


def _shared_nested_list(levels: int) -> list[Any]:
    node: list[Any] = []
    for _ in range(levels):
        node = [node, node]  # each level points twice at the one below: 2**levels leaves once expanded
    return node


@pytest.mark.parametrize("where", ["embedded-item", "hyper-parameters"])
def test_a_shared_nested_structure_in_a_checkpoint_is_not_expanded(tmp_path, where):
    """A 2 KB checkpoint whose embedded Item (or hyperparameters) is ``L = [L, L]`` 32 levels deep expands to
    4 billion values: convert refuses it in one line, within a memory bound, instead of hanging."""
    folder = tmp_path / "run"
    folder.mkdir()
    conv = torch.nn.Conv2d(3, 2, 1)
    bomb = _shared_nested_list(32)
    hparams: dict[str, Any] = {"_class_path": "torch.nn.Conv2d", "in_channels": 3, "out_channels": 2}
    ckpt: dict[str, Any] = {"state_dict": conv.state_dict(), "epoch": 0, "global_step": 1}
    if where == "embedded-item":
        ckpt["mlm_export"] = {"item": {**minimal_item("./bomb.ckpt"), "properties": {"x": bomb}}}
    else:
        hparams["kernel_size"] = bomb
    ckpt["hyper_parameters"] = hparams
    torch.save(ckpt, folder / "bomb.ckpt")
    assert (folder / "bomb.ckpt").stat().st_size < 8 << 10
    codes, out, err = child([*CONVERT, folder / "bomb.ckpt", "--json"], timeout=240)
    assert codes == [1]
    one_line_errors(out + err)
    assert "values" in json.loads(out.split("CODES")[0])["results"][0]["error"]
    assert not (folder / "bomb.mlm.json").exists()


def _many_keys_checkpoint(path: Path, keys: int) -> None:
    """A zip checkpoint whose state dict maps ``keys`` names to the integer 0 (about 12 bytes of pickle each)."""
    parts = [b"\x80\x02}q\x00X\n\x00\x00\x00state_dict}q\x01("]
    parts += [b"X\x08\x00\x00\x00" + b"%08d" % i + b"K\x00" for i in range(keys)]
    parts.append(b"uX\x0b\x00\x00\x00global_stepK\x01s.")
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", b"".join(parts))
        z.writestr("archive/version", "3\n")
        z.writestr("archive/byteorder", "little")


def test_ten_million_state_dict_keys_are_refused_before_loading(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    _many_keys_checkpoint(folder / "keys.ckpt", 10_000_000)
    codes, out, err = child([*CONVERT, folder / "keys.ckpt", "--json"], timeout=240)
    assert codes == [1]
    one_line_errors(out + err)
    error = json.loads(out.split("CODES")[0])["results"][0]["error"]
    assert "pickle" in error and f"{limits.PICKLE_BYTES:,}" in error


def test_state_dict_key_count_is_capped(tmp_path):
    from mlm_export._sources.checkpoint import load
    from mlm_export.errors import InputTooLargeError

    path = tmp_path / "keys.ckpt"
    _many_keys_checkpoint(path, limits.STATE_KEYS + 1)
    with pytest.raises(InputTooLargeError, match=f"over the {limits.STATE_KEYS:,}"):
        load(path)


def _safetensors_of_empty_tensors(path: Path, count: int) -> None:
    entries = ",".join(f'"t{i}":{{"dtype":"F32","shape":[0],"data_offsets":[0,0]}}' for i in range(count))
    header = ("{" + entries + "}").encode()
    path.write_bytes(len(header).to_bytes(8, "little") + header)


def test_safetensors_header_of_many_empty_tensors_is_refused(tmp_path):
    """1.5M zero-size tensors: a 70 MB header that safetensors turns into 2.7 GB of tensors."""
    folder = tmp_path / "run"
    folder.mkdir()
    _safetensors_of_empty_tensors(folder / "w.safetensors", 1_500_000)
    codes, out, err = child([*CONVERT, folder / "w.safetensors", "--json"], timeout=240)
    assert codes == [1]
    one_line_errors(out + err)
    assert "header" in json.loads(out.split("CODES")[0])["results"][0]["error"]


def test_safetensors_tensor_count_is_capped(tmp_path):
    from mlm_export._sources.checkpoint import load
    from mlm_export.errors import InputTooLargeError

    path = tmp_path / "w.safetensors"
    _safetensors_of_empty_tensors(path, limits.STATE_KEYS + 1)
    with pytest.raises(InputTooLargeError, match=f"over the {limits.STATE_KEYS:,}"):
        load(path)


def test_a_499_mb_item_is_refused_by_every_reader(tmp_path):
    """Items are read with the same cap in every command; the size is checked before a byte is read."""
    folder = tmp_path / "items"
    folder.mkdir()
    big = folder / "item.json"
    with big.open("wb") as f:
        f.write(b'{"type": "Feature", "id": "')
        f.truncate(499 << 20)  # sparse: cheap to make, 499 MB to read
    argvs = [
        ["validate", big],
        ["verify", big],
        ["hf-card", big],
        ["match", big, tmp_path / "catalog"],
        ["publish", big, "--to", tmp_path / "catalog"],
        ["publish", folder, "--to", tmp_path / "catalog"],
    ]
    (tmp_path / "catalog").mkdir()
    codes, out, err = child(*argvs, timeout=300)
    assert codes == [1, 1, 1, 1, 2, 2], (out, err)  # publish: nothing to publish
    one_line_errors(out + err)
    assert (out + err).count(f"over the {limits.ITEM_BYTES:,}") >= len(argvs)


def _sparse_asset_item(folder: Path, size: int) -> Path:
    folder.mkdir()
    with (folder / "model.ckpt").open("wb") as f:
        f.truncate(size)
    item = folder / "item.json"
    asset = {"file:size": size, "file:checksum": "1220" + "0" * 64}
    item.write_text(json.dumps(minimal_item("./model.ckpt", **asset)))
    return item


def test_a_200_gb_sparse_asset_is_not_hashed(tmp_path):
    item = _sparse_asset_item(tmp_path / "item", 200 << 30)
    codes, out, err = child(["validate", item, "--json"], timeout=120)
    assert codes == [1]
    one_line_errors(out + err)
    problems = json.loads(out.split("CODES")[0])["results"][0]["problems"]
    hashing = [p for p in problems if p["schema"] == "asset-checksum"]
    assert len(hashing) == 1 and "MLM_EXPORT_HASH_BYTES" in hashing[0]["message"]


def test_hashing_stops_at_its_deadline(tmp_path):
    item = _sparse_asset_item(tmp_path / "item", 40 << 30)  # under the size cap: the deadline stops it
    codes, out, err = child(["validate", item, "--json"], timeout=120, env={"MLM_EXPORT_HASH_SECONDS": "1"})
    assert codes == [1]
    one_line_errors(out + err)
    problems = json.loads(out.split("CODES")[0])["results"][0]["problems"]
    hashing = [p for p in problems if p["schema"] == "asset-checksum"]
    assert len(hashing) == 1 and "MLM_EXPORT_HASH_SECONDS" in hashing[0]["message"], hashing


# ------------------------------------------------------------------------------------------ clear errors


@pytest.mark.parametrize(
    "argv",
    [
        ("validate", "{deep}"),
        ("verify", "{deep}"),
        ("hf-card", "{deep}"),
        ("match", "{deep}", "{catalog}"),
        ("publish", "{deep}", "--to", "{catalog}"),
        ("publish", "{folder}", "--to", "{catalog}"),
    ],
    ids=["validate", "verify", "hf-card", "match", "publish", "publish-folder"],
)
def test_deep_json_gets_one_line_in_every_command(tmp_path, capsys, argv):
    folder = tmp_path / "items"
    folder.mkdir()
    (folder / "deep.json").write_text(deep_json())
    (tmp_path / "catalog").mkdir()
    names = {"deep": folder / "deep.json", "folder": folder, "catalog": tmp_path / "catalog"}
    code, out, err = run(capsys, *(a.format(**names) for a in argv))
    assert code == (2 if argv[0] == "publish" else 1)  # publish: nothing to publish
    one_line_errors(out + err)
    assert f"nested deeper than {limits.JSON_DEPTH}" in out + err


def test_json_nested_just_past_the_cap_is_refused_and_at_the_cap_read(tmp_path):
    from mlm_export._hrefs import read_json

    nested: Any = 0
    for _ in range(limits.JSON_DEPTH):
        nested = {"a": nested}
    (tmp_path / "ok.json").write_text(json.dumps(nested))
    assert read_json(tmp_path / "ok.json") == nested
    (tmp_path / "deep.json").write_text(json.dumps([nested]))
    with pytest.raises(ValueError, match=f"nested deeper than {limits.JSON_DEPTH}"):
        read_json(tmp_path / "deep.json")


def test_deep_json_in_the_form_session_is_one_line(tmp_path):
    from mlm_export._form.session import FormSession

    (tmp_path / "item.json").write_text(deep_json())
    with pytest.raises(ValueError, match=f"nested deeper than {limits.JSON_DEPTH}"):
        FormSession(tmp_path / "item.json")


@pytest.mark.parametrize("junk", ["deep", "list", "not-json", "deep-item"])
def test_a_junk_collection_or_item_does_not_stop_convert(tmp_path, capsys, junk):
    """A folder from strangers may hold a junk ``collection.json`` (or a junk Item of another name): the good
    checkpoint is converted all the same, and its Collection written anew."""
    folder = tmp_path / "run"
    good_checkpoint(folder / "good.ckpt")
    if junk == "deep-item":
        (folder / "other.mlm.json").write_text(deep_json())
    else:
        text = {"deep": deep_json(), "list": "[1, 2]", "not-json": "{junk"}[junk]
        (folder / "collection.json").write_text(text)
    code, out, err = run(capsys, *CONVERT, folder, "--quiet")
    assert code == 0, err
    one_line_errors(out + err)
    assert (folder / "good.mlm.json").is_file()
    collection = json.loads((folder / "collection.json").read_text())
    assert collection["type"] == "Collection"


def test_form_server_answers_a_deep_body_with_one_line_400(tmp_path):
    from mlm_export._form.server import TOKEN_HEADER, FormServer
    from mlm_export._form.session import FormSession

    server = FormServer(FormSession(tmp_path / "new.json"))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        host, port = server.server_address[:2]
        conn = http.client.HTTPConnection(str(host), int(port), timeout=30)
        body = ('{"item": ' + deep_json() + "}").encode()
        headers = {"Content-Type": "application/json", TOKEN_HEADER: server.token, "Host": f"{host}:{port}"}
        conn.request("POST", "/api/validate", body=body, headers=headers)
        response = conn.getresponse()
        answer = json.loads(response.read())
        assert response.status == 400
        assert f"nested deeper than {limits.JSON_DEPTH}" in answer["error"] and "\n" not in answer["error"]
    finally:
        server.shutdown()
        server.server_close()


# ------------------------------------------------------------------------------------------ network

UNKNOWN = "https://stac-extensions.github.io/not-shipped/v1.0.0/schema.json"

NO_SOCKETS = """
import os, sys
ALLOWED = ("127.0.0.1", int(os.environ.get("MLM_TEST_ALLOW", "0")))
def refuse(event, args):
    if event == "socket.connect" and tuple(args[1][:2]) == ALLOWED:
        return
    if event == "socket.getaddrinfo" and (args[0], args[1]) == ALLOWED:
        return
    if event in ("socket.connect", "socket.getaddrinfo"):
        print("CONNECTED", args, flush=True)
        raise ConnectionRefusedError("no network in this test")
sys.addaudithook(refuse)
from mlm_export.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _no_sockets(*argv: Any, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    root = Path(__file__).parents[1]
    path = os.pathsep.join([str(root / "src"), str(root), *sys.path])
    clean = {k: v for k, v in os.environ.items() if k != "MLM_EXPORT_OFFLINE"}
    return subprocess.run(
        [sys.executable, "-c", NO_SOCKETS, *map(str, argv)],
        capture_output=True,
        text=True,
        env={**clean, "PYTHONPATH": path, **env},
        timeout=240,
    )


@pytest.fixture
def unknown_extension_item(tmp_path: Path) -> Path:
    item = minimal_item("https://example.com/model.pt")
    item["stac_extensions"].append(UNKNOWN)
    path = tmp_path / "item.json"
    path.write_text(json.dumps(item))
    return path


def test_validate_offline_flag_never_connects_and_names_the_schema(tmp_path, unknown_extension_item):
    proc = _no_sockets("validate", "--offline", unknown_extension_item, env={"MLM_EXPORT_CACHE_DIR": str(tmp_path)})
    assert proc.returncode == 1
    assert "CONNECTED" not in proc.stdout
    one_line_errors(proc.stdout + proc.stderr)
    assert f"{UNKNOWN} not fetched (--offline" in proc.stderr


def test_validate_says_which_schema_it_could_not_fetch(tmp_path, unknown_extension_item):
    """Without --offline the fetch is tried (here refused by the test before any packet leaves) and the one-line
    result names the schema that could not be fetched."""
    proc = _no_sockets("validate", unknown_extension_item, env={"MLM_EXPORT_CACHE_DIR": str(tmp_path)})
    assert proc.returncode == 1
    assert "CONNECTED" in proc.stdout  # the ability is kept
    one_line_errors(proc.stderr)
    assert f"{UNKNOWN} could not be fetched" in proc.stderr


@pytest.mark.parametrize("command", ["convert", "validate", "verify", "publish", "form"])
def test_offline_is_a_flag_of_every_command_that_may_fetch_schemas(command):
    from mlm_export.cli import parser

    sub = next(a for a in parser()._actions if a.dest == "command")
    assert "--offline" in sub.choices[command].format_help()  # type: ignore[union-attr]


def test_offline_flag_leaves_the_environment_as_it_was(tmp_path, capsys, monkeypatch, unknown_extension_item):
    monkeypatch.delenv("MLM_EXPORT_OFFLINE", raising=False)
    code, _, err = run(capsys, "validate", "--offline", unknown_extension_item)
    assert code == 1 and "not fetched (--offline" in err
    assert "MLM_EXPORT_OFFLINE" not in os.environ


def test_deep_training_data_stac_file_is_one_line(tmp_path):
    """``training_data=`` names a STAC file from anywhere: deep JSON there is an InvalidOptionError naming it."""
    from mlm_export import export_mlm
    from mlm_export.errors import InvalidOptionError

    (tmp_path / "collection.json").write_text(deep_json())
    with pytest.raises(InvalidOptionError, match=f"training_data= .* nested deeper than {limits.JSON_DEPTH}"):
        export_mlm(
            torch.nn.Conv2d(3, 2, 1), example_input=torch.zeros(1, 3, 8, 8), training_data=tmp_path / "collection.json"
        )


def test_form_save_never_blocks_on_an_item_swapped_for_a_fifo(tmp_path):
    """The form reads its Item again before saving (changed on disk?): a FIFO swapped in for it is refused in
    one line, never a read that blocks the server thread forever."""
    from mlm_export._form.session import FormSession
    from mlm_export.errors import MLMExportError

    from .form.helpers import copy_item, make_derived_item

    item_path = copy_item(make_derived_item(tmp_path / "derived"), tmp_path / "form")
    session = FormSession(item_path)
    item = json.loads(item_path.read_text())
    item_path.unlink()
    os.mkfifo(item_path)
    outcome: list[BaseException | None] = []

    def save() -> None:
        try:
            session.save(item)
            outcome.append(None)
        except BaseException as e:  # noqa: BLE001 - handed to the test's thread
            outcome.append(e)

    thread = threading.Thread(target=save, daemon=True)
    thread.start()
    thread.join(30)
    if thread.is_alive():
        with open(item_path, "wb"):  # unblock the reader so the thread ends
            pass
        pytest.fail("save blocked on a FIFO")
    assert isinstance(outcome[0], MLMExportError) and "not a regular file" in str(outcome[0]), outcome
    assert stat.S_ISFIFO(item_path.lstat().st_mode)  # left as it was: nothing saved over it


class _SchemaHost:
    """A local stand-in for the schema host: an https server with a throwaway certificate for the real host
    name, reached through a local CONNECT proxy (``https_proxy``) so no packet leaves the machine."""

    def __init__(self, folder: Path, host: str, files: dict[str, bytes]) -> None:
        import http.server
        import socketserver
        import ssl

        self.cert = folder / "cert.pem"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", f"/CN={host}",
             "-addext", f"subjectAltName=DNS:{host}", "-keyout", folder / "key.pem", "-out", self.cert],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        self.requests: list[str] = []
        self.tunnels: list[str] = []
        outer = self

        class Files(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the http.server hook
                outer.requests.append(self.path)
                body = files.get(self.path)
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Length", str(len(body or b"")))
                self.end_headers()
                self.wfile.write(body or b"")

            def log_message(self, *args: Any) -> None:
                pass

        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, folder / "key.pem")
        self.https = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Files)
        self.https.socket = context.wrap_socket(self.https.socket, server_side=True)
        https_port = self.https.server_address[1]

        class Proxy(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                line = self.rfile.readline().decode()
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                outer.tunnels.append(line.split()[1])
                if not line.startswith(f"CONNECT {host}:443 "):
                    self.wfile.write(b"HTTP/1.1 403 Forbidden\r\n\r\n")
                    return
                upstream = socket.create_connection(("127.0.0.1", https_port))
                self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
                self.wfile.flush()
                pump = threading.Thread(target=_pump, args=(upstream, self.connection), daemon=True)
                pump.start()
                _pump(self.connection, upstream)
                pump.join(10)

        self.proxy = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Proxy)
        self.proxy.daemon_threads = True
        for server in (self.https, self.proxy):
            threading.Thread(target=server.serve_forever, daemon=True).start()

    def env(self, cache: Path) -> dict[str, str]:
        return {
            "https_proxy": f"http://127.0.0.1:{self.proxy.server_address[1]}",
            "no_proxy": "",
            "SSL_CERT_FILE": str(self.cert),
            "MLM_EXPORT_CACHE_DIR": str(cache),
        }

    def close(self) -> None:
        for server in (self.https, self.proxy):
            server.shutdown()
            server.server_close()


def _pump(source: Any, target: Any) -> None:
    """Copy bytes one way until either side closes."""
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            target.sendall(data)
    for s in (source, target):
        with contextlib.suppress(OSError):
            s.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def schema_host(tmp_path: Path) -> Any:
    import shutil

    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a throwaway certificate")
    path = UNKNOWN.removeprefix("https://stac-extensions.github.io")
    files = {path: json.dumps({"$schema": "http://json-schema.org/draft-07/schema#", "type": "object"}).encode()}
    (tmp_path / "host").mkdir()
    host = _SchemaHost(tmp_path / "host", "stac-extensions.github.io", files)
    yield host
    host.close()


def test_validate_names_the_schema_it_fetched_and_offline_fetches_none(tmp_path, unknown_extension_item, schema_host):
    """The ability to fetch a schema the package does not ship is kept (here from a local stand-in for its
    host): the result says which schema was fetched; the next run uses the cache; ``--offline`` connects to
    nothing."""
    cache = tmp_path / "cache"
    env = schema_host.env(cache)
    offline = _no_sockets_allowed_proxy("validate", "--offline", unknown_extension_item, env=env)
    assert offline.returncode == 1 and schema_host.tunnels == [], offline.stderr
    assert f"{UNKNOWN} not fetched (--offline" in offline.stderr

    first = _no_sockets_allowed_proxy("validate", unknown_extension_item, "--json", env=env)
    result = json.loads(first.stdout)["results"][0]
    assert result["fetched"] == [UNKNOWN], first.stderr
    assert all(p["schema"] not in ("file", "schema") for p in result["problems"])  # checked, not "cannot check"
    assert f"(fetched {UNKNOWN})" in first.stderr  # the minimal Item lacks MLM fields: its problems are listed
    assert schema_host.tunnels == ["stac-extensions.github.io:443"]
    assert schema_host.requests == [UNKNOWN.removeprefix("https://stac-extensions.github.io")]
    assert (cache / UNKNOWN.removeprefix("https://")).is_file()

    again = _no_sockets_allowed_proxy("validate", unknown_extension_item, env=env)
    assert "fetched" not in again.stdout + again.stderr and "CONNECTED" not in again.stdout, again.stderr
    assert f"{unknown_extension_item}: {len(result['problems'])} problem(s)\n" in again.stderr
    assert len(schema_host.tunnels) == 1  # from the cache


def _no_sockets_allowed_proxy(*argv: Any, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The CLI in a child whose only reachable address is the local proxy (any other connection fails)."""
    return _no_sockets(*argv, env={**env, "MLM_TEST_ALLOW": env["https_proxy"].rsplit(":", 1)[1]})


@pytest.mark.parametrize("flag", ["--init-args", "--defaults"])
@pytest.mark.parametrize("text", [deep_json(), "a: " + "[" * 100_000], ids=["json", "yaml"])
def test_deep_json_or_yaml_in_convert_options_is_one_line(tmp_path, capsys, flag, text):
    good = good_checkpoint(tmp_path / "run" / "good.ckpt")
    (tmp_path / "deep.txt").write_text(text)
    value = f"@{tmp_path / 'deep.txt'}" if flag == "--init-args" else tmp_path / "deep.txt"
    code, out, err = run(capsys, *CONVERT, good, flag, value)
    assert code == 2, err
    one_line_errors(out + err)
    assert "nested" in err and not (good.parent / "good.mlm.json").exists()


def test_yaml_anchors_shared_at_every_level_are_refused(tmp_path, capsys):
    """YAML anchors share one list at every level (40 levels: 2**40 values once expanded): one line, at once."""
    good = good_checkpoint(tmp_path / "run" / "good.ckpt")
    lines = ["l0: &l0 [x, x]"] + [f"l{i}: &l{i} [*l{i - 1}, *l{i - 1}]" for i in range(1, 40)]
    (tmp_path / "laughs.yaml").write_text("\n".join(lines) + "\n")
    code, out, err = run(capsys, *CONVERT, good, "--defaults", tmp_path / "laughs.yaml")
    assert code == 2, err
    one_line_errors(out + err)
    assert f"over {limits.JSON_VALUES:,} values" in err


def test_a_json_file_of_many_plain_values_is_read(tmp_path):
    """JSON parsed from bytes cannot share a list: its size cap bounds it, and many values are not refused."""
    from mlm_export._hrefs import read_json

    (tmp_path / "many.json").write_text(json.dumps({"coordinates": [0] * (limits.JSON_VALUES + 1)}))
    assert len(read_json(tmp_path / "many.json")["coordinates"]) == limits.JSON_VALUES + 1


def test_a_legacy_checkpoint_with_millions_of_keys_is_refused_before_loading(tmp_path):
    """The pre-zip ``torch.save`` format: its object pickle is scanned (not run) and refused past the cap."""
    import pickle

    folder = tmp_path / "run"
    folder.mkdir()
    keys = limits.PICKLE_BYTES // 12 + 100_000  # about 12 bytes of pickle per key: just past the cap
    body = [b"\x80\x02}q\x00X\n\x00\x00\x00state_dict}q\x01("]
    body += [b"X\x08\x00\x00\x00" + b"%08d" % i + b"K\x00" for i in range(keys)]
    body.append(b"uX\x0b\x00\x00\x00global_stepK\x01s.")
    sys_info = {"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}}
    head = [pickle.dumps(0x1950A86A20F9469CFC6C, 2), pickle.dumps(1001, 2), pickle.dumps(sys_info, 2)]
    (folder / "legacy.pt").write_bytes(b"".join([*head, *body, pickle.dumps([], 2)]))
    codes, out, err = child([*CONVERT, folder / "legacy.pt", "--json"], timeout=240)
    assert codes == [1]
    one_line_errors(out + err)
    error = json.loads(out.split("CODES")[0])["results"][0]["error"]
    assert "pickle" in error and f"{limits.PICKLE_BYTES:,}" in error, error
