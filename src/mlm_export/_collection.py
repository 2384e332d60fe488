"""The run Collection, built like the Items: facts of the run and its live Items in, a ``pystac.Collection`` out.

Every field comes from one function named after it: ``extent``, ``summaries``, ``license`` (:func:`run_license`),
``links`` (:func:`collection_links`, with the ``latest-version`` and ``best`` Items) and ``stats:items``
(:func:`item_stats`). ``_runs.RunCatalog`` keeps the live Items and calls :func:`build_collection`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pystac

from . import mlm
from ._times import parse_iso

#: Item fields summarised over the run's Items (what a catalog search filters on).
SUMMARY_FIELDS = (mlm.NAME, mlm.ARCHITECTURE, mlm.TASKS, mlm.FRAMEWORK, mlm.FRAMEWORK_VERSION, mlm.ACCELERATOR)
COLLECTION_FILE = "collection.json"
WORLD = [-180.0, -90.0, 180.0, 90.0]


@dataclass(frozen=True)
class RunLink:
    """The run Collection an Item belongs to (``_runs.RunCatalog``)."""

    #: ``collection``: the Collection's id (``collection_id=``, else ``<model id>-checkpoints``).
    id: str
    #: Title of the ``collection``/``parent``/``root`` links: the Collection's title (the model's ``mlm:name``).
    title: str


@dataclass(frozen=True)
class Member:
    """One live Item of the run."""

    #: The Item's file name beside the Collection (``<stem>.mlm.json``): the link's href.
    file: str
    #: The checkpoint's file name (``last.ckpt`` yields to a saved checkpoint of the same step for latest).
    checkpoint: str
    #: The Item as written (plain JSON).
    item: Mapping[str, Any]
    #: Its rank in the run, from its ``lightning:*`` fields (:func:`ranking`).
    rank: Mapping[str, Any]


@dataclass(frozen=True)
class RunFacts:
    """What the run Collection states besides its Items: the user's options, or the Collection being replaced."""

    #: ``id``: ``collection_id=``, else ``<model id>-checkpoints``.
    id: str
    #: ``title``: the run's title (the model's ``mlm:name``), else the id.
    title: str | None
    #: ``description``: ``description=``, else one naming the model.
    description: str
    #: ``license``: ``license=``, else the earlier ``collection.json``'s; None: the Items' shared license.
    license: str | None = None


def build_collection(run: RunFacts, members: Sequence[Member]) -> pystac.Collection:
    """The Collection over ``members`` (sorted by checkpoint path by the caller)."""
    items = [m.item for m in members]
    collection = pystac.Collection(
        id=run.id,
        description=run.description,
        extent=extent(items),
        title=run.title or run.id,
        # Not declaring MLM here: its v1.5.2 schema rejects every list-valued summary (it checks each summary value
        # as an object), and lists of names, tasks and frameworks are what a catalog search needs.
        stac_extensions=[mlm.STATS_SCHEMA],
        license=run_license(run, items),
        summaries=pystac.Summaries(summaries(items)),
        extra_fields={mlm.STATS_ITEMS: item_stats(items)},
    )
    for link in collection_links(members):
        collection.add_link(pystac.Link.from_dict(link))
    return collection


def run_license(run: RunFacts, items: Iterable[Mapping[str, Any]]) -> str:
    """``license``: the run's, else the one every Item states, else ``other`` (STAC requires one)."""
    licenses = {item.get("properties", {}).get("license") for item in items}
    shared = licenses.pop() if len(licenses) == 1 and None not in licenses else None
    return run.license or shared or "other"


def collection_links(members: Sequence[Member]) -> list[dict[str, Any]]:
    """``links``: root, one ``item`` per member, the ``latest-version`` and (with a monitored metric) ``best``."""
    links: list[dict[str, Any]] = [{"rel": "root", "href": f"./{COLLECTION_FILE}", "type": mlm.MEDIA_JSON}]
    links += [_link("item", m) for m in members]
    if members:
        links.append(_link("latest-version", latest(members)))
        top = best(members)
        if top is not None:
            title = f"best {top.rank['monitor']} ({top.rank['mode']}): {top.rank['score']:g}"
            links.append({**_link("best", top), "title": title})
    return links


