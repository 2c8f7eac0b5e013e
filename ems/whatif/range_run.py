"""One simulated range: the plant steps every slot while the rolling planner (or the
rule-based baseline) decides the setpoints."""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Literal

import numpy as np
import pandas as pd

from drivers.sim.plant import Plant, Vehicle
from ems.config.loader import LoadedSite
from ems.control.dispatch import StepInputs, baseline, enforce_grid_limits, follow_plan
from ems.inputs.calendar import local_midnight_utc
from ems.inputs.site_inputs import (
    SiteInputs,
    build_inputs,
    data_limit_utc,
    data_start_utc,
    demand_window_column,
    extend_by_persistence,
)
from ems.planning.problem_builder import (
    billing_period,
    build_problem,
    horizon_steps,
    initial_state,
    settings_from,
)
from ems.planning.state import SiteState
from ems.whatif.plant_setup import plant_from_config
from optimizer import Plan, RollingPlanner

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


def session_steps(inputs: SiteInputs, start: datetime,
                  n_steps: int) -> dict[int, dict[str, tuple[str, float]]]:
    """For each step: charger -> (session plugged there, fraction of the step it is present)."""
    step_s = inputs.step_minutes * 60.0
    out: dict[int, dict[str, tuple[str, float]]] = {}
    for s in inputs.sessions:
        a = (s.arrival_utc - start).total_seconds() / step_s
        d = (s.departure_utc - start).total_seconds() / step_s
        for k in range(max(0, int(a)), min(n_steps, int(np.ceil(d)))):
            frac = max(0.0, min(k + 1.0, d) - max(float(k), a))
            if frac > 0 and frac >= out.get(k, {}).get(s.charger, ("", 0.0))[1]:
                out.setdefault(k, {})[s.charger] = (s.session_id, frac)
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


def flat_electrolyser_kw(site: LoadedSite, inputs: SiteInputs) -> dict[str, float]:
    """Baseline level per electrolyser: its share of the average offtake, within its limits."""
    cfg = site.config
    hours = len(inputs.frame) * inputs.step_minutes / 60.0
    out = {}
    for e in cfg.electrolyser:
        feeding = [x for x in cfg.electrolyser if x.tank == e.tank]
        kg = sum(inputs.frame[f"h2:{o.name}_kg"].sum() for o in cfg.hydrogen_offtake if o.tank == e.tank)
        kw = 1.05 * kg / hours * e.kwh_per_kg / len(feeding)
        out[e.name] = min(e.rated_kw, max(e.min_load_fraction * e.rated_kw, kw)) if kw > 0 else 0.0
    return out


@dataclass
class RangeResult:
    """One simulated range: the kept steps and what is needed to combine ranges."""

    result: SimulationResult
    ev_delivered_kwh: float
    ev_shortfall_kwh: float


