"""Write the model files ``artifacts=`` asks for, prove each one, and choose the ``mlm:model`` asset.

Every runnable file (``.pt2``, TorchScript, ONNX) is loaded back once and run against the eager model on the
parity cases (example size at batch 1 and 3; where the Item allows any size a larger and a smaller size, the
architecture's smallest, sizes no multiple of its stride and 512). A ``.pt2`` is exported size-oblivious there. A
file that does not load or differs at the example's size is removed and cannot be the ``mlm:model``; sizes
the eager model runs but the file refuses are stated in the asset's description. A format that cannot be
written is one warning naming the format and the reason; the others are still written. When the requested
primary fails, the next runnable file takes its place, then TorchScript (torchvision detection models script
but do not ``torch.export``), then the safetensors weights, so every Item names a model file. Nothing is left
behind if writing fails: no file without its Item.
"""

from __future__ import annotations

import os
import secrets
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import _artifacts as art
from . import _exporters as exporters
from . import _parity as parity
from . import _resolve as resolve
from . import mlm
from ._facts import ArtifactFacts
from ._item import ItemPlan
from ._model_asset import file_href
from ._sources.model import call_spec
from ._sources.torchgeo import runnable_network
from .errors import ArtifactTimeoutError, MLMExportError, MLMExportWarning, first_line


@dataclass
class _Written:
    """A file that was written and proved."""

    fmt: str
    path: Path
    file: art.WrittenFile
    note: str = ""
    accepted: Any = None


def write_artifacts(
    model: nn.Module,
    gathered: Any,
    item_plan: ItemPlan,
    out_dir: Path,
    stem: str,
    *,
    artifacts: Sequence[str],
    primary: str,
    timeout: float | None = None,
    checkpoint_exists: bool = False,
    stacklevel: int = 4,
) -> ItemPlan:
    """Write ``<stem><suffix>`` for each format, in order; the plan now lists them, the primary as ``mlm:model``.

    ``checkpoint_exists``: the caller's own checkpoint file is the "checkpoint" artifact (the callback's
    ``.ckpt``); it is not written again, and when it is the primary no written file takes ``mlm:model``.
    """
    module = gathered.module if gathered.module is not None else model
    bound = exporters.timeout_from_env(timeout)
    writer = _Writer(module, gathered, out_dir, stem, bound, stacklevel + 1)
    try:
        done: dict[str, _Written] = {}
        for fmt in artifacts:
            if fmt == "checkpoint" and checkpoint_exists:
                continue
            w = writer.write(fmt)
            if w is not None:
                done[fmt] = w
        chosen = _choose_primary(primary, artifacts, done, writer, checkpoint_exists)
        return _planned(item_plan, gathered, done, chosen, writer)
    except BaseException:
        writer.remove_all()
        raise


def _choose_primary(
    primary: str, artifacts: Sequence[str], done: dict[str, _Written], writer: _Writer, checkpoint_exists: bool
) -> str | None:
    if primary in done or (primary == "checkpoint" and checkpoint_exists):
        return primary if primary in done else None
    for fmt in artifacts:  # the next file the user asked for that runs without the code
        if fmt in art.RUNNABLE and fmt in done:
            return _fell_back(primary, fmt, writer)
    if primary in art.RUNNABLE and "torchscript" not in writer.tried:
        w = writer.write("torchscript")
        if w is not None:
            done["torchscript"] = w
            return _fell_back(primary, "torchscript", writer)
    for fmt in ("safetensors", "checkpoint"):
        if fmt in done:
            return _fell_back(primary, fmt, writer)
    if checkpoint_exists:
        return None
    w = writer.write("safetensors")
    if w is None:
        raise MLMExportError(f"no model file could be written for {writer.class_name}: {'; '.join(writer.failures)}")
    done["safetensors"] = w
    return _fell_back(primary, "safetensors", writer)


def _fell_back(primary: str, fmt: str, writer: _Writer) -> str:
    warnings.warn(
        f"the mlm:model asset of {writer.class_name} is the {fmt} file instead of the {primary} file, which could "
        "not be written or proved (see the warning before). Choose the formats with artifacts= (and primary=).",
        MLMExportWarning,
        stacklevel=writer.stacklevel,
    )
    return fmt


