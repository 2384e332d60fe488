"""A short human summary of an MLM Item, as a rich table."""

from __future__ import annotations

from typing import Any

import pystac
from rich.table import Table
from rich.text import Text

from . import mlm


def item_table(item: pystac.Item | dict[str, Any]) -> Table:
    """Name, task, parameters, inputs, outputs and assets of an MLM Item."""
    data = item.to_dict(include_self_link=False, transform_hrefs=False) if isinstance(item, pystac.Item) else item
    p = data.get("properties", {})
    table = Table(title=Text(f"MLM Item {data.get('id')}"), show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    row = table.add_row

    def add(key: str, value: str) -> None:  # plain text: shapes like [batch=any x ...] are not markup
        row(Text(key), Text(value))

    add("name", str(p.get(mlm.NAME)))
    add("architecture", str(p.get(mlm.ARCHITECTURE)))
    add("tasks", ", ".join(p.get(mlm.TASKS, [])))
    add("framework", f"{p.get(mlm.FRAMEWORK)} {p.get(mlm.FRAMEWORK_VERSION)}")
    total = p.get(mlm.TOTAL_PARAMETERS)
    add("parameters", f"{total:,}" if isinstance(total, int) else "?")
    for i in p.get(mlm.INPUT, []):
        s = i["input"]
        bands = f" bands {', '.join(i['bands'])}" if i.get("bands") else ""
        scaling = f", {len(i['value_scaling'])} value scaling(s)" if i.get("value_scaling") else ""
        add(_label("input", i["name"]), f"{_shape(s)}{bands}{scaling}")
        traced = str(i.get("description") or "").partition("Traced with ")[2]
        if traced:
            add("traced with", traced.removesuffix("."))
    for o in p.get(mlm.OUTPUT, []):
        classes = o.get(mlm.CLASSES) or []
        names = f" classes {', '.join(c['name'] for c in classes)}" if classes else ""
        add(_label("output", o["name"]), f"{_shape(o['result'])} ({', '.join(o['tasks'])}){names}")
    if data.get("bbox"):
        add("bbox", ", ".join(f"{v:g}" for v in data["bbox"]))
    when = p.get("datetime") or f"{p.get('start_datetime')} / {p.get('end_datetime')}"
    add("time", str(when))
    for key, a in data.get("assets", {}).items():
        size = a.get(mlm.FILE_SIZE)
        add(f"asset {key}", f"{a['href']} ({', '.join(a.get('roles', []))}{_mb(size)})")
    return table


def _label(kind: str, name: str) -> str:
    """``output`` for an output named "output" (not "output output"), else ``output logits``."""
    return kind if name == kind else f"{kind} {name}"


def _shape(s: dict[str, Any]) -> str:
    dims = " x ".join(f"{d}={'any' if n == -1 else n}" for d, n in zip(s["dim_order"], s["shape"], strict=False))
    return f"{s['data_type']} [{dims}]"


def _mb(size: Any) -> str:
    return f", {size / 1e6:.1f} MB" if isinstance(size, int) else ""
