"""Attacks on the catalog commands (publish, search, match): each test builds its hostile catalog, Item or server
itself and proves that nothing outside the named folder was read, written or deleted, that no request reached a
resource the Item did not name, and that nothing hangs, crashes or grows without bound."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from mlm_export import catalog
from mlm_export.errors import MLMExportWarning

from .catalog_data import naip_model

ROOT = Path(__file__).resolve().parents[1]
# the official MLM examples are STAC 1.0.0 Items with extension versions mlm-export does not bundle
pytestmark = pytest.mark.usefixtures("foreign_schemas")


def cli(*argv: Any, timeout: float = 120, memory: int | None = None) -> subprocess.CompletedProcess[str]:
    """``mlm-export ARGV`` in a child process, killed after ``timeout`` s, its address space capped at ``memory``."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]),
        "MLM_EXPORT_OFFLINE": "1",
        "NO_PROXY": "*",
        "no_proxy": "*",
        "OPENBLAS_NUM_THREADS": "1",  # OpenBLAS reserves memory per thread: under RLIMIT_AS it would fail at import
    }

    def limit() -> None:
        if memory is not None:
            resource.setrlimit(resource.RLIMIT_AS, (memory, memory))

    return subprocess.run(
        [sys.executable, "-m", "mlm_export", *map(str, argv)],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        preexec_fn=limit,
        check=False,
    )


def one_line(proc: subprocess.CompletedProcess[str], *words: str) -> str:
    """The error line of a failed command: exactly one, no traceback, no 'unexpected', naming each word."""
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr and "unexpected" not in proc.stderr, proc.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def item(item_id: str = "naip-rgbn-segmenter", **props: Any) -> dict[str, Any]:
    out = naip_model()
    out["id"] = item_id
    out["properties"].update(props)
    return out