def format_asset(
    fmt: str,
    href: str,
    *,
    primary: bool,
    size: int | None = None,
    checksum: str | None = None,
    description: str | None = None,
) -> ArtifactFacts:
    """The asset of a model file in format ``fmt`` (see :data:`mlm_export._artifacts.FORMATS`): as the
    ``mlm:model`` (key ``model``, with its ``mlm:artifact_type``), or under its own key and roles."""
    f = art.FORMATS[fmt]
    roles = (mlm.ROLE_MODEL, *(r for r in f.roles if r.startswith(mlm.PREFIX))) if primary else f.roles
    return ArtifactFacts(
        key="model" if primary else f.key, href=href, roles=roles, media_type=f.media_type, title=f.title,
        artifact_type=f.artifact_type if primary else None, size=size, checksum=checksum, description=description,
    )  # fmt: skip


def _planned(
    item_plan: ItemPlan, gathered: Any, done: dict[str, _Written], chosen: str | None, writer: _Writer
) -> ItemPlan:
    assets = []
    inputs, outputs = item_plan.inputs, item_plan.outputs
    for fmt, w in sorted(done.items(), key=lambda kv: kv[0] != chosen):
        is_primary = fmt == chosen
        assets.append(
            format_asset(
                fmt, file_href(w.path.name), primary=is_primary, size=w.file.size, checksum=w.file.checksum,
                description=w.note or None,
            )
        )  # fmt: skip
        if is_primary and fmt == "pt2" and w.accepted is not None:
            inputs, outputs, pinned = resolve.pin_to_program(inputs, outputs, gathered.model, w.accepted)
            if pinned:
                warnings.warn(
                    f"torch.export fixed {', '.join(pinned)} in the exported program, so the Item states those "
                    "sizes; pass export_program=False (or another primary=) to describe the model with them dynamic.",
                    MLMExportWarning,
                    stacklevel=writer.stacklevel,
                )
    return replace(item_plan, artifacts=tuple(assets), inputs=inputs, outputs=outputs)


#: What writes each format, for messages.
_TOOLS = {
    "pt2": "torch.export",
    "torchscript": "TorchScript",
    "onnx": mlm.ARTIFACT_ONNX,
    "safetensors": "safetensors",
    "checkpoint": mlm.ARTIFACT_TORCH_SAVE,
}


