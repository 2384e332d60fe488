"""The software a model was made with: exact versions, the distributions defining its classes, the environment.

Everything is read from ``importlib.metadata`` and the imported modules of this process: no subprocess, no
network. Unknown stays unknown (a class defined in a script belongs to no distribution).
"""

from __future__ import annotations

import functools
import importlib.metadata as md
import platform
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from packaging.utils import canonicalize_name

from .. import mlm

#: Frameworks named in ``processing:software`` when this process has imported them: (import name, distribution).
FRAMEWORKS = (
    ("torchvision", "torchvision"),
    ("lightning", "lightning"),
    ("pytorch_lightning", "pytorch-lightning"),
    ("torchgeo", "torchgeo"),
    ("timm", "timm"),
    ("segmentation_models_pytorch", "segmentation-models-pytorch"),
    ("kornia", "kornia"),
    ("terratorch", "terratorch"),
)
#: ``processing:software`` names the exact builds (``2.14.1+cu130``); a requirements file pins what pip sees
#: installed (the distribution's metadata version), which ``==2.14.1`` matches for any local build.
#: Distributions an artifact type needs to be loaded, besides torch and the model's own classes.
LOADERS = {mlm.ARTIFACT_SAFETENSORS: ("safetensors",)}


@dataclass(frozen=True)
class RuntimeFacts:
    """Exact versions of what made the model, and what loading it takes."""

    #: ``processing:software``: name -> exact version (Python, torch with its CUDA/cuDNN build, frameworks, ...).
    software: dict[str, str]
    #: Distributions (canonical name -> version) whose modules define the model's classes.
    model_distributions: dict[str, str]
    #: Top-level modules of the model's classes that belong to no installed distribution (a project, a script).
    local_modules: tuple[str, ...]


def runtime_facts(model: Any = None) -> RuntimeFacts:
    """Versions of Python, torch (CUDA, cuDNN), the imported frameworks, mlm-export and the model's distributions."""
    software: dict[str, str] = {"Python": platform.python_version(), "torch": torch.__version__}
    if torch.version.cuda:
        software["CUDA"] = str(torch.version.cuda)
    cudnn = _cudnn_version()
    if cudnn:
        software["cuDNN"] = cudnn
    for module, dist in FRAMEWORKS:
        if module in sys.modules and (v := _module_version(module) or distribution_version(dist)):
            software[dist] = v
    own = distribution_version("mlm-export")
    if own:
        software["mlm-export"] = own
    dists, local = model_distributions(model) if model is not None else ({}, ())
    for name, v in dists.items():
        software.setdefault(name, v)
    return RuntimeFacts(software=software, model_distributions=dists, local_modules=local)


def _module_version(module: str) -> str | None:
    """A module's own ``__version__``: it names the build (``0.29.1+cu130``) where the metadata may not."""
    v = getattr(sys.modules.get(module), "__version__", None)
    return v if isinstance(v, str) and v else None


def distribution_version(name: str) -> str | None:
    """The installed version of a distribution, or None."""
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return None


def distributions_of(top: str) -> list[str]:
    """The installed distributions that provide the top-level module ``top`` (empty for a project or a script).

    ``importlib.metadata.packages_distributions()`` answers this but reads every distribution's RECORD (seconds
    with a CUDA build of torch), so cheaper answers come first: a module outside any ``site-packages`` belongs
    to none; a distribution named like the module; the ``top_level.txt`` files; only then the full scan.
    """
    module = sys.modules.get(top)
    file = getattr(module, "__file__", None) or next(iter(getattr(module, "__path__", []) or []), None)
    if module is not None and (not file or not any(p in str(file) for p in ("site-packages", "dist-packages"))):
        return []
    try:
        return [md.distribution(top).metadata["Name"]]
    except (md.PackageNotFoundError, KeyError, TypeError):
        pass
    return _top_level_index().get(top) or _packages_distributions().get(top, [])


@functools.cache
def _top_level_index() -> dict[str, list[str]]:
    index: dict[str, list[str]] = {}
    for dist in md.distributions():
        name = dist.metadata["Name"] if dist.metadata else None
        for line in (dist.read_text("top_level.txt") or "").split():
            if name:
                index.setdefault(line.strip(), []).append(name)
    return index


@functools.cache
def _packages_distributions() -> Mapping[str, list[str]]:
    return md.packages_distributions()


def model_distributions(model: Any) -> tuple[dict[str, str], tuple[str, ...]]:
    """Distributions defining the classes of ``model`` and its submodules (from their modules' top-level names)."""
    found: dict[str, str] = {}
    local: list[str] = []
    for top in _top_modules(model):
        dists = distributions_of(top)
        if not dists:
            if top not in local and top not in sys.stdlib_module_names and top != "builtins":
                local.append(top)
            continue
        for dist in dists:
            v = distribution_version(dist)
            if v:
                found.setdefault(str(canonicalize_name(dist)), v)
    return dict(sorted(found.items())), tuple(local)


def _top_modules(model: Any) -> list[str]:
    """Top-level module names of the classes (and base classes) of ``model`` and of every submodule."""
    objects: Iterable[Any] = model.modules() if isinstance(model, torch.nn.Module) else [model]
    seen: dict[str, None] = {}
    for obj in objects:
        for cls in type(obj).__mro__:
            top = (cls.__module__ or "").split(".", 1)[0]
            if top:
                seen.setdefault(top, None)
    return list(seen)


