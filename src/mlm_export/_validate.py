"""Validate Items and Collections against STAC core and every declared extension's JSON Schema, offline.

Schemas are found by URL, in this order: override directories laid out as ``HOST/PATH`` (``$MLM_EXPORT_SCHEMA_DIR``,
several joined with ``os.pathsep``), the schemas bundled with the package (STAC 1.1.0, MLM v1.5.2 and every
extension mlm-export declares), the cache directory (``$MLM_EXPORT_CACHE_DIR``, default
``~/.cache/mlm-export/schemas``), then the network (short timeout, size bound, result cached) unless
``$MLM_EXPORT_OFFLINE`` is set (the commands' ``--offline``). Only ``https`` URLs on the hosts the STAC
community publishes schemas on are downloaded (more with ``$MLM_EXPORT_SCHEMA_HOSTS``); a URL whose path could
leave a directory is refused. An MLM Item is also checked against the rules inside ``mlm:input``/``mlm:output``
that no schema states (:func:`mlm_export._checks.structure_problems`).
"""

from __future__ import annotations

import functools
import json
import os
import re
import urllib.request
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urldefrag, urlsplit

import jsonschema
import pystac
import referencing
import referencing.jsonschema
from jsonschema.exceptions import ValidationError, best_match

from . import _limits as limits
from ._checks import structure_problems
from ._write import atomic_write_bytes
from .errors import (
    ItemValidationError,
    MLMExportWarning,
    Problem,
    SchemaNotFoundError,
    SchemaURLRefusedError,
    first_line,
)

SCHEMA_DIR_ENV = "MLM_EXPORT_SCHEMA_DIR"
CACHE_DIR_ENV = "MLM_EXPORT_CACHE_DIR"
OFFLINE_ENV = "MLM_EXPORT_OFFLINE"
HOSTS_ENV = "MLM_EXPORT_SCHEMA_HOSTS"
NETWORK_TIMEOUT_S = 10.0
#: The largest schema downloaded (``_limits.SCHEMA_BYTES``).
MAX_SCHEMA_BYTES = limits.SCHEMA_BYTES
#: The schemas shipped inside the package, laid out as ``HOST/PATH``.
BUNDLED_DIR = Path(__file__).with_name("schemas")
#: Hosts the STAC community publishes JSON Schemas on (and hosts those schemas reference).
SCHEMA_HOSTS = ("schemas.stacspec.org", "stac-extensions.github.io", "geojson.org", "proj.org", "json-schema.org")

_CORE = {
    "Feature": "item-spec/json-schema/item.json",
    "Collection": "collection-spec/json-schema/collection.json",
    "Catalog": "catalog-spec/json-schema/catalog.json",
}
#: Schema URLs that Items name although no copy is bundled or published where this library can check, and the
#: version the Item was written with: pystac's migration rewrites classification v1.0.0 and v1.1.0 as v2.0.0 in
#: ``stac_extensions`` when it reads an Item (``pystac.Item.from_file``), and keeps the v1.1.0 fields.
WRITTEN_AS = {
    "https://stac-extensions.github.io/classification/v2.0.0/schema.json": (
        "https://stac-extensions.github.io/classification/v1.1.0/schema.json"
    ),
}
#: Path fragments of the MLM schema URLs, old (crim-ca.github.io/mlm-extension) and current.
MLM_URL_PARTS = ("stac-extensions.github.io/mlm/", "/mlm-extension/")
_HOST = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$")
_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._~+-]*$")


