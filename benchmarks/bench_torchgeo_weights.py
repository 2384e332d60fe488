"""Every TorchGeo weights enum member: build its architecture (meta device, no download), export its Item
(metadata only), and report coverage; then ViT-H's export time against one CPU forward pass at batch size 1.

Targets: every member exports, and (unless --no-real-forward) the member's model (built for real, random
weights) runs on a batch built from the Item's ``mlm:input`` at a second size: every dim stated -1 set to
another size than the traced example's (batch one more, other dims 32 less, or twice when small), fixed
dims as stated; its outputs must have the shapes ``mlm:output`` states. A member counts as skipped only when
building it fails for want of an optional package (an ImportError naming a package that is not installed);
any other error is a failure, listed at the end. ViT-H (600M+ parameters) exports within 0.5x of a forward.
Run: ./dev bench  (or python benchmarks/bench_torchgeo_weights.py [--no-real-forward] [--only TEXT])
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import sys
import time
import warnings
from typing import Any

import torch
import torchgeo.models as tgm

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from _util import side_by_side, step, verdict  # noqa: E402

from mlm_export import TraceError, export_mlm  # noqa: E402
from mlm_export._sources.weights import build_model  # noqa: E402

WHEN = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)


def members():
    for name in tgm.list_models():
        try:
            enum = tgm.get_model_weights(name)
        except Exception:  # noqa: BLE001 - a builder without a weights enum
            continue
        yield from ((name, w) for w in enum)


def missing_package(error: BaseException) -> str | None:
    """The optional package whose absence caused ``error`` (an ImportError in its chain naming a package that
    is not installed: torchgeo wraps it in its DependencyNotFoundError), else None."""
    seen: set[int] = set()
    e: BaseException | None = error
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, ImportError) and e.name:
            top = e.name.split(".")[0]
            if importlib.util.find_spec(top) is None:
                return top
        e = e.__cause__ or e.__context__
    return None


def second_size(stated: int, example: int, dim: str) -> int:
    """The size a dim stated -1 is run at, another than the traced example's: batch one more; other dims 32
    smaller (keeps the multiples of 32 encoders need; not the larger sizes the exporter's own probe tried), or
    twice the size when under 96."""
    if stated != -1:
        return stated
    if dim == "batch":
        return example + 1
    return example - 32 if example >= 96 else example * 2


def second_batch(item: Any, spec: Any) -> tuple[tuple[Any, ...], dict[str, Any], str]:
    """Tensors shaped as the Item's ``mlm:input`` states, every -1 dim at a second size, values taken from the
    traced example (sliced or repeated along each dim), passed the way the trace passed them."""
    stated = {i["name"]: i["input"] for i in item.properties["mlm:input"]}
    tensors = []
    for name, example in zip(spec.names, spec.tensors, strict=True):
        inp = stated[name]
        if len(inp["shape"]) != example.ndim:
            raise AssertionError(f"input {name}: stated {inp['shape']} but the example has {example.ndim} dims")
        x = example
        for d, (n, dim) in enumerate(zip(inp["shape"], inp["dim_order"], strict=True)):
            size = second_size(n, example.shape[d], dim)
            x = x.index_select(d, torch.arange(size, device=x.device) % x.shape[d])
        tensors.append(x)
    args, kwargs = spec.call_args(tensors)
    described = ", ".join(f"{n}{list(t.shape)}" for n, t in zip(spec.names, tensors, strict=True))
    return args, kwargs, described


def _real_forward_matches(w, item) -> str:
    """Build the member for real (random weights), run it on a batch built from the Item's mlm:input at a second
    size, compare the output shapes with those the Item states."""
    from mlm_export._pipeline import ExportOptions, gather
    from mlm_export._sources.evidence import feature_module
    from mlm_export._sources.model import call_spec, observe_outputs
    from mlm_export._sources.weights import weights_facts

    model = build_model(w, on_meta=False).eval()
    model, _ = feature_module(model, weights_facts(w))  # what the Item describes: less a head the weights lack
    example = gather(model, None, None, ExportOptions(weights=w, tasks="similarity-search", datetime=WHEN)).example
    spec = call_spec(model, example)  # the structure the trace passed its example in
    args, kwargs, described = second_batch(item, spec)
    with torch.no_grad():
        try:
            out = model(*args, **kwargs)
        except Exception as e:
            raise AssertionError(f"the model fails at the second size ({described}): {type(e).__name__}") from e
    observed = observe_outputs(out).tensors
    for o in item.properties["mlm:output"]:
        shape = observed[o["name"]][0]
        stated = o["result"]["shape"]
        if len(shape) != len(stated) or any(s not in (-1, r) for s, r in zip(stated, shape, strict=True)):
            raise AssertionError(f"output {o['name']} at {described}: real {list(shape)} vs stated {stated}")
    return f"outputs as stated at {described}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-real-forward", action="store_true", help="export only, no check against the model")
    parser.add_argument("--only", default="", help="only members whose name contains this text")
    args = parser.parse_args()
    rows = []
    start_all = time.perf_counter()
    chosen = [(b, w) for b, w in members() if args.only in f"{type(w).__name__}.{w.name}"]
    step(f"{len(chosen)} weights members")
    for i, (_, w) in enumerate(chosen, 1):
        label = f"{type(w).__name__}.{w.name}"
        took = 0.0
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model = build_model(w)
                start = time.perf_counter()
                try:
                    item = export_mlm(model, weights=w, tasks="similarity-search", datetime=WHEN)
                except TraceError:  # data-dependent forward: a meta-built model cannot run it, a real one can
                    model = build_model(w, on_meta=False)
                    start = time.perf_counter()
                    item = export_mlm(model, weights=w, tasks="similarity-search", datetime=WHEN)
                took = time.perf_counter() - start
                detail = f"{item.properties['mlm:total_parameters']:,} parameters"
                if not args.no_real_forward:
                    detail += "; " + _real_forward_matches(w, item)
            status = "ok"
        except Exception as e:  # noqa: BLE001 - the failure is reported
            package = missing_package(e)
            status = "skipped" if package else "FAILED"
            reason = f"needs {package} (not installed)" if package else f"{type(e).__name__}: {str(e).splitlines()[0]}"
            detail = reason[:200]
        rows.append((label, status, took, detail))
        step(f"{i}/{len(chosen)} {status:7s} {took:6.2f} s  {label}: {detail}")
    total = time.perf_counter() - start_all
    ok = sum(r[1] == "ok" for r in rows)
    skipped = [r for r in rows if r[1] == "skipped"]
    failed = [r for r in rows if r[1] == "FAILED"]
    for label, _, _, detail in failed:
        print(f"FAILED  {label}: {detail}")
    print(f"coverage: {ok}/{len(rows) - len(skipped)} members exported and checked ({len(rows)} in all, "
          f"{len(skipped)} skipped for an optional package not installed: "
          f"{', '.join(sorted({r[3] for r in skipped})) or 'none'}; {len(failed)} failed)")  # fmt: skip
    print(f"export time of all members: {sum(r[2] for r in rows):.1f} s (with building and checking: {total:.1f} s)")
    if args.only:
        return 0 if not failed else 1

    ratio = vit_h_ratio()
    return 0 if ratio <= 0.5 and not failed else 1


def vit_h_ratio() -> float:
    """ViT-H/14's metadata export time over one CPU forward at batch 1, timed in turn; printed."""
    step("ViT-H/14: export against one forward pass")
    weights = tgm.get_weight("ViTHuge14_Weights.SENTINEL2_ALL_MAE")
    model = build_model(weights, on_meta=False).eval()
    x = torch.zeros(1, 13, 224, 224)

    def forward() -> None:
        with torch.no_grad():
            model(x)

    def export() -> None:
        export_mlm(model, weights=weights, tasks="similarity-search", datetime=WHEN)

    export()  # warm up
    forward()
    t = side_by_side({"export": export, "forward": forward}, repeat=3)
    t_export, t_forward = t["export"], t["forward"]
    ratio = t_export / t_forward
    params = sum(p.numel() for p in model.parameters())
    print(f"ViT-H/14 ({params:,} parameters): export {t_export:.2f} s, CPU forward b=1 {t_forward:.2f} s")
    print(f"ratio export/forward = {ratio:.2f}  (target <= 0.50: {verdict(ratio, 0.5)})")
    return ratio


if __name__ == "__main__":
    sys.exit(main())
