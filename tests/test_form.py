"""mlm-export form: who may talk to the server, what the form is made from, and how an Item is saved."""

from __future__ import annotations

import http.client
import json
import re
from pathlib import Path

import pytest

from mlm_export import mlm
from mlm_export.cli import main
from mlm_export.errors import ItemChangedError, ItemFileError, ItemValidationError
from mlm_export.form import licenses
from mlm_export.form.schema_form import form_spec
from mlm_export.form.server import MAX_BODY, STATIC, TOKEN_HEADER, FormServer, _asset
from mlm_export.form.session import HAND_EDITED, FormSession, parse_json_path, problem_json
from mlm_export.validate import default_store

from .form_helpers import allow_loopback_only, copy_item, make_derived_item, running


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    """Overrides conftest's: the form server is on 127.0.0.1; everything else stays unreachable."""
    allow_loopback_only(monkeypatch)


@pytest.fixture(scope="module")
def derived(tmp_path_factory) -> Path:
    return make_derived_item(tmp_path_factory.mktemp("derived"))


@pytest.fixture
def item_path(derived, tmp_path) -> Path:
    return copy_item(derived, tmp_path)


def request(server: FormServer, method: str, path: str, *, body=None, headers=None, token=True):
    """One raw HTTP request (the path is sent exactly as given); returns (status, parsed or raw body)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    hdrs = {"Host": f"127.0.0.1:{server.port}"}
    if token:
        hdrs[TOKEN_HEADER] = server.token
    if body is not None:
        hdrs["Content-Type"] = "application/json"
        body = json.dumps(body).encode()
    hdrs.update(headers or {})
    conn.request(method, path, body=body, headers=hdrs)
    response = conn.getresponse()
    raw = response.read()
    conn.close()
    try:
        return response.status, json.loads(raw)
    except ValueError:
        return response.status, raw


# -- attacks -------------------------------------------------------------------------------------------------
def test_every_route_needs_the_token(item_path):
    before = item_path.read_bytes()
    item = json.loads(before)
    with running(item_path) as server:
        for method, path, body in [
            ("GET", "/", None),
            ("GET", "/static/form.js", None),
            ("GET", "/api/state", None),
            ("POST", "/api/validate", {"item": item}),
            ("POST", "/api/save", {"item": {**item, "id": "stolen"}}),
        ]:
            status, data = request(server, method, path, body=body, token=False)
            assert status == 403, path
            assert data == {"error": "missing or wrong token"}
            wrong = "x" * len(server.token)
            assert request(server, method, path, body=body, token=False, headers={TOKEN_HEADER: wrong})[0] == 403
            assert request(server, method, f"{path}?token={wrong}", body=body, token=False)[0] == 403
        assert request(server, "GET", f"/?token={server.token}", token=False)[0] == 200
    assert item_path.read_bytes() == before


def test_other_host_headers_are_refused(item_path):
    """DNS rebinding: a page at evil.example resolving to 127.0.0.1 sends its own Host; it gets nothing."""
    with running(item_path) as server:
        for host in ("evil.example", f"evil.example:{server.port}", "127.0.0.1", f"127.0.0.1:{server.port + 1}", ""):
            status, data = request(server, "GET", "/api/state", headers={"Host": host})
            assert status == 421, host
            assert "item" not in data
        assert request(server, "GET", "/api/state", headers={"Host": f"localhost:{server.port}"})[0] == 200


def test_cross_origin_and_non_json_posts_are_refused(item_path):
    before = item_path.read_bytes()
    item = {**json.loads(before), "id": "changed"}
    with running(item_path) as server:
        status, _ = request(server, "POST", "/api/save", body={"item": item}, headers={"Origin": "http://evil.example"})
        assert status == 403
        # a plain HTML form post (the only kind a foreign page can send without a preflight)
        status, _ = request(server, "POST", "/api/save", body={"item": item}, headers={"Content-Type": "text/plain"})
        assert status == 415
        assert request(server, "PUT", "/api/save", body={"item": item})[0] == 405
    assert item_path.read_bytes() == before


@pytest.mark.parametrize(
    "path",
    [
        "/static/../session.py",
        "/static/%2e%2e/session.py",
        "/static/..%2fserver.py",
        "/../../../../etc/passwd",
        "/static//etc/passwd",
        "/static/form.js/../../server.py",
        "/static/index.html",
        "/static/",
    ],
)
def test_static_files_only_from_the_fixed_list(item_path, path):
    with running(item_path) as server:
        status, data = request(server, "GET", f"{path}?token={server.token}")
    assert status == 404
    assert data == {"error": "not found"}


def raw_post(server: FormServer, length: str) -> tuple[int, dict]:
    """A POST whose headers are sent, and no body: the server must answer from the headers alone."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.putrequest("POST", "/api/validate", skip_host=True)
    headers = {"Host": f"127.0.0.1:{server.port}", TOKEN_HEADER: server.token, "Content-Type": "application/json"}
    for key, value in {**headers, "Content-Length": length}.items():
        conn.putheader(key, value)
    conn.endheaders()
    response = conn.getresponse()
    result = response.status, json.loads(response.read())
    conn.close()
    return result


