"""Every TorchGeo weights enum member: build its architecture (meta device, no download), export its Item
(metadata only), and report coverage; then ViT-H's export time against one CPU forward pass at batch size 1.

Targets: every member whose builder works offline exports, and (unless --no-real-forward) its output shapes
equal those of a real forward pass of the member's model on the example the Item describes; ViT-H (600M+
parameters) exports within 0.5x of a forward pass.
Run: ./dev bench  (or python benchmarks/bench_torchgeo_weights.py [--no-real-forward])
"""

from __future__ import annotations

import datetime as dt
import sys
import time
import warnings

import torch
import torchgeo.models as tgm

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from _util import timed, verdict  # noqa: E402

from mlm_export import TraceError, export_mlm  # noqa: E402
from mlm_export.sources.weights import build_model  # noqa: E402

WHEN = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
#: Builders that need packages this project does not install (reported as skipped, not failed).
OPTIONAL = ("aurora", "olmoearth")


def members():
    for name in tgm.list_models():
        try:
            enum = tgm.get_model_weights(name)
        except Exception:  # a builder without a weights enum
            continue
        yield from ((name, w) for w in enum)


def _real_forward_matches(w, item) -> str:
    """Build the member for real (random weights), run the example the Item describes, compare the shapes."""
    from mlm_export.pipeline import ExportOptions, gather
    from mlm_export.sources.model import call_spec, observe_outputs

    model = build_model(w, on_meta=False).eval()
    example = gather(model, None, None, ExportOptions(weights=w, tasks="similarity-search", datetime=WHEN)).example
    spec = call_spec(model, example)  # passed the way the trace passed it
    args, kwargs = spec.call_args(spec.tensors)
    with torch.no_grad():
        out = model(*args, **kwargs)
    observed = observe_outputs(out).tensors
    for o in item.properties["mlm:output"]:
        shape = observed[o["name"]][0]
        stated = o["result"]["shape"]
        if len(shape) != len(stated) or any(s not in (-1, r) for s, r in zip(stated, shape, strict=True)):
            raise AssertionError(f"output {o['name']}: real {list(shape)} vs stated {stated}")
    return "outputs match a real forward"


def main() -> int:
    real = "--no-real-forward" not in sys.argv
    rows = []
    start_all = time.perf_counter()
    for builder, w in members():
        label = f"{type(w).__name__}.{w.name}"
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
            if real:
                detail += "; " + _real_forward_matches(w, item)
            rows.append((label, "ok", took, detail))
        except Exception as e:
            status = "skipped" if any(o in builder for o in OPTIONAL) else "FAILED"
            rows.append((label, status, 0.0, f"{type(e).__name__}: {str(e).splitlines()[0][:90]}"))
    total = time.perf_counter() - start_all
    for label, status, took, detail in rows:
        print(f"{status:7s} {took:6.2f} s  {label:55s} {detail}")
    ok = sum(r[1] == "ok" for r in rows)
    skipped = sum(r[1] == "skipped" for r in rows)
    buildable = len(rows) - skipped
    print(f"coverage: {ok}/{buildable} members exported ({len(rows)} in all, {skipped} need optional packages)")
    print(f"export time of all members: {sum(r[2] for r in rows):.1f} s (with building: {total:.1f} s)")

    weights = tgm.get_weight("ViTHuge14_Weights.SENTINEL2_ALL_MAE")
    model = build_model(weights, on_meta=False).eval()
    export_mlm(model, weights=weights, tasks="similarity-search", datetime=WHEN)  # warm up
    t_export, _ = timed(lambda: export_mlm(model, weights=weights, tasks="similarity-search", datetime=WHEN))
    x = torch.zeros(1, 13, 224, 224)
    with torch.no_grad():
        model(x)
        t_forward, _ = timed(lambda: model(x))
    ratio = t_export / t_forward
    params = sum(p.numel() for p in model.parameters())
    print(f"ViT-H/14 ({params:,} parameters): export {t_export:.2f} s, CPU forward b=1 {t_forward:.2f} s")
    print(f"ratio export/forward = {ratio:.2f}  (target <= 0.50: {verdict(ratio, 0.5)})")
    return 0 if ratio <= 0.5 and ok == buildable else 1


if __name__ == "__main__":
    sys.exit(main())
