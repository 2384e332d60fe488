"""Facts from checkpoint files: load them safely (no code runs unless trusted), find the model they hold.

Checkpoints load with ``torch.load(weights_only=True, mmap=True)`` and an allowlist of the harmless types
Lightning and TorchGeo checkpoints contain (see :mod:`.unpickle`); tensors stay memory-mapped (never a second
copy in memory).
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import io
import zipfile
from collections.abc import Iterator, Mapping, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import _limits as limits
from .._guard import SAFE, Policy, check_name, check_object, offline_arguments
from ..errors import ArchitectureError as ArchitectureError
from ..errors import CheckpointError as CheckpointError
from ..errors import InputTooLargeError, first_line
from ..errors import UntrustedCheckpointError as UntrustedCheckpointError
from .archive_limits import check_declared_sizes, check_safetensors_header
from .unpickle import torch_load

CHECKPOINT_PATTERNS = ("*.ckpt", "*.pt", "*.pth", "*.safetensors")
#: Keys of a Lightning checkpoint.
STATE_DICT = "state_dict"
HYPER_PARAMETERS = "hyper_parameters"
#: Key under which MLMExportCallback stores the Item's model description inside each checkpoint.
EMBED_KEY = "mlm_export"


@dataclass
class LoadedCheckpoint:
    """What one file holds: a state dict, and for Lightning checkpoints their metadata."""

    path: Path
    state_dict: dict[str, torch.Tensor]
    kind: str  # "lightning", "state_dict" or "safetensors"
    hyper_parameters: dict[str, Any] = field(default_factory=dict)
    embedded_item: dict[str, Any] | None = None
    epoch: int | None = None
    global_step: int | None = None
    #: Lightning's callback states (``checkpoint["callbacks"]``): ModelCheckpoint's monitor and scores.
    callbacks: dict[str, Any] = field(default_factory=dict)


def load(path: str | Path, *, trust: bool = False, data: bytes | None = None) -> LoadedCheckpoint:
    """Read a ``.ckpt``/``.pt``/``.pth``/``.safetensors`` file without running code (unless ``trust``).

    ``data``: the file's bytes, already read once (a stranger's file in ``verify``); they are loaded and
    ``path`` (then only named in messages) is never opened.
    """
    path = Path(path)
    kind = _sniff(path, data)
    if kind == "safetensors":
        import safetensors.torch

        check_safetensors_header(path, data=data)  # before safetensors builds a tensor per entry
        try:
            tensors = safetensors.torch.load_file(path, device="cpu") if data is None else safetensors.torch.load(data)
            return LoadedCheckpoint(path, tensors, "safetensors")
        except Exception as e:
            raise CheckpointError(f"{path.name}: not a readable safetensors file ({first_line(e, 240)})") from e
    obj = torch_load(path, trust, zipped=kind == "zip", data=data)
    return _interpret(path, obj)


def _sniff(path: Path, data: bytes | None = None) -> str:
    if data is not None:
        head = data[:16]
    else:
        if path.exists() and not path.is_file():  # a FIFO would block the open, /dev/zero never end
            raise CheckpointError(
                f"{path.name}: not a regular file (a directory, pipe or device); name a checkpoint file"
            )
        try:
            with open(path, "rb") as f:
                head = f.read(16)
        except OSError as e:
            raise CheckpointError(f"{path}: cannot read ({e.strerror})") from e
    if not head:
        raise CheckpointError(f"{path.name}: empty file")
    if head.startswith(b"PK\x03\x04"):
        if not zipfile.is_zipfile(path if data is None else io.BytesIO(data)):
            raise CheckpointError(f"{path.name}: truncated or corrupt (its zip directory is missing)")
        check_declared_sizes(path, data=data)  # before torch inflates anything
        return "zip"
    if head[:1] == b"\x80":
        return "pickle"
    if len(head) >= 9 and head[8:9] == b"{":
        return "safetensors"
    raise CheckpointError(f"{path.name}: not a PyTorch checkpoint, state dict or safetensors file")


def _interpret(path: Path, obj: Any) -> LoadedCheckpoint:
    if isinstance(obj, nn.Module):
        return LoadedCheckpoint(path, _bounded_state(path, obj.state_dict()), "module")
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path.name}: holds a {type(obj).__name__}, not a state dict or a Lightning checkpoint")
    if isinstance(obj.get(STATE_DICT), Mapping):
        _bounded_state(path, obj[STATE_DICT])
        # what is read beyond the weights is bounded once expanded: a list shared at every level (L = [L, L])
        # is a few bytes of pickle and billions of values when printed, hashed as a key or written as JSON
        kept = {key: obj.get(key) for key in (EMBED_KEY, HYPER_PARAMETERS, "callbacks", "epoch", "global_step")}
        limits.check_structure(kept, f"{path.name}: its metadata (hyperparameters, embedded Item, callbacks)")
        embedded = obj.get(EMBED_KEY)
        item = embedded.get("item") if isinstance(embedded, Mapping) else None
        return LoadedCheckpoint(
            path,
            dict(obj[STATE_DICT]),
            "lightning",
            hyper_parameters=dict(obj.get(HYPER_PARAMETERS) or {}),
            embedded_item=dict(item) if isinstance(item, Mapping) else None,
            epoch=obj.get("epoch"),
            global_step=obj.get("global_step"),
            callbacks=dict(obj["callbacks"]) if isinstance(obj.get("callbacks"), Mapping) else {},
        )
    tensors = {k: v for k, v in _bounded_state(path, obj).items() if isinstance(v, torch.Tensor)}
    if not tensors or len(tensors) != len(obj):
        raise CheckpointError(f"{path.name}: a mapping that is neither a state dict nor a Lightning checkpoint")
    return LoadedCheckpoint(path, tensors, "state_dict")


def _bounded_state(path: Path, state: Mapping[str, Any]) -> dict[str, Any]:
    """A state dict of at most ``_limits.STATE_KEYS`` entries."""
    if len(state) > limits.STATE_KEYS:
        raise InputTooLargeError(
            f"{path.name}: holds {len(state):,} tensors, over the {limits.STATE_KEYS:,} a state dict may have; "
            "it is not read"
        )
    return dict(state)


def find_checkpoints(paths: list[str]) -> Iterator[Path]:
    """Files named on the command line: files as given, directories searched recursively, globs expanded."""
    seen: set[Path] = set()
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found = sorted({f for pattern in CHECKPOINT_PATTERNS for f in p.rglob(pattern) if f.is_file()})
        elif any(ch in raw for ch in "*?["):
            found = sorted(Path().glob(raw)) if not p.is_absolute() else sorted(Path(p.anchor).glob(raw[1:]))
        else:
            found = [p]
        for f in found:
            key = f.absolute()
            if key not in seen:
                seen.add(key)
                yield f


# ------------------------------------------------------------------------------------------ rebuilding


@dataclass(frozen=True)
class ModelSpec:
    """How to build the model a checkpoint's weights belong to: a callable and its arguments."""

    target: str
    init_args: tuple[tuple[str, Any], ...] = ()
    #: A pretrained-weights enum member's name: the model is the architecture TorchGeo builds for it.
    weights: str | None = None
    #: What building may do: which classes, whether it may download (see :mod:`mlm_export._guard`).
    policy: Policy = SAFE

    def build(self, *, on_meta: bool = True) -> nn.Module:
        if self.weights:
            from .weights import build_model

            return build_model(self.weights, on_meta=on_meta)
        factory = import_object(self.target, self.policy)
        kwargs = offline_arguments(dict(self.init_args), self.policy)
        try:
            with torch.device("meta") if on_meta else contextlib.nullcontext():
                model = factory(**kwargs)
        except TypeError as e:
            raise ArchitectureError(f"{self.target}({_args(kwargs)}) failed: {first_line(e, 240)}") from e
        if not isinstance(model, nn.Module):
            raise ArchitectureError(f"{self.target} returned a {type(model).__name__}, not a torch.nn.Module")
        _keep_stated_arguments(model, dict(self.init_args), kwargs)
        return model


