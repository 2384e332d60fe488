"""One query model for every backend: the CLI's flags, checked once, turned into CQL2 JSON.

The folder catalog translates the CQL2 JSON into parameterised DuckDB SQL (``sql.py``); pgstac and STAC APIs
receive it as the ``filter`` of a STAC API search. ``bbox`` and ``datetime`` travel as the search's own
parameters. Every property a filter names must be a queryable (``fields.QUERYABLES``), so that a query means
the same everywhere and a typo is an error rather than an empty result.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .. import mlm
from ._errors import QueryError
from ._fields import BANDS, QUERYABLES, parse_time

DEFAULT_LIMIT = 100
#: A larger ``limit`` means "every Item" and is lowered to this (pgstac takes a 32-bit limit).
MAX_LIMIT = 2**31 - 1
#: Longest CQL2 filter and deepest nesting of parentheses and brackets parsed: ``cql2`` crashes the process on
#: about 2,000 nested parentheses, so both are checked before the text reaches it.
MAX_FILTER_CHARS = 20_000
MAX_FILTER_DEPTH = 64
#: What nests in CQL2 text besides parentheses: NOT, and arithmetic (a number's sign counts as well).
_NESTING = re.compile(r"\bnot\b|\bdiv\b|[-+*/%^]", re.IGNORECASE)
_COMPARISONS = {"=", "<>", "!=", "<", "<=", ">", ">=", "like", "in", "between"}


@dataclass(frozen=True)
class Query:
    """What a user asks for; every field is optional and they combine with AND.

    ``bands`` must all be present (each by band name or common name); ``framework`` and ``architecture``
    compare case-insensitively; ``filter`` is CQL2 text (or CQL2 JSON as a dict) over :data:`QUERYABLES`.
    """

    task: str | None = None
    bands: tuple[str, ...] = ()
    architecture: str | None = None
    framework: str | None = None
    max_parameters: int | None = None
    bbox: tuple[float, float, float, float] | None = None
    datetime: str | None = None
    filter: str | Mapping[str, Any] | None = None
    ids: tuple[str, ...] = ()
    limit: int = DEFAULT_LIMIT
    _interval: tuple[dt.datetime | None, dt.datetime | None] = field(default=(None, None), init=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.limit, int) or isinstance(self.limit, bool) or self.limit < 1:
            raise QueryError(f"limit must be a whole number, 1 or more, got {self.limit!r} (--limit)")
        object.__setattr__(self, "limit", min(self.limit, MAX_LIMIT))
        if self.max_parameters is not None and self.max_parameters < 0:
            raise QueryError(f"max_parameters must be 0 or more, got {self.max_parameters} (--max-parameters)")
        if self.bbox is not None:
            w, s, e, n = self.bbox
            if not (-180 <= w <= 180 and -180 <= e <= 180 and -90 <= s <= n <= 90):
                raise QueryError(f"bbox {list(self.bbox)} is not W,S,E,N in degrees (--bbox)")
        if self.datetime is not None:
            object.__setattr__(self, "_interval", parse_interval(self.datetime))
        if self.filter is not None:
            parsed = parse_filter(self.filter)
            check_properties(parsed)
            check_types(parsed)

    @property
    def interval(self) -> tuple[dt.datetime | None, dt.datetime | None]:
        """The ``datetime`` option as (start, end); None is open."""
        return self._interval

    def cql2(self) -> dict[str, Any] | None:
        """Every attribute filter as one CQL2 JSON expression (bbox and datetime excluded); None when there is none."""
        args: list[dict[str, Any]] = []
        if self.ids:
            args.append({"op": "in", "args": [{"property": "id"}, list(self.ids)]})
        if self.task:
            args.append({"op": "a_contains", "args": [{"property": mlm.TASKS}, [self.task]]})
        if self.bands:
            args.append({"op": "a_contains", "args": [{"property": BANDS}, list(self.bands)]})
        for prop, value in ((mlm.ARCHITECTURE, self.architecture), (mlm.FRAMEWORK, self.framework)):
            if value:
                args.append({"op": "=", "args": [_casei({"property": prop}), _casei(value)]})
        if self.max_parameters is not None:
            args.append({"op": "<=", "args": [{"property": mlm.TOTAL_PARAMETERS}, self.max_parameters]})
        if self.filter is not None:
            args.append(parse_filter(self.filter))
        if not args:
            return None
        return args[0] if len(args) == 1 else {"op": "and", "args": args}


def _casei(arg: Any) -> dict[str, Any]:
    return {"op": "casei", "args": [arg]}


def parse_filter(text: str | Mapping[str, Any]) -> dict[str, Any]:
    """CQL2 text or JSON parsed (by the ``cql2`` library) into CQL2 JSON; a one-line QueryError when malformed."""
    import cql2

    check_size(text)
    try:
        expr = cql2.Expr(dict(text)) if isinstance(text, Mapping) else cql2.parse_text(text)
        out = expr.to_json()
    except Exception as e:  # cql2 raises ParseError / ValidationError / ValueError
        where = " ".join(str(e).split())
        raise QueryError(f"malformed CQL2 filter {text!r}: {where} (--filter)") from e
    if not isinstance(out, dict):
        raise QueryError(f"the CQL2 filter {text!r} is not an expression (--filter)")
    from ._base import nested_too_deep

    if nested_too_deep(out, 4 * MAX_FILTER_DEPTH):  # what the checks below walk by recursion
        raise QueryError(f"the CQL2 filter nests deeper than {MAX_FILTER_DEPTH} levels; simplify it (--filter)")
    return out


def check_size(text: str | Mapping[str, Any]) -> None:
    """Refuse a filter longer than :data:`MAX_FILTER_CHARS` or nested deeper than :data:`MAX_FILTER_DEPTH`,
    before any parser sees it. In text, parentheses and brackets nest, and so does each ``NOT`` and arithmetic
    operator (``cql2`` parses them recursively too): their count is added to the deepest parenthesis."""
    if isinstance(text, Mapping):
        from ._base import nested_too_deep

        if nested_too_deep(text, 2 * MAX_FILTER_DEPTH):  # an operator's args add a list level to each
            raise QueryError(f"the CQL2 filter nests deeper than {MAX_FILTER_DEPTH} levels (--filter)")
        return
    if len(text) > MAX_FILTER_CHARS:
        raise QueryError(f"the CQL2 filter is {len(text):,} characters, over {MAX_FILTER_CHARS:,} (--filter)")
    depth = deepest = 0
    unquoted = []
    quote = ""
    for char in text:
        if quote:
            if char == quote:
                quote = ""  # '' inside a string closes and reopens it: still inside
            continue
        if char in "'\"":
            quote = char
            unquoted.append(" ")
            continue
        unquoted.append(char)
        if char in "([":
            depth += 1
            deepest = max(deepest, depth)
        elif char in ")]":
            depth -= 1
    operators = len(_NESTING.findall("".join(unquoted)))
    if deepest + operators > MAX_FILTER_DEPTH:
        raise QueryError(
            f"the CQL2 filter nests {deepest + operators} levels ({deepest} of parentheses, {operators} NOT or "
            f"arithmetic operators), over {MAX_FILTER_DEPTH}; simplify it (--filter)"
        )


def check_types(expr: Any) -> None:
    """Raise when a comparison puts a text queryable beside a number or a number queryable beside text: DuckDB
    would fail on it and pgstac compare JSON, so every backend refuses it the same way."""
    if isinstance(expr, list):
        for value in expr:
            check_types(value)
        return
    if not isinstance(expr, Mapping):
        return
    args = expr.get("args")
    if str(expr.get("op", "")).lower() in _COMPARISONS and isinstance(args, list) and args:
        prop = args[0].get("property") if isinstance(args[0], Mapping) else None
        schema = QUERYABLES.get(str(prop).removeprefix("properties.")) if isinstance(prop, str) else None
        if schema is not None and schema.get("type") in ("string", "number") and "format" not in schema:
            literals = [v for a in args[1:] for v in (a if isinstance(a, list) else [a])]
            for value in literals:
                is_text = isinstance(value, str)
                is_number = isinstance(value, int | float) and not isinstance(value, bool)
                if (schema["type"] == "string" and is_number) or (schema["type"] == "number" and is_text):
                    kind = "text" if schema["type"] == "string" else "a number"
                    raise QueryError(
                        f"the filter compares {prop!r}, which is {kind}, with {value!r}; write "
                        + (f"{prop} = '{value}'" if kind == "text" else "a number without quotes")
                        + " (--filter)"
                    )
    for value in expr.values():
        check_types(value)


def check_properties(expr: Any) -> None:
    """Raise when the expression names a property that is not a queryable."""
    if isinstance(expr, Mapping):
        prop = expr.get("property")
        if isinstance(prop, str) and prop.removeprefix("properties.") not in QUERYABLES:
            raise QueryError(
                f"the filter names {prop!r}, which is not a queryable; use one of: {', '.join(QUERYABLES)} (--filter)"
            )
        for value in expr.values():
            check_properties(value)
    elif isinstance(expr, list):
        for value in expr:
            check_properties(value)


def parse_interval(text: str) -> tuple[dt.datetime | None, dt.datetime | None]:
    """``A/B`` (either end ``..`` or empty for open) or one instant, as aware datetimes."""
    parts = text.split("/")
    if len(parts) > 2:
        raise QueryError(f"datetime {text!r} is not an instant or an interval A/B (--datetime)")
    ends: list[dt.datetime | None] = []
    for part in parts:
        if part in ("", ".."):
            ends.append(None)
            continue
        value = parse_time(part if "T" in part else f"{part}T00:00:00Z")
        if value is None or value.tzinfo is None:
            raise QueryError(f"datetime {part!r} is not RFC 3339 (e.g. 2024-01-31T00:00:00Z) (--datetime)")
        ends.append(value)
    return (ends[0], ends[0]) if len(ends) == 1 else (ends[0], ends[1])


def datetime_param(query: Query) -> str | None:
    """The STAC API ``datetime`` parameter for the query's interval."""
    start, end = query.interval
    if query.datetime is None:
        return None
    fmt = [v.isoformat().replace("+00:00", "Z") if v else ".." for v in (start, end)]
    return fmt[0] if start == end and start is not None else "/".join(fmt)


def bands_arg(values: Sequence[str]) -> tuple[str, ...]:
    """Band options as given, each possibly comma-separated."""
    return tuple(b.strip() for v in values for b in v.split(",") if b.strip())
