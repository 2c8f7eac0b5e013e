"""A forecast imported from a CSV file: `timestamp_utc` (ISO 8601, interval start) + value column.

The same file shape as the site's other series (`ems.inputs.csv_series`). Values are interval
means in the column's unit (kW for PV and load, 0..1 for cloud cover). Errors name the file,
the column, the timestamp and the value.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from ems.inputs.csv_series import SeriesFileError, read_frame, to_steps


def read_imported_forecast(path: str | Path, column: str, minimum: float | None = 0.0,
                           maximum: float | None = None) -> pd.Series:
    """The column as floats on its UTC index. An empty, non-numeric, infinite or NaN cell, or a
    value outside [minimum, maximum] (None: unbounded), raises SeriesFileError."""
    p = Path(path)
    frame = read_frame(p)
    if column not in frame.columns:
        raise SeriesFileError(f"{p}: missing column {column!r} (have {list(frame.columns)})")
    raw = frame[column]
    values = pd.to_numeric(raw, errors="coerce")
    for at, cell, v in zip(raw.index, raw.to_numpy(), values.to_numpy(), strict=True):
        text = repr(cell) if isinstance(cell, str) else f"{cell}"
        if not math.isfinite(v):
            raise SeriesFileError(f"{p}: column {column!r} at {at.isoformat()} = {text}: not a number")
        if (minimum is not None and v < minimum) or (maximum is not None and v > maximum):
            lo = "-inf" if minimum is None else f"{minimum:g}"
            hi = "inf" if maximum is None else f"{maximum:g}"
            bounds = f"[{lo}, {hi}]"
            raise SeriesFileError(f"{p}: column {column!r} at {at.isoformat()} = {text}: "
                                  f"outside {bounds}")
    return values.astype(float).rename(column)


def imported_on_steps(series: pd.Series, steps: pd.DatetimeIndex, what: str) -> np.ndarray:
    """Values on the planner's step grid (a step takes the interval it starts in); steps
    outside the file's range are an error naming `what`, never zero."""
    return to_steps(series, steps, what).to_numpy(dtype=float)