def latest(members: Sequence[Member]) -> Member:
    """The member saved last: highest global step, then epoch; ``last.ckpt`` yields to its named twin."""
    return max(
        members,
        key=lambda m: (m.rank.get("global_step", -1), m.rank.get("epoch", -1), m.checkpoint != "last.ckpt"),
    )


def best(members: Sequence[Member]) -> Member | None:
    """The member with the best monitored score (by the first scored member's mode), the later on a tie."""
    scored = [m for m in members if m.rank.get("monitor") and m.rank.get("score") is not None]
    if not scored:
        return None
    sign = -1.0 if scored[0].rank.get("mode") == "max" else 1.0
    return min(scored, key=lambda m: (sign * m.rank["score"], -m.rank.get("global_step", 0)))


def ranking(item: Mapping[str, Any]) -> dict[str, Any]:
    """What ranks an Item in its run, from its ``lightning:*`` fields."""
    p = item.get("properties", {})
    return {
        "global_step": p.get(mlm.LIGHTNING_GLOBAL_STEP, -1),
        "epoch": p.get(mlm.LIGHTNING_EPOCH, -1),
        "monitor": p.get(mlm.LIGHTNING_MONITOR),
        "mode": p.get(mlm.LIGHTNING_MODE),
        "score": p.get(mlm.LIGHTNING_SCORE),
    }


def extent(items: Iterable[Mapping[str, Any]]) -> pystac.Extent:
    """``extent``: the union of the Items' boxes (else the world) and the span of their times (else open)."""
    boxes, times = [], []
    for item in items:
        if item.get("bbox"):
            boxes.append(item["bbox"])
        p = item.get("properties", {})
        times += [p[key] for key in ("datetime", "start_datetime", "end_datetime") if p.get(key)]
    bbox = (
        [min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes)]
        if boxes
        else list(WORLD)
    )
    interval: list[dt.datetime | None] = [parse_iso(min(times)), parse_iso(max(times))] if times else [None, None]
    return pystac.Extent(pystac.SpatialExtent([bbox]), pystac.TemporalExtent([interval]))


def summaries(items: Iterable[Mapping[str, Any]]) -> dict[str, list[Any]]:
    """``summaries``: the distinct values of :data:`SUMMARY_FIELDS` over the Items, in order of appearance."""
    values: dict[str, list[Any]] = {}
    for item in items:
        p = item.get("properties", {})
        for key in SUMMARY_FIELDS:
            v = p.get(key)
            for x in v if isinstance(v, list) else [v]:
                if x is not None and x not in values.setdefault(key, []):
                    values[key].append(x)
    return {k: v for k, v in values.items() if v}


def item_stats(items: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """``stats:items``: how many Items, per STAC version, extension and asset media type."""
    count, versions, extensions, media = 0, dict[str, int](), dict[str, int](), dict[str, int]()
    for item in items:
        count += 1
        v = str(item.get("stac_version"))
        versions[v] = versions.get(v, 0) + 1
        for ext in item.get("stac_extensions", []):
            extensions[ext] = extensions.get(ext, 0) + 1
        for asset in item.get("assets", {}).values():
            kind = str(asset.get("type", "unknown"))
            media[kind] = media.get(kind, 0) + 1
    stats: dict[str, Any] = {"count": count}
    if versions:
        stats["versions"] = versions
    if extensions:
        stats["extensions"] = dict(sorted(extensions.items()))
    if media:
        stats["assets"] = dict(sorted(media.items()))
    return stats


def _link(rel: str, member: Member) -> dict[str, Any]:
    return {"rel": rel, "href": f"./{member.file}", "type": mlm.MEDIA_GEOJSON, "title": str(member.item.get("id"))}
