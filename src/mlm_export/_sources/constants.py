"""What a user needs to call the model besides its tensors: the constant arguments its forward was traced with.

DOFA's ``forward(x, wavelengths)`` and CopernicusFM's ``wavelengths``/``bandwidths`` take the bands' centre
wavelengths as plain numbers. Wavelengths with one value per channel become the input's bands with
``eo:center_wavelength`` (in micrometres, as the eo extension states them); every constant is also stated in
``mlm:hyperparameters`` (as ``forward.<name>``) and in the input's description, so the model can be called
from its Item.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from .._facts import BandFacts
from .call import CallSpec, forward_parameter_names

#: eo common names by centre wavelength range (micrometres), from the eo extension's table.
COMMON_NAMES = (
    ("coastal", 0.40, 0.45),
    ("blue", 0.45, 0.53),
    ("green", 0.53, 0.60),
    ("red", 0.62, 0.69),
    ("rededge", 0.69, 0.79),
    ("nir", 0.79, 0.90),
    ("swir16", 1.55, 1.75),
    ("swir22", 2.05, 2.35),
)


@dataclass(frozen=True)
class Constants:
    """The constant arguments of a traced call, as the Item states them."""

    #: ``forward.<name>`` -> value, for ``mlm:hyperparameters``.
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    #: Bands made from a per-channel wavelength argument, or None.
    bands: tuple[BandFacts, ...] | None = None
    #: Where the bands came from, for messages.
    bands_source: str | None = None
    #: A sentence for the input's description, or None.
    description: str | None = None


def forward_constants(model: nn.Module, spec: CallSpec) -> Constants:
    """The constants in ``spec`` named by ``model.forward``'s parameters; wavelengths as bands where they fit."""
    if not spec.constants:
        return Constants()
    params = forward_parameter_names(model)
    named: dict[str, Any] = {}
    for key, value in spec.constants:
        name = params[key] if isinstance(key, int) and key < len(params) else str(key)
        named[name] = value
    channels = _channels(spec)
    bands, source = None, None
    for name, value in named.items():
        if "wavelength" in name.lower() and _numbers(value) and len(value) == channels:
            bands, source = _bands(value), f"forward({name}=...)"
            break
    shown = ", ".join(f"{n}={_text(v)}" for n, v in named.items())
    return Constants(
        hyperparameters={f"forward.{n}": v for n, v in named.items()},
        bands=bands,
        bands_source=source,
        description=f"forward() also takes {shown}: pass them as they are stated here",
    )


def _channels(spec: CallSpec) -> int | None:
    for t in spec.tensors:
        if t.ndim == 4:
            return int(t.shape[1])
    return None


def _numbers(value: Any) -> bool:
    return (
        isinstance(value, Sequence)
        and not isinstance(value, str)
        and len(value) > 0
        and all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in value)
    )


def _bands(wavelengths: Sequence[float]) -> tuple[BandFacts, ...]:
    """Bands from centre wavelengths in micrometres or, when they are larger than 100, nanometres."""
    out: list[BandFacts] = []
    used: set[str] = set()
    for w in wavelengths:
        um = float(w) / 1000 if float(w) > 100 else float(w)
        common = next((n for n, lo, hi in COMMON_NAMES if lo <= um < hi), None)
        name = common if common and common not in used else f"wavelength_{um:g}um"
        used.add(name)
        out.append(BandFacts(name, common, round(um, 6), f"centre wavelength {um:g} um"))
    return tuple(out)


def _text(value: Any) -> str:
    text = repr(list(value)) if isinstance(value, tuple) else repr(value)
    return text if len(text) <= 120 else text[:117] + "..."
