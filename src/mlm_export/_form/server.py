"""The form's local web server: standard library HTTP on 127.0.0.1, a free port, a random token.

Every request must carry the token (``?token=`` in the page's URL, the ``X-MLM-Form-Token`` header on API
calls) and a ``Host`` of this server (DNS rebinding: a page on another name resolving to 127.0.0.1 is
refused); a request with an ``Origin`` must come from the page itself. Static files are served from a fixed
list shipped in the package, never by path. Request bodies are JSON, at most :data:`MAX_BODY` bytes nested at
most ``_limits.JSON_DEPTH`` levels: anything else is a 4xx with one line, never a dropped connection.
"""

from __future__ import annotations

import functools
import hmac
import importlib.resources
import json
import secrets
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .. import _limits as limits
from .. import mlm
from .._hrefs import loads
from ..errors import InputTooLargeError, ItemChangedError, ItemFileError, ItemValidationError
from .schema_form import form_spec
from .session import FormSession, problem_json

HOST = "127.0.0.1"
TOKEN_HEADER = "X-MLM-Form-Token"  # noqa: S105 - a header name, not a secret
#: Largest request body accepted (an Item with long class and band lists is a few hundred kB).
MAX_BODY = limits.FORM_BODY_BYTES
#: The only files served, by URL path: (package file, content type).
STATIC = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/static/form.js": ("form.js", "text/javascript; charset=utf-8"),
    "/static/form.css": ("form.css", "text/css; charset=utf-8"),
    "/static/spdx-licenses.json": ("spdx-licenses.json", mlm.MEDIA_JSON),
}
_SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; form-action 'none'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
}


@functools.cache
def _asset(name: str) -> bytes:
    return importlib.resources.files(__package__).joinpath("static", name).read_bytes()


class FormServer(ThreadingHTTPServer):
    """The HTTP server of one form session; ``url`` carries the token."""

    daemon_threads = True

    def __init__(self, session: FormSession, port: int = 0) -> None:
        self.session = session
        self.token = secrets.token_urlsafe(32)
        super().__init__((HOST, port), _Handler)
        self.port = self.server_address[1]
        self.allowed_hosts = {f"{HOST}:{self.port}", f"localhost:{self.port}"}
        self.url = f"http://{HOST}:{self.port}/?token={self.token}"
        self._spec: dict[str, Any] | None = None
        self._spec_lock = threading.Lock()

    def spec(self) -> dict[str, Any]:
        """The form description, made once from the schemas."""
        with self._spec_lock:
            if self._spec is None:
                self._spec = form_spec()
            return self._spec


class _Handler(BaseHTTPRequestHandler):
    server: FormServer
    protocol_version = "HTTP/1.1"
    server_version = "mlm-export-form"
    sys_version = ""
    #: Seconds a client may take to send a request (a slow body holds one thread, not the server).
    timeout = 30

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        """Quiet: request lines would print the token."""

    # -- guards ---------------------------------------------------------------------------------------------
    def _refusal(self) -> tuple[HTTPStatus, str] | None:
        """Why this request is refused, or None."""
        if self.headers.get("Host", "") not in self.server.allowed_hosts:
            return HTTPStatus.MISDIRECTED_REQUEST, "unknown Host"
        origin = self.headers.get("Origin")
        if origin is not None and origin not in {f"http://{h}" for h in self.server.allowed_hosts}:
            return HTTPStatus.FORBIDDEN, "cross-origin request"
        query = parse_qs(urlsplit(self.path).query)
        given = self.headers.get(TOKEN_HEADER) or (query.get("token") or [""])[0]
        if not hmac.compare_digest(given.encode(), self.server.token.encode()):
            return HTTPStatus.FORBIDDEN, "missing or wrong token"
        return None

    def _send(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in _SECURITY_HEADERS.items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: HTTPStatus, data: Any) -> None:
        self._send(status, json.dumps(data).encode("utf-8"), mlm.MEDIA_JSON)

    def _error(self, status: HTTPStatus, message: str) -> None:
        self.close_connection = True
        self._json(status, {"error": message})

    # -- methods --------------------------------------------------------------------------------------------
    def do_GET(self) -> None:
        if refusal := self._refusal():
            return self._error(*refusal)
        path = urlsplit(self.path).path
        if path == "/api/state":
            return self._json(HTTPStatus.OK, {**self.server.session.state(), "spec": self.server.spec()})
        if path in STATIC:
            name, content_type = STATIC[path]
            body = _asset(name)
            if name == "index.html":  # the token is URL-safe base64: nothing to escape
                body = body.replace(b"{{TOKEN}}", self.server.token.encode())
            return self._send(HTTPStatus.OK, body, content_type)
        return self._error(HTTPStatus.NOT_FOUND, "not found")

    def do_POST(self) -> None:
        if refusal := self._refusal():
            return self._error(*refusal)
        path = urlsplit(self.path).path
        if path not in ("/api/validate", "/api/save"):
            return self._error(HTTPStatus.NOT_FOUND, "not found")
        if self.headers.get_content_type() != mlm.MEDIA_JSON:
            return self._error(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "send application/json")
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            return self._error(HTTPStatus.LENGTH_REQUIRED, "Content-Length required")
        if length < 0 or length > MAX_BODY:
            return self._error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"body over {MAX_BODY} bytes")
        try:
            data = loads(self.rfile.read(length), "the request body")
        except InputTooLargeError as e:
            return self._error(HTTPStatus.BAD_REQUEST, str(e))
        except ValueError:
            return self._error(HTTPStatus.BAD_REQUEST, "body is not JSON")
        if not isinstance(data, dict) or not isinstance(data.get("item"), dict):
            return self._error(HTTPStatus.BAD_REQUEST, 'send {"item": {...}}')
        session = self.server.session
        if path == "/api/validate":
            item = session.prepare(data["item"])
            problems = [problem_json(p) for p in session.problems(item)]
            return self._json(HTTPStatus.OK, {"valid": not problems, "problems": problems, "item": item})
        try:
            saved = session.save(data["item"])
        except ItemValidationError as e:
            return self._json(HTTPStatus.UNPROCESSABLE_ENTITY, {"problems": [problem_json(p) for p in e.problems]})
        except ItemChangedError as e:
            return self._json(HTTPStatus.CONFLICT, {"error": str(e)})
        except ItemFileError as e:
            return self._json(HTTPStatus.BAD_REQUEST, {"error": str(e)})
        return self._json(HTTPStatus.OK, {"saved": str(session.path), "item": saved})

    def do_HEAD(self) -> None:
        self.do_GET()

    def _not_allowed(self) -> None:
        self._error(HTTPStatus.METHOD_NOT_ALLOWED, "method not allowed")

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _not_allowed
