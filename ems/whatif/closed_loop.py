"""One simulated range, closed loop: the shipped controller decides every control step (default
one minute) from what the plant site's devices report, with the service's plan margin, import
ceiling, reserves and safety guard; the rolling planner re-plans on the plan grid (strategy
"optimised"), or there is no plan and the controller runs its rule set (strategy "baseline").

The figures (per plan step) are the plant's own: grid meter, PV, batteries, EVs, electrolysers,
tanks. The controller and the planner see only device readings.
"""

from __future__ import annotations

import bisect
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from drivers.capabilities import EvChargerReading
from drivers.sim.plant import StepResult
from ems.accounting import (
    HydrogenCounter,
    metered_hydrogen,
    metered_powers,
    note_step_demand,
    roll_billing,
)
from ems.config.loader import LoadedSite
from ems.config.models import SiteConfig
from ems.control.controller import Controller, ControllerSettings, PlanInput, Slot
from ems.control.estimate import StateEstimator, TankEstimator
from ems.control.observe import Snapshot, value
from ems.control.targets import rule_electrolyser_kw
from ems.inputs.site_inputs import (
    EvSessionEvent,
    SiteInputs,
    build_inputs,
    data_limit_utc,
    data_start_utc,
    demand_window_column,
    extend_by_persistence,
)
from ems.planning.pipeline import make_problem
from ems.planning.problem_builder import horizon_steps, initial_state, settings_from
from ems.site.commands import electrolyser_minimums
from ems.site.plant import PlantSite, vehicle_sessions
from ems.whatif.range_run import (
    SimulationResult,
    WhatIfOptions,
    max_sessions_per_horizon,
    noisy_window,
)
from optimizer import RollingPlanner


@dataclass
class RangeResult:
    """One simulated range: the kept steps and what is needed to combine ranges."""

    result: SimulationResult
    ev_delivered_kwh: float
    ev_shortfall_kwh: float


class FrameSeries:
    """PV available, load and offtake at any instant: the inputs' value of the step holding it."""

    def __init__(self, inputs: SiteInputs, cfg: SiteConfig) -> None:
        frame = inputs.frame
        self.index = frame.index
        self.step_h = inputs.step_minutes / 60.0
        self.pv = {p.name: frame[f"pv:{p.name}_kw"].to_numpy() for p in cfg.pv}
        self.load = {ld.name: frame[f"load:{ld.name}_kw"].to_numpy() for ld in cfg.load}
        self.h2 = {o.name: frame[f"h2:{o.name}_kg"].to_numpy() for o in cfg.hydrogen_offtake}
        self._at: datetime | None = None
        self._k = 0

    def _row(self, at: datetime) -> int:
        if at != self._at:
            self._at, self._k = at, max(0, int(self.index.searchsorted(at, side="right")) - 1)
        return self._k

    def pv_available_kw(self, at: datetime) -> dict[str, float]:
        k = self._row(at)
        return {n: float(v[k]) for n, v in self.pv.items()}

    def load_kw(self, at: datetime) -> dict[str, float]:
        k = self._row(at)
        return {n: float(v[k]) for n, v in self.load.items()}

    def offtake_kg_per_h(self, at: datetime) -> dict[str, float]:
        k = self._row(at)
        return {n: float(v[k]) / self.step_h for n, v in self.h2.items()}


class SessionsAt:
    """Which session is at which charger at an instant, from the site's session list (what the
    service learns from the API or its defaults: the vehicle's energy need and departure)."""

    def __init__(self, sessions: list[EvSessionEvent]) -> None:
        self.sessions = sorted(sessions, key=lambda s: s.arrival_utc)
        self.arrivals = [s.arrival_utc for s in self.sessions]
        self.longest = max((s.departure_utc - s.arrival_utc for s in self.sessions), default=timedelta(0))

    def at(self, t: datetime) -> dict[str, EvSessionEvent]:
        lo = bisect.bisect_left(self.arrivals, t - self.longest)
        hi = bisect.bisect_right(self.arrivals, t)
        return {s.charger: s for s in self.sessions[lo:hi] if t < s.departure_utc}


def whatif_controller(site: LoadedSite, control_s: float, frame: pd.DataFrame,
                      plan_steps_valid: int) -> Controller:
    """The shipped controller as the what-if runs it: one decision every ``control_s`` seconds,
    with the service's plan margin, staleness limit and guard (the plant's readings are taken
    just before each decision), the devices' own minimums and the rule set's electrolyser level
    from ``frame`` (the range's inputs)."""
    cfg = site.config
    return Controller(cfg, ControllerSettings(
        period_s=float(control_s), plan_import_margin_fraction=cfg.service.plan_import_margin_fraction,
        staleness_s=cfg.service.stale_after_s,
        electrolyser_min_kw=electrolyser_minimums(cfg),
        electrolyser_rule_kw=rule_electrolyser_kw(cfg, frame, cfg.planning.step_minutes),
        plan_steps_valid=plan_steps_valid,
        previous_plan_valid_h=cfg.service.previous_plan_valid_h))


