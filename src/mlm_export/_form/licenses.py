"""The SPDX license identifiers the form offers, shipped as ``static/spdx-licenses.json`` (works offline).

The list is data, not code: it is made from the license index bundled in the ``license-expression`` PyPI
package (ScanCode LicenseDB, CC-BY-4.0, which records each license's SPDX key and the SPDX license list
version it follows). Regenerate it after upgrading that package with ``python -m mlm_export._form.licenses``.
"""

from __future__ import annotations

import importlib.resources
import json
from pathlib import Path
from typing import Any

from .._write import atomic_write_json

LICENSES_FILE = "spdx-licenses.json"
#: STAC 1.1 accepts these besides SPDX identifiers and expressions.
STAC_EXTRA = [{"id": "other", "category": "STAC: a license not in the SPDX list (link it with rel=license)"}]


def shipped() -> dict[str, Any]:
    """The list shipped with the package."""
    data: dict[str, Any] = json.loads(
        importlib.resources.files(__package__).joinpath("static", LICENSES_FILE).read_text("utf-8")
    )
    return data


def generate() -> dict[str, Any]:
    """The list made from the installed ``license-expression`` package's bundled index."""
    import license_expression  # type: ignore[import-untyped]  # the [form] extra; only to regenerate the file

    data_dir = Path(license_expression.__file__).parent / "data"
    index = json.loads((data_dir / "scancode-licensedb-index.json").read_text("utf-8"))
    about = (data_dir / "license_key_index.json.ABOUT").read_text("utf-8")
    version = next((ln.split(":", 1)[1].strip() for ln in about.splitlines() if "spdx_license_list_version" in ln), "")
    licenses = sorted(
        (
            {"id": entry["spdx_license_key"], "category": entry.get("category") or ""}
            for entry in index
            if entry.get("spdx_license_key")
            and not entry.get("is_exception")
            and not entry.get("is_deprecated")
            and not entry["spdx_license_key"].startswith("LicenseRef-")
        ),
        key=lambda e: e["id"].lower(),
    )
    return {
        "source": "ScanCode LicenseDB index bundled in the license-expression package "
        f"{_version('license-expression')} (CC-BY-4.0), SPDX keys only",
        "spdx_license_list_version": version,
        "licenses": STAC_EXTRA + licenses,
    }


def _version(dist: str) -> str:
    from importlib.metadata import version

    return version(dist)


def main() -> None:
    """Rewrite the shipped list from the installed ``license-expression``."""
    target = Path(__file__).parent / "static" / LICENSES_FILE
    atomic_write_json(target, generate())
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