def write_item(path: Path, data: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def published(path: Path, *adds: list[dict[str, Any]]) -> Path:
    """A folder catalog with one part per list of Items."""
    with catalog.open(path) as cat:
        for items in adds:
            cat.add(items)
    return path


def part_files(cat: Path, suffix: str) -> list[Path]:
    return sorted((cat / "parts").glob(f"part-*{suffix}"))


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# -- files outside the catalog ---------------------------------------------------------------------------------
def test_lock_link_does_not_create_the_file_it_points_to(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    cat = tmp_path / "cat"
    cat.mkdir()
    (cat / ".lock").symlink_to(outside / "created-by-lock")
    src = write_item(tmp_path / "in" / "m.json", item())
    proc = cli("publish", src, "--to", cat)
    assert proc.returncode == 1
    one_line(proc, ".lock", "link")
    assert not (outside / "created-by-lock").exists()
    assert not (cat / "catalog.json").exists()


def test_parts_link_writes_and_deletes_nothing_outside(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "part-00000001-deadbeef.parquet").write_bytes(b"victim")  # what orphan removal would delete
    (outside / "part-00000001-deadbeef.jsonl").write_bytes(b"victim\n")
    before = snapshot(outside)
    cat = tmp_path / "cat"
    cat.mkdir()
    (cat / "parts").symlink_to(outside, target_is_directory=True)
    src = write_item(tmp_path / "in" / "m.json", item())
    proc = cli("publish", src, "--to", cat)
    assert proc.returncode == 1
    one_line(proc, "parts", "link")
    assert snapshot(outside) == before
    assert sorted(p.name for p in outside.iterdir()) == sorted(before)
    # and search refuses the same catalog the same way
    proc = cli("search", cat)
    assert proc.returncode == 1
    one_line(proc, "parts", "link")


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_part_file_linked_outside_is_never_read(tmp_path, suffix):
    cat = published(tmp_path / "cat", [item()])
    (part,) = part_files(cat, suffix)
    secret = tmp_path / "secret" / part.name
    secret.parent.mkdir()
    if suffix == ".jsonl":  # a JSON line at the same offset and length as the Item: it would be printed
        length = part.stat().st_size - 1
        line = json.dumps({"type": "Feature", "id": "SECRET", "properties": {"k": ""}})
        secret.write_text(line[:-2] + "x" * (length - len(line)) + '"}\n')
    else:
        secret.write_bytes(part.read_bytes())
    part.unlink()
    part.symlink_to(secret)
    proc = cli("search", cat, "--json")
    assert proc.returncode == 1
    one_line(proc, part.name, "link")
    assert "SECRET" not in proc.stdout + proc.stderr
    proc = cli("publish", write_item(tmp_path / "in" / "m.json", item("other")), "--to", cat)
    assert proc.returncode == 1
    one_line(proc, part.name, "link")


def test_manifest_link_is_refused(tmp_path):
    cat = published(tmp_path / "cat", [item()])
    moved = tmp_path / "elsewhere.json"
    (cat / "catalog.json").rename(moved)
    (cat / "catalog.json").symlink_to(moved)
    proc = cli("search", cat)
    assert proc.returncode == 1
    one_line(proc, "catalog.json", "link")


def test_publishing_a_folder_does_not_follow_a_link_out_of_it(tmp_path):
    outside = write_item(tmp_path / "private" / "secret.json", item("outside-secret"))
    folder = tmp_path / "export"
    write_item(folder / "good.json", item("inside"))
    (folder / "stolen.json").symlink_to(outside)
    (folder / "sub").symlink_to(outside.parent, target_is_directory=True)
    cat = tmp_path / "cat"
    proc = cli("publish", folder, "--to", cat)
    assert proc.returncode == 0, proc.stderr
    assert "stolen.json" in proc.stderr
    assert {i["id"] for i in catalog.open(cat).search()} == {"inside"}


# -- STAC API path injection -----------------------------------------------------------------------------------
class Recorder(BaseHTTPRequestHandler):
    """A STAC API with Transactions that records every request and says yes to all of them."""

    requests: list[tuple[str, str]]
    existing: set[str]

    def _answer(self, body: Any, status: int = 200) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _handle(self) -> None:
        size = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(size) or b"null")
        self.requests.append((self.command, self.path))
        if self.path == "/":
            self._answer({"conformsTo": ["https://api.stacspec.org/v1.0.0/ogcapi-features/extensions/transaction"]})
        elif self.path == "/search":
            self._answer({"features": [{"id": i} for i in body.get("ids", []) if i in self.existing]})
        else:
            self._answer({}, 201 if self.command == "POST" else 200)

    do_GET = do_POST = do_PUT = do_DELETE = _handle

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def api():
    handler = type("Handler", (Recorder,), {"requests": [], "existing": set()})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", handler
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(
    ("item_id", "collection"),
    [
        ("../../victim-collection", None),
        ("victim-item#x", None),
        ("victim?x=1", None),
        ("line\nbreak", None),
        ("fine-id", "../../victim-collection"),
        ("fine-id", "a/b"),
        (".", None),  # a dot segment: a server normalising the path would act on the Collection
        ("fine-id", "."),
        ("a\u202eb", None),  # a format character: not a letter or digit
    ],
)
def test_api_ids_that_would_change_the_url_are_refused_before_any_request(tmp_path, api, item_id, collection):
    url, handler = api
    data = item(item_id)
    if collection is not None:
        data["collection"] = collection
        data["links"] = [{"rel": "collection", "href": "./collection.json"}]
    handler.existing.add(item_id)  # an update: the id goes into a PUT path
    src = write_item(tmp_path / "m.json", data)
    proc = cli("publish", src, "--to", url, "--on-conflict", "update")
    assert proc.returncode == 1
    line = one_line(proc)
    assert repr(collection if collection is not None else item_id) in line
    assert handler.requests == []


def test_api_path_segments_are_quoted(tmp_path, api):
    url, handler = api
    handler.existing.add("model v1:a")
    src = write_item(tmp_path / "m.json", item("model v1:a"))
    proc = cli("publish", src, "--to", url, "--on-conflict", "update")
    assert proc.returncode == 0, proc.stderr
    writes = [r for r in handler.requests if r[0] in ("PUT", "POST", "DELETE")]
    assert ("PUT", "/collections/ml-model-examples/items/model%20v1%3Aa") in writes, handler.requests


# -- hangs, memory, crashes ------------------------------------------------------------------------------------
def test_fifo_part_file_does_not_hang_search_and_the_other_parts_answer(tmp_path):
    cat = published(tmp_path / "cat", [item("first")], [item("second")])
    for suffix in (".parquet", ".jsonl"):
        first = part_files(cat, suffix)[0]
        first.unlink()
        os.mkfifo(first)
    proc = cli("search", cat, "--json", timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert [r["id"] for r in json.loads(proc.stdout)["results"]] == ["second"]
    assert "warning" in proc.stderr and part_files(cat, ".parquet")[0].name in proc.stderr
    proc = cli("publish", write_item(tmp_path / "m.json", item("third")), "--to", cat, timeout=60)
    assert proc.returncode == 1
    one_line(proc, part_files(cat, ".parquet")[0].name, "not a regular file")


def test_fifo_lock_is_one_line_naming_it(tmp_path):
    cat = published(tmp_path / "cat", [item("first")])
    (cat / ".lock").unlink()
    os.mkfifo(cat / ".lock")
    proc = cli("publish", write_item(tmp_path / "m.json", item("second")), "--to", cat, timeout=60)
    assert proc.returncode == 1
    one_line(proc, ".lock", "not a regular file")


def _tamper(part: Path, select: str) -> None:
    import duckdb

    tmp = part.with_name("tampered.parquet")
    with duckdb.connect() as con:
        con.execute(f"COPY ({select}) TO '{tmp}' (FORMAT parquet, COMPRESSION zstd)")
    tmp.replace(part)


ROWS_20M = """
SELECT 'x' AS id, 1::BIGINT AS seq, NULL::VARCHAR AS collection, NULL::TIMESTAMPTZ AS "start",
       NULL::TIMESTAMPTZ AS "end", 0.0::DOUBLE AS xmin, 0.0::DOUBLE AS ymin, 0.0::DOUBLE AS xmax,
       0.0::DOUBLE AS ymax, 'x' AS name, 'x' AS architecture, 'x' AS framework, 'x' AS accelerator,
       1::BIGINT AS total_parameters, ['x'] AS tasks, ['x'] AS bands, 0::BIGINT AS "offset", 1::BIGINT AS length
FROM range(20000000)
"""


def test_tampered_part_of_20m_rows_is_skipped_within_bounds(tmp_path):
    cat = published(tmp_path / "cat", [item("first")], [item("second")])
    tampered = part_files(cat, ".parquet")[0]
    _tamper(tampered, ROWS_20M)
    assert tampered.stat().st_size < 4 << 20
    # the imports alone reserve ~3.5 GB of address space; loading the 20M rows took more than 2.5 GB more
    proc = cli("search", cat, "--limit", 1, "--json", timeout=60, memory=6 << 30)
    assert proc.returncode == 0, proc.stderr
    assert [r["id"] for r in json.loads(proc.stdout)["results"]] == ["second"]
    assert tampered.name in proc.stderr and "rows" in proc.stderr


def test_wrong_schema_part_is_one_line_naming_it(tmp_path):
    cat = published(tmp_path / "cat", [item("first")], [item("second")])
    tampered = part_files(cat, ".parquet")[0]
    _tamper(tampered, "SELECT 1 AS id, 'x' AS other")
    proc = cli("search", cat, "--json", timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert [r["id"] for r in json.loads(proc.stdout)["results"]] == ["second"]
    assert tampered.name in proc.stderr and "columns" in proc.stderr
    assert "BinderException" not in proc.stderr


@pytest.mark.parametrize("depth", [2000, 30_000])
def test_deeply_nested_filter_is_refused_before_parsing(tmp_path, depth):
    cat = published(tmp_path / "cat", [item("first")])
    proc = cli("search", cat, "--filter", "(" * depth + "id = 'a'" + ")" * depth, timeout=60)
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-500:])
    one_line(proc, "--filter")


@pytest.mark.parametrize(
    "text",
    [
        "NOT " * 4990 + "id = 'a'",  # 20,000 characters without a parenthesis: cql2 crashed (exit 139)
        "-" * 6000 + "1 = 1",  # unary minus, the same
        "NOT " * 3000 + "id = 'a'",  # parsed, then too deep to walk (RecursionError)
        "mlm:total_parameters" + " + 1" * 4000 + " > 1",  # arithmetic nests left: 8,000 levels once parsed
    ],
    ids=["not-4990", "minus-6000", "not-3000", "plus-4000"],
)
def test_filter_nested_without_parentheses_is_refused_before_parsing(tmp_path, text):
    cat = published(tmp_path / "cat", [item("first")])
    proc = cli("search", cat, "--filter", text, timeout=60)
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-500:])
    one_line(proc, "--filter", "nest")