def _keep_stated_arguments(model: nn.Module, stated: Mapping[str, Any], used: Mapping[str, Any]) -> None:
    """The hyperparameters a model records say what the checkpoint stated (``weights=True``), not the value
    used to build it offline."""
    hparams = getattr(model, "hparams", None)
    if not isinstance(hparams, MutableMapping):
        return
    for key, value in stated.items():
        if key in hparams and used.get(key) is not value:
            hparams[key] = value


def lightning_spec(ckpt: LoadedCheckpoint, policy: Policy = SAFE) -> ModelSpec | None:
    """The class LightningCLI recorded (``_class_path``) with the checkpoint's hyperparameters.

    The name comes from the file: it is checked against ``policy`` before anything is imported.
    """
    hp = ckpt.hyper_parameters
    class_path = hp.get("_class_path")
    if not isinstance(class_path, str):
        return None
    module_name = class_path.partition(":")[0] if ":" in class_path else class_path.rpartition(".")[0]
    check_name(class_path, module_name, policy)
    args = {k: v for k, v in hp.items() if not k.startswith("_")}
    return ModelSpec(class_path, tuple(sorted(args.items())), policy=policy)


def torchgeo_spec(ckpt: LoadedCheckpoint, policy: Policy = SAFE) -> ModelSpec | None:
    """The TorchGeo task whose arguments the checkpoint's hyperparameters are and whose model its weights fit."""
    from .torchgeo import candidate_tasks

    for target, args in candidate_tasks(ckpt.hyper_parameters):
        spec = ModelSpec(target, tuple(sorted(args.items())), policy=policy)
        with contextlib.suppress(Exception):
            load_weights(spec.build(on_meta=True), ckpt.state_dict, target)
            return spec
    return None