def simulate_range(site: LoadedSite, opts: WhatIfOptions, start: datetime, keep_from: datetime,
                    end: datetime, progress: Callable[[int, int], None] | None) -> RangeResult:
    """Simulate [start, end) from the configured initial state; keep the steps from `keep_from`."""
    cfg = site.config
    sm = cfg.planning.step_minutes
    dt_h = sm / 60.0
    n_horizon = horizon_steps(cfg)
    horizon_end = end + timedelta(minutes=sm * n_horizon)
    limit = data_limit_utc(site)
    if limit is not None and end <= limit < horizon_end:
        # the period is inside the data; horizons that look past it see a persistence forecast
        history = max(start - timedelta(days=7), data_start_utc(site) or start)
        inputs = extend_by_persistence(build_inputs(site, history, limit), horizon_end,
                                       keep_from_utc=start)
    else:
        inputs = build_inputs(site, start, horizon_end)
    frame = inputs.frame
    n_steps = int((end - start).total_seconds() // 60 // sm)
    replan = (opts.replan_every_minutes or cfg.planning.replan_every_minutes) // sm
    if replan < 1:
        raise ValueError(f"replan every {opts.replan_every_minutes} min is shorter than a "
                         f"{sm}-minute step")
    settings = dataclasses.replace(settings_from(cfg, opts.carbon_price_per_kg),
                                   relax_integers=opts.relax_integers,
                                   threads=1 if opts.workers > 1 else None)
    plant = plant_from_config(cfg)
    state: SiteState = initial_state(cfg)
    planner = RollingPlanner(ev_slots=max_sessions_per_horizon(inputs, start, n_steps, replan, n_horizon))
    result = SimulationResult(strategy=opts.strategy, steps=pd.DataFrame(), kpis={})
    rng = np.random.default_rng(opts.seed)
    plugged = session_steps(inputs, start, n_steps)
    sessions = {s.session_id: s for s in inputs.sessions}
    model = None
    if opts.forecast == "model" and opts.strategy == "optimised":
        from ems.forecast.whatif_model import ModelForecast

        model = ModelForecast(site, inputs, start)
        planner = RollingPlanner(ev_slots=max(planner.ev_slots or 0,
                                              model.max_sessions(frame.index[:n_steps:replan], n_horizon)))
    flat_kw = flat_electrolyser_kw(site, inputs) if opts.strategy == "baseline" else {}
    pv_names = [p.name for p in cfg.pv]
    load_names = [ld.name for ld in cfg.load]
    ev_delivered: dict[str, float] = {}
    records: list[dict[str, float]] = []
    plan: Plan | None = None
    plan_step0 = 0
    forecast_cols: dict[str, np.ndarray] = {}
    local_months = frame.index[:n_steps].tz_convert(cfg.site.timezone).strftime("%Y-%m")
    n_charges = max(1, len(cfg.grid.demand_charges))  # the "demand_window" column is always there
    previous: dict[str, str] = {}
    columns = {c: frame[c].to_numpy() for c in frame.columns}
    starts_before = 0
    for k in range(n_steps):
        t = frame.index[k]
        row = {c: v[k] for c, v in columns.items()}
        present = plugged.get(k, {})
        here = {charger: sid for charger, (sid, _) in present.items()}
        for charger in cfg.ev_charger:
            sid = here.get(charger.name)
            c = plant.chargers[charger.name]
            c.presence = present[charger.name][1] if sid else 0.0
            if previous.get(charger.name) != sid:
                if c.vehicle is not None:
                    ev_delivered[c.vehicle.session_id] = c.vehicle.delivered_kwh
                c.vehicle = (Vehicle(sid, sessions[sid].energy_kwh, ev_delivered.get(sid, 0.0))
                             if sid else None)
        previous = here
        if opts.strategy == "optimised" and (plan is None or k - plan_step0 >= replan):
            _sync_state(state, plant, ev_delivered, cfg.site.timezone, t)
            window = inputs.window(t, n_horizon)
            if opts.forecast == "noisy":
                window = noisy_window(window, rng)
            plan_inputs = inputs
            if model is not None:
                window, plan_inputs = model.replan(t, window)
            problem = build_problem(site, plan_inputs, t.to_pydatetime(), state, settings,
                                    window=window)
            plan = planner.solve(problem)
            plan_step0 = k
            forecast_cols = {c: window[c].to_numpy() for c in window.columns
                             if c.startswith(("pv:", "load:"))}
            result.solves += 1
            result.solve_wall_ms.append(plan.solver.wall_time_s * 1000)
            result.solver_ms.append(plan.solver.solver_time_s * 1000)
            result.lp_fallbacks += int(plan.solver.used_lp_fallback)
            result.plans_with_slacks += int(bool(plan.slacks))
        pv_actual = {n: float(row[f"pv:{n}_kw"]) for n in pv_names}
        load_actual = {n: float(row[f"load:{n}_kw"]) for n in load_names}
        if plan is not None:
            j = k - plan_step0
            pv_fc = {n: float(forecast_cols[f"pv:{n}_kw"][j]) for n in pv_names}
            load_fc = {n: float(forecast_cols[f"load:{n}_kw"][j]) for n in load_names}
        else:
            pv_fc, load_fc = pv_actual, load_actual
        step_in = StepInputs(pv_actual, load_actual, pv_fc, load_fc,
                             float(row["import_limit_kw"]), float(row["export_limit_kw"]))
        if plan is not None:
            sp = follow_plan(plan, k - plan_step0, step_in, plant,
                             here if model is None else model.on_chargers(here, t))
        else:
            sp = baseline(step_in, plant, dt_h, flat_kw)
        enforce_grid_limits(sp, step_in, plant, dt_h)
        offtake = {o.name: float(row[f"h2:{o.name}_kg"]) for o in cfg.hydrogen_offtake}
        res = plant.step(dt_h, pv_actual, load_actual, offtake, sp)
        month = local_months[k]
        if state.billing_period != month:
            state.billing_period, state.peak_import_kw, state.demand_peaks_kw = month, 0.0, {}
        for j in range(n_charges):
            if row[demand_window_column(j)]:
                state.note_demand(j, res.grid_import_kw)
        rec = {
            "import_kw": res.grid_import_kw, "export_kw": res.grid_export_kw,
            "import_price_per_kwh": float(row["import_price_per_kwh"]),
            "export_price_per_kwh": float(row["export_price_per_kwh"]),
            "carbon_g_per_kwh": float(row["carbon_g_per_kwh"]),
            **{c: float(row[c]) for c in ("carbon_average_g_per_kwh", "carbon_marginal_g_per_kwh")
               if c in row},
            "import_limit_kw": float(row["import_limit_kw"]),
            "demand_window": bool(row["demand_window"]),
            **{demand_window_column(j): bool(row[demand_window_column(j)]) for j in range(1, n_charges)},
            "pv_kw": sum(res.pv_kw.values()), "pv_curtailed_kw": sum(res.pv_curtailed_kw.values()),
            "load_kw": sum(res.load_kw.values()), "ev_kw": sum(res.ev_kw.values()),
            "electrolyser_kw": sum(res.electrolyser_kw.values()),
            "hydrogen_kg": sum(res.hydrogen_kg.values()),
            "hydrogen_unmet_kg": sum(res.offtake_unmet_kg.values()),
        }
        for n, p in res.battery_net_kw.items():
            rec[f"{n}.net_kw"] = p
            rec[f"{n}.soc_kwh"] = plant.batteries[n].soc_kwh
        for n, tank in plant.tanks.items():
            rec[f"{n}.level_kg"] = tank.level_kg
        rec["battery_throughput_kwh"] = sum(abs(p) for p in res.battery_net_kw.values()) * dt_h
        starts_now = sum(e.starts for e in plant.electrolysers.values())
        rec["electrolyser_starts"] = starts_now - starts_before
        starts_before = starts_now
        records.append(rec)
        if progress is not None:
            progress(k + 1, n_steps)
    for c in plant.chargers.values():
        if c.vehicle is not None:
            ev_delivered[c.vehicle.session_id] = c.vehicle.delivered_kwh
    delivered, shortfall = _ev_totals(inputs, ev_delivered, start, keep_from, end)
    steps = pd.DataFrame.from_records(records, index=frame.index[:n_steps])
    steps.index.name = "utc"
    result.steps = steps[steps.index >= pd.Timestamp(keep_from)]
    result.rebuilds = planner.rebuilds
    return RangeResult(result, delivered, shortfall)


def _sync_state(state: SiteState, plant: Plant, ev_delivered: dict[str, float], tz: str,
                t: pd.Timestamp) -> None:
    """The planner's view of the plant at instant `t`."""
    state.battery_soc_kwh = {n: b.soc_kwh for n, b in plant.batteries.items()}
    state.tank_kg = {n: tk.level_kg for n, tk in plant.tanks.items()}
    state.electrolyser_on = {n: e.on for n, e in plant.electrolysers.items()}
    state.electrolyser_steps_in_state = {n: e.steps_in_state for n, e in plant.electrolysers.items()}
    delivered = dict(ev_delivered)
    for c in plant.chargers.values():
        if c.vehicle is not None:
            delivered[c.vehicle.session_id] = c.vehicle.delivered_kwh
    state.ev_delivered_kwh = delivered
    if state.billing_period != billing_period(t.to_pydatetime(), tz):
        state.billing_period, state.peak_import_kw = billing_period(t.to_pydatetime(), tz), 0.0
        state.demand_peaks_kw = {}


def _ev_totals(inputs: SiteInputs, delivered: dict[str, float], start: datetime,
               keep_from: datetime, end: datetime) -> tuple[float, float]:
    """Energy delivered to, and missing from, sessions simulated from their arrival that
    departed within the kept part of the range."""
    total, short = 0.0, 0.0
    for s in inputs.sessions:
        if keep_from < s.departure_utc <= end and s.arrival_utc >= start:
            got = delivered.get(s.session_id, 0.0)
            total += got
            short += max(0.0, s.energy_kwh - got)
    return total, short
