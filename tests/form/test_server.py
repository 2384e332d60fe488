"""mlm-export form's server and command: who may talk to it, what it serves, how it starts and stops."""

from __future__ import annotations

import http.client
import json
import re

import pytest

from mlm_export._form.server import MAX_BODY, STATIC, TOKEN_HEADER, FormServer, _asset
from mlm_export.cli import main

from .helpers import raw_post, request, running


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

    from ..conftest import ROOT

    globs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["mlm_export"]
    for name, _ in STATIC.values():
        assert any(fnmatch.fnmatch(f"_form/static/{name}", g) for g in globs), name
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


# -- command line --------------------------------------------------------------------------------------------
def test_cli_prints_the_url_first_and_opens_the_browser_unless_told_not(item_path, monkeypatch, capsys):
    opened = []
    monkeypatch.setattr("webbrowser.open", opened.append)

    def stop(self, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(FormServer, "serve_forever", stop)
    assert main(["form", str(item_path)]) == 130  # Ctrl-C: 130, as every interrupted command
    url = capsys.readouterr().out.splitlines()[0]
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/\?token=[A-Za-z0-9_-]{40,}", url)
    assert opened == [url]
    opened.clear()
    assert main(["form", str(item_path), "--no-browser"]) == 130
    assert opened == []
    capsys.readouterr()
    assert main(["form", str(item_path), "--no-browser", "--json", "-q"]) == 130
    out, err = capsys.readouterr()
    envelope = json.loads(out.splitlines()[0])
    assert (envelope["command"], envelope["ok"]) == ("form", True)
    first = envelope["results"][0]
    assert first["item"] == str(item_path)
    assert first["url"].startswith("http://127.0.0.1:")
    assert err == ""
    assert main(["form", str(item_path.parent)]) == 2
    (item_path.parent / "broken.json").write_text("[")
    assert main(["form", str(item_path.parent / "broken.json"), "--no-browser"]) == 1
    assert "is not JSON" in capsys.readouterr().err


def test_cli_serves_until_interrupted(item_path):
    """The real command: the URL is the first line on stdout at once, the page answers, Ctrl-C ends it cleanly,
    and no optional package was imported."""
    import os
    import signal
    import subprocess
    import sys
    from urllib.parse import urlsplit

    # the command's own entry point, reporting at exit which optional packages serving the form imported
    code = (
        "import atexit, sys\n"
        "optional = ('selenium', 'license_expression', 'lightning', 'torchgeo')\n"
        "atexit.register(lambda: print('imported:', [n for n in optional if n in sys.modules], file=sys.stderr))\n"
        "from mlm_export.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "form", str(item_path), "--no-browser"],
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
        assert proc.wait(timeout=30) == 130
        err = proc.stderr.read()
        assert "Traceback" not in err
        assert "imported: []" in err  # the form needs no optional package (license_expression only regenerates)
    finally:
        proc.kill()
        proc.wait()
