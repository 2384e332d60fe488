"""Checking many Items against the same schemas quickly: one validator per schema URL, its references loaded once.

A fresh validator retrieves and crawls every referenced schema again (about 0.1 s of pure Python per Item for
STAC + MLM + their references). The callback checks an Item per checkpoint, on a thread that shares the GIL
with training, so each schema's references are gathered once here, into a crawled registry that needs no
further retrieval. When an object fails, :func:`mlm_export._validate.check` runs to report every problem.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import urldefrag, urljoin

import jsonschema
import referencing
import referencing.exceptions
import referencing.jsonschema
from jsonschema_specifications import REGISTRY as META  # type: ignore[import-untyped]

from ._checks import structure_problems
from ._validate import SchemaStore, as_written, check, default_store, is_mlm_item, schema_urls

_validators: dict[tuple[Any, str], Any] = {}
_lock = threading.Lock()
#: Shapes (see :func:`shape`) of objects that passed, per schema store.
_passed: dict[int, set[Any]] = {}
#: Lists longer than this are described by the set of their elements' shapes, not one by one.
LONG_LIST = 8


def quick_check(data: Mapping[str, Any], *, what: str | None = None, by_shape: bool = False) -> None:
    """Raise :class:`~mlm_export.errors.ItemValidationError` if ``data`` fails its schemas (as ``check`` does).

    ``by_shape``: an object of the same shape as one that passed is not checked again. Only for objects this
    library builds from one template (a run's checkpoint Items, its Collection), whose values vary only where
    the schemas constrain types (sizes, checksums, scores, one more link of a kind already checked).
    """
    store = default_store()
    signature = shape(data) if by_shape else None
    if signature is not None and signature in _passed.get(id(store), set()):
        return
    written = as_written(data, store)
    for url in schema_urls(written):
        validator = _validator(store, url)
        if next(iter(validator.iter_errors(written)), None) is not None:
            check(data, store, what=what)  # the full report, with every problem
            return
    if is_mlm_item(data) and structure_problems(data):
        check(data, store, what=what)
        return
    if signature is not None:
        with _lock:
            _passed.setdefault(id(store), set()).add(signature)


def shape(node: Any) -> Any:
    """Keys and value types, recursively; a long list by the set of its elements' shapes."""
    if isinstance(node, Mapping):
        return tuple(sorted((str(k), shape(v)) for k, v in node.items()))
    if isinstance(node, list | tuple):
        shapes = [shape(v) for v in node]
        return ("list", frozenset(shapes)) if len(shapes) > LONG_LIST else ("list", tuple(shapes))
    if isinstance(node, str) and node.startswith(("http://", "https://")):
        return ("url", node)  # schema URLs decide which schemas apply
    return type(node).__name__


def _validator(store: SchemaStore, url: str) -> Any:
    key = (id(store), url)
    with _lock:
        if key not in _validators:
            schema = store.load(url)
            resources = [(u, _resource(store.load(u))) for u in _referenced(store, url)]
            registry: referencing.Registry[Any] = META.with_resources(resources).crawl()
            cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)
            _validators[key] = cls(schema, registry=registry)
        return _validators[key]


def _referenced(store: SchemaStore, url: str) -> list[str]:
    """``url`` and every schema it references, directly or not (fragments dropped)."""
    seen: list[str] = []
    todo = [urldefrag(url).url]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.append(current)
        for ref in _refs(store.load(current)):
            target = urldefrag(urljoin(current, ref)).url
            if target and target not in seen and not _is_meta(target):
                todo.append(target)
    return seen


def _is_meta(url: str) -> bool:
    """A JSON Schema meta-schema (draft-07 and the like): bundled with jsonschema, never loaded."""
    try:
        META.get_or_retrieve(url)
    except (referencing.exceptions.NoSuchResource, referencing.exceptions.Unresolvable):
        return False
    return True


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, Mapping):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str) and not value.startswith("#"):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def _resource(contents: Any) -> referencing.Resource[Any]:
    dialect = contents.get("$schema", "http://json-schema.org/draft-07/schema#") if isinstance(contents, dict) else ""
    return referencing.jsonschema.specification_with(dialect, default=referencing.jsonschema.DRAFT7).create_resource(
        contents
    )