def explicit_spec(
    target: str, init_args: Mapping[str, Any] | None, ckpt: LoadedCheckpoint, policy: Policy = SAFE
) -> ModelSpec:
    """``--model module:Class`` or ``--factory module:function``; arguments default to the hyperparameters."""
    if init_args is None:
        init_args = {k: v for k, v in ckpt.hyper_parameters.items() if not k.startswith("_")}
        factory = import_object(target, policy)
        with contextlib.suppress(TypeError, ValueError):
            params = inspect.signature(factory).parameters
            if not any(p.kind == p.VAR_KEYWORD for p in params.values()):
                init_args = {k: v for k, v in init_args.items() if k in params}
    else:
        import_object(target, policy)  # refused early, before any file is traced
    return ModelSpec(target, tuple(sorted(dict(init_args).items())), policy=policy)


def load_weights(model: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str) -> nn.Module:
    """Put the checkpoint's tensors into a meta-built model without copying them (``assign=True``).

    Keys may carry a prefix the model does not (a LightningModule's ``model.``): it is stripped when that makes
    them fit. Missing or unexpected keys and wrong shapes are an :class:`ArchitectureError`.
    """
    expected = model.state_dict()
    state = _fit_keys(dict(state_dict), expected)
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if tuple(expected[k].shape) != tuple(state[k].shape))
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        if wrong:
            k = wrong[0]
            shapes = f"{list(state[k].shape)} vs {list(expected[k].shape)}"
            parts.append(f"{len(wrong)} of another shape (e.g. {k}: {shapes})")
        raise ArchitectureError(f"the weights do not fit {source}: {'; '.join(parts)}")
    model.load_state_dict(state, strict=True, assign=True)
    return model


def _fit_keys(state: dict[str, torch.Tensor], expected: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    if set(state) == set(expected):
        return state
    prefixes = {k.split(".", 1)[0] + "." for k in state if "." in k}
    for prefix in sorted(prefixes):
        stripped = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        if set(stripped) == set(expected):
            return stripped
    return state


def import_object(target: str, policy: Policy = SAFE) -> Any:
    """``package.module:Name`` or ``package.module.Name`` -> the object, if ``policy`` allows building it."""
    module_name, _, attr = target.partition(":") if ":" in target else target.rpartition(".")
    if not module_name or not attr:
        raise ArchitectureError(f"'{target}' is not an importable name: use module:Class or module.Class")
    check_name(target, module_name, policy)
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as e:
        raise ArchitectureError(f"cannot import {module_name} (for {target}): {first_line(e, 240)}") from e
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError as e:
            raise ArchitectureError(f"{module_name} has no {attr}") from e
    check_object(target, obj, policy)
    return obj


def _args(kwargs: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
