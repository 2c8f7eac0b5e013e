"""Local-time rules (time-of-use periods, limit and demand windows) evaluated on UTC steps."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from ems.config.models import TimeWindow, minutes_of_day


def local_midnight_utc(day: date, timezone: str) -> datetime:
    """The UTC instant at which `day` begins in `timezone` (local midnight)."""
    local = datetime(day.year, day.month, day.day, tzinfo=ZoneInfo(timezone))
    return local.astimezone(ZoneInfo("UTC"))


def local_steps(steps_utc: pd.DatetimeIndex, timezone: str) -> pd.DatetimeIndex:
    return steps_utc.tz_convert(timezone)


def window_mask(
    window: TimeWindow, local: pd.DatetimeIndex, holidays: Sequence[date] = ()
) -> np.ndarray:
    """True where the step starts inside the window (local time; end exclusive; may wrap).
    ``holidays`` are the local dates a "holidays" window applies on."""
    minute = np.asarray(local.hour * 60 + local.minute)
    start, end = minutes_of_day(window.start), minutes_of_day(window.end)
    in_time = (minute >= start) & (minute < end) if start < end else (minute >= start) | (minute < end)
    in_month = np.isin(np.asarray(local.month), window.months)
    if window.days == "holidays":
        in_days = np.isin(np.asarray(local.date), np.asarray(list(holidays), dtype=object))
    else:
        weekday = np.asarray(local.dayofweek) < 5
        in_days = {"all": np.ones(len(local), bool), "weekdays": weekday, "weekends": ~weekday}[window.days]
    return np.asarray(in_time & in_month & in_days)


def any_window(windows: Sequence[TimeWindow], local: pd.DatetimeIndex) -> np.ndarray:
    out = np.zeros(len(local), dtype=bool)
    for w in windows:
        out |= window_mask(w, local)
    return out