def _cudnn_version() -> str | None:
    """cuDNN's version as ``major.minor.patch`` (torch reports 91002 for 9.10.2 and 8907 for 8.9.7)."""
    try:
        available = torch.backends.cudnn.is_available()  # type: ignore[no-untyped-call]  # untyped in torch
        v = torch.backends.cudnn.version() if available else None  # type: ignore[no-untyped-call]
    except Exception:  # a CUDA build without its libraries: no cuDNN to report
        return None
    if not v:
        return None
    major, rest = (v // 10000, v % 10000) if v >= 90000 else (v // 1000, v % 1000)
    return f"{major}.{rest // 100}.{rest % 100}"


@functools.cache
def environment() -> dict[str, str]:
    """Every installed distribution (canonical name -> version): the ``pip freeze`` of this process (read once)."""
    out: dict[str, str] = {}
    for dist in md.distributions():
        name, version = _name_version(dist)
        if name and version:
            out.setdefault(str(canonicalize_name(name)), version)
    return dict(sorted(out.items()))


def _name_version(dist: md.Distribution) -> tuple[str | None, str | None]:
    """``Name`` and ``Version`` from a distribution's metadata headers alone: the email parser that
    ``dist.metadata`` runs reads every long description too (~1 s for 200 distributions, on the first save)."""
    text = dist.read_text("METADATA") or dist.read_text("PKG-INFO") or ""
    fields: dict[str, str] = {}
    for line in text.split("\n\n", 1)[0].splitlines():
        key, sep, value = line.partition(":")
        if sep and key in ("Name", "Version") and key not in fields:
            fields[key] = value.strip()
    return fields.get("Name"), fields.get("Version")


def requirements_text(pins: dict[str, str], header: str) -> str:
    """A pip requirements file: one ``name==version`` per line, after a comment saying what it is for."""
    lines = [f"# {line}" for line in header.splitlines()]
    lines += [f"{name}=={version}" for name, version in sorted(pins.items())]
    return "\n".join(lines) + "\n"


def inference_pins(runtime: RuntimeFacts, artifact_types: Iterable[str | None]) -> dict[str, str]:
    """What loading and running the artifact takes: torch, the model's distributions, the artifact's loader."""
    pins = {"torch": distribution_version("torch") or torch.__version__, **runtime.model_distributions}
    for artifact_type in artifact_types:
        for dist in LOADERS.get(artifact_type or "", ()):
            if v := distribution_version(dist):
                pins[dist] = v
    if (
        mlm.ARTIFACT_TORCH_SAVE in artifact_types
        and "lightning" in sys.modules
        and (v := distribution_version("lightning"))
    ):
        pins["lightning"] = v  # a Lightning checkpoint holds Lightning's types
    return pins


def cli_config(trainer: Any) -> bytes | None:
    """The YAML configuration a LightningCLI (or TerraTorch's, TorchGeo's) built the Trainer from, as its
    ``SaveConfigCallback`` saves it beside the run; None when the Trainer was not made by one."""
    for cb in getattr(trainer, "callbacks", None) or ():
        if "SaveConfigCallback" not in {c.__name__ for c in type(cb).__mro__}:
            continue
        parser, config = getattr(cb, "parser", None), getattr(cb, "config", None)
        if parser is None or config is None:
            return None
        text = parser.dump(config)
        return text.encode("utf-8") if isinstance(text, str) else None
    return None


def accelerator_from_trainer(trainer: Any) -> tuple[mlm.Accelerator | None, str | None, int | None]:
    """``mlm:accelerator``, a summary naming the devices, and their count, from a Lightning Trainer."""
    kind = type(getattr(trainer, "accelerator", None)).__name__
    count = getattr(trainer, "num_devices", None)
    count = count if isinstance(count, int) and count > 0 else None
    accelerator = mlm.accelerator(kind, platform.machine(), platform.system())
    if accelerator == "cuda":
        ids = getattr(trainer, "device_ids", None) or [0]
        names = []
        if torch.cuda.is_available():
            names = [torch.cuda.get_device_name(i) for i in ids if i < torch.cuda.device_count()]
        return accelerator, _summarize(names) if names else None, count
    if "mps" in kind.lower():
        return accelerator, "Apple silicon (MPS)", count
    if accelerator == "xla":
        return accelerator, None, count
    return accelerator, cpu_name(), count


def cpu_name() -> str | None:
    """The CPU's model name (``/proc/cpuinfo`` on Linux), else what the platform module says."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip() or None
    except OSError:
        pass
    return platform.processor() or platform.machine() or None


def _summarize(names: list[str]) -> str:
    counts: dict[str, int] = {}
    for n in names:
        counts[n] = counts.get(n, 0) + 1
    return ", ".join(f"{c}x {n}" if c > 1 else n for n, c in counts.items())


def compile_method(model: Any) -> str | None:
    """How ``model`` was compiled, if it was: ``jit`` for TorchScript and ``torch.compile``, else None."""
    if isinstance(model, torch.jit.ScriptModule):
        return "jit"
    if type(model).__name__ == "OptimizedModule" or getattr(model, "_compiled_call_impl", None) is not None:
        return "jit"
    return None