def _inputs(site: LoadedSite, start: datetime, end: datetime) -> SiteInputs:
    cfg = site.config
    horizon_end = end + timedelta(minutes=cfg.planning.step_minutes * horizon_steps(cfg))
    limit = data_limit_utc(site)
    if limit is not None and end <= limit < horizon_end:
        # the period is inside the data; horizons that look past it see a persistence forecast
        history = max(start - timedelta(days=7), data_start_utc(site) or start)
        return extend_by_persistence(build_inputs(site, history, limit), horizon_end, keep_from_utc=start)
    return build_inputs(site, start, horizon_end)


def simulate_range(site: LoadedSite, opts: WhatIfOptions, start: datetime, keep_from: datetime,
                   end: datetime, progress: Callable[[int, int], None] | None) -> RangeResult:
    """Simulate [start, end) from the configured initial state; keep the steps from `keep_from`."""
    cfg = site.config
    sm = cfg.planning.step_minutes
    step_s = sm * 60
    control_s = opts.control_step_s
    if control_s <= 0 or step_s % control_s:
        raise ValueError(f"control step {control_s} s does not divide the {sm}-minute plan step")
    n_horizon = horizon_steps(cfg)
    inputs = _inputs(site, start, end)
    frame = inputs.frame
    n_steps = int((end - start).total_seconds() // step_s)
    replan = (opts.replan_every_minutes or cfg.planning.replan_every_minutes) // sm
    if replan < 1:
        raise ValueError(f"replan every {opts.replan_every_minutes} min is shorter than a "
                         f"{sm}-minute step")
    settings = dataclasses.replace(settings_from(cfg, opts.carbon_price_per_kg),
                                   relax_integers=opts.relax_integers,
                                   threads=1 if opts.workers > 1 else None)
    site_plant = PlantSite(cfg, FrameSeries(inputs, cfg), start, vehicle_sessions(inputs.sessions),
                           control_s=control_s)
    controller = whatif_controller(site, control_s, frame, replan + 1)
    state = initial_state(cfg)
    tanks = TankEstimator(cfg)
    estimator = StateEstimator(cfg, state, tanks)
    hydrogen = HydrogenCounter.for_site(cfg)
    first = int(frame.index.searchsorted(pd.Timestamp(start)))
    planner = RollingPlanner(ev_slots=max_sessions_per_horizon(inputs, start, n_steps, replan, n_horizon))
    result = SimulationResult(strategy=opts.strategy, steps=pd.DataFrame(), kpis={})
    rng = np.random.default_rng(opts.seed)
    at_charger = SessionsAt(list(inputs.sessions))
    chargers = {c.name: c for c in cfg.ev_charger}
    model = None
    if opts.forecast == "model" and opts.strategy == "optimised":
        from ems.forecast.whatif_model import ModelForecast

        model = ModelForecast(site, inputs, start)
        planner = RollingPlanner(ev_slots=max(planner.ev_slots or 0, model.max_sessions(
            frame.index[first:first + n_steps:replan], n_horizon)))
    n_charges = max(1, len(cfg.grid.demand_charges))  # the "demand_window" column is always there
    columns = {c: frame[c].to_numpy() for c in frame.columns}
    tz = cfg.site.timezone
    ev_energy: dict[str, float] = {}
    """Session -> energy into the vehicle by the charger's power readings × efficiency (kWh)."""
    plan_in = PlanInput(None)
    plan_step0 = 0
    records: list[dict[str, float]] = []
    readings = site_plant.readings()
    dt_h = control_s / 3600.0
    per_step = step_s // control_s
    for k in range(n_steps):
        row = {c: v[first + k] for c, v in columns.items()}
        t = frame.index[first + k].to_pydatetime()
        if k:
            # PV and load step at the plan step's start: the devices show it before the first
            # decision (the service reacts within seconds; one control step late is not a model)
            site_plant.show_now()
            readings = site_plant.readings()
        roll_billing(state, t, tz)
        estimator.observe(readings, t)
        if opts.strategy == "optimised" and (plan_in.plan is None or k - plan_step0 >= replan):
            state.ev_delivered_kwh = dict(ev_energy)
            window = inputs.window(pd.Timestamp(t), n_horizon)
            if opts.forecast == "noisy":
                window = noisy_window(window, rng)
            plan_inputs = inputs
            if model is not None:
                window, plan_inputs = model.replan(pd.Timestamp(t), window)
            problem = make_problem(site, plan_inputs, t, estimator.for_plan(t, sm), settings,
                                   controller.reserves, window=window)
            plan = planner.solve(problem)
            plan_in, plan_step0 = PlanInput(plan), k
            result.solves += 1
            result.solve_wall_ms.append(plan.solver.wall_time_s * 1000)
            result.solver_ms.append(plan.solver.solver_time_s * 1000)
            result.lp_fallbacks += int(plan.solver.used_lp_fallback)
            result.plans_with_slacks += int(bool(plan.slacks))
        counted = tuple(bool(row[demand_window_column(j)]) for j in range(n_charges))
        slot = Slot(float(row["import_limit_kw"]), float(row["export_limit_kw"]), counted,
                    tuple(state.demand_peak_kw(j) for j in range(n_charges)))
        offtake = {o.name: float(row[f"h2:{o.name}_kg"]) / per_step for o in cfg.hydrogen_offtake}
        parts: list[StepResult] = []
        starts_before = sum(e.starts for e in site_plant.plant.electrolysers.values())
        for m in range(per_step):
            now = t + timedelta(seconds=m * control_s)
            present = at_charger.at(now)
            here = {c: s.session_id for c, s in present.items()}
            if plan_in.plan is not None:
                on = here if model is None else model.on_chargers(here, pd.Timestamp(now))
                if on != plan_in.session_on_charger:
                    leaves = {c: s.departure_utc for c, s in present.items()}
                    plan_in = dataclasses.replace(plan_in, session_on_charger=on, departure_utc=leaves)
            snap = Snapshot(now, readings, now, dict(tanks.level_kg))
            sp = controller.step(snap, plan_in, slot).setpoints
            site_plant.apply(sp.battery_net_kw, sp.ev_kw, sp.electrolyser_kw, sp.pv_limit_kw)
            parts.append(site_plant.advance(control_s))
            readings = site_plant.readings()
            for charger, sid in here.items():
                r = readings.get(charger)
                kw = value(r.power_kw) if isinstance(r, EvChargerReading) else None
                if kw is not None:
                    ev_energy[sid] = ev_energy.get(sid, 0.0) + kw * dt_h * chargers[charger].efficiency
            totals, flows = metered_hydrogen(cfg, readings)
            inputs_kw = metered_powers(cfg, readings).electrolyser_kw
            produced = hydrogen.interval_kg(dt_h, inputs_kw, totals, flows)
            tanks.update(readings, produced, offtake)
        rec = _record(parts, row, site_plant, n_charges, sm)
        starts = sum(e.starts for e in site_plant.plant.electrolysers.values())
        rec["electrolyser_starts"] = starts - starts_before
        note_step_demand(state, t, rec["import_kw"], counted, tz)
        records.append(rec)
        if progress is not None:
            progress(k + 1, n_steps)
    site_plant.finish()
    delivered, shortfall = _ev_totals(inputs, site_plant.delivered_kwh, start, keep_from, end)
    steps = pd.DataFrame.from_records(records, index=frame.index[first:first + n_steps])
    steps.index.name = "utc"
    result.steps = steps[steps.index >= pd.Timestamp(keep_from)]
    result.rebuilds = planner.rebuilds
    return RangeResult(result, delivered, shortfall)


def _record(parts: list[StepResult], row: dict[str, object], site_plant: PlantSite, n_charges: int,
            step_minutes: int) -> dict[str, float]:
    """One plan step's figures from its control steps: powers averaged (kW), kg summed."""
    n = len(parts)

    def mean(get: Callable[[StepResult], float]) -> float:
        return sum(get(p) for p in parts) / n

    rec: dict[str, float] = {
        "import_kw": mean(lambda p: p.grid_import_kw), "export_kw": mean(lambda p: p.grid_export_kw),
        "import_price_per_kwh": float(row["import_price_per_kwh"]),  # type: ignore[arg-type]
        "export_price_per_kwh": float(row["export_price_per_kwh"]),  # type: ignore[arg-type]
        "carbon_g_per_kwh": float(row["carbon_g_per_kwh"]),  # type: ignore[arg-type]
        **{c: float(row[c]) for c in ("carbon_average_g_per_kwh", "carbon_marginal_g_per_kwh")  # type: ignore[arg-type]
           if c in row},
        "import_limit_kw": float(row["import_limit_kw"]),  # type: ignore[arg-type]
        "demand_window": bool(row["demand_window"]),
        **{demand_window_column(j): bool(row[demand_window_column(j)]) for j in range(1, n_charges)},
        "pv_kw": mean(lambda p: sum(p.pv_kw.values())),
        "pv_curtailed_kw": mean(lambda p: sum(p.pv_curtailed_kw.values())),
        "load_kw": mean(lambda p: sum(p.load_kw.values())),
        "ev_kw": mean(lambda p: sum(p.ev_kw.values())),
        "electrolyser_kw": mean(lambda p: sum(p.electrolyser_kw.values())),
        "hydrogen_kg": sum(sum(p.hydrogen_kg.values()) for p in parts),
        "hydrogen_unmet_kg": sum(sum(p.offtake_unmet_kg.values()) for p in parts),
    }
    plant = site_plant.plant
    for name in plant.batteries:
        rec[f"{name}.net_kw"] = mean(lambda p, name=name: p.battery_net_kw.get(name, 0.0))  # type: ignore[misc]
        rec[f"{name}.soc_kwh"] = plant.batteries[name].soc_kwh
    for name, tank in plant.tanks.items():
        rec[f"{name}.level_kg"] = tank.level_kg
    dt_h = step_minutes / 60.0 / n
    rec["battery_throughput_kwh"] = sum(abs(v) for p in parts for v in p.battery_net_kw.values()) * dt_h
    return rec


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