class SchemaStore:
    """Find JSON Schemas by URL in local directories, the bundled set, a cache, or (unless offline) the network."""

    def __init__(
        self,
        override_dirs: Sequence[str | os.PathLike[str]] | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        *,
        offline: bool | None = None,
        bundled: bool = True,
        hosts: Iterable[str] | None = None,
    ) -> None:
        if override_dirs is None:
            env = os.environ.get(SCHEMA_DIR_ENV, "")
            override_dirs = [p for p in env.split(os.pathsep) if p]
        self.override_dirs = [Path(p) for p in override_dirs]
        self.bundled = bundled
        default_cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mlm-export" / "schemas"
        self.cache_dir = Path(cache_dir or os.environ.get(CACHE_DIR_ENV) or default_cache)
        self.offline = offline if offline is not None else os.environ.get(OFFLINE_ENV, "") not in ("", "0", "false")
        extra = hosts if hosts is not None else re.split(r"[\s,]+", os.environ.get(HOSTS_ENV, ""))
        self.hosts = tuple(dict.fromkeys([*SCHEMA_HOSTS, *(h.strip().lower() for h in extra if h.strip())]))
        self._registry = referencing.Registry(retrieve=self._retrieve)  # type: ignore[call-arg]

    def is_local(self, url: str) -> bool:
        """Whether the schema at ``url`` is found without the network (override dirs, bundled set, cache): if
        not, checking an object that names it fetches it (or, offline, fails saying so)."""
        try:
            rel = schema_path(urldefrag(url).url)
        except SchemaURLRefusedError:
            return False
        local, cache_dir = self._key()[:2]
        return any((path := _inside(Path(base), rel)) is not None and path.is_file() for base in (*local, cache_dir))

    def load(self, url: str) -> Any:
        """The schema at ``url`` (fragment ignored), as parsed JSON."""
        return _cached_load(self._key(), urldefrag(url).url)

    def _key(self) -> tuple[tuple[str, ...], str, bool, tuple[str, ...]]:
        dirs = [str(p) for p in self.override_dirs] + ([str(BUNDLED_DIR)] if self.bundled else [])
        return tuple(dirs), str(self.cache_dir), self.offline, self.hosts

    def _retrieve(self, uri: str) -> referencing.Resource[Any]:
        contents = self.load(uri)
        return referencing.jsonschema.specification_with(
            contents.get("$schema", "http://json-schema.org/draft-07/schema#") if isinstance(contents, dict) else "",
            default=referencing.jsonschema.DRAFT7,
        ).create_resource(contents)

    def validator(self, url: str) -> jsonschema.protocols.Validator:
        """A compiled validator for the schema at ``url``, resolving its references through this store."""
        schema = self.load(url)
        cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)
        return cls(schema, registry=self._registry)


@functools.lru_cache(maxsize=256)
def _cached_load(key: tuple[tuple[str, ...], str, bool, tuple[str, ...]], url: str) -> Any:
    local, cache_dir, offline, hosts = key
    rel = schema_path(url)
    for base in (*local, cache_dir):
        path = _inside(Path(base), rel)
        if path is not None and path.is_file():
            return json.loads(path.read_text(encoding="utf-8"))
    overrides = [d for d in local if d != str(BUNDLED_DIR)]
    if offline:
        raise SchemaNotFoundError(
            f"JSON Schema {url} not fetched (--offline, ${OFFLINE_ENV}): it is not in {_where(overrides, cache_dir)}. "
            f"Point ${SCHEMA_DIR_ENV} at a directory that holds it as {rel}."
        )
    host = urlsplit(url).hostname or ""
    if urlsplit(url).scheme != "https" or host not in hosts:
        raise SchemaURLRefusedError(
            f"JSON Schema {url} is not in {_where(overrides, cache_dir)} and is not downloaded: only https URLs on "
            f"{', '.join(hosts)} are fetched. Add its host to ${HOSTS_ENV} (comma-separated) to allow it, or point "
            f"${SCHEMA_DIR_ENV} at a directory that holds it as {rel}."
        )
    target = _inside(Path(cache_dir), rel)
    if target is None:  # a symlink inside the cache leads out of it
        raise SchemaURLRefusedError(f"JSON Schema {url} would be cached outside {cache_dir}; remove the link there")
    try:
        data = _download(url, hosts)
        parsed = json.loads(data)
    except SchemaURLRefusedError:
        raise
    except Exception as e:
        raise SchemaNotFoundError(
            f"JSON Schema {url} could not be fetched ({first_line(e, 160)}); it is not in "
            f"{_where(overrides, cache_dir)}. Point ${SCHEMA_DIR_ENV} at a directory that holds it as {rel}, or "
            "pass --offline to never try."
        ) from e
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(target, data)
    return parsed


