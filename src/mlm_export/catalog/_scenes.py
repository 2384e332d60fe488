"""Example data Items for ``mlm-export match --example-scene``: Sentinel-2 L2A, Landsat Collection 2 Level-2, NAIP.

Each scene is built here from the mission's published band table (band name, common name, centre wavelength and
width in micrometres, ground sample distance, data type, scale and offset), not copied from a catalog: enough
for ``match`` to judge a model's bands, data type and footprint. Ids follow each mission's naming; footprints,
dates and hrefs are plausible, not those of a real acquisition. STAC 1.1 Items with ``bands`` (eo v2.0.0 and
raster v2.0.0 fields), valid against the bundled schemas.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .. import mlm

#: The STAC version and extensions every scene declares (all bundled: they validate offline).
STAC_VERSION = "1.1.0"
EXTENSIONS = (mlm.EO_SCHEMA, mlm.RASTER_V2_SCHEMA)
COG = "image/tiff; application=geotiff; profile=cloud-optimized"


@dataclass(frozen=True)
class Band:
    """One band of a sensor: name, common name, centre wavelength and full width at half maximum (um), GSD (m)."""

    name: str
    common_name: str
    center: float | None
    width: float | None
    gsd: float


@dataclass(frozen=True)
class Scene:
    """What a scene is made of: its bands, their data type, scale and offset, and where and when it was taken."""

    id: str
    title: str
    bands: tuple[Band, ...]
    data_type: str
    bbox: tuple[float, float, float, float]
    datetime: str
    properties: tuple[tuple[str, Any], ...]
    href: str
    #: One asset per band (keyed by band name, or by common name) or one asset holding every band.
    layout: str = "per-band-name"
    scale: float | None = None
    offset: float | None = None
    nodata: float | None = None


# ESA, Sentinel-2 MSI: 12 bands at Level-2A (B10, cirrus, is dropped); reflectance = DN * 0.0001 - 0.1 since
# processing baseline 04.00.
_S2 = (
    Band("B01", "coastal", 0.443, 0.027, 60),
    Band("B02", "blue", 0.490, 0.098, 10),
    Band("B03", "green", 0.560, 0.045, 10),
    Band("B04", "red", 0.665, 0.038, 10),
    Band("B05", "rededge", 0.704, 0.019, 20),
    Band("B06", "rededge", 0.740, 0.018, 20),
    Band("B07", "rededge", 0.783, 0.028, 20),
    Band("B08", "nir", 0.842, 0.145, 10),
    Band("B8A", "nir08", 0.865, 0.033, 20),
    Band("B09", "nir09", 0.945, 0.026, 60),
    Band("B11", "swir16", 1.610, 0.143, 20),
    Band("B12", "swir22", 2.190, 0.242, 20),
)
# USGS, Landsat 8/9 OLI surface reflectance (Collection 2 Level-2): reflectance = DN * 0.0000275 - 0.2.
_LANDSAT = (
    Band("SR_B1", "coastal", 0.44, 0.02, 30),
    Band("SR_B2", "blue", 0.48, 0.06, 30),
    Band("SR_B3", "green", 0.56, 0.06, 30),
    Band("SR_B4", "red", 0.65, 0.04, 30),
    Band("SR_B5", "nir08", 0.86, 0.03, 30),
    Band("SR_B6", "swir16", 1.60, 0.08, 30),
    Band("SR_B7", "swir22", 2.20, 0.20, 30),
)
# USDA NAIP: 4-band aerial imagery, 8 bits per band, 0.6 m in recent years.
_NAIP = (
    Band("Red", "red", None, None, 0.6),
    Band("Green", "green", None, None, 0.6),
    Band("Blue", "blue", None, None, 0.6),
    Band("NIR", "nir", None, None, 0.6),
)

#: The scenes ``--example-scene`` offers, by name.
SCENES: dict[str, Scene] = {
    "sentinel-2-l2a": Scene(
        id="S2B_MSIL2A_20230616T102609_R065_T32TMS",
        title="Sentinel-2 Level-2A (12 bands, uint16, 10-60 m)",
        bands=_S2,
        data_type="uint16",
        bbox=(7.686, 45.9584, 9.1283, 46.9538),  # tile 32TMS (central Switzerland): inside the demo's extent
        datetime="2023-06-16T10:36:18Z",
        properties=(("platform", "sentinel-2b"), ("constellation", "sentinel-2"), ("instruments", ["msi"])),
        href="https://example.com/sentinel-2-l2a/32TMS/{key}.tif",
        scale=0.0001,
        offset=-0.1,
        nodata=0,
    ),
    "landsat-c2-l2": Scene(
        id="LC09_L2SP_044034_20230610_20230612_02_T1",
        title="Landsat 8/9 Collection 2 Level-2 surface reflectance (7 bands, uint16, 30 m)",
        bands=_LANDSAT,
        data_type="uint16",
        bbox=(-123.1276, 36.8907, -120.4802, 38.8283),
        datetime="2023-06-10T18:47:12Z",
        properties=(("platform", "landsat-9"), ("instruments", ["oli", "tirs"])),
        href="https://example.com/landsat-c2-l2/044034/{name}.TIF",
        layout="per-band-common-name",
        scale=0.0000275,
        offset=-0.2,
        nodata=0,
    ),
    "naip": Scene(
        id="ca_m_3712213_ne_10_060_20220519",
        title="NAIP 4-band aerial imagery (red, green, blue, near-infrared; uint8, 0.6 m)",
        bands=_NAIP,
        data_type="uint8",
        bbox=(-122.1913, 37.748, -122.1212, 37.8143),
        datetime="2022-05-19T16:00:00Z",
        properties=(),
        href="https://example.com/naip/ca/2022/m_3712213_ne_10_060_20220519.tif",
        layout="one-asset",
    ),
}


def scene_names() -> list[str]:
    """The names ``--example-scene`` accepts."""
    return list(SCENES)


def example_scene(name: str) -> dict[str, Any]:
    """The data Item of one example scene, built from its band table (a KeyError for an unknown name)."""
    scene = SCENES[name]
    w, s, e, n = scene.bbox
    props: dict[str, Any] = {"datetime": scene.datetime, "title": scene.title, **dict(scene.properties)}
    props[mlm.GSD] = min(b.gsd for b in scene.bands)
    assets: dict[str, Any]
    if scene.layout == "one-asset":
        assets = {"image": _asset(scene, scene.href, list(scene.bands))}
    else:
        by_common = scene.layout == "per-band-common-name"
        assets = {
            (b.common_name if by_common else b.name): _asset(
                scene, scene.href.format(key=b.name, name=b.name), [b], title=f"{b.name} ({b.common_name})"
            )
            for b in scene.bands
        }
    return {
        "type": "Feature",
        "stac_version": STAC_VERSION,
        "stac_extensions": list(EXTENSIONS),
        "id": scene.id,
        "bbox": [w, s, e, n],
        "geometry": {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]},
        "properties": props,
        "links": [],
        "assets": assets,
    }


def _asset(scene: Scene, href: str, bands: list[Band], title: str | None = None) -> dict[str, Any]:
    asset: dict[str, Any] = {"href": href, "type": COG, "roles": [mlm.ROLE_DATA]}
    if title:
        asset["title"] = title
    asset[mlm.BANDS] = [_band(scene, b) for b in bands]
    return asset


def _band(scene: Scene, band: Band) -> dict[str, Any]:
    out: dict[str, Any] = {"name": band.name, mlm.EO_COMMON_NAME: band.common_name}
    if band.center is not None:
        out[mlm.EO_CENTER_WAVELENGTH] = band.center
    if band.width is not None:
        out[mlm.EO_FWHM] = band.width
    out[mlm.DATA_TYPE] = scene.data_type
    if scene.nodata is not None:
        out[mlm.NODATA] = scene.nodata
    out[mlm.RASTER_SPATIAL_RESOLUTION] = band.gsd
    if scene.scale is not None:
        out[mlm.RASTER_SCALE] = scene.scale
    if scene.offset is not None:
        out[mlm.RASTER_OFFSET] = scene.offset
    return out
