"""All forecasts of one site from its measured history: PV, load and EV sessions.

`SiteForecaster` reads only measured values before a forecast's origin. Models are refitted
once per local day (origin's local midnight: performance ratio, load profile, EV model) and
cached; the load's recent-error correction uses the measurements up to the origin itself.
Columns follow `SiteInputs.frame`: `pv:<name>_kw`, `load:<name>_kw` (kW, UTC step starts).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import pandas as pd

from ems.config.loader import LoadedSite
from ems.forecast.ev import EvModel, fit_ev_model, no_overlap
from ems.forecast.load import DayTypes, LoadProfile, fit_profile, forecast_load_kw
from ems.forecast.pv import PvArray, clear_sky_ac_kw, performance_ratio
from ems.inputs.calendar import local_midnight_utc
from ems.inputs.site_inputs import EvSessionEvent, build_inputs, data_start_utc

MODEL_HISTORY_DAYS = 28
"""Days of data a forecast-driven run starts after when no start is given (4 of each weekday)."""

MODEL_MIN_HISTORY_DAYS = 7
"""Fewest days of data before a forecast-driven run (every weekday seen once)."""


@dataclass(frozen=True)
class ForecastSettings:
    """Training windows and the correction of the site forecasts."""

    pv_history_days: int = 2
    load_weeks: int = 6
    load_day_types: DayTypes = "weekday"
    load_correction_hours: float = 3.0
    load_decay_hours: float = 4.0
    ev_weeks: int = 8

    @property
    def history_days(self) -> int:
        """Days of history that every model can use (the longest window, plus one day)."""
        return max(self.pv_history_days, 7 * self.load_weeks, 7 * self.ev_weeks) + 1


def pv_arrays(site: LoadedSite) -> list[PvArray]:
    return [PvArray(p.name, p.kwp, p.tilt_deg, p.azimuth_deg, p.system_loss_fraction)
            for p in site.config.pv]


def history_start(site: LoadedSite, start_utc: datetime, settings: ForecastSettings) -> datetime:
    """First instant of training history for a period starting at `start_utc` (not before the
    site's data)."""
    first = start_utc - timedelta(days=settings.history_days)
    data_first = data_start_utc(site)
    return max(first, data_first) if data_first is not None else first


def measured_history(site: LoadedSite, start_utc: datetime, end_utc: datetime
                     ) -> tuple[pd.DataFrame, list[EvSessionEvent]]:
    """Measured PV/load columns and EV sessions in [start_utc, end_utc) (empty when empty)."""
    if end_utc <= start_utc:
        return pd.DataFrame(), []
    inputs = build_inputs(site, start_utc, end_utc)
    cols = [c for c in inputs.frame.columns if c.startswith(("pv:", "load:"))]
    return inputs.frame[cols], inputs.sessions


class SiteForecaster:
    """PV, load and EV forecasts of a site from `actuals` (pv:/load: columns, UTC step index) and
    recorded `sessions`; only data before each origin are read. Picklable."""

    def __init__(self, site: LoadedSite, actuals: pd.DataFrame, sessions: list[EvSessionEvent],
                 settings: ForecastSettings | None = None) -> None:
        self.settings = settings or ForecastSettings()
        cfg = site.config
        self.timezone = cfg.site.timezone
        self.latitude, self.longitude = cfg.site.latitude, cfg.site.longitude
        self.arrays = pv_arrays(site)
        self.load_names = [ld.name for ld in cfg.load]
        actuals = actuals[~actuals.index.duplicated(keep="first")].sort_index()
        self.actuals = actuals
        unique: dict[str, EvSessionEvent] = {}
        for s in sessions:
            unique.setdefault(s.session_id, s)
        self.sessions = sorted(unique.values(), key=lambda s: s.arrival_utc)
        self._arrivals = [pd.Timestamp(s.arrival_utc) for s in self.sessions]
        self._clear: dict[str, pd.Series] = {
            a.name: clear_sky_ac_kw(a, self.latitude, self.longitude, pd.DatetimeIndex(actuals.index))
            for a in self.arrays}
        self._ratio: dict[tuple[str, pd.Timestamp], float] = {}
        self._profile: dict[tuple[str, pd.Timestamp], LoadProfile] = {}
        self._ev: dict[pd.Timestamp, EvModel] = {}
        self._ev_days: dict[tuple[pd.Timestamp, date], list[EvSessionEvent]] = {}

    @classmethod
    def for_period(cls, site: LoadedSite, start_utc: datetime, run_actuals: pd.DataFrame,
                   run_sessions: list[EvSessionEvent], settings: ForecastSettings | None = None
                   ) -> SiteForecaster:
        """Forecaster for a period from `start_utc`: the history before it is read from the
        site's data and joined to the period's own actuals (`run_actuals`, `run_sessions`)."""
        settings = settings or ForecastSettings()
        first = history_start(site, start_utc, settings)
        hist, hist_sessions = measured_history(site, first, start_utc)
        cols = [c for c in run_actuals.columns if c.startswith(("pv:", "load:"))]
        frame = pd.concat([hist, run_actuals[cols]]) if len(hist) else run_actuals[cols]
        return cls(site, frame, [*hist_sessions, *run_sessions], settings)

    def day_origin(self, t: pd.Timestamp) -> pd.Timestamp:
        """Local midnight (as UTC) of the day of `t`: the instant the daily models are fitted."""
        day = t.tz_convert(self.timezone).date()
        return pd.Timestamp(local_midnight_utc(day, self.timezone))

    def history_before(self, t: pd.Timestamp) -> pd.Timestamp | None:
        """First measured instant, or None when nothing was measured before `t`."""
        idx = self.actuals.index
        return idx[0] if len(idx) and idx[0] < t else None

    def _clear_on(self, array: PvArray, index: pd.DatetimeIndex) -> pd.Series:
        clear = self._clear[array.name]
        got = clear.reindex(index)
        if got.isna().any():
            got = clear_sky_ac_kw(array, self.latitude, self.longitude, index)
        return got

    def pv_ratio(self, name: str, t: pd.Timestamp) -> float:
        """Performance ratio for forecasts made on `t`'s local day (cached per day)."""
        day0 = self.day_origin(t)
        key = (name, day0)
        if key not in self._ratio:
            array = next(a for a in self.arrays if a.name == name)
            col = self.actuals[f"pv:{name}_kw"]
            since = day0 - pd.Timedelta(days=self.settings.pv_history_days)
            hist = col[(col.index < day0) & (col.index >= since)]
            clear = self._clear_on(array, pd.DatetimeIndex(hist.index))
            self._ratio[key], _ = performance_ratio(hist, clear, array.kwp)
        return self._ratio[key]

    def load_profile(self, name: str, t: pd.Timestamp) -> LoadProfile:
        day0 = self.day_origin(t)
        key = (name, day0)
        if key not in self._profile:
            s = self.settings
            self._profile[key] = fit_profile(self.actuals[f"load:{name}_kw"], self.timezone, day0,
                                             s.load_weeks, s.load_day_types)
        return self._profile[key]

    def ev_model(self, t: pd.Timestamp) -> EvModel:
        day0 = self.day_origin(t)
        if day0 not in self._ev:
            weeks = self.settings.ev_weeks
            # the training days plus a margin for the gap test; arrivals are sorted
            lo = bisect.bisect_left(self._arrivals, day0 - pd.Timedelta(weeks=weeks, days=8))
            hi = bisect.bisect_left(self._arrivals, day0)
            self._ev[day0] = fit_ev_model(self.sessions[lo:hi], self.timezone, day0.to_pydatetime(), weeks)
        return self._ev[day0]

    def forecast(self, index: pd.DatetimeIndex) -> pd.DataFrame:
        """`pv:<name>_kw` and `load:<name>_kw` forecasts (kW) on `index`; origin = index[0].

        Raises ValueError when there is no measured load before the origin, or none at a
        time of day the forecast needs."""
        t = index[0]
        cols: dict[str, pd.Series] = {}
        for a in self.arrays:
            clear = self._clear_on(a, index)
            cols[f"pv:{a.name}_kw"] = (clear * self.pv_ratio(a.name, t)).clip(0.0, a.kwp)
        for name in self.load_names:
            s = self.settings
            hist = self.actuals[f"load:{name}_kw"]
            recent = hist[(hist.index < t) & (hist.index >= t - pd.Timedelta(hours=s.load_correction_hours))]
            cols[f"load:{name}_kw"] = forecast_load_kw(self.load_profile(name, t), index, recent,
                                                       s.load_correction_hours, s.load_decay_hours)
        out = pd.DataFrame(cols, index=index)
        for c in out.columns:
            missing = out[c].isna().to_numpy()
            if missing.any():
                raise ValueError(f"{c} forecast from {t.isoformat()}: no history for the local time of "
                                 f"{index[int(missing.argmax())].isoformat()} to build it from")
        return out

    def ev_sessions(self, start_utc: datetime, end_utc: datetime) -> list[EvSessionEvent]:
        """Forecast sessions arriving in [start_utc, end_utc), fitted before start's local day
        (each forecast day's sessions are cached)."""
        start, end = pd.Timestamp(start_utc), pd.Timestamp(end_utc)
        day0 = self.day_origin(start)
        model = self.ev_model(start)
        day = start.tz_convert(self.timezone).date() - timedelta(days=1)
        last = end.tz_convert(self.timezone).date()
        out: list[EvSessionEvent] = []
        while day <= last:
            key = (day0, day)
            if key not in self._ev_days:
                self._ev_days[key] = model.day_sessions(day)
            out += self._ev_days[key]
            day += timedelta(days=1)
        return [s for s in no_overlap(out) if start <= s.arrival_utc < end]
