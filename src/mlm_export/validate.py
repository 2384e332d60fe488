"""Validate Items and Collections against STAC core and every declared extension's JSON Schema, offline.

Schemas are found by URL, in this order: override directories laid out as ``HOST/PATH`` (``$MLM_EXPORT_SCHEMA_DIR``,
several joined with ``os.pathsep``), the cache directory (``$MLM_EXPORT_CACHE_DIR``, default
``~/.cache/mlm-export/schemas``), then the network (short timeout, result cached) unless
``$MLM_EXPORT_OFFLINE`` is set. A schema that cannot be found is an error naming the URL and the variable.
"""

from __future__ import annotations

import functools
import json
import os
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urldefrag, urlparse

import jsonschema
import pystac
import referencing
import referencing.jsonschema
from jsonschema.exceptions import ValidationError, best_match

from .errors import ItemValidationError, Problem, SchemaNotFoundError
from .write import atomic_write_bytes

SCHEMA_DIR_ENV = "MLM_EXPORT_SCHEMA_DIR"
CACHE_DIR_ENV = "MLM_EXPORT_CACHE_DIR"
OFFLINE_ENV = "MLM_EXPORT_OFFLINE"
NETWORK_TIMEOUT_S = 10.0

_CORE = {
    "Feature": "item-spec/json-schema/item.json",
    "Collection": "collection-spec/json-schema/collection.json",
    "Catalog": "catalog-spec/json-schema/catalog.json",
}


class SchemaStore:
    """Find JSON Schemas by URL in local directories, a cache, or (unless offline) the network."""

    def __init__(
        self,
        override_dirs: Sequence[str | os.PathLike[str]] | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        *,
        offline: bool | None = None,
    ) -> None:
        if override_dirs is None:
            env = os.environ.get(SCHEMA_DIR_ENV, "")
            override_dirs = [p for p in env.split(os.pathsep) if p]
        self.override_dirs = [Path(p) for p in override_dirs]
        default_cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mlm-export" / "schemas"
        self.cache_dir = Path(cache_dir or os.environ.get(CACHE_DIR_ENV) or default_cache)
        self.offline = offline if offline is not None else os.environ.get(OFFLINE_ENV, "") not in ("", "0", "false")
        self._registry = referencing.Registry(retrieve=self._retrieve)  # type: ignore[call-arg]

    def load(self, url: str) -> Any:
        """The schema at ``url`` (fragment ignored), as parsed JSON."""
        return _cached_load(self._key(), urldefrag(url).url)

    def _key(self) -> tuple[tuple[str, ...], str, bool]:
        return tuple(str(p) for p in self.override_dirs), str(self.cache_dir), self.offline

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
def _cached_load(key: tuple[tuple[str, ...], str, bool], url: str) -> Any:
    overrides, cache_dir, offline = key
    rel = _url_path(url)
    for base in (*overrides, cache_dir):
        path = Path(base) / rel
        if path.is_file():
            return json.loads(path.read_text(encoding="utf-8"))
    if offline:
        raise SchemaNotFoundError(
            f"JSON Schema {url} is not in {_where(overrides, cache_dir)} and ${OFFLINE_ENV} forbids downloading it. "
            f"Point ${SCHEMA_DIR_ENV} at a directory that holds it as {rel}."
        )
    try:
        with urllib.request.urlopen(url, timeout=NETWORK_TIMEOUT_S) as resp:  # noqa: S310 - https schema URLs
            data = resp.read()
        parsed = json.loads(data)
    except Exception as e:
        raise SchemaNotFoundError(
            f"JSON Schema {url} is not in {_where(overrides, cache_dir)} and could not be downloaded ({e}). "
            f"Point ${SCHEMA_DIR_ENV} at a directory that holds it as {rel}."
        ) from e
    target = Path(cache_dir) / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(target, data)
    return parsed


def _url_path(url: str) -> str:
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise SchemaNotFoundError(f"not a schema URL: {url}")
    return f"{parsed.netloc}{parsed.path}"


def _where(overrides: Iterable[str], cache_dir: str) -> str:
    dirs = [*overrides, cache_dir]
    return ", ".join(dirs)


@functools.lru_cache(maxsize=4)
def _default_store(key: tuple[str, str, str]) -> SchemaStore:
    return SchemaStore()


def default_store() -> SchemaStore:
    """The store configured by the environment (re-read when the variables change)."""
    key = (os.environ.get(SCHEMA_DIR_ENV, ""), os.environ.get(CACHE_DIR_ENV, ""), os.environ.get(OFFLINE_ENV, ""))
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
    """Every schema violation of an Item, Collection or Catalog, each with its JSON path; empty when valid."""
    data = obj.to_dict(include_self_link=False, transform_hrefs=False) if isinstance(obj, pystac.STACObject) else obj
    store = store or default_store()
    problems: list[Problem] = []
    for url in schema_urls(data):
        validator = store.validator(url)
        for error in validator.iter_errors(data):
            problems.append(_problem(error, url))
    return _dedupe(problems)


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
