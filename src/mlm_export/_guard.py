"""What a stranger's checkpoint may make mlm-export do: which classes it may build, whether it may connect.

A checkpoint names the model to rebuild (LightningCLI's ``_class_path``, TorchGeo hyperparameters) and the
arguments to call it with. Calling an arbitrary name with arbitrary arguments runs code (``subprocess.run``,
``os.system``), so without trust only ``nn.Module`` subclasses from known model packages are built, and model
factories only from their model zoos. Names are checked before anything is imported, where the name shows it,
and the object again after import (a re-export cannot smuggle another package's function in).

Rebuilding never needs pretrained weights (the checkpoint's own weights replace them), so arguments that ask
for a download are turned off unless the user passes ``--download`` (``download=True``). The backstop, no
connection at all, is the child process that rebuilds a stranger's model (:mod:`mlm_export._isolate`): nothing
here patches the socket module of the user's process.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import DownloadRefusedError as DownloadRefusedError
from .errors import UntrustedModelError as UntrustedModelError

#: Packages whose ``nn.Module`` subclasses may be built from a checkpoint's hyperparameters.
MODEL_PACKAGES = (
    "torch",
    "torchvision",
    "torchgeo",
    "timm",
    "segmentation_models_pytorch",
    "lightning",
    "pytorch_lightning",
    "mlm_export.demo",  # this project's demo models (the README converts the demo's weights)
)
#: Modules whose functions may be called as model factories (their model zoos, not their file utilities).
FACTORY_MODULES = (
    "torchvision.models",
    "torchgeo.models",
    "timm.models",
    "timm.create_model",
    "segmentation_models_pytorch",
)
#: Constructor arguments that fetch pretrained weights, and the value that turns each off.
DOWNLOAD_ARGUMENTS: Mapping[str, Any] = {
    "weights": None,
    "pretrained": False,
    "encoder_weights": None,
    "backbone_weights": None,
    "pretrained_weights": None,
}


@dataclass(frozen=True)
class Policy:
    """What rebuilding a model from a checkpoint may do."""

    #: Build whatever the checkpoint names (the user trusts its author).
    trust: bool = False
    #: Further top-level packages (or dotted modules) whose classes and functions may be built.
    allow_modules: tuple[str, ...] = ()
    #: Let constructors fetch pretrained weights from the network.
    download: bool = False

    def allows_package(self, module: str, prefixes: tuple[str, ...]) -> bool:
        return any(module == p or module.startswith(p + ".") for p in (*prefixes, *self.allow_modules))


#: The default: nothing trusted, no downloads.
SAFE = Policy()


def check_name(target: str, module_name: str, policy: Policy) -> None:
    """Refuse, before importing anything, a name whose package is not allowed."""
    if policy.trust:
        return
    if not policy.allows_package(module_name, MODEL_PACKAGES):
        raise UntrustedModelError(target, f"'{module_name}' is not a model package")


def check_object(target: str, obj: Any, policy: Policy) -> None:
    """Refuse what the name led to unless it is a model class (or a model-zoo factory) of an allowed package."""
    if policy.trust:
        return
    from torch import nn

    module = getattr(obj, "__module__", None) or ""
    if inspect.isclass(obj):
        if not issubclass(obj, nn.Module):
            raise UntrustedModelError(target, f"{obj.__qualname__} is not a torch.nn.Module subclass")
        if not policy.allows_package(module, MODEL_PACKAGES):
            raise UntrustedModelError(target, f"it is defined in '{module}', not in a model package")
        return
    if inspect.isfunction(obj) or inspect.isbuiltin(obj):
        qualified = f"{module}.{getattr(obj, '__name__', '')}"
        if policy.allows_package(qualified, FACTORY_MODULES):
            return
        raise UntrustedModelError(target, f"{qualified} is a function outside the model zoos {FACTORY_MODULES}")
    raise UntrustedModelError(target, f"it is a {type(obj).__name__}, not a model class or factory")


def offline_arguments(kwargs: Mapping[str, Any], policy: Policy) -> dict[str, Any]:
    """Constructor arguments with every pretrained-weights request turned off (unless downloads are allowed)."""
    if policy.download:
        return dict(kwargs)
    out = dict(kwargs)
    for key, off in DOWNLOAD_ARGUMENTS.items():
        if out.get(key) not in (None, False):
            out[key] = off
    return out
