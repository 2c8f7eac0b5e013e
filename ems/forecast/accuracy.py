"""Forecast accuracy on a held-back month: a rolling-origin backtest on the site's own data.

One forecast per local day, made at local midnight, for `horizon_hours`; every model is trained
only on data before its origin. Errors are forecast - actual (kW): a positive bias means the
forecast was too high. MAE, bias and RMSE are given per horizon hour (lead hour 0 = the first
hour after the origin) and over all steps (night steps included for PV). The naive baseline
is "yesterday": the last 24 h measured before the origin, repeated over the horizon. EV: per
local day of the month, the count and energy (kWh) of forecast sessions arriving that day
against the recorded ones.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from ems.config.loader import LoadedSite
from ems.forecast.site import ForecastSettings, SiteForecaster, history_start, measured_history
from ems.inputs.calendar import local_midnight_utc
from ems.inputs.csv_series import SeriesFileError
from ems.inputs.site_inputs import data_limit_utc, data_start_utc


@dataclass(frozen=True)
class Metrics:
    """Errors e = forecast - actual over n values: MAE = mean|e|, bias = mean e, RMSE."""

    mae: float
    bias: float
    rmse: float
    n: int

    @staticmethod
    def of(errors: np.ndarray) -> Metrics:
        e = np.asarray(errors, dtype=float).ravel()
        e = e[np.isfinite(e)]
        if len(e) == 0:
            return Metrics(float("nan"), float("nan"), float("nan"), 0)
        return Metrics(float(np.mean(np.abs(e))), float(np.mean(e)), float(np.sqrt(np.mean(e**2))), len(e))


@dataclass
class SeriesAccuracy:
    """Accuracy of one column (`pv:<name>_kw` or `load:<name>_kw`), kW."""

    column: str
    per_hour: list[Metrics]
    total: Metrics
    baseline_total: Metrics
    baseline_per_hour: list[Metrics]
    mean_actual_kw: float
    """Mean measured value over the evaluated steps (every origin's horizon)."""
    mean_forecast_kw: float
    """Mean forecast over the same steps: bias = mean_forecast_kw - mean_actual_kw."""

    @property
    def skill(self) -> float:
        """1 - MAE / MAE of the yesterday baseline (> 0: better than the baseline)."""
        return 1.0 - self.total.mae / self.baseline_total.mae if self.baseline_total.mae else float("nan")


@dataclass(frozen=True)
class EvAccuracy:
    """Per local day: forecast - recorded sessions arriving that day (count, energy kWh)."""

    days: int
    count: Metrics
    energy_kwh: Metrics
    mean_count_actual: float
    mean_count_forecast: float
    mean_energy_actual_kwh: float
    mean_energy_forecast_kwh: float
    per_weekday_actual: list[float]
    per_weekday_forecast: list[float]


@dataclass
class AccuracyReport:
    site: str
    month: str
    timezone: str
    horizon_hours: int
    origins: list[str]
    series: list[SeriesAccuracy] = field(default_factory=list)
    ev: EvAccuracy | None = None
    baseline: str = "yesterday (the 24 h measured before the origin, repeated)"
    error_sign: str = "forecast - actual (positive bias: forecast too high)"

    def to_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        for s, d in zip(self.series, doc["series"], strict=True):
            d["skill_vs_baseline"] = s.skill
        return doc


def month_bounds(site: LoadedSite, month: str) -> tuple[datetime, datetime]:
    """[local midnight of the 1st, local midnight of the next 1st) in UTC for 'YYYY-MM'."""
    try:
        first = date.fromisoformat(f"{month}-01")
    except ValueError:
        raise ValueError(f"month {month!r}: expected YYYY-MM, e.g. 2020-03") from None
    nxt = date(first.year + (first.month == 12), first.month % 12 + 1, 1)
    tz = site.config.site.timezone
    return local_midnight_utc(first, tz), local_midnight_utc(nxt, tz)


def backtest(site: LoadedSite, month: str, horizon_hours: int = 24,
             settings: ForecastSettings | None = None,
             progress: Callable[[int, int], None] | None = None) -> AccuracyReport:
    """Rolling-origin backtest of PV, load and EV forecasts over the local month `month`.

    Raises ValueError when the month has no history before it or lies outside the data."""
    settings = settings or ForecastSettings()
    cfg = site.config
    tz = cfg.site.timezone
    start, end = month_bounds(site, month)
    first_data, limit = data_start_utc(site), data_limit_utc(site)
    if first_data is not None and start < first_data + timedelta(days=8):
        raise ValueError(f"month {month}: needs at least 8 days of data before it; "
                         f"{cfg.site.name} has data from {cfg.site.data_start}")
    if limit is not None and start >= limit:
        raise ValueError(f"month {month}: after the data of {cfg.site.name} (to {cfg.site.data_end})")
    horizon = timedelta(hours=horizon_hours)
    days: list[datetime] = []
    d = pd.Timestamp(start).tz_convert(tz).date()
    while True:
        origin = local_midnight_utc(d, tz)
        if origin >= end:
            break
        days.append(origin)
        d += timedelta(days=1)
    origins = [o for o in days if limit is None or o + horizon <= limit]
    if not origins:
        raise ValueError(f"month {month}: no day has {horizon_hours} h of data after it")
    data_end = max(max(origins) + horizon, min(end, limit) if limit is not None else end)
    first = history_start(site, start, settings)
    actuals, sessions = measured_history(site, first, data_end)
    forecaster = SiteForecaster(site, actuals, sessions, settings)
    step = pd.Timedelta(minutes=cfg.planning.step_minutes)
    n = int(horizon / step)
    per_hour = int(pd.Timedelta(hours=1) / step)
    lag = int(pd.Timedelta(days=1) / step)
    cols = [c for c in actuals.columns if c.startswith(("pv:", "load:"))]
    errors = {c: np.empty((len(origins), n)) for c in cols}
    actual_sum = dict.fromkeys(cols, 0.0)
    forecast_sum = dict.fromkeys(cols, 0.0)
    base_errors = {c: np.empty((len(origins), n)) for c in cols}
    index = actuals.index
    for i, origin in enumerate(origins):
        k = index.get_indexer(pd.DatetimeIndex([origin]))[0]
        if k < 0:
            raise SeriesFileError(f"accuracy: no data step at {origin.isoformat()}")
        idx = pd.DatetimeIndex(index[k:k + n])
        fc = forecaster.forecast(idx)
        for c in cols:
            actual = actuals[c].to_numpy()[k:k + n]
            errors[c][i] = fc[c].to_numpy() - actual
            actual_sum[c] += float(actual.sum())
            forecast_sum[c] += float(fc[c].sum())
            if k >= lag:
                # the last measured day, repeated: never a value measured after the origin
                base_errors[c][i] = actuals[c].to_numpy()[k - lag + np.arange(n) % lag] - actual
            else:
                base_errors[c][i] = np.nan
        if progress is not None:
            progress(i + 1, len(origins))
    report = AccuracyReport(site=cfg.site.name, month=month, timezone=tz, horizon_hours=horizon_hours,
                            origins=[pd.Timestamp(o).isoformat() for o in origins])
    for c in cols:
        e, b = errors[c], base_errors[c]
        hours = range(n // per_hour)
        report.series.append(SeriesAccuracy(
            column=c,
            per_hour=[Metrics.of(e[:, h * per_hour:(h + 1) * per_hour]) for h in hours],
            total=Metrics.of(e), baseline_total=Metrics.of(b),
            baseline_per_hour=[Metrics.of(b[:, h * per_hour:(h + 1) * per_hour]) for h in hours],
            mean_actual_kw=actual_sum[c] / e.size, mean_forecast_kw=forecast_sum[c] / e.size,
        ))
    if cfg.ev_sessions is not None and cfg.ev_charger:
        report.ev = ev_accuracy(forecaster, [o for o in days if o < end], tz)
    return report


def ev_accuracy(forecaster: SiteForecaster, origins: list[datetime], tz: str) -> EvAccuracy:
    """Forecast made at each local midnight for that day vs the recorded arrivals of that day."""
    fc_n, fc_e, ac_n, ac_e, wd = [], [], [], [], []
    for origin in origins:
        day_end = local_midnight_utc(pd.Timestamp(origin).tz_convert(tz).date() + timedelta(days=1), tz)
        fc = forecaster.ev_sessions(origin, day_end)
        actual = [s for s in forecaster.sessions if origin <= s.arrival_utc < day_end]
        fc_n.append(len(fc))
        fc_e.append(sum(s.energy_kwh for s in fc))
        ac_n.append(len(actual))
        ac_e.append(sum(s.energy_kwh for s in actual))
        wd.append(pd.Timestamp(origin).tz_convert(tz).weekday())
    fn, an = np.array(fc_n, float), np.array(ac_n, float)
    fe, ae = np.array(fc_e), np.array(ac_e)
    w = np.array(wd)

    def per_weekday(v: np.ndarray) -> list[float]:
        return [float(v[w == k].mean()) if (w == k).any() else float("nan") for k in range(7)]

    return EvAccuracy(days=len(origins), count=Metrics.of(fn - an), energy_kwh=Metrics.of(fe - ae),
                      mean_count_actual=float(an.mean()), mean_count_forecast=float(fn.mean()),
                      mean_energy_actual_kwh=float(ae.mean()), mean_energy_forecast_kwh=float(fe.mean()),
                      per_weekday_actual=per_weekday(an), per_weekday_forecast=per_weekday(fn))
