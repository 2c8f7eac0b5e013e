"""`ems whatif --forecast model`: what the planner sees when it plans on the site's forecasts.

At each re-plan instant t the planner's window gets PV and load from `SiteForecaster` (trained
only on data before t) while the plant keeps simulating the recorded actuals. EV sessions:

- vehicles plugged in at t are known, with their recorded departure and energy (as if the
  driver had entered them);
- arrivals after t come from the EV forecast (`fc:<charger>@<local time>` sessions), not from
  the recorded sessions. A forecast session on a charger that a known vehicle occupies at its
  arrival is dropped.

Until the next re-plan, a vehicle that arrived after t is charged as the plan's forecast session
on its charger says (the plan's EV power for that charger), or not at all if the plan has none.
"""

from __future__ import annotations

import bisect
import dataclasses
from collections import defaultdict
from datetime import datetime, timedelta

import pandas as pd

from ems.config.loader import LoadedSite
from ems.forecast.site import ForecastSettings, SiteForecaster
from ems.inputs.site_inputs import EvSessionEvent, SiteInputs


class ModelForecast:
    """Planner inputs from forecasts for one simulated range (built inside the worker)."""

    def __init__(self, site: LoadedSite, inputs: SiteInputs, start_utc: datetime,
                 settings: ForecastSettings | None = None) -> None:
        self.inputs = inputs
        self.step = timedelta(minutes=inputs.step_minutes)
        self.forecaster = SiteForecaster.for_period(site, start_utc, inputs.frame, inputs.sessions, settings)
        if self.forecaster.history_before(pd.Timestamp(start_utc)) is None:
            raise ValueError(f"forecast 'model': no measured data of {site.config.site.name} before "
                             f"{start_utc.isoformat()} to train on")
        self.ev = bool(site.config.ev_charger) and site.config.ev_sessions is not None
        self._recorded = sorted(inputs.sessions, key=lambda s: s.arrival_utc)
        self._arrivals = [s.arrival_utc for s in self._recorded]
        self._longest = max((s.departure_utc - s.arrival_utc for s in self._recorded),
                            default=timedelta(0))
        self._plan_sessions: dict[str, list[EvSessionEvent]] = {}
        self._plan_ids: set[str] = set()

    def sessions_at(self, t: pd.Timestamp, n_steps: int) -> list[EvSessionEvent]:
        """The planner's sessions at re-plan instant `t` for `n_steps` steps: the vehicles
        plugged in at `t` (recorded), then the forecast arrivals after `t`."""
        at = t.to_pydatetime()
        end = at + n_steps * self.step
        lo = bisect.bisect_left(self._arrivals, at - self._longest)
        hi = bisect.bisect_right(self._arrivals, at)
        known = [s for s in self._recorded[lo:hi] if at < s.departure_utc]
        busy = {s.charger: s.departure_utc for s in known}
        future = [s for s in self.forecaster.ev_sessions(at, end)
                  if s.arrival_utc > at and busy.get(s.charger, s.arrival_utc) <= s.arrival_utc]
        return known + future

    def max_sessions(self, replans: pd.DatetimeIndex, n_steps: int) -> int:
        """Most sessions any of these re-plans gives the planner (its EV slots, so that the
        model is built once)."""
        if not self.ev:
            return 0
        return max((len(self.sessions_at(t, n_steps)) for t in replans), default=0)

    def replan(self, t: pd.Timestamp, window: pd.DataFrame) -> tuple[pd.DataFrame, SiteInputs]:
        """The window with forecast `pv:`/`load:` columns (kW), and inputs whose sessions are the
        vehicles plugged in at `t` plus the forecast arrivals in the window."""
        fc = self.forecaster.forecast(pd.DatetimeIndex(window.index))
        out = window.copy()
        for c in fc.columns:
            out[c] = fc[c].to_numpy()
        if not self.ev:
            return out, self.inputs
        sessions = self.sessions_at(t, len(window))
        by_charger: dict[str, list[EvSessionEvent]] = defaultdict(list)
        for s in sessions:
            by_charger[s.charger].append(s)
        self._plan_sessions = dict(by_charger)
        self._plan_ids = {s.session_id for s in sessions}
        return out, dataclasses.replace(self.inputs, sessions=sessions)

    def on_chargers(self, here: dict[str, str], t: pd.Timestamp) -> dict[str, str]:
        """Charger -> the plan's session to follow for the vehicles plugged in now (`here`):
        the vehicle's own session when the plan knows it, else the forecast session on that
        charger that covers `t` (dropped when none)."""
        if not self.ev:
            return here
        out = {}
        at = t.to_pydatetime()
        for charger, sid in here.items():
            if sid in self._plan_ids:
                out[charger] = sid
                continue
            match = next((s for s in self._plan_sessions.get(charger, [])
                          if s.arrival_utc <= at + self.step and s.departure_utc > at), None)
            if match is not None:
                out[charger] = match.session_id
        return out