def test_oversized_bodies_are_refused_unread(item_path):
    with running(item_path) as server:
        assert raw_post(server, str(MAX_BODY + 1)) == (413, {"error": f"body over {MAX_BODY} bytes"})
        assert raw_post(server, "-1")[0] == 413
        assert raw_post(server, "lots")[0] == 411
        assert request(server, "POST", "/api/validate", body=["not", "an", "object"])[0] == 400


def test_listens_on_loopback_with_a_fresh_token_and_strict_headers(item_path):
    with running(item_path) as first, running(item_path) as second:
        assert first.server_address[0] == "127.0.0.1"
        assert first.token != second.token
        assert len(first.token) >= 40
        assert first.url == f"http://127.0.0.1:{first.port}/?token={first.token}"
        conn = http.client.HTTPConnection("127.0.0.1", first.port, timeout=10)
        conn.request("GET", f"/?token={first.token}", headers={"Host": f"127.0.0.1:{first.port}"})
        response = conn.getresponse()
        page = response.read().decode()
        assert "default-src 'none'" in response.getheader("Content-Security-Policy")
        assert response.getheader("Referrer-Policy") == "no-referrer"
        assert f"/static/form.js?token={first.token}" in page


def test_static_files_ship_in_the_package():
    import fnmatch
    import tomllib

    from .conftest import ROOT

    globs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["mlm_export"]
    for name, _ in STATIC.values():
        assert any(fnmatch.fnmatch(f"form/static/{name}", g) for g in globs), name
        assert _asset(name)