def test_a_fifo_named_as_the_catalog_folder_is_one_line(tmp_path):
    cat = tmp_path / "cat"
    os.mkfifo(cat)
    proc = cli("publish", write_item(tmp_path / "m.json", item()), "--to", cat, timeout=60)
    assert proc.returncode == 1
    one_line(proc, str(cat), "not a catalog folder")


@pytest.mark.parametrize("limit", ["1e20", "100000000000000000000"])
def test_huge_limit_is_a_clear_error_or_a_correct_answer(tmp_path, limit):
    cat = published(tmp_path / "cat", [item("first")])
    proc = cli("search", cat, "--limit", limit, "--json", timeout=60)
    if proc.returncode == 0:
        assert [r["id"] for r in json.loads(proc.stdout)["results"]] == ["first"]
    else:
        assert proc.returncode == 2
        assert "--limit" in proc.stderr and "unexpected" not in proc.stderr


def test_filter_comparing_text_with_a_number_is_a_clear_error(tmp_path):
    cat = published(tmp_path / "cat", [item("first")])
    proc = cli("search", cat, "--filter", "id = 1", timeout=60)
    assert proc.returncode == 2, proc.stderr
    one_line(proc, "id", "--filter")


def _deep(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize("depth", [300, 100_000])
def test_deep_json_items_are_one_line_and_the_good_ones_go_in(tmp_path, depth):
    folder = tmp_path / "export"
    write_item(folder / "good.json", item("good"))
    deep = item("deep")
    deep["properties"]["deep"] = "PLACEHOLDER"
    text = json.dumps(deep).replace('"PLACEHOLDER"', "[" * depth + "1" + "]" * depth)
    (folder / "deep.json").write_text(text)
    cat = tmp_path / "cat"
    proc = cli("publish", folder, "--to", cat, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "deep.json" in proc.stderr and "unexpected" not in proc.stderr and "Traceback" not in proc.stderr
    assert {i["id"] for i in catalog.open(cat).search()} == {"good"}
    # named alone: one line, nothing published
    proc = cli("publish", folder / "deep.json", "--to", tmp_path / "cat2", timeout=120)
    assert proc.returncode in (1, 2)
    assert "unexpected" not in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "cat2" / "catalog.json").exists()


def test_deep_item_given_to_the_library_is_refused_as_invalid(tmp_path):
    deep = item("deep")
    deep["properties"]["deep"] = _deep(300)
    with pytest.raises(catalog.RefusedItemsError, match="deep"):
        catalog.open(tmp_path / "cat").add([deep])


def test_match_on_deep_data_and_a_bad_part_is_one_line_each(tmp_path, capsys):
    from mlm_export.cli import main

    cat = published(tmp_path / "cat", [item("first")], [item("second")])
    tampered = part_files(cat, ".parquet")[0]
    _tamper(tampered, "SELECT 1 AS id")
    data = tmp_path / "scene.json"
    data.write_text('{"type": "Feature", "id": "s", "properties": {"x": ' + "[" * 100_000 + "]" * 100_000 + "}}")
    assert main(["match", str(data), str(cat)]) == 2
    err = capsys.readouterr().err
    assert "too deeply" in err and "unexpected" not in err
    scene = write_item(tmp_path / "scene2.json", item("scene"))
    main(["match", str(scene), str(cat), "--json"])
    captured = capsys.readouterr()
    assert [r["id"] for r in json.loads(captured.out)["results"]] == ["second"]
    assert f"warning: {tampered}" in captured.err and "columns" in captured.err


def test_a_skipped_part_warns_on_search_and_stops_an_add_through_the_same_object(tmp_path):
    path = published(tmp_path / "cat", [item("first")], [item("second")])
    tampered = part_files(path, ".parquet")[0]
    _tamper(tampered, "SELECT 1 AS id")
    before = snapshot(path)
    cat = catalog.open(path)
    with pytest.warns(MLMExportWarning, match=f"{tampered.name} has columns id, not those of a catalog part"):
        assert [i["id"] for i in cat.search()] == ["second"]
    with pytest.raises(catalog.CatalogFormatError, match=f"{tampered.name} has columns id"):
        cat.add([item("third")])
    assert snapshot(path) == before


@pytest.mark.parametrize(("key", "value"), [("seq", "abc"), ("seq", []), ("seq", 1e308), ("superseded", {"a": 1})])
def test_manifest_with_junk_counters_is_one_line_naming_it(tmp_path, key, value):
    cat = published(tmp_path / "cat", [item("first")])
    manifest = json.loads((cat / "catalog.json").read_text())
    manifest[key] = value
    (cat / "catalog.json").write_text(json.dumps(manifest))
    before = snapshot(cat)
    for argv in (("search", cat), ("publish", write_item(tmp_path / "m.json", item("second")), "--to", cat)):
        proc = cli(*argv, timeout=60)
        assert proc.returncode == 1
        one_line(proc, "catalog.json", key)
    assert snapshot(cat) == before


def test_a_folder_named_like_a_part_is_left_alone_by_orphan_removal(tmp_path):
    cat = published(tmp_path / "cat", [item("first")])
    (cat / "parts" / "part-00000009-deadbeef.parquet").mkdir()
    keep = cat / "parts" / "part-00000009-deadbeef.parquet" / "keep"
    keep.write_text("keep")
    proc = cli("publish", write_item(tmp_path / "m.json", item("second")), "--to", cat, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert keep.read_text() == "keep"
    assert catalog.open(cat).ids() == {"first", "second"}
