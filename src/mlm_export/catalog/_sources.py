"""What ``publish`` reads: Item files, folders of them (checkpoint folders with their run Collection), Collections.

Relative asset and link hrefs become absolute, so a model found in a catalog can be fetched: joined to
``base_url`` (the URL the named folder is served at) when given, else the file's absolute path. A
Collection's ``item`` links are followed only to files inside the folder the user named; anything else is
refused, never read. In a folder, a file that is a link leading out of it is skipped with a warning (a file
named on the command line is the user's choice and is read). Items nested deeper than the catalog takes are
reported, not read on.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

from .._hrefs import read_json
from ._base import MAX_JSON_DEPTH, nested_too_deep
from ._errors import CatalogFormatError


@dataclass
class Gathered:
    """Items and Collections read from the paths, and files that could not be used (with why)."""

    items: list[dict[str, Any]] = field(default_factory=list)
    collections: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def gather(paths: Sequence[str | os.PathLike[str]], base_url: str | None = None) -> Gathered:
    """Read every Item and Collection under ``paths`` (files or folders), hrefs made absolute."""
    out = Gathered()
    seen: set[Path] = set()
    for given in paths:
        root_path = Path(given)
        if not root_path.exists():
            raise CatalogFormatError(f"{given} does not exist; name Item or Collection files, or folders of them")
        root = (root_path if root_path.is_dir() else root_path.parent).resolve()
        files = sorted(root_path.rglob("*.json")) if root_path.is_dir() else [root_path]
        for file in files:
            target = file.resolve()
            if root_path.is_dir() and not target.is_relative_to(root):
                out.problems.append(f"{file}: is a link leading out of {root}; not read")
                continue
            _read(target, root, base_url, out, seen, explicit=not root_path.is_dir())
    return out


def _read(file: Path, root: Path, base_url: str | None, out: Gathered, seen: set[Path], *, explicit: bool) -> None:
    if file in seen:
        return
    seen.add(file)
    try:
        data = read_json(file)
    except (OSError, ValueError) as e:
        out.problems.append(f"{file}: cannot be read as JSON ({e})")
        return
    except RecursionError:
        out.problems.append(f"{file}: nests lists and objects too deeply to be read; not read")
        return
    if nested_too_deep(data, MAX_JSON_DEPTH + 2):  # + a FeatureCollection's list of features
        out.problems.append(f"{file}: nests lists and objects deeper than {MAX_JSON_DEPTH} levels; not read")
        return
    kind = data.get("type") if isinstance(data, dict) else None
    if kind == "Feature":
        out.items.append(absolute(data, file, root, base_url))
    elif kind == "FeatureCollection":
        out.items += [absolute(f, file, root, base_url) for f in data.get("features", []) if isinstance(f, dict)]
    elif kind == "Collection":
        out.collections.append(absolute(data, file, root, base_url))
        for link in data.get("links", []):
            if isinstance(link, dict) and link.get("rel") == "item" and isinstance(link.get("href"), str):
                target = _inside(file.parent, link["href"], root)
                if target is None:
                    out.problems.append(f"{file}: item link {link['href']!r} is not a file inside {root}; not read")
                elif target.exists():
                    _read(target, root, base_url, out, seen, explicit=True)
    elif explicit:
        out.problems.append(f"{file}: is not a STAC Item, ItemCollection or Collection")


def _inside(folder: Path, href: str, root: Path) -> Path | None:
    """The local file a relative href names, when it is inside ``root``; None for URLs or escapes."""
    if urlsplit(href).scheme or href.startswith("/"):
        return None
    target = (folder / href).resolve()
    return target if target.is_relative_to(root) else None


def _absolute_href(href: str, file: Path, root: Path, base_url: str | None) -> str:
    if urlsplit(href).scheme or href.startswith(("/", "#")):
        return href
    if base_url:
        rel = file.parent.relative_to(root).as_posix()
        prefix = base_url.rstrip("/") + "/" + ("" if rel == "." else rel + "/")
        return urljoin(prefix, href)
    return str((file.parent / href).resolve())


def absolute(obj: dict[str, Any], file: Path, root: Path, base_url: str | None) -> dict[str, Any]:
    """A copy of ``obj`` with every relative asset and link href made absolute; the ``self`` link dropped."""
    out = dict(obj)
    out["assets"] = {
        k: ({**a, "href": _absolute_href(a["href"], file, root, base_url)} if isinstance(a.get("href"), str) else a)
        for k, a in (obj.get("assets") or {}).items()
    }
    if "assets" not in obj:
        del out["assets"]
    out["links"] = [
        {**link, "href": _absolute_href(link["href"], file, root, base_url)}
        for link in obj.get("links", [])
        if isinstance(link, dict) and link.get("rel") != "self" and isinstance(link.get("href"), str)
    ]
    return out
