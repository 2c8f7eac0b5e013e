"""Build the optimiser's Problem for one horizon from config, inputs and state."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

import pandas as pd

from ems.accounting import billing_period
from ems.config.loader import LoadedSite
from ems.config.models import SiteConfig
from ems.inputs.site_inputs import EvSessionEvent, SiteInputs, demand_window_column
from ems.planning.state import SiteState
from optimizer import (
    Battery,
    Charger,
    Electrolyser,
    EvSession,
    Grid,
    HydrogenOfftake,
    HydrogenTank,
    Load,
    ObjectiveMode,
    Problem,
    Pv,
    Solver,
    TimeGrid,
)
from optimizer import DemandCharge as DemandChargeSpec


@dataclass(frozen=True)
class PlanSettings:
    """Choices a run may change without editing the config."""

    objective: ObjectiveMode
    carbon_price_per_kg: float
    relax_integers: bool = False
    threads: int | None = None


def settings_from(cfg: SiteConfig, carbon_price: float | None = None) -> PlanSettings:
    if carbon_price is not None:
        return PlanSettings(ObjectiveMode.CARBON_PRICE if carbon_price > 0 else ObjectiveMode.COST,
                            carbon_price)
    return PlanSettings(ObjectiveMode(cfg.planning.objective), cfg.planning.carbon_price_per_kg)


def ceil_to_step(t: datetime, step_minutes: int) -> datetime:
    ts = pd.Timestamp(t)
    return ts.ceil(f"{step_minutes}min").to_pydatetime()


def floor_to_step(t: datetime, step_minutes: int) -> datetime:
    ts = pd.Timestamp(t)
    return ts.floor(f"{step_minutes}min").to_pydatetime()


def plugged_steps(session: EvSessionEvent, start: datetime, n_steps: int, step_minutes: int) -> list[float]:
    """Fraction (0..1) of each step the vehicle is plugged in."""
    step_s = step_minutes * 60.0
    a = (session.arrival_utc - start).total_seconds() / step_s
    d = (session.departure_utc - start).total_seconds() / step_s
    return [max(0.0, min(k + 1.0, d) - max(float(k), a)) for k in range(n_steps)]


def horizon_steps(cfg: SiteConfig) -> int:
    return int(cfg.planning.horizon_hours * 60 // cfg.planning.step_minutes)


def build_problem(site: LoadedSite, inputs: SiteInputs, at_utc: datetime, state: SiteState,
                  settings: PlanSettings, n_steps: int | None = None,
                  window: pd.DataFrame | None = None) -> Problem:
    """The Problem for the horizon starting at `at_utc` (a step boundary).

    `window` replaces the inputs' rows for the horizon (e.g. a forecast with errors)."""
    cfg = site.config
    n = n_steps or horizon_steps(cfg)
    sm = cfg.planning.step_minutes
    start = pd.Timestamp(at_utc).tz_convert("UTC")
    w = inputs.window(start, n) if window is None else window
    step_h = sm / 60.0
    grid = TimeGrid(start_utc=start.to_pydatetime(), step_minutes=sm, n_steps=n)
    period = billing_period(at_utc, cfg.site.timezone)
    same_period = state.billing_period == period
    charges = cfg.grid.demand_charges
    # One charge (or none) uses the single-charge fields; several go in demand_charges.
    single = len(charges) <= 1
    several = [] if single else [
        DemandChargeSpec(dc.price_per_kw, [bool(x) for x in w[demand_window_column(k)]],
                         state.demand_peak_kw(k) if same_period else 0.0, dc.name or f"demand_{k}")
        for k, dc in enumerate(charges)]
    connection = Grid(
        import_limit_kw=w["import_limit_kw"].tolist(),
        export_limit_kw=w["export_limit_kw"].tolist(),
        import_price_per_kwh=w["import_price_per_kwh"].tolist(),
        export_price_per_kwh=w["export_price_per_kwh"].tolist(),
        carbon_intensity_g_per_kwh=w["carbon_g_per_kwh"].tolist(),
        demand_charge_per_kw=charges[0].price_per_kw if charges and single else 0.0,
        demand_window=[bool(x) for x in w["demand_window"]] if single else None,
        peak_so_far_kw=state.demand_peak_kw(0) if same_period and single else 0.0,
        demand_charges=several,
    )
    pv = [Pv(p.name, w[f"pv:{p.name}_kw"].tolist(), p.curtailable) for p in cfg.pv]
    loads = [Load(ld.name, w[f"load:{ld.name}_kw"].tolist()) for ld in cfg.load]
    batteries = [
        Battery(
            name=b.name, capacity_kwh=b.capacity_kwh, max_charge_kw=b.max_charge_kw,
            max_discharge_kw=b.max_discharge_kw,
            initial_soc_kwh=state.battery_soc_kwh.get(b.name, b.initial_soc_fraction * b.capacity_kwh),
            charge_efficiency=b.charge_efficiency, discharge_efficiency=b.discharge_efficiency,
            soc_min_fraction=b.soc_min_fraction, soc_max_fraction=b.soc_max_fraction,
            degradation_cost_per_kwh=b.degradation_cost_per_kwh,
            allow_grid_charging=b.allow_grid_charging,
        )
        for b in cfg.battery
    ]
    chargers = {c.name: c for c in cfg.ev_charger}
    horizon_end = start.to_pydatetime() + timedelta(minutes=sm * n)
    sessions = []
    for s in inputs.sessions:
        if s.departure_utc <= start.to_pydatetime() or s.arrival_utc >= horizon_end:
            continue
        plugged = plugged_steps(s, start.to_pydatetime(), n, sm)
        if not any(plugged):
            continue
        ch = chargers[s.charger]
        remaining = max(0.0, s.energy_kwh - state.ev_delivered_kwh.get(s.session_id, 0.0))
        after_h = max(0.0, (s.departure_utc - horizon_end).total_seconds() / 3600)
        sessions.append(EvSession(
            name=s.session_id, charger=s.charger, plugged=plugged, energy_needed_kwh=remaining,
            max_charge_kw=ch.max_power_kw, min_charge_kw=ch.min_power_kw,
            max_discharge_kw=ch.max_discharge_kw if ch.v2g else 0.0, efficiency=ch.efficiency,
            hours_plugged_after_horizon=after_h,
        ))
    electrolysers = [
        Electrolyser(
            name=e.name, rated_kw=e.rated_kw, min_load_fraction=e.min_load_fraction,
            kwh_per_kg=e.kwh_per_kg, standby_kw=e.standby_kw, startup_cost=e.startup_cost,
            min_up_steps=max(1, math.ceil(e.min_up_hours / step_h - 1e-9)),
            min_down_steps=max(1, math.ceil(e.min_down_hours / step_h - 1e-9)),
            initially_on=state.electrolyser_on.get(e.name, False),
            steps_in_state=state.electrolyser_steps_in_state.get(e.name, 1_000_000),
            tank=e.tank,
        )
        for e in cfg.electrolyser
    ]
    tanks = [HydrogenTank(t.name, t.capacity_kg, t.floor_kg, state.tank_kg.get(t.name, t.initial_kg),
                          t.terminal_value_per_kg) for t in cfg.hydrogen_tank]
    offtakes = [HydrogenOfftake(o.name, w[f"h2:{o.name}_kg"].tolist(), o.tank) for o in cfg.hydrogen_offtake]
    return Problem(
        grid=grid, connection=connection, pv=pv, loads=loads, batteries=batteries,
        chargers=[Charger(c.name, c.max_power_kw) for c in cfg.ev_charger],
        ev_sessions=sessions, electrolysers=electrolysers, tanks=tanks, offtakes=offtakes,
        objective=settings.objective, carbon_price_per_kg=settings.carbon_price_per_kg,
        solver=Solver(
            time_limit_s=cfg.planning.time_limit_s, mip_rel_gap=cfg.planning.mip_rel_gap,
            relax_integers=settings.relax_integers, threads=settings.threads,
            integer_horizon_steps=(None if cfg.planning.integer_horizon_hours is None
                                   else int(cfg.planning.integer_horizon_hours * 60 // sm)),
        ),
    )


def initial_state(cfg: SiteConfig) -> SiteState:
    return SiteState(
        battery_soc_kwh={b.name: b.initial_soc_fraction * b.capacity_kwh for b in cfg.battery},
        tank_kg={t.name: t.initial_kg for t in cfg.hydrogen_tank},
        electrolyser_on={e.name: False for e in cfg.electrolyser},
        electrolyser_steps_in_state={e.name: 1_000_000 for e in cfg.electrolyser},
    )
