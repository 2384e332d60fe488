"""What every catalog backend shares: the add result, item preparation (validation, conflicts), ``get``."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import InvalidOptionError, Problem
from ._errors import ConflictError, ItemNotFoundError, RefusedItemsError
from ._query import Query

ON_CONFLICT = ("error", "skip", "update")
#: Largest Item a catalog takes or gives back (bytes of its JSON): a catalog's Items file is read at the offsets
#: its search columns name, and each read is bounded by this.
MAX_ITEM_BYTES = 64 << 20
#: Deepest nesting of lists and objects an Item may have: deeper Items are refused before validation or encoding
#: (Python's recursion and orjson's 255 levels would fail on them with errors that name nothing).
MAX_JSON_DEPTH = 64
#: Most lists and objects an Item may hold, counted as reached (a shared list ``L = [L, L]`` counts each time).
MAX_JSON_NODES = 1_000_000


@dataclass
class AddResult:
    """What one ``add`` did: ids added, updated, skipped (already there), refused (invalid, with problems)."""

    added: list[str] = field(default_factory=list)
    updated_ids: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    refused: dict[str, list[Problem]] = field(default_factory=dict)

    @property
    def updated(self) -> int:
        return len(self.updated_ids)

    def as_dict(self) -> dict[str, Any]:
        return {
            "added": self.added,
            "updated": self.updated_ids,
            "skipped": self.skipped,
            "refused": {k: [str(p) for p in v] for k, v in self.refused.items()},
        }


@dataclass(frozen=True)
class AddOptions:
    """How one ``add`` treats Items already there and invalid Items; checked when made."""

    on_conflict: str = "error"
    skip_invalid: bool = False
    validate: bool = True

    def __post_init__(self) -> None:
        if self.on_conflict not in ON_CONFLICT:
            raise InvalidOptionError(f"on_conflict must be one of {ON_CONFLICT}, got {self.on_conflict!r}")

    def check(self, result: AddResult) -> None:
        """Before committing: refused Items fail the call (unless ``skip_invalid``), and so do conflicts when
        ``on_conflict="error"``."""
        if result.refused and not self.skip_invalid:
            raise RefusedItemsError(result.refused)
        if self.on_conflict == "error" and result.conflicts:
            raise ConflictError(result.conflicts)


def as_dict(obj: Any) -> dict[str, Any]:
    """A pystac object or a mapping as a plain dict (no self link, hrefs as they are)."""
    if hasattr(obj, "to_dict"):
        data: dict[str, Any] = obj.to_dict(include_self_link=False, transform_hrefs=False)
        return data
    return dict(obj)


def shape_problems(item: Mapping[str, Any]) -> list[Problem]:
    """Why a mapping cannot be an Item at all, checked even with ``validate=False``: not a Feature with a string
    id, or nested deeper than :data:`MAX_JSON_DEPTH`."""
    if item.get("type") != "Feature" or not isinstance(item.get("id"), str) or not item["id"]:
        return [Problem("$", "is not a STAC Item (a Feature with a non-empty string id)", "catalog")]
    if nested_too_deep(item):
        reason = f"nests lists and objects deeper than {MAX_JSON_DEPTH} levels (or holds over {MAX_JSON_NODES:,})"
        return [Problem("$", reason, "catalog")]
    return []


def item_problems(item: Mapping[str, Any]) -> list[Problem]:
    """Why an Item cannot go into a catalog: not a Feature with a string id, or any schema violation."""
    from .._validate import validation_problems

    if problems := shape_problems(item):
        return problems
    try:
        return validation_problems(item)
    except Exception as e:  # a schema that cannot be found is this Item's problem, not the call's
        return [Problem("$", f"cannot be validated: {e}", "schema")]


def nested_too_deep(value: Any, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether lists and dicts nest deeper than ``limit``, or are more than :data:`MAX_JSON_NODES` of them
    (walked without recursion, stopping at the first excess)."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    seen = 0
    while stack:
        node, depth = stack.pop()
        seen += 1
        if depth >= limit or seen > MAX_JSON_NODES:
            return True
        children = node.values() if isinstance(node, Mapping) else node
        stack.extend((child, depth + 1) for child in children if isinstance(child, Mapping | list | tuple))
    return False


def dumps(item: Mapping[str, Any]) -> bytes:
    """Compact UTF-8 JSON (orjson when installed: ~10x faster on large Items)."""
    try:
        import orjson
    except ModuleNotFoundError:
        return json.dumps(item, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return orjson.dumps(item)


def loads(data: bytes) -> Any:
    """Parse JSON bytes (orjson when installed)."""
    try:
        import orjson
    except ModuleNotFoundError:
        return json.loads(data)
    return orjson.loads(data)


def prepared_items(
    items: Iterable[Any], existing: set[str], options: AddOptions, result: AddResult
) -> Iterator[tuple[dict[str, Any], bytes]]:
    """Each Item to write with its JSON bytes, after validation and the conflict policy; bookkeeping in ``result``.

    Refused and conflicting Items are recorded, not raised, so one call reports all of them; the caller
    raises before committing.
    """
    seen: set[str] = set()
    for obj in items:
        item = as_dict(obj)
        problems = item_problems(item) if options.validate else shape_problems(item)
        item_id = str(item.get("id"))
        if problems:
            result.refused[item_id] = problems
            continue
        if item_id in seen:
            result.refused[item_id] = [Problem("$.id", "appears twice in this call", "catalog")]
            continue
        seen.add(item_id)
        try:
            data = dumps(item)
        except (TypeError, ValueError) as e:  # a value JSON cannot hold (from a pystac object or a mapping)
            result.refused[item_id] = [Problem("$", f"cannot be written as JSON: {e}", "catalog")]
            continue
        if len(data) > MAX_ITEM_BYTES:
            too_big = f"is {len(data):,} bytes of JSON, over the {MAX_ITEM_BYTES:,} a catalog holds per Item"
            result.refused[item_id] = [Problem("$", too_big, "catalog")]
            continue
        if item_id in existing:
            if options.on_conflict == "skip":
                result.skipped.append(item_id)
                continue
            if options.on_conflict == "error":
                result.conflicts.append(item_id)
                continue
            result.updated_ids.append(item_id)
        else:
            result.added.append(item_id)
        yield item, data


class CatalogBase:
    """``add``, ``get`` and context management over a backend's ``_add`` and ``search``."""

    def add(
        self,
        items: Iterable[Any],
        *,
        collections: Iterable[Mapping[str, Any]] = (),
        on_conflict: str = "error",
        skip_invalid: bool = False,
        validate: bool = True,
    ) -> AddResult:
        """Add Items (dicts or pystac Items) and Collections: all of them or none.

        ``on_conflict`` says what happens to an Item whose id is there already (``"error"``, ``"skip"``,
        ``"update"``); invalid Items fail the call unless ``skip_invalid``; ``validate=False`` skips the schema
        check (for Items validated when written).
        """
        options = AddOptions(on_conflict, skip_invalid, validate)
        return self._add(items, [dict(c) for c in collections], options)

    def _add(self, items: Iterable[Any], collections: list[dict[str, Any]], options: AddOptions) -> AddResult:
        raise NotImplementedError

    def search(self, query: Query | None = None) -> list[dict[str, Any]]:
        raise NotImplementedError

    def get(self, item_id: str) -> dict[str, Any]:
        """The Item with this id; :class:`ItemNotFoundError` when there is none."""
        found = self.search(Query(ids=(item_id,), limit=1))
        if not found:
            raise ItemNotFoundError(f"no Item with id {item_id!r} in {self!r}")
        return found[0]

    def close(self) -> None:
        """Release connections (nothing to do for most backends)."""

    def __enter__(self) -> CatalogBase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
