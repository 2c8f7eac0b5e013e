"""Load forecast: day-type x time-of-day profile from history, plus a decaying recent-error term.

Profile: the median (or mean) of the last `weeks` weeks of measured load per (day type, step of
the day), both taken in the site's LOCAL time, so a profile slot is a wall-clock time and a DST
change moves it with the clock. Day types are the seven weekdays ("weekday") or weekday /
Saturday / Sunday ("wss").

Correction: e = mean(actual - profile) over the last `correction_hours` before the origin; the
forecast at lead time h (hours from the origin) is profile + e * exp(-h / decay_hours).

Power is kW (non-negative consumption), time is UTC; index entries are step starts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

DayTypes = Literal["weekday", "wss"]


def day_type(local: pd.DatetimeIndex, kind: DayTypes) -> np.ndarray:
    """Day type of each local timestamp: 0..6 (Monday = 0) or 0 weekday / 5 Sat / 6 Sun."""
    wd = np.asarray(local.weekday)
    if kind == "weekday":
        return wd
    return np.where(wd < 5, 0, wd)


def minute_of_day(local: pd.DatetimeIndex) -> np.ndarray:
    return np.asarray(local.hour * 60 + local.minute)


@dataclass(frozen=True)
class LoadProfile:
    """kW per (day type 0..6, local minute of day 0..1439), NaN where history had no value;
    `fallback` per minute of day over all day types."""

    table: np.ndarray
    fallback: np.ndarray
    timezone: str
    kind: DayTypes

    def values(self, index: pd.DatetimeIndex) -> np.ndarray:
        """Profile (kW) at UTC step starts `index`; NaN where even the fallback has no value."""
        local = index.tz_convert(self.timezone)
        types, minutes = day_type(local, self.kind), minute_of_day(local)
        out = self.table[types, minutes]
        return np.asarray(np.where(np.isnan(out), self.fallback[minutes], out), dtype=float)


def fit_profile(history_kw: pd.Series, timezone: str, origin: pd.Timestamp, weeks: int = 6,
                kind: DayTypes = "weekday", stat: Literal["median", "mean"] = "median") -> LoadProfile:
    """Profile from the `weeks` weeks of `history_kw` (UTC index) before `origin`; NaN skipped.

    Raises ValueError when that history holds no value."""
    h = history_kw[(history_kw.index < origin) & (history_kw.index >= origin - pd.Timedelta(weeks=weeks))]
    h = h.dropna()
    if h.empty:
        raise ValueError(f"load forecast: no measured load in the {weeks} weeks before "
                         f"{origin.isoformat()}")
    local = pd.DatetimeIndex(h.index).tz_convert(timezone)
    frame = pd.DataFrame({"d": day_type(local, kind), "m": minute_of_day(local), "v": h.to_numpy()})
    table = frame.groupby(["d", "m"])["v"].agg(stat)
    fallback = frame.groupby("m")["v"].agg(stat)
    grid = np.full((7, 1440), np.nan)
    grid[table.index.get_level_values(0).to_numpy(dtype=int),
         table.index.get_level_values(1).to_numpy(dtype=int)] = table.to_numpy(dtype=float)
    flat = np.full(1440, np.nan)
    flat[fallback.index.to_numpy(dtype=int)] = fallback.to_numpy()
    return LoadProfile(table=grid, fallback=flat, timezone=timezone, kind=kind)


def recent_error(profile: LoadProfile, history_kw: pd.Series, origin: pd.Timestamp,
                 correction_hours: float = 3.0) -> float:
    """Mean of (actual - profile) kW over the `correction_hours` before `origin` (0 if none)."""
    h = history_kw[(history_kw.index < origin)
                   & (history_kw.index >= origin - pd.Timedelta(hours=correction_hours))].dropna()
    if h.empty:
        return 0.0
    err = h.to_numpy() - profile.values(pd.DatetimeIndex(h.index))
    err = err[np.isfinite(err)]
    return float(err.mean()) if len(err) else 0.0


def forecast_load_kw(profile: LoadProfile, index: pd.DatetimeIndex, history_kw: pd.Series | None = None,
                     correction_hours: float = 3.0, decay_hours: float = 4.0) -> pd.Series:
    """Load forecast (kW, >= 0) on `index` (UTC step starts; the first is the origin):
    profile + recent error * exp(-lead hours / decay_hours)."""
    base = profile.values(index)
    if history_kw is not None and correction_hours > 0:
        e = recent_error(profile, history_kw, index[0], correction_hours)
        lead_h = (index - index[0]).total_seconds().to_numpy() / 3600.0
        base = base + e * np.exp(-lead_h / decay_hours)
    return pd.Series(np.clip(base, 0.0, None), index=index)
