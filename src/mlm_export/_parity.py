"""Parity of a model file with a reference (the eager model): the same outputs within 1e-4 on the sizes that matter.

The cases: the example's size at batch 1 and 3, a second (larger) size where the Item allows any size, and a
smaller one; with the architecture's total stride known, also that smallest size (a 1x1 last feature map, where
torch.export specialises), sizes that are not multiples of it (33x47 for a stride of 32) and 512x512. A size
the reference itself refuses is no fault of the file and is skipped.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from ._facts import TensorFacts
from .errors import first_line

#: Largest absolute difference allowed between a float32 file's outputs and the reference's.
TOLERANCE = 1e-4
#: Pixels added to each dynamic non-batch dim for the second size (as the trace's probe does).
LARGER = 32

Call = Callable[[Sequence[torch.Tensor]], list[torch.Tensor]]


@dataclass(frozen=True)
class Case:
    """One input set to run: a label for messages and the input tensors (in ``CallSpec.names`` order)."""

    label: str
    tensors: tuple[torch.Tensor, ...]
    #: True for the example's own size (a file must pass these to be named at all).
    at_example: bool


@dataclass(frozen=True)
class CaseResult:
    """How a file did on one case: its largest difference from the reference, or why it failed."""

    label: str
    ok: bool
    max_abs_diff: float | None = None
    error: str | None = None
    #: The reference itself refused this case (so the case says nothing about the file).
    skipped: bool = False
    at_example: bool = False


def cases(
    examples: Sequence[torch.Tensor],
    inputs: Sequence[TensorFacts],
    *,
    smaller: bool = True,
    base: int | None = None,
    stride: int | None = None,
) -> list[Case]:
    """Batch 1 and 3 at the example's size; batch 3 at +32 px, batch 1 at half size and at one px less (an odd
    size, where the example's is even) on dynamic dims.

    ``base`` replaces the size of every dynamic non-batch dim (verify has no example, only the Item).
    ``stride`` (the architecture's total stride, :func:`total_stride`) adds batch 1 at that smallest size, at
    sizes that are no multiple of it (``stride + 1`` by ``stride * 1.5 - 1``: 33x47 for 32) and at 512.
    """
    gen = torch.Generator().manual_seed(0)
    out: list[Case] = []

    def make(batch: int, size: Callable[[int], int], label: str, at_example: bool, nth: Sequence[int] = ()) -> None:
        tensors = []
        for t, facts in zip(examples, inputs, strict=True):
            shape = list(t.shape)
            if shape:  # a batch size the file fixed stays fixed
                shape[0] = batch if facts.shape[:1] in ((-1,), ()) else facts.shape[0]
            k = 0
            for d, (s, role) in enumerate(zip(facts.shape, facts.roles, strict=False)):
                if s == -1 and role != "batch" and d > 0:
                    spatial = nth and role in ("height", "width")  # a stride's sizes are for height and width
                    shape[d] = nth[min(k, len(nth) - 1)] if spatial else size(t.shape[d])
                    k += 1 if spatial else 0
            tensors.append(_values(t, tuple(shape), gen, reuse=at_example and base is None))
        shapes = [tuple(x.shape) for x in tensors]
        dims = "x".join(str(s) for s in tensors[0].shape) if tensors else ""
        for i, c in enumerate(out):
            if [tuple(x.shape) for x in c.tensors] == shapes:  # the smaller size may be the smallest: run it once
                if not c.at_example:
                    out[i] = Case(f"{label} ({dims})", c.tensors, False)  # named by the later, more telling label
                return
        out.append(Case(f"{label} ({dims})", tuple(tensors), at_example))

    start = (lambda s: base) if base else (lambda s: s)
    make(1, start, "batch 1", True)
    make(3, start, "batch 3", True)
    dynamic = any(s == -1 and r != "batch" for f in inputs for s, r in zip(f.shape, f.roles, strict=False))
    if dynamic:
        make(3, lambda s: start(s) + LARGER, "larger size", False)
        if smaller:
            make(1, lambda s: max(start(s) // 2, 1), "smaller size", False)
        make(1, lambda s: start(s) - 1 if start(s) > 2 else start(s) + 1, "odd size", False)
    if dynamic and stride is not None and stride > 1:
        make(1, start, "smallest size", False, nth=(stride,))
        make(1, start, "size no multiple of the stride", False, nth=(stride + 1, max(stride + stride // 2 - 1, 3)))
        make(1, start, "large size", False, nth=(LARGE,))
    return out


#: The large size every file of a model whose Item allows any size is run at.
LARGE = 512


def total_stride(input_size: int, smallest_map: int) -> int:
    """The architecture's total stride: the input size over its smallest feature map, as a power of two."""
    if smallest_map <= 0 or input_size <= smallest_map:
        return 1
    return int(2 ** round(math.log2(input_size / smallest_map)))


def _values(t: torch.Tensor, shape: tuple[int, ...], gen: torch.Generator, *, reuse: bool) -> torch.Tensor:
    """The example's own values where the size matches (repeated along the batch), else random in its range."""
    src = t.detach().cpu()
    if reuse and src.ndim and tuple(src.shape[1:]) == shape[1:] and src.shape[0] >= 1:
        reps = -(-shape[0] // src.shape[0])
        return src.repeat(reps, *([1] * (src.ndim - 1)))[: shape[0]].clone()
    if src.numel():
        lo, hi = float(src.float().min()), float(src.float().max())
    else:
        lo, hi = 0.0, 1.0
    if src.dtype.is_floating_point:
        return (torch.rand(shape, generator=gen) * (hi - lo) + lo).to(src.dtype)
    if src.dtype == torch.bool:
        return torch.rand(shape, generator=gen) > 0.5
    return torch.randint(int(lo), int(hi) + 1, shape, generator=gen).to(src.dtype)


def compare(
    reference: Call, candidate: Call, all_cases: Sequence[Case], tolerance: float = TOLERANCE
) -> list[CaseResult]:
    """Run both on every case; a case passes when every output has the reference's shape and values."""
    results = []
    for case in all_cases:
        try:
            want = reference(case.tensors)
        except Exception as e:
            results.append(CaseResult(case.label, True, error=_why(e), skipped=True, at_example=case.at_example))
            continue
        try:
            got = candidate(case.tensors)
        except Exception as e:
            results.append(CaseResult(case.label, False, error=_why(e), at_example=case.at_example))
            continue
        results.append(_diff(case, want, got, tolerance))
    return results


def _diff(case: Case, want: list[torch.Tensor], got: list[torch.Tensor], tolerance: float) -> CaseResult:
    if len(want) != len(got):
        return CaseResult(
            case.label, False, error=f"{len(got)} outputs, expected {len(want)}", at_example=case.at_example
        )
    worst = 0.0
    for i, (w, g) in enumerate(zip(want, got, strict=True)):
        g = g.to(w.device)
        if tuple(w.shape) != tuple(g.shape):
            return CaseResult(
                case.label, False, error=f"output {i} has shape {list(g.shape)}, expected {list(w.shape)}",
                at_example=case.at_example,
            )  # fmt: skip
        if w.numel() == 0:
            continue
        if w.dtype.is_floating_point or w.dtype.is_complex:
            worst = max(worst, float((w.double() - g.double()).abs().max()))
        else:
            worst = max(worst, float((w != g.to(w.dtype)).any()))
    ok = worst <= tolerance
    error = None if ok else f"max abs diff {worst:.3g} exceeds {tolerance:g}"
    return CaseResult(case.label, ok, max_abs_diff=worst, error=error, at_example=case.at_example)


def summary(results: Sequence[CaseResult]) -> str:
    """One line: the largest difference over the cases that ran, and each failed or skipped case."""
    ran = [r.max_abs_diff for r in results if r.max_abs_diff is not None and not r.skipped]
    parts = [f"max abs diff {max(ran):.2g}"] if ran else []
    parts += [f"{r.label}: {r.error}" for r in results if not r.ok]
    parts += [f"{r.label}: skipped, the reference fails too" for r in results if r.skipped]
    return "; ".join(parts) or "no case ran"


def refused(results: Sequence[CaseResult]) -> list[CaseResult]:
    """The cases the reference runs but the file does not (or gives other values)."""
    return [r for r in results if not r.ok]


def _why(e: BaseException) -> str:
    return f"{type(e).__name__}: {first_line(e, 160)}"
