"""CQL2 JSON to parameterised DuckDB SQL over the folder catalog's columns.

Properties become column names from a fixed table (never text from the user); every literal becomes a ``?``
parameter. Operators outside the table are refused with a one-line :class:`QueryError`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .. import mlm
from ._errors import QueryError
from ._fields import BANDS, parse_time

#: queryable -> column of the folder catalog's table.
COLUMNS = {
    "id": "id",
    "collection": "collection",
    "datetime": '"start"',
    "start_datetime": '"start"',
    "end_datetime": '"end"',
    mlm.NAME: "name",
    mlm.ARCHITECTURE: "architecture",
    mlm.FRAMEWORK: "framework",
    mlm.ACCELERATOR: "accelerator",
    mlm.TOTAL_PARAMETERS: "total_parameters",
    mlm.TASKS: "tasks",
    BANDS: "bands",
}
_COMPARE = {"=": "=", "<>": "<>", "!=": "<>", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
_ARRAYS = {
    "a_contains": "list_has_all({0}, {1})",
    "a_containedby": "list_has_all({1}, {0})",
    "a_overlaps": "list_has_any({0}, {1})",
    "a_equals": "({0} = {1})",
}


def to_sql(expr: Mapping[str, Any]) -> tuple[str, list[Any]]:
    """A WHERE clause and its parameters for a CQL2 JSON expression."""
    params: list[Any] = []
    return _expr(expr, params), params


def _expr(node: Any, params: list[Any]) -> str:
    if not isinstance(node, Mapping) or "op" not in node:
        if isinstance(node, bool):
            return "TRUE" if node else "FALSE"
        raise QueryError(f"a filter must be a boolean expression, found {node!r} (--filter)")
    op = str(node["op"]).lower()
    args = list(node.get("args") or [])
    if op in ("and", "or"):
        return "(" + f" {op.upper()} ".join(_expr(a, params) for a in args) + ")"
    if op == "not":
        return f"(NOT {_expr(args[0], params)})"
    if op in _COMPARE:
        return f"({_value(args[0], params)} {_COMPARE[op]} {_value(args[1], params)})"
    if op == "like":
        return f"({_value(args[0], params)} LIKE {_value(args[1], params)})"
    if op == "in":
        items = args[1] if isinstance(args[1], list) else [args[1]]
        return f"({_value(args[0], params)} IN ({', '.join(_value(v, params) for v in items)}))"
    if op == "between":
        return f"({_value(args[0], params)} BETWEEN {_value(args[1], params)} AND {_value(args[2], params)})"
    if op == "isnull":
        return f"({_value(args[0], params)} IS NULL)"
    if op == "a_contains" and isinstance(args[1], list) and len(args[1]) == 1 and isinstance(args[1][0], str):
        column = _value(args[0], params)
        params.append(args[1][0])
        return f"list_contains({column}, ?)"  # one value: the cheaper test
    if op in _ARRAYS:
        return _ARRAYS[op].format(_value(args[0], params), _value(args[1], params))
    if op in ("s_intersects", "s_within", "s_contains"):
        return _spatial(args, params)
    if op in ("t_intersects", "anyinteracts"):
        return _temporal(args, params)
    raise QueryError(f"the folder catalog cannot evaluate the CQL2 operator {node['op']!r} (--filter)")


def _value(node: Any, params: list[Any]) -> str:
    if isinstance(node, Mapping):
        if "property" in node:
            name = str(node["property"]).removeprefix("properties.")
            if name not in COLUMNS:
                raise QueryError(f"the filter names {name!r}, which is not a queryable (--filter)")
            return COLUMNS[name]
        if node.get("op") == "casei":
            return f"lower({_value(node['args'][0], params)})"
        if "timestamp" in node or "date" in node:
            params.append(_time(node.get("timestamp") or node.get("date")))
            return "?"
        if "op" in node:
            return _expr(node, params)
        raise QueryError(f"the folder catalog cannot evaluate {dict(node)!r} in a filter (--filter)")
    if isinstance(node, list):
        params.append([v for v in node if not isinstance(v, Mapping)])
        return "?::VARCHAR[]" if all(isinstance(v, str) for v in node) else "?"
    if isinstance(node, float) and node.is_integer():
        node = int(node)
    params.append(node)
    return "?"


def _time(text: Any) -> Any:
    value = parse_time(text if "T" in str(text) else f"{text}T00:00:00Z")
    if value is None:
        raise QueryError(f"{text!r} is not an RFC 3339 timestamp (--filter)")
    return value


def _spatial(args: list[Any], params: list[Any]) -> str:
    target = args[1] if isinstance(args[1], Mapping) else {}
    box = target.get("bbox")
    if box is None and target.get("type") in ("Polygon", "MultiPolygon", "Point"):
        flat = list(_coords(target.get("coordinates")))
        box = [min(p[0] for p in flat), min(p[1] for p in flat), max(p[0] for p in flat), max(p[1] for p in flat)]
    if not box:
        raise QueryError("spatial filters take a bbox or a GeoJSON geometry (--filter)")
    return bbox_sql(box[:2] + box[-2:] if len(box) == 6 else box, params)


def _coords(node: Any) -> Any:
    if isinstance(node, list) and node and isinstance(node[0], int | float):
        yield node
    elif isinstance(node, list):
        for child in node:
            yield from _coords(child)


def bbox_sql(box: list[float] | tuple[float, ...], params: list[Any]) -> str:
    """Items whose bbox intersects ``box`` (W, S, E, N)."""
    w, s, e, n = box
    params.extend([e, w, n, s])
    return "(xmin <= ? AND xmax >= ? AND ymin <= ? AND ymax >= ?)"


def interval_sql(start: Any, end: Any, params: list[Any]) -> str:
    """Items whose time interval intersects [start, end] (None is open)."""
    parts = []
    if end is not None:
        parts.append('"start" <= ?')
        params.append(end)
    if start is not None:
        parts.append('"end" >= ?')
        params.append(start)
    return "(" + " AND ".join(parts) + ")" if parts else "TRUE"


def _temporal(args: list[Any], params: list[Any]) -> str:
    target = args[1] if isinstance(args[1], Mapping) else {}
    if "interval" in target:
        a, b = target["interval"]
        return interval_sql(None if a == ".." else _time(a), None if b == ".." else _time(b), params)
    if "timestamp" in target or "date" in target:
        t = _time(target.get("timestamp") or target.get("date"))
        return interval_sql(t, t, params)
    raise QueryError("temporal filters take a timestamp, a date or an interval (--filter)")
