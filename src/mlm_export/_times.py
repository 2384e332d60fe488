"""Time as STAC writes it: one spelling (UTC, ISO 8601, ``Z``) for every module that states a time."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

#: Times outside this range are not dates of data (open-ended bounds, sentinels): they are left unstated.
EARLIEST = dt.datetime(1900, 1, 1, tzinfo=dt.UTC)
LATEST = dt.datetime(2200, 1, 1, tzinfo=dt.UTC)


def iso_utc(t: dt.datetime) -> str:
    """``t`` in UTC as ISO 8601 with a ``Z``; a naive time is taken as UTC (what STAC requires)."""
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    return t.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def parse_iso(text: str | None) -> dt.datetime | None:
    """An ISO 8601 text (``Z`` or an offset) as a datetime; None stays None."""
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


def file_time(seconds: float) -> dt.datetime:
    """A file's modification time (``st_mtime``) as a UTC datetime to the second."""
    return dt.datetime.fromtimestamp(seconds, dt.UTC).replace(microsecond=0)


def data_time(t: Any) -> str | None:
    """A time bound of a dataset (datetime, pandas Timestamp, POSIX seconds) as :func:`iso_utc` text, or None
    when it is no date at all (open-ended bounds, out of range)."""
    try:
        if hasattr(t, "to_pydatetime"):
            t = t.to_pydatetime()
        elif isinstance(t, int | float) and not isinstance(t, bool):
            if not math.isfinite(t) or abs(t) > 1e11:
                return None  # TorchGeo 0.8's open-ended time bounds
            t = dt.datetime.fromtimestamp(t, dt.UTC)
        if isinstance(t, dt.datetime):
            t = t if t.tzinfo else t.replace(tzinfo=dt.UTC)
            if EARLIEST < t < LATEST:
                return iso_utc(t)
    except (OverflowError, OSError, ValueError):
        return None
    return None
