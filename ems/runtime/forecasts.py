"""PV and load forecasts of a running site (``service.forecast = "model"``), from what it measured.

The history is the site's recorded series (its data files, where they reach) with the service's
own telemetry on top: each PV inverter's ``power_kw`` and each load meter's ``power_net_kw``
(devices named like their assets), averaged onto plan steps. The models are those of
`ems.forecast.site.SiteForecaster` (PV: clear sky × recent performance ratio; load: weekday
profile + recent error). They are refitted once per local day; the recent-error correction reads
the telemetry up to each plan. Columns: ``pv:<name>_kw``, ``load:<name>_kw`` (kW, UTC step starts).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import pandas as pd

from ems.config.loader import LoadedSite
from ems.store import Store

if TYPE_CHECKING:
    from ems.forecast.site import SiteForecaster

log = logging.getLogger("ems.forecast")


def measured_on_steps(store: Store, site: LoadedSite, start: datetime, end: datetime) -> pd.DataFrame:
    """Telemetry of the PV inverters and load meters in [start, end), as step means (kW)."""
    cfg = site.config
    step = f"{cfg.planning.step_minutes}min"
    wanted = {**{(p.name, "power_kw"): f"pv:{p.name}_kw" for p in cfg.pv if p.device is not None},
              **{(ld.name, "power_net_kw"): f"load:{ld.name}_kw" for ld in cfg.load
                 if ld.device is not None}}
    cols: dict[str, pd.Series] = {}
    for (device, point), column in wanted.items():
        rows = store.telemetry(start, end, device)
        rows = rows[(rows["point"] == point) & rows["value"].notna()]
        if rows.empty:
            continue
        series = pd.Series(rows["value"].to_numpy(dtype=float), index=pd.DatetimeIndex(rows["ts"]))
        cols[column] = series.resample(step).mean().dropna()
    return pd.DataFrame(cols)


class RuntimeForecaster:
    """Forecasts for the service's plans. pvlib (for clear-sky PV) is imported on first use only:
    a service planning on series never loads it."""

    def __init__(self, site: LoadedSite, store: Store) -> None:
        self.site = site
        self.store = store
        self._day: pd.Timestamp | None = None
        self._model: SiteForecaster | None = None
        self.started: datetime | None = None
        """First instant the service measured (telemetry before it comes from the data files)."""

    def forecast(self, index: pd.DatetimeIndex, now: datetime) -> pd.DataFrame:
        """PV and load forecasts (kW) on ``index`` made at ``now``. Raises ValueError when there
        is no history to build one from."""
        from ems.forecast.site import ForecastSettings, SiteForecaster, history_start, measured_history

        settings = ForecastSettings()
        fc = self._model
        day = pd.Timestamp(now).tz_convert(self.site.config.site.timezone).floor("D")
        if fc is None or day != self._day:
            # history on the step grid: from whole steps before the plan's first step
            step = pd.Timedelta(minutes=self.site.config.planning.step_minutes)
            origin = index[0].to_pydatetime()
            first = pd.Timestamp(history_start(self.site, origin, settings)).ceil(step).to_pydatetime()
            recorded, sessions = measured_history(self.site, first, origin)
            fc = SiteForecaster(self.site, recorded, sessions, settings)
            self._model, self._day = fc, day
        since = self.started or now - timedelta(hours=settings.load_correction_hours + 1)
        measured = measured_on_steps(self.store, self.site, since, now)
        if not measured.empty:
            # telemetry wins over the files where both say something
            base = fc.actuals
            joined = pd.concat([base.drop(measured.index, errors="ignore"),
                                measured.reindex(columns=base.columns)]).sort_index()
            fc.actuals = joined.fillna(base.reindex(joined.index))
        return fc.forecast(index)
