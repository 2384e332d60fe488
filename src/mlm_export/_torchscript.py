"""A TorchScript copy of a model (``torch.jit.save``): what ``torch.jit.load`` readers such as openEO run.

Small and self-contained on purpose: script the model (keeps its control flow), else trace it on the example;
save it atomically; load it back once and compare its output with the eager model's before the file counts.
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

from . import mlm
from ._model_state import eval_copy
from ._write import atomic_write_bytes, file_checksum
from .errors import TorchScriptError, first_line

#: ``mlm:artifact_type`` of a file written with ``torch.jit.save`` (a value the MLM spec recommends).
ARTIFACT_TYPE = mlm.ARTIFACT_TORCHSCRIPT
MEDIA_TYPE = mlm.MEDIA_PYTORCH
#: Largest absolute difference allowed between the eager model and its TorchScript copy (float32).
TOLERANCE = 1e-4


@contextlib.contextmanager
def _quiet_jit() -> Iterator[None]:
    """torch 2.9+ marks ``torch.jit`` as deprecated; the warning says nothing the user can act on here."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, message=r".*torch\.jit.*")
        tracer_warning = torch.jit.TracerWarning  # type: ignore[attr-defined]  # exported, but not in torch's __all__
        warnings.filterwarnings("ignore", category=tracer_warning)
        yield


def to_torchscript(model: nn.Module, example: torch.Tensor) -> torch.jit.ScriptModule:
    """``torch.jit.script`` the model, or trace it on ``example`` when it cannot be scripted."""
    from ._exporters import script_or_trace

    with _quiet_jit():
        try:
            return script_or_trace(model, lambda: ((example,), {}))[0]
        except RuntimeError as e:
            raise TorchScriptError(
                f"{type(model).__name__}: {first_line(e, 400)}; profile='openeo' needs a TorchScript model: make "
                "forward scriptable or traceable (one tensor in, one tensor out)"
            ) from e


def write_torchscript(model: nn.Module, example: torch.Tensor, path: str | os.PathLike[str]) -> tuple[int, str]:
    """Write ``model`` as TorchScript to ``path``; return its size and sha256 multihash.

    The saved bytes are loaded back once and must give the eager model's output within :data:`TOLERANCE` on
    ``example`` and on its first sample (a trace freezes branches on the batch size); otherwise nothing is
    written and :class:`TorchScriptError` says by how much they differ.
    """
    if not isinstance(example, torch.Tensor):
        raise TorchScriptError(f"a TorchScript copy needs one example tensor, got {type(example).__name__}")
    model = eval_copy(model)  # the model keeps its flags and tables
    scripted = to_torchscript(model, example)
    buffer = io.BytesIO()
    with _quiet_jit():
        torch.jit.save(scripted, buffer)
        loaded = torch.jit.load(  # type: ignore[no-untyped-call]  # untyped in torch
            io.BytesIO(buffer.getvalue()), map_location=example.device
        )
    # The example, and one sample of it: a trace freezes Python branches on the batch size, among others.
    for batch in (example, example[:1]):
        _compare(model, loaded, batch)
    target = Path(path)
    atomic_write_bytes(target, buffer.getbuffer())
    return target.stat().st_size, file_checksum(target)


def _compare(model: nn.Module, loaded: torch.jit.ScriptModule, batch: torch.Tensor) -> None:
    with torch.no_grad(), _quiet_jit():
        want, got = model(batch), loaded(batch)
    if not (isinstance(want, torch.Tensor) and isinstance(got, torch.Tensor)) or want.shape != got.shape:
        raise TorchScriptError(
            f"the TorchScript copy of {type(model).__name__} does not return what the model returns on a batch of "
            f"{len(batch)} ({_shape(want)} vs {_shape(got)}); profile='openeo' needs one tensor in and one tensor out"
        )
    diff = (want.float() - got.float()).abs().max().item() if want.numel() else 0.0
    if not diff <= TOLERANCE:
        raise TorchScriptError(
            f"the TorchScript copy of {type(model).__name__} differs from the model by {diff:.3g} (more than "
            f"{TOLERANCE}) on a batch of {len(batch)}: make forward scriptable, so that tracing freezes no Python "
            "branch"
        )


def _shape(value: object) -> str:
    return f"tensor{list(value.shape)}" if isinstance(value, torch.Tensor) else type(value).__name__