class _Writer:
    """Writes one format at a time, proves it, and remembers what it wrote (to remove it all on failure)."""

    def __init__(
        self, module: nn.Module, gathered: Any, out_dir: Path, stem: str, bound: float | None, stacklevel: int
    ) -> None:
        self.module = module
        #: What the runnable files hold: a TorchGeo task's network, as its forward calls it (weights files
        #: keep the module's own state dict, loadable into the task).
        self.network = runnable_network(module)
        self.gathered = gathered
        self.out_dir = out_dir
        self.stem = stem
        self.bound = bound
        self.stacklevel = stacklevel
        self.class_name = gathered.model.class_name
        self.spec = call_spec(module, gathered.example)
        #: The eager model the files are compared with: an eval-mode copy (the module keeps its flags).
        self._eval_module = exporters._eval(module)
        self.inputs = gathered.model.inputs
        self.tried: set[str] = set()
        self.written: list[Path] = []
        self.failures: list[str] = []
        self._stride: int | None = None

    def write(self, fmt: str) -> _Written | None:
        """Write and prove one format; None (with one warning naming it and why) when it cannot be done.

        A ``.pt2`` of a model whose Item allows any size is exported size-oblivious first (no dim fixed because
        a feature map reaches 1x1 at the example's size), and the usual way when that fails or runs fewer of the
        probed sizes; its asset description says which it is.
        """
        self.tried.add(fmt)
        path = self.out_dir / f"{self.stem}{art.FORMATS[fmt].suffix}"
        best: tuple[_Written, list[parity.CaseResult]] | None = None
        error: Exception | None = None
        for oblivious in (True, False) if fmt == "pt2" and self._dynamic else (False,):
            try:
                w = self._bounded_write(fmt, path, size_oblivious=oblivious)
                refused: list[parity.CaseResult] = []
                if fmt in art.RUNNABLE:
                    note, refused = self._prove(fmt, path, w.accepted)
                    w.note = " ".join(filter(None, [w.note, _OBLIVIOUS if oblivious else "", note]))
            except Exception as e:
                path.unlink(missing_ok=True)
                if isinstance(e, OSError) and not isinstance(e, MLMExportError):
                    raise  # the disk refused (full, read-only): another format would fare no better
                error = error or e
                if isinstance(e, ArtifactTimeoutError):
                    break  # its time is spent: a second export would double it beside the abandoned one
                continue
            if best is None or len(refused) < len(best[1]):
                best = (w, refused)
            if not refused:
                break
            if oblivious:  # the usual export may run more sizes: keep this file's bytes aside meanwhile
                kept = path.with_name(f".{path.name}.size-oblivious")
                path.replace(kept)
                self.written.append(kept)
                best = (replace(w, path=kept), refused)
        if best is None:
            assert error is not None
            reason = f"{type(error).__name__}: {first_line(error, 300)}"
            self.failures.append(f"{fmt}: {reason}")
            warnings.warn(
                f"{_TOOLS[fmt]} could not export {self.class_name} ({reason}); the other model files are still "
                f"written. Leave {fmt} out of artifacts= to skip trying.",
                MLMExportWarning,
                stacklevel=self.stacklevel,
            )
            return None
        w, refused = best
        if w.path != path:  # the size-oblivious file ran more sizes than the usual one
            w.path.replace(path)
            w = replace(w, path=path)
        elif path.with_name(f".{path.name}.size-oblivious").exists():
            path.with_name(f".{path.name}.size-oblivious").unlink()
        if refused:
            warnings.warn(
                f"the {fmt} file of {self.class_name} matches the model at the example's size but not at every size "
                f"the Item allows ({parity.summary(refused)}); its asset description says so.",
                MLMExportWarning,
                stacklevel=self.stacklevel,
            )
        return w

    @property
    def _dynamic(self) -> bool:
        return any(s == -1 and r != "batch" for f in self.inputs for s, r in zip(f.shape, f.roles, strict=False))

    def _bounded_write(self, fmt: str, path: Path, *, size_oblivious: bool) -> _Written:
        """:meth:`_write` bounded to ``artifact_timeout`` on a worker thread, under a private name renamed to
        ``path`` once in time: an abandoned export's late file never lands (it is removed when it ends)."""
        self.written.append(path)  # before writing: a failure half-way removes it
        staged = path.with_name(f".{self.stem}.{secrets.token_hex(4)}.staged{path.suffix}")

        def work() -> _Written:
            try:
                return self._write(fmt, staged, size_oblivious=size_oblivious)
            except BaseException:
                staged.unlink(missing_ok=True)
                raise

        what = f"writing the {fmt} file of {self.class_name}"
        w = exporters.time_bound(work, self.bound, what, discard=lambda late: late.path.unlink())
        os.replace(staged, path)
        w.path = path
        return w

    def _write(self, fmt: str, path: Path, *, size_oblivious: bool = False) -> _Written:
        if fmt == "pt2":
            file, accepted = exporters.write_pt2(
                self.network, self.spec, self.inputs, path, size_oblivious=size_oblivious
            )
            return _Written(fmt, path, file, accepted=accepted)
        if fmt == "torchscript":
            file, how = exporters.write_torchscript(self.network, self.spec, path)
            return _Written(fmt, path, file, note=f"TorchScript ({how})")
        if fmt == "onnx":
            facts = self.gathered.model
            names = [o.name for o in facts.outputs] if facts.output_structure != "list_of_mappings" else []
            return _Written(fmt, path, exporters.write_onnx(self.network, self.spec, self.inputs, path, names))
        tensors, aliases = art.weights(self.module)
        if fmt == "safetensors":
            return _Written(fmt, path, art.write_safetensors(tensors, path, art.safetensors_metadata(aliases)))
        return _Written(fmt, path, exporters.write_checkpoint(tensors, path))

    def _prove(self, fmt: str, path: Path, accepted: Any = None) -> tuple[str, list[parity.CaseResult]]:
        """Load the file back and run it on the parity cases; raise if it fails at the example's size.

        ``accepted``: the input shapes a ``.pt2`` really takes (dims torch.export fixed), which the cases keep.
        Returns the asset's note and the cases the model runs but the file refuses.
        """
        try:
            runner = exporters.load_runner(fmt, path, input_names=self.spec.names)
        except Exception as e:
            raise MLMExportError(f"the {fmt} file was written but does not load back ({e})") from e
        inputs = self.inputs
        fixed = ""
        if accepted:
            inputs = tuple(replace(f, shape=tuple(accepted.get(f.name, f.shape))) for f in self.inputs)
            changed = [
                f"{f.name} {list(f.shape)}" for f, g in zip(inputs, self.inputs, strict=True) if f.shape != g.shape
            ]
            fixed = f"Takes {', '.join(changed)} (sizes torch.export fixed)." if changed else ""
        device = _device(self.module) if fmt == "pt2" else torch.device("cpu")  # a .pt2 keeps the model's device

        def candidate(tensors: Sequence[torch.Tensor]) -> list[torch.Tensor]:
            return [t.cpu() for t in runner(*self.spec.call_args([t.to(device) for t in tensors]))]

        all_cases = parity.cases(self.spec.tensors, inputs, stride=self.stride)
        results = parity.compare(self._eager, candidate, all_cases)
        at_example = [r for r in results if r.at_example and not r.ok]
        if at_example:
            raise MLMExportError(f"the {fmt} file does not match the model: {parity.summary(at_example)}")
        refused = parity.refused(results)
        both = [r for r in results if r.skipped]  # the Item allows these, but neither model nor file runs them
        notes = [f"{r.label}: {r.error}" for r in refused] + [f"{r.label}: the model itself fails too" for r in both]
        note = f"{fixed} Refuses sizes the Item allows: {'; '.join(notes)}.".strip() if notes else fixed
        ran = [r.label for r in results if r.ok and not r.skipped]
        return " ".join(filter(None, [f"Runs {', '.join(ran)}.", note])), refused

    @property
    def stride(self) -> int | None:
        """The architecture's total stride, measured once (None where the Item fixes every size)."""
        if not self._dynamic:
            return None
        if self._stride is None:
            self._stride = _measured_stride(self._eval_module, self.spec) or 1  # hooks on a copy, never the model
        return self._stride

    def _eager(self, tensors: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        device = _device(self.module)
        args, kwargs = self.spec.call_args([t.to(device) for t in tensors])
        with torch.no_grad():
            return [t.cpu() for t in exporters.leaves(self._eval_module(*args, **kwargs))]

    def remove_all(self) -> None:
        for path in self.written:
            path.unlink(missing_ok=True)


#: The size (px) the total stride is measured at: no stride's feature map is 1x1 there.
PROBE_SIZE = 256
#: What the asset description of a ``.pt2`` exported size-oblivious says.
_OBLIVIOUS = (
    "Exported size-oblivious (torch.export with backed_size_oblivious): no input size is fixed because a feature "
    "map reaches 1x1 at it."
)


def _measured_stride(module: nn.Module, spec: Any) -> int | None:
    """The total stride of the model's first image input: its height over the smallest feature map height any
    layer returns on one example (a forward with hooks, removed after). ``module``: an eval-mode copy of the
    model (the hooks and the forward never touch the user's)."""
    first = next((i for i, t in enumerate(spec.tensors) if isinstance(t, torch.Tensor) and t.ndim >= 3), None)
    if first is None:
        return None
    ndim = spec.tensors[first].ndim
    smallest: list[int] = []

    def hook(_m: nn.Module, _args: Any, output: Any) -> None:
        if isinstance(output, torch.Tensor) and output.ndim == ndim and min(output.shape[-2:]) > 1:
            smallest.append(min(int(output.shape[-2]), int(output.shape[-1])))  # 1x1: a global pool, not a stride

    device = _device(module)
    tensors = [t[:1].to(device) for t in spec.tensors]
    # at 256 px (or the example's size where the model takes no other), no stride's map is 1x1 yet
    probe = torch.zeros((1, *tensors[first].shape[1:-2], PROBE_SIZE, PROBE_SIZE), dtype=tensors[first].dtype)
    handles = [m.register_forward_hook(hook) for m in module.modules() if m is not module]
    try:
        for size, inputs in ((PROBE_SIZE, [*tensors[:first], probe.to(device), *tensors[first + 1 :]]),
                             (min(tensors[first].shape[-2:]), tensors)):  # fmt: skip
            smallest.clear()
            if _runs(module, spec, inputs):
                return parity.total_stride(int(size), min(smallest)) if smallest else None
        return None
    finally:
        for h in handles:
            h.remove()


def _runs(module: nn.Module, spec: Any, inputs: Sequence[torch.Tensor]) -> bool:
    """Whether the model (an eval-mode copy, :func:`mlm_export._exporters._eval`) runs on these inputs, no
    gradients."""
    try:
        args, kwargs = spec.call_args(inputs)
        with torch.no_grad():
            module(*args, **kwargs)
    except Exception:  # noqa: BLE001 - a model that fails at a size does not run it: the answer, not an error
        return False
    return True


def _device(module: nn.Module) -> torch.device:
    return next((t.device for t in module.state_dict().values()), torch.device("cpu"))