class _SameRules(urllib.request.HTTPRedirectHandler):
    """Follow a redirect only to an https URL on an allowed host."""

    def __init__(self, hosts: tuple[str, ...]) -> None:
        self.hosts = hosts

    def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str) -> Any:
        parts = urlsplit(newurl)
        if parts.scheme != "https" or (parts.hostname or "") not in self.hosts:
            raise SchemaURLRefusedError(
                f"JSON Schema {req.full_url} redirects to {newurl}, which is not an https URL on an allowed host; "
                f"add its host to ${HOSTS_ENV} to allow it"
            )
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _download(url: str, hosts: tuple[str, ...]) -> bytes:
    opener = urllib.request.build_opener(_SameRules(hosts))
    with opener.open(url, timeout=NETWORK_TIMEOUT_S) as resp:
        data: bytes = resp.read(MAX_SCHEMA_BYTES + 1)
    if len(data) > MAX_SCHEMA_BYTES:
        raise ValueError(f"larger than {MAX_SCHEMA_BYTES} bytes")
    return data


def schema_path(url: str) -> str:
    """The relative path ``HOST/PATH`` a schema URL is stored under; refuses anything that could leave a folder.

    The host must be a plain DNS name (no user, port or IP tricks) and every path segment a plain name: no
    ``..``, ``.``, empty segments, backslashes or percent escapes, so the path stays inside any base directory.
    """
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    segments = parts.path.split("/")[1:]
    if (
        parts.scheme not in ("http", "https")
        or not _HOST.match(host)
        or parts.username is not None
        or parts.password is not None
        or parts.port is not None
        or parts.query
        or not segments
        or not all(_SEGMENT.match(s) and ".." not in s for s in segments)
    ):
        raise SchemaURLRefusedError(
            f"not a schema URL mlm-export can look up: {url!r}. Schema URLs are http(s)://HOST/PATH with a plain host "
            "name and plain path segments (no '..', '.', empty segments, escapes, ports or queries)."
        )
    return "/".join([host, *segments])


def _inside(base: Path, rel: str) -> Path | None:
    """``base/rel`` if it resolves inside ``base`` (symlinks followed), else None."""
    path = base / rel
    try:
        resolved, root = path.resolve(), base.resolve()
    except OSError:
        return None
    return path if resolved.is_relative_to(root) else None


def _where(overrides: Iterable[str], cache_dir: str) -> str:
    dirs = [*overrides, "the bundled schemas", cache_dir]
    return ", ".join(dirs)


@functools.lru_cache(maxsize=4)
def _default_store(key: tuple[str, ...]) -> SchemaStore:
    return SchemaStore()


def default_store() -> SchemaStore:
    """The store configured by the environment (re-read when the variables change)."""
    names = (SCHEMA_DIR_ENV, CACHE_DIR_ENV, OFFLINE_ENV, HOSTS_ENV, "XDG_CACHE_HOME", "HOME")
    key = tuple(os.environ.get(n, "") for n in names)
    return _default_store(key)


def schema_urls(obj: Mapping[str, Any]) -> list[str]:
    """The core STAC schema for the object's type and version, then each declared extension."""
    kind = obj.get("type")
    if kind not in _CORE:
        kind = "Catalog" if "links" in obj and "id" in obj and "description" in obj else None
    if kind is None:
        raise ItemValidationError([Problem("$.type", "is neither 'Feature', 'Collection' nor 'Catalog'")], "object")
    version = obj.get("stac_version", pystac.get_stac_version())
    urls = [f"https://schemas.stacspec.org/v{version}/{_CORE[kind]}"]
    urls += [u for u in obj.get("stac_extensions", []) if isinstance(u, str)]
    return urls


def validation_problems(obj: pystac.STACObject | Mapping[str, Any], store: SchemaStore | None = None) -> list[Problem]:
    """Every schema violation of an Item, Collection or Catalog, each with its JSON path, then (for an MLM Item)
    every broken rule inside ``mlm:input``/``mlm:output``; empty when valid."""
    data = obj.to_dict(include_self_link=False, transform_hrefs=False) if isinstance(obj, pystac.STACObject) else obj
    store = store or default_store()
    problems: list[Problem] = []
    data = as_written(data, store)
    for url in schema_urls(data):
        validator = store.validator(url)
        for error in validator.iter_errors(data):
            problems.append(_problem(error, url))
    if is_mlm_item(data):
        problems += structure_problems(data)
    return _dedupe(problems)


