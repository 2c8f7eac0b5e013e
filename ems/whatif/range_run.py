"""What-if options and results, and the helpers a simulated range needs (period, forecast
error, planner size, the rule set's electrolyser level)."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Literal

import numpy as np
import pandas as pd

from ems.config.loader import LoadedSite
from ems.inputs.calendar import local_midnight_utc
from ems.inputs.site_inputs import SiteInputs

Strategy = Literal["optimised", "baseline"]
ForecastKind = Literal["perfect", "noisy", "model"]
"""perfect: the recorded actuals; noisy: actuals x AR(1) errors; model: the site's forecasts
(`ems.forecast.whatif_model`: PV/load forecasts, plugged-in EVs known, future arrivals forecast)."""


@dataclass(frozen=True)
class WhatIfOptions:
    start: date
    """First local day of the period (site timezone)."""
    days: int
    strategy: Strategy = "optimised"
    carbon_price_per_kg: float | None = None
    replan_every_minutes: int | None = None
    forecast: ForecastKind = "perfect"
    seed: int = 0
    relax_integers: bool = False
    workers: int = 1
    """Processes; more than one splits the period into chunks run side by side (see simulate)."""
    warmup_days: int = 3
    control_step_s: int = 60
    """Seconds between two decisions of the controller (the plant steps as often)."""


@dataclass
class SimulationResult:
    strategy: str
    steps: pd.DataFrame
    kpis: dict[str, float]
    solves: int = 0
    solve_wall_ms: list[float] = field(default_factory=list)
    solver_ms: list[float] = field(default_factory=list)
    lp_fallbacks: int = 0
    plans_with_slacks: int = 0
    rebuilds: int = 0

    def solver_summary(self) -> dict[str, float]:
        if not self.solves:
            return {"solves": 0}
        return {
            "solves": self.solves,
            "median_solve_wall_ms": statistics.median(self.solve_wall_ms),
            "median_highs_ms": statistics.median(self.solver_ms),
            "max_solve_wall_ms": max(self.solve_wall_ms),
            "lp_fallbacks": self.lp_fallbacks,
            "plans_with_slacks": self.plans_with_slacks,
            "model_rebuilds": self.rebuilds,
        }


def period_utc(site: LoadedSite, start: date, days: int) -> tuple[datetime, datetime]:
    """[first local midnight, local midnight `days` calendar days later) in UTC: wall-clock days,
    so a DST change gives a 23- or 25-hour day."""
    tz = site.config.site.timezone
    return local_midnight_utc(start, tz), local_midnight_utc(start + timedelta(days=days), tz)


def noisy_window(window: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """Forecast = actual x (1 + error); error is AR(1), 5 % at the first step growing to 25 %."""
    n = len(window)
    eps = np.empty(n)
    eps[0] = rng.normal()
    for k in range(1, n):
        eps[k] = 0.9 * eps[k - 1] + np.sqrt(1 - 0.81) * rng.normal()
    sigma = 0.05 + 0.20 * np.arange(n) / max(1, n - 1)
    out = window.copy()
    for col in out.columns:
        if col.startswith(("pv:", "load:")):
            factor = np.clip(1 + sigma * eps * (1.0 if col.startswith("pv:") else 0.5), 0.0, 2.0)
            out[col] = out[col].to_numpy() * factor
    return out


def max_sessions_per_horizon(inputs: SiteInputs, start: datetime, n_steps: int, replan: int,
                             n_horizon: int) -> int:
    """Most sessions any horizon of the run will see: the planner's EV slots, so the model is
    built once."""
    if not inputs.sessions:
        return 0
    step = timedelta(minutes=inputs.step_minutes)
    arrivals = np.array([s.arrival_utc.timestamp() for s in inputs.sessions])
    departures = np.array([s.departure_utc.timestamp() for s in inputs.sessions])
    best = 0
    for k in range(0, n_steps, replan):
        t0 = (start + k * step).timestamp()
        t1 = t0 + n_horizon * step.total_seconds()
        best = max(best, int(np.sum((arrivals < t1) & (departures > t0))))
    return best
