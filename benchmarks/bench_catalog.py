"""Publish and search at scale: N generated MLM Items in the folder catalog and in pgstac.

The Items are the official MLM v1.5.2 examples varied the way real exports vary: ids, training extents
(tiles anywhere on land), time ranges, tasks, architectures, sizes, framework spellings and band sets from the
Sentinel-2, Landsat and NAIP tables. Anchor: the naive way, loading every Item with pystac and filtering in
Python, timed beside the catalog in the same run. Targets (N = 100,000, 2 cores): folder ingest < 60 s with
bounded memory, each query p95 < 50 ms; pgstac ingest < 3 min, search p95 < 100 ms.

Items are generated valid and added with ``validate=False``; the cost of validating them (jsonschema, per
Item) is measured on a sample and printed beside the ingest.
Run: python benchmarks/bench_catalog.py [--items 100000] [--repeat 20] [--no-pgstac]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT / "tests"))
import orjson  # noqa: E402
from _util import peak_bytes, reset_peak, rss_bytes, step, verdict  # noqa: E402

from mlm_export import catalog  # noqa: E402
from mlm_export.catalog import Query  # noqa: E402
from mlm_export.catalog._fields import row  # noqa: E402

EXAMPLES = ROOT / "tests" / "fixtures" / "mlm_examples"
# the examples are STAC 1.0.0 Items with extension versions mlm-export does not bundle: their schemas, offline
os.environ.setdefault("MLM_EXPORT_SCHEMA_DIR", str(ROOT / "tests" / "fixtures" / "schemas"))
S2 = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12"]
S2_COMMON = [
    "coastal",
    "blue",
    "green",
    "red",
    "rededge",
    "rededge",
    "rededge",
    "nir",
    "nir08",
    "nir09",
    "swir16",
    "swir22",
]
LANDSAT = ["SR_B1", "SR_B2", "SR_B3", "SR_B4", "SR_B5", "SR_B6", "SR_B7"]
LANDSAT_COMMON = ["coastal", "blue", "green", "red", "nir08", "swir16", "swir22"]
NAIP = ["red", "green", "blue", "nir"]
TASKS = [
    "classification",
    "semantic-segmentation",
    "object-detection",
    "regression",
    "instance-segmentation",
    "scene-classification",
    "similarity-search",
]
ARCHS = ["ResNet", "U-Net", "ViT", "Swin", "DeepLabV3", "FCN", "EfficientNet", "ConvNeXt", "Mask R-CNN", "Prithvi"]
FRAMEWORKS = ["PyTorch", "pytorch", "PYTORCH"]

QUERIES: list[tuple[str, Query]] = [
    ("task", Query(task="semantic-segmentation", limit=100)),
    ("band by name", Query(bands=("B8A",), limit=100)),
    ("band by common name (2)", Query(bands=("nir", "swir16"), limit=100)),
    ("framework + max params", Query(framework="pytorch", max_parameters=5_000_000, limit=100)),
    ("architecture", Query(architecture="swin", limit=100)),
    ("bbox", Query(bbox=(4.0, 50.0, 6.0, 52.0), limit=100)),
    ("datetime", Query(datetime="2021-01-01T00:00:00Z/2021-03-01T00:00:00Z", limit=100)),
    ("cql2 filter", Query(filter='"mlm:total_parameters" BETWEEN 1000000 AND 2000000', limit=100)),
    ("combined", Query(task="classification", bands=("red",), bbox=(-10, 35, 30, 60), max_parameters=50_000_000)),
    ("one id", Query(ids=("model-0000777",), limit=1)),
]


def templates() -> list[dict[str, Any]]:
    """The examples with one input and bands, kept when a varied copy of them validates."""
    from mlm_export import validation_problems

    kept = []
    for path in sorted(EXAMPLES.glob("item_*.json")):
        item = json.loads(path.read_text())
        inputs = item["properties"]["mlm:input"]
        if len(inputs) == 1 and inputs[0].get("bands") and not validation_problems(_vary(item, 0, random.Random(0))):
            kept.append(item)
    return kept


def generate(n: int, seed: int = 0) -> Iterator[dict[str, Any]]:
    """N varied, valid MLM Items, made one at a time (the stream is never held in memory)."""
    rng = random.Random(seed)
    bases = [json.dumps(t) for t in templates()]
    for i in range(n):
        yield _vary(json.loads(bases[i % len(bases)]), i, rng)


def _vary(item: dict[str, Any], i: int, rng: random.Random) -> dict[str, Any]:
    """The template varied in place as real exports vary."""
    item["id"] = f"model-{i:07d}"
    w = rng.uniform(-170, 160)
    s = rng.uniform(-55, 60)
    size = rng.choice([0.5, 1, 2, 5, 10, 20])
    e, nth = min(w + size, 180), min(s + size, 85)
    item["bbox"] = [w, s, e, nth]
    item["geometry"] = {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, nth], [w, nth], [w, s]]]}
    start = rng.randint(2015, 2024)
    props = item["properties"]
    props["datetime"] = None
    props["start_datetime"] = f"{start}-{rng.randint(1, 12):02d}-01T00:00:00Z"
    props["end_datetime"] = f"{start + rng.randint(0, 2)}-12-31T23:59:59Z"
    props["mlm:name"] = f"model {i}"
    props["mlm:tasks"] = rng.sample(TASKS, rng.choice([1, 1, 2]))
    props["mlm:architecture"] = rng.choice(ARCHS)
    props["mlm:framework"] = rng.choice(FRAMEWORKS)
    props["mlm:total_parameters"] = int(10 ** rng.uniform(5, 9))
    family = rng.choice(["s2", "landsat", "naip"])
    names, common = {"s2": (S2, S2_COMMON), "landsat": (LANDSAT, LANDSAT_COMMON), "naip": (NAIP, NAIP)}[family]
    k = rng.randint(3, len(names))
    picked = sorted(rng.sample(range(len(names)), k))
    inp = props["mlm:input"][0]
    inp["bands"] = [names[j] for j in picked]
    inp["input"]["shape"] = [-1, k, *inp["input"]["shape"][2:]]
    scaling = inp.get("value_scaling")
    if isinstance(scaling, list) and len(scaling) > 1:
        inp["value_scaling"] = [scaling[0]] * k
    for asset in item["assets"].values():
        for key in ("eo:bands", "raster:bands", "bands"):
            asset.pop(key, None)
    assets = list(item["assets"].values())
    model_asset = next((a for a in assets if "mlm:model" in a.get("roles", [])), assets[0])
    model_asset["eo:bands"] = [{"name": names[j], "common_name": common[j]} for j in picked]
    props.pop("eo:bands", None)
    props.pop("bands", None)
    return item


def _fields(query: Query) -> dict[str, Any]:
    names = ("task", "bands", "architecture", "framework", "max_parameters", "bbox", "datetime", "filter", "ids")
    return {k: getattr(query, k) for k in names}


def read_items(path: Path) -> Iterator[dict[str, Any]]:
    """Items streamed from a JSON-lines file."""
    with path.open("rb") as f:
        for line in f:
            yield orjson.loads(line)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def time_queries(search: Callable[[Query], list[dict[str, Any]]], repeat: int) -> dict[str, tuple[float, float, int]]:
    out = {}
    for name, query in QUERIES:
        search(query)  # warm
        times = []
        hits = 0
        for _ in range(repeat):
            start = time.perf_counter()
            hits = len(search(query))
            times.append(time.perf_counter() - start)
        out[name] = (statistics.median(times) * 1000, percentile(times, 0.95) * 1000, hits)
    return out


def naive(path: Path, query: Query) -> list[dict[str, Any]]:
    """Load every Item with pystac, filter in Python: what a user does without a catalog."""
    import pystac

    start, end = query.interval
    found = []
    with path.open() as f:
        for line in f:
            item = pystac.Item.from_dict(json.loads(line))
            data = item.to_dict(include_self_link=False, transform_hrefs=False)
            r = row(data)
            if query.task and query.task not in r["tasks"]:
                continue
            if query.bands and not set(query.bands) <= set(r["bands"]):
                continue
            if query.framework and (r["framework"] or "").lower() != query.framework.lower():
                continue
            if query.architecture and (r["architecture"] or "").lower() != query.architecture.lower():
                continue
            if query.max_parameters is not None and (r["total_parameters"] or 0) > query.max_parameters:
                continue
            if query.ids and r["id"] not in query.ids:
                continue
            if query.bbox:
                w, s, e, n = query.bbox
                if r["xmin"] is None or r["xmin"] > e or r["xmax"] < w or r["ymin"] > n or r["ymax"] < s:
                    continue
            if query.datetime and ((end and r["start"] > end) or (start and r["end"] < start)):
                continue
            if query.filter is not None:
                p = r["total_parameters"] or 0
                if not 1_000_000 <= p <= 2_000_000:  # the suite's one filter, evaluated by hand
                    continue
            found.append(data)
    return found[: query.limit]


def report(title: str, figures: dict[str, tuple[float, float, int]], target_ms: float) -> None:
    print(f"\n{title}")
    print(f"  {'query':28s} {'p50 ms':>9s} {'p95 ms':>9s} {'hits':>6s}")
    for name, (p50, p95, hits) in figures.items():
        print(f"  {name:28s} {p50:9.1f} {p95:9.1f} {hits:6d}  {verdict(p95, target_ms)} (p95 < {target_ms:.0f} ms)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=100_000, help="how many Items (default 100000)")
    parser.add_argument("--repeat", type=int, default=20, help="timed runs per query (default 20)")
    parser.add_argument(
        "--naive-items", type=int, default=2000, help="Items the naive anchor loads per query (default 2000)"
    )
    parser.add_argument("--no-pgstac", action="store_true", help="skip the pgstac part")
    args = parser.parse_args()
    n = args.items
    from mlm_export import validation_problems

    sample = list(generate(50, seed=1))
    start = time.perf_counter()
    bad = sum(bool(validation_problems(i)) for i in sample)
    per_item = (time.perf_counter() - start) / len(sample)
    print(
        f"{n:,} generated Items; validation: {per_item * 1000:.1f} ms per Item ({bad} of {len(sample)} sampled "
        f"invalid), {per_item * n:.0f} s for all if validated on ingest"
    )

    with tempfile.TemporaryDirectory() as tmp:
        # Ingest reads the Items from one JSON-lines file, as publishing reads Items from disk.
        source = Path(tmp) / "all.ndjson"
        step(f"generating {n:,} Items")
        with source.open("wb") as f:
            for item in generate(n):
                f.write(orjson.dumps(item) + b"\n")
        folder = catalog.open(Path(tmp) / "models")
        step("folder catalog: ingest")
        reset_peak()
        base = rss_bytes()
        start = time.perf_counter()
        folder.add(read_items(source), validate=False)
        ingest = time.perf_counter() - start
        grown = (peak_bytes() - base) / 2**20
        size = sum(p.stat().st_size for p in (Path(tmp) / "models").rglob("*")) / 2**20
        print(
            f"\nfolder ingest: {ingest:.1f} s ({n / ingest:,.0f} Items/s)  {verdict(ingest, 60)} (< 60 s); "
            f"peak RSS +{grown:.0f} MiB; {size:.0f} MiB on disk"
        )
        start = time.perf_counter()
        folder = catalog.open(Path(tmp) / "models")  # a new reader: its first search loads the search columns
        folder.search(Query(limit=1))
        print(f"first search of a newly opened catalog (loads the search columns): {time.perf_counter() - start:.2f} s")
        step(f"folder catalog: {len(QUERIES)} queries x {args.repeat}")
        folder_figures = time_queries(folder.search, args.repeat)
        report("folder catalog (DuckDB over Parquet)", folder_figures, 50)

        # The anchor: the same queries by loading Items with pystac and filtering in Python. Its cost is linear
        # in the Items it loads, so it runs on the first naive_items Items and is scaled to N; a folder catalog
        # of those same Items checks that both ways find the same Items.
        m = min(n, args.naive_items)
        ndjson = Path(tmp) / "items.ndjson"
        with ndjson.open("w") as f:
            for item in generate(m):
                f.write(json.dumps(item) + "\n")
        small = catalog.open(Path(tmp) / "small")
        small.add(generate(m), validate=False)
        print(f"\nnaive anchor: pystac load of {m:,} Items + Python filter per query, scaled to {n:,} Items")
        for name, query in QUERIES:
            step(f"naive anchor: {name}")
            start = time.perf_counter()
            naive(ndjson, query)
            scaled = (time.perf_counter() - start) * n / m
            every = Query(**{**_fields(query), "limit": m})  # all hits: the naive way keeps file order
            same = {i["id"] for i in naive(ndjson, every)} == {i["id"] for i in small.search(every)}
            ratio = scaled * 1000 / max(folder_figures[name][0], 1e-6)
            print(f"  {name:28s} {scaled:8.1f} s = {ratio:9,.0f}x the folder catalog's p50; same Items: {same}")

        if not args.no_pgstac:
            bench_pgstac(source, n, args.repeat)


def bench_pgstac(source: Path, n: int, repeat: int) -> None:
    """pgstac in a throwaway cluster: ingest from the same file, then the query suite."""
    import pgcluster

    reason = pgcluster.available()
    if reason:
        print(f"\npgstac skipped: {reason}")
        return
    cluster = pgcluster.Cluster().start()
    try:
        pg = catalog.open(cluster.dsn)
        pg.prepare()
        start = time.perf_counter()
        pg.add(read_items(source), validate=False)
        ingest = time.perf_counter() - start
        print(f"\npgstac ingest: {ingest:.1f} s ({n / ingest:,.0f} Items/s)  {verdict(ingest, 180)} (< 180 s)")
        report("pgstac search", time_queries(pg.search, repeat), 100)
        pg.close()
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