def test_page_is_offline():
    """No CDN, web font, tile or any other URL the browser would fetch from elsewhere."""
    for name, _ in STATIC.values():
        text = _asset(name).decode("utf-8")
        if name.endswith(".json"):
            continue
        assert not re.search(r"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text, re.I), name
        assert "@import" not in text
        assert "@font-face" not in text


# -- the form's description ----------------------------------------------------------------------------------
def _fields(spec):
    for group in spec["groups"]:
        yield from _walk(group["fields"])


def _walk(fields):
    for f in fields:
        yield f
        yield from _walk(f.get("fields", []))
        if isinstance(f.get("item"), dict):
            yield from _walk([f["item"]])


def test_form_is_generated_from_the_schemas():
    spec = form_spec()
    assert [g["id"] for g in spec["groups"]] == ["model", "inputs", "outputs", "assets", "spatiotemporal", "extensions"]
    by_key = {}
    for f in _fields(spec):
        by_key.setdefault(f["key"], f)
    schema_fields = default_store().load(mlm.MLM_SCHEMA)["$defs"]["fields"]["properties"]
    model_keys = {f["key"] for f in spec["groups"][0]["fields"]}
    elsewhere = {mlm.ARTIFACT_TYPE, "mlm:compile_method", "mlm:entrypoint", mlm.INPUT, mlm.OUTPUT}
    assert set(schema_fields) - elsewhere <= model_keys
    assert by_key[mlm.TASKS]["kind"] == "multichoice"
    assert tuple(by_key[mlm.TASKS]["choices"]) == mlm.TASK_NAMES
    assert by_key[mlm.ACCELERATOR]["choices"] == list(mlm.Accelerator.__args__)
    assert by_key[mlm.ACCELERATOR]["nullable"] is True
    assert tuple(by_key["data_type"]["choices"]) == mlm.DATA_TYPES
    assert by_key["resize_type"]["choices"] == list(mlm.ResizeType.__args__)
    assert "PyTorch" in by_key[mlm.FRAMEWORK]["suggestions"]
    assert by_key["dim_order"]["kind"] == "list"
    assert "bands" in by_key["dim_order"]["suggestions"]
    scaling = by_key["value_scaling"]["item"]
    assert scaling["fields"][0]["choices"] == [
        "min-max",
        "z-score",
        "clip",
        "clip-min",
        "clip-max",
        "offset",
        "scale",
        "processing",
    ]
    classes = by_key["classification:classes"]["item"]
    assert {f["key"]: f["kind"] for f in classes["fields"]} == {
        "value": "integer",
        "description": "textarea",
        "name": "text",
        "color_hint": "color",
    }
    eo = default_store().load(mlm.EO_SCHEMA)["definitions"]["eo:common_name"]["enum"]
    assert by_key["eo:common_name"]["choices"] == eo
    assert by_key["license"]["kind"] == "license"
    assert by_key["datetime"]["kind"] == "datetime"
    assert by_key["datetime"]["nullable"] is True


def test_license_list_is_the_spdx_data_shipped_offline():
    shipped = licenses.shipped()
    assert shipped == licenses.generate(), "regenerate with python -m mlm_export.form.licenses"
    ids = [entry["id"] for entry in shipped["licenses"]]
    assert {"MIT", "Apache-2.0", "CC-BY-4.0", "GPL-3.0-only", "other"} <= set(ids)
    assert not [i for i in ids if i.startswith("LicenseRef-")]
    assert len(ids) > 500
    assert shipped["spdx_license_list_version"]


# -- validation and saving -----------------------------------------------------------------------------------
def test_live_validation_puts_each_problem_at_its_field(item_path):
    item = json.loads(item_path.read_text())
    item["properties"]["license"] = "CC BY 4.0"
    item["properties"]["mlm:output"][0]["classification:classes"][1]["color_hint"] = "blue"
    item["properties"]["mlm:accelerator"] = "cpu"
    del item["properties"]["mlm:name"]
    with running(item_path) as server:
        status, data = request(server, "POST", "/api/validate", body={"item": item})
    assert status == 200
    assert data["valid"] is False
    messages = {tuple(p["path"]): p["message"] for p in data["problems"]}
    assert set(messages) == {
        ("properties", "license"),
        ("properties", "mlm:output", 0, "classification:classes", 1, "color_hint"),
        ("properties", "mlm:accelerator"),
        ("properties", "mlm:name"),
    }
    # the alternative the value was meant for names the mistake (not "is not of type 'null'")
    assert messages[("properties", "mlm:accelerator")].startswith("'cpu' is not one of ['amd64'")
    assert messages[("properties", "mlm:output", 0, "classification:classes", 1, "color_hint")] == (
        "'blue' does not match '^([0-9A-Fa-f]{6})$'"
    )


def test_json_paths_parse_both_notations():
    parsed = parse_json_path("$.properties['mlm:input'][0].input.shape")
    assert parsed == ["properties", "mlm:input", 0, "input", "shape"]
    assert parse_json_path("$.properties.license") == ["properties", "license"]
    assert parse_json_path("$['assets']['it\\'s']") == ["assets", "it's"]
    from mlm_export.errors import Problem

    missing = problem_json(Problem("$.properties", "'mlm:name' is a required property"))
    assert missing["path"] == ["properties", "mlm:name"]


def test_save_keeps_a_backup_and_writes_what_was_sent(item_path, assert_valid):
    before = item_path.read_bytes()
    item = json.loads(before)
    item["properties"]["description"] = "Water from Sentinel-2."
    item["properties"]["license"] = "CC-BY-4.0"
    with running(item_path) as server:
        status, data = request(server, "POST", "/api/save", body={"item": item})
        assert status == 200, data
        assert (item_path.parent / (item_path.name + ".bak")).read_bytes() == before
        saved = json.loads(item_path.read_text())
        assert saved == item
        assert_valid(saved)
        # a second save from the same page builds on the first (its digest is now the file's)
        item["properties"]["keywords"] = ["water"]
        assert request(server, "POST", "/api/save", body={"item": item})[0] == 200
    assert json.loads((item_path.parent / (item_path.name + ".bak")).read_text()) == saved
    assert not list(item_path.parent.glob(".*.tmp*"))


def test_save_refuses_when_the_file_changed_on_disk(item_path):
    item = json.loads(item_path.read_text())
    with running(item_path) as server:
        other = {**item, "properties": {**item["properties"], "description": "someone else's edit"}}
        item_path.write_text(json.dumps(other))
        item["properties"]["description"] = "mine"
        status, data = request(server, "POST", "/api/save", body={"item": item})
    assert status == 409
    assert "changed on disk since the form opened it" in data["error"]
    assert json.loads(item_path.read_text())["properties"]["description"] == "someone else's edit"
    assert not (item_path.parent / (item_path.name + ".bak")).exists()
    session = FormSession(item_path)
    item_path.write_text(item_path.read_text() + " ")
    with pytest.raises(ItemChangedError, match="changed on disk"):
        session.save(json.loads(item_path.read_text()))


def test_save_refuses_an_invalid_item(item_path):
    before = item_path.read_bytes()
    item = json.loads(before)
    item["properties"]["mlm:name"] = "bad/name"
    with running(item_path) as server:
        status, data = request(server, "POST", "/api/save", body={"item": item})
    assert status == 422
    assert [p["path"] for p in data["problems"]] == [["properties", "mlm:name"]]
    assert item_path.read_bytes() == before
    with pytest.raises(ItemValidationError, match="mlm:name"):
        FormSession(item_path).save(item)


def test_save_checks_local_asset_files_inside_the_folder_only(item_path, tmp_path):
    item = json.loads(item_path.read_text())
    model = item["assets"]["model"]
    model["file:size"] += 1
    with pytest.raises(ItemValidationError, match="file:size"):
        FormSession(item_path).save(item)
    outside = tmp_path / "outside.bin"
    outside.write_bytes(b"secret")
    item = json.loads(item_path.read_text())
    item["assets"]["extra"] = {"href": "../outside.bin", "roles": ["metadata"], "file:size": 1}
    FormSession(item_path).save(item)  # not read: it is outside the Item's folder
    assert json.loads(item_path.read_text())["assets"]["extra"]["href"] == "../outside.bin"


def test_changed_derived_values_are_recorded_as_hand_edits(item_path, assert_valid):
    item = json.loads(item_path.read_text())
    item["properties"][mlm.TOTAL_PARAMETERS] = 6000
    item["properties"][mlm.INPUT][0]["input"]["shape"] = [-1, 4, 64, 64]
    item["properties"]["description"] = "not derived: not recorded"
    saved = FormSession(item_path).save(item)
    assert saved["properties"][HAND_EDITED] == [
        "$['properties']['mlm:total_parameters']",
        "$['properties']['mlm:input'][0]['input']['shape']",
    ]
    assert json.loads(item_path.read_text()) == saved
    assert_valid(saved)
    # kept on the next save, even with no new hand edit
    again = FormSession(item_path).save(saved)
    assert again["properties"][HAND_EDITED] == saved["properties"][HAND_EDITED]


def test_used_extensions_are_declared(item_path, assert_valid):
    item = json.loads(item_path.read_text())
    item["properties"]["sci:doi"] = "10.5281/zenodo.1234"
    item["properties"]["bands"][0]["eo:common_name"] = "blue"
    saved = FormSession(item_path).save(item)
    assert mlm.SCI_SCHEMA in saved["stac_extensions"]
    assert mlm.EO_SCHEMA in saved["stac_extensions"]
    assert_valid(saved)


def test_blank_form_and_new_files(tmp_path, assert_valid, derived):
    blank = FormSession(None)
    assert blank.state()["opened"] is False
    assert blank.state()["derived"] == []
    assert blank.state()["item"]["properties"] == {"datetime": None}
    assert blank.problems(blank.state()["item"])  # a blank Item is not valid yet
    with pytest.raises(ItemFileError, match="mlm-export form ITEM.json"):
        blank.save(json.loads(derived.read_text()))
    new = tmp_path / "new.json"
    session = FormSession(new)
    assert session.state()["item"]["id"] == ""
    item = json.loads(derived.read_text())
    del item["assets"]["model"]["file:size"], item["assets"]["model"]["file:checksum"]
    item["assets"]["model"]["href"] = "https://example.com/model.safetensors"
    session.save(item)
    assert json.loads(new.read_text()) == item
    assert not (tmp_path / "new.json.bak").exists()
    assert_valid(item)


def test_not_an_item_is_refused(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ItemFileError, match="is not JSON"):
        FormSession(bad)
    bad.write_text('{"type": "Collection"}')
    with pytest.raises(ItemFileError, match="not a STAC Item"):
        FormSession(bad)


# -- command line --------------------------------------------------------------------------------------------
def test_cli_prints_the_url_first_and_opens_the_browser_unless_told_not(item_path, monkeypatch, capsys):
    opened = []
    monkeypatch.setattr("webbrowser.open", opened.append)

    def stop(self, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(FormServer, "serve_forever", stop)
    assert main(["form", str(item_path)]) == 0
    url = capsys.readouterr().out.splitlines()[0]
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/\?token=[A-Za-z0-9_-]{40,}", url)
    assert opened == [url]
    opened.clear()
    assert main(["form", str(item_path), "--no-browser"]) == 0
    assert opened == []
    capsys.readouterr()
    assert main(["form", str(item_path), "--no-browser", "--json", "-q"]) == 0
    out, err = capsys.readouterr()
    first = json.loads(out.splitlines()[0])
    assert first["item"] == str(item_path)
    assert first["url"].startswith("http://127.0.0.1:")
    assert err == ""
    assert main(["form", str(item_path.parent)]) == 2
    (item_path.parent / "broken.json").write_text("[")
    assert main(["form", str(item_path.parent / "broken.json"), "--no-browser"]) == 1
    assert "is not JSON" in capsys.readouterr().err


def test_a_typed_training_extent_gets_its_geometry(item_path, assert_valid):
    item = json.loads(item_path.read_text())
    item["bbox"] = [5.9, 45.8, 10.5, 47.8]
    del item["properties"]["datetime"]
    item["properties"].update(datetime=None, start_datetime="2019-01-01T00:00:00Z", end_datetime="2021-12-31T23:59:59Z")
    saved = FormSession(item_path).save(item)
    assert saved["geometry"] == {
        "type": "Polygon",
        "coordinates": [[[5.9, 45.8], [10.5, 45.8], [10.5, 47.8], [5.9, 47.8], [5.9, 45.8]]],
    }
    assert_valid(saved)
    item["bbox"] = [10.5, 45.8, 5.9, 47.8]  # west > east: no guess, the validator says what is missing
    assert FormSession(item_path).prepare(item)["geometry"] is None


def test_the_form_needs_no_optional_package():
    """Serving the form imports neither the browser driver nor the license package (used to regenerate the list)."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from mlm_export.cli import form\n"
        "from mlm_export.form import server, licenses\n"
        "licenses.shipped()\n"
        "print(sorted(n for n in ('selenium', 'license_expression', 'lightning', 'torchgeo') if n in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_cli_serves_until_interrupted(item_path):
    """The real command: the URL is the first line on stdout at once, the page answers, Ctrl-C ends it cleanly."""
    import os
    import signal
    import subprocess
    import sys
    from urllib.parse import urlsplit

    proc = subprocess.Popen(
        [sys.executable, "-m", "mlm_export", "form", str(item_path), "--no-browser"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ},
    )
    try:
        url = proc.stdout.readline().strip()
        parts = urlsplit(url)
        assert (parts.scheme, parts.hostname) == ("http", "127.0.0.1")
        conn = http.client.HTTPConnection("127.0.0.1", parts.port, timeout=10)
        conn.request("GET", f"/api/state?{parts.query}", headers={"Host": parts.netloc})
        response = conn.getresponse()
        assert response.status == 200
        assert json.loads(response.read())["item"] == json.loads(item_path.read_text())
        conn.close()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
        assert "Traceback" not in proc.stderr.read()
    finally:
        proc.kill()
        proc.wait()
