"""Read bundled/user series files: `timestamp_utc` (interval start, ISO 8601) + value columns."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd


class SeriesFileError(ValueError):
    """A series file that cannot be used; the message names the file, column and value."""


@lru_cache(maxsize=64)
def _read(path: str, mtime: float) -> pd.DataFrame:
    try:
        df = pd.read_csv(path)
    except (OSError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise SeriesFileError(f"{path}: cannot read CSV: {exc}") from None
    if "timestamp_utc" not in df.columns:
        raise SeriesFileError(f"{path}: missing column 'timestamp_utc' (have {list(df.columns)})")
    try:
        idx = pd.to_datetime(df["timestamp_utc"], utc=True, format="ISO8601")
    except (ValueError, TypeError) as exc:
        raise SeriesFileError(f"{path}: column 'timestamp_utc' has a bad timestamp: {exc}") from None
    df = df.drop(columns=["timestamp_utc"])
    df.index = pd.DatetimeIndex(idx, name="timestamp_utc")
    if not df.index.is_monotonic_increasing:
        raise SeriesFileError(f"{path}: timestamp_utc is not in increasing order")
    if df.index.has_duplicates:
        dup = df.index[df.index.duplicated()][0]
        raise SeriesFileError(f"{path}: timestamp_utc {dup.isoformat()} appears twice")
    return df


def read_frame(path: Path) -> pd.DataFrame:
    return _read(str(path), path.stat().st_mtime)


def read_series(path: Path, column: str) -> pd.Series:
    """One numeric column with a UTC index; NaN, infinite or non-numeric cells are errors."""
    df = read_frame(path)
    if column not in df.columns:
        raise SeriesFileError(f"{path}: missing column {column!r} (have {list(df.columns)})")
    s = pd.to_numeric(df[column], errors="coerce")
    bad = ~np.isfinite(s.to_numpy(dtype=float))
    if bad.any():
        at = s.index[bad.argmax()]
        raw = df[column][bad].iloc[0]
        raw = raw.item() if isinstance(raw, np.generic) else raw
        raise SeriesFileError(f"{path}: column {column!r} at {at.isoformat()} = {raw!r}: not a finite number")
    return s.astype(float)


def to_steps(series: pd.Series, steps: pd.DatetimeIndex, what: str) -> pd.Series:
    """Values on the step grid: each step takes the value of the interval it starts in.

    Series are interval averages (kW, price, g/kWh), so a finer grid repeats the value.
    Steps outside the series' range are an error, never zero.
    """
    if len(series) == 0:
        raise SeriesFileError(f"{what}: series is empty")
    freq = series.index[1] - series.index[0] if len(series) > 1 else pd.Timedelta(hours=1)
    first, last_end = series.index[0], series.index[-1] + freq
    if steps[0] < first or steps[-1] >= last_end:
        raise SeriesFileError(
            f"{what}: data cover {first.isoformat()} to {last_end.isoformat()}, "
            f"but {steps[0].isoformat()} to {steps[-1].isoformat()} was asked for"
        )
    return series.reindex(steps, method="ffill")