def is_mlm_item(data: Mapping[str, Any]) -> bool:
    """Whether ``data`` is a STAC Item that declares the MLM extension (any version, old URL or new)."""
    extensions = data.get("stac_extensions")
    return (
        data.get("type") == "Feature"
        and isinstance(extensions, list)
        and any(isinstance(u, str) and any(part in u for part in MLM_URL_PARTS) for u in extensions)
    )


def as_written(data: Mapping[str, Any], store: SchemaStore) -> Mapping[str, Any]:
    """``data`` as it is checked: a URL of :data:`WRITTEN_AS` in ``stac_extensions`` that the store cannot find is
    put back to the version the Item was written with (that schema requires its own URL there), with a warning
    that says so. ``data`` itself is never changed."""
    extensions = data.get("stac_extensions")
    if not isinstance(extensions, list):
        return data
    written = []
    for url in extensions:
        substitute = WRITTEN_AS.get(url) if isinstance(url, str) else None
        if substitute is not None:
            try:
                store.load(url)
            except SchemaNotFoundError:
                warnings.warn(substitution_note(url, substitute), MLMExportWarning, stacklevel=3)
                url = substitute
        written.append(url)
    return data if written == extensions else {**data, "stac_extensions": written}


def substitution_note(url: str, substitute: str) -> str:
    """One line: which schema replaced which, and why."""
    return (
        f"JSON Schema {url} has no offline copy; checked against {substitute}, the version the Item was written "
        f"with (pystac rewrites classification v1.0.0/v1.1.0 as v2.0.0 when it reads an Item). Point "
        f"${SCHEMA_DIR_ENV} at a folder holding {schema_path(url)} to check against it."
    )


def check(
    obj: pystac.STACObject | Mapping[str, Any], store: SchemaStore | None = None, *, what: str | None = None
) -> None:
    """Raise :class:`ItemValidationError` listing every violation, if there is any."""
    problems = validation_problems(obj, store)
    if problems:
        data = obj if isinstance(obj, Mapping) else obj.to_dict(include_self_link=False, transform_hrefs=False)
        kind = what or {"Feature": "Item"}.get(str(data.get("type")), str(data.get("type", "object")))
        raise ItemValidationError(problems, kind)


def _problem(error: ValidationError, url: str) -> Problem:
    """The most specific cause of an error: the best match among nested oneOf/anyOf alternatives."""
    leaf = error
    while leaf.context:
        leaf = best_match(_plausible(leaf))
    path = leaf.json_path if len(leaf.absolute_path) >= len(error.absolute_path) else error.json_path
    return Problem(path, leaf.message, _short(url))


def _plausible(error: ValidationError) -> list[ValidationError]:
    """The errors of the oneOf/anyOf alternatives the value was meant for: not those it plainly is not (another
    type, another tag ``const``, the empty-list alternative), so the message names the real mistake."""
    by_alternative: dict[Any, list[ValidationError]] = {}
    for e in error.context or []:
        by_alternative.setdefault(e.relative_schema_path[0] if e.relative_schema_path else None, []).append(e)
    depth = len(error.absolute_path)

    def mismatch(e: ValidationError) -> bool:
        if e.validator == "const":
            return True
        at_value = len(e.absolute_path) == depth
        return at_value and (e.validator == "type" or (e.validator == "maxItems" and e.validator_value == 0))

    kept = [e for errors in by_alternative.values() if not any(mismatch(e) for e in errors) for e in errors]
    return kept or list(error.context or [])


def _short(url: str) -> str:
    return url.removeprefix("https://").removeprefix("stac-extensions.github.io/").removesuffix("/schema.json")


def _dedupe(problems: list[Problem]) -> list[Problem]:
    seen = set()
    out = []
    for p in problems:
        key = (p.json_path, p.message)
        if key not in seen:
            seen.add(key)
            out.append(p)
    return out
