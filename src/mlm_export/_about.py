"""The installed package's version, read once from its metadata on first use (every Item and lineage names it);
not at import, so that ``mlm-export --help`` and the commands that touch no model start fast."""

from __future__ import annotations

from functools import cache


@cache
def package_version() -> str:
    """The installed distribution's version ("0.0.0" in a source tree that was never installed)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mlm-export")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
        return "0.0.0"


def __getattr__(name: str) -> str:
    """``__version__``, read on first use."""
    if name == "__version__":
        return package_version()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
