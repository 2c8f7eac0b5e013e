"""What each asset should do this cycle before limits: the plan's slot targets with the forecast
error taken from the grid meter, or the rule set (the service's fallback and the what-if's
baseline).

Signs: battery net kW > 0 discharging; EV and electrolyser kW >= 0; grid net kW > 0 importing.
A PV limit of None means no curtailment.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pandas as pd

from drivers.setpoints import Setpoints
from ems.config.models import SiteConfig
from ems.control.observe import Observed
from optimizer import Plan

TANK_STOP_FRACTION = 0.95
"""The rules stop an electrolyser when its tank is this full ..."""
TANK_RESTART_FRACTION = 0.85
"""... and start it again once the tank is below this."""


@dataclass
class Wanted(Setpoints):
    """Setpoints the controller wants (what the limits and the safety guard then check)."""

    bound_by: dict[str, list[str]] = field(default_factory=dict)
    """Asset -> the limits and reasons that bound its value this cycle (for the audit log)."""

    def bind(self, asset: str, why: str) -> None:
        self.bound_by.setdefault(asset, []).append(why)


def planned_battery_kw(plan: Plan, step: int, battery: str) -> float:
    s = plan.series
    return float(s[f"{battery}.discharge_kw"][step] - s[f"{battery}.charge_kw"][step])


def plan_targets(plan: Plan, step: int, cfg: SiteConfig, session_on_charger: Mapping[str, str]) -> Wanted:
    """The plan's values for slot ``step``: each charger's session, each electrolyser's stack
    power (0 when the plan has it off), each PV limit where the plan curtails, each battery."""
    s = plan.series
    w = Wanted()
    for c in cfg.ev_charger:
        sid = session_on_charger.get(c.name)
        key = f"ev:{sid}.charge_kw"
        w.ev_kw[c.name] = float(s[key][step]) if sid and key in s else 0.0
    for e in cfg.electrolyser:
        on = s[f"{e.name}.on"][step] > 0.5
        w.electrolyser_kw[e.name] = float(s[f"{e.name}.stack_kw"][step]) if on else 0.0
    for p in cfg.pv:
        curtailed = s.get(f"{p.name}.curtailed_kw", [0.0] * (step + 1))[step]
        w.pv_limit_kw[p.name] = float(s[f"{p.name}.output_kw"][step]) if curtailed > 1e-6 else None
    for b in cfg.battery:
        w.battery_net_kw[b.name] = planned_battery_kw(plan, step, b.name)
    return w


def grid_change_kw(w: Setpoints, obs: Observed, ev_takes_more: bool = True) -> float | None:
    """How much the grid import would rise (kW) if every asset moved from its present power to
    ``w``; None when an asset in ``w`` has no known present power. A vehicle takes at most what
    its charger offers, maybe less (it may be full): with ``ev_takes_more`` False a higher offer
    counts as no change (the export side's worst case), else as taken (the import side's)."""
    delta = 0.0
    for group, now in ((w.ev_kw, obs.ev_now_kw), (w.electrolyser_kw, obs.electrolyser_now_kw)):
        for name, kw in group.items():
            present = now.get(name)
            if present is None:
                return None
            if group is w.ev_kw and not ev_takes_more:
                kw = min(kw, present)
            delta += kw - present
    for name, kw in w.battery_net_kw.items():
        present = obs.battery_now_kw.get(name)
        if present is None:
            return None
        delta -= kw - present
    for name, limit in w.pv_limit_kw.items():
        output = obs.pv_kw.get(name)
        if limit is not None and output is not None and limit < output:
            delta += output - limit  # curtailed PV is import the site no longer avoids
    return delta


def absorb_forecast_error(w: Wanted, plan: Plan, step: int, cfg: SiteConfig, obs: Observed,
                          import_ceiling_kw: float | None) -> None:
    """Give the batteries (shared by capacity) the forecast error: the grid exchange the meter
    would show with every asset at its target, minus the plan's. Less import than planned is
    banked; more import is left to the grid up to ``import_ceiling_kw`` and only the excess is
    covered (None: all of it). Without a meter reading, or without a present power for an asset,
    there is no error estimate and the plan's values stand."""
    if obs.grid_net_kw is None:
        return
    delta = grid_change_kw(w, obs)
    if delta is None:
        for name in w.battery_net_kw:
            w.bind(name, "forecast error unknown: an asset's power is not reported")
        return
    planned_grid = float(plan.series["grid.import_kw"][step] - plan.series["grid.export_kw"][step])
    error_kw = obs.grid_net_kw + delta - planned_grid
    if error_kw > 0 and import_ceiling_kw is not None:
        error_kw = max(0.0, error_kw - max(0.0, import_ceiling_kw - planned_grid))
    total = sum(b.capacity_kwh for b in cfg.battery) or 1.0
    for b in cfg.battery:
        w.battery_net_kw[b.name] += error_kw * b.capacity_kwh / total


def rule_targets(cfg: SiteConfig, obs: Observed, electrolyser_level_kw: Mapping[str, float],
                 electrolyser_running: Mapping[str, bool]) -> Wanted:
    """The rule set: batteries hold the grid at zero exchange (self-consumption), EVs charge at
    full power while a vehicle is plugged in, each electrolyser runs at its rule level
    (``electrolyser_level_kw``: the level that meets its share of the offtake) until its tank is
    :data:`TANK_STOP_FRACTION` full and restarts below :data:`TANK_RESTART_FRACTION` (standby while
    the tank's level is unknown), PV unlimited."""
    w = Wanted()
    for c in cfg.ev_charger:
        plugged = obs.plugged.get(c.name)
        w.ev_kw[c.name] = c.max_power_kw if plugged else 0.0
        if plugged is None:
            w.bind(c.name, "plugged state not reported: no charging")
    for e in cfg.electrolyser:
        fill = obs.tank_fraction.get(e.name)
        level = electrolyser_level_kw.get(e.name, e.min_load_fraction * e.rated_kw)
        if fill is None:
            w.electrolyser_kw[e.name] = 0.0
            w.bind(e.name, "tank level unknown: standby")
        elif fill >= TANK_STOP_FRACTION or (not electrolyser_running.get(e.name, False)
                                            and fill > TANK_RESTART_FRACTION):
            w.electrolyser_kw[e.name] = 0.0
            w.bind(e.name, f"tank {fill:.0%} full: standby")
        else:
            w.electrolyser_kw[e.name] = level
    for p in cfg.pv:
        w.pv_limit_kw[p.name] = None
    if obs.grid_net_kw is None:
        for b in cfg.battery:
            w.battery_net_kw[b.name] = 0.0
            w.bind(b.name, "no grid meter reading: idle")
        return w
    # vehicles are counted at what they draw now: one that takes less than it is offered shows
    # on the meter next cycle, and the batteries follow the meter
    loads = Setpoints(ev_kw=w.ev_kw, electrolyser_kw=w.electrolyser_kw)
    delta = grid_change_kw(loads, obs, ev_takes_more=False)
    known = {b.name: obs.battery_now_kw.get(b.name) for b in cfg.battery}
    if delta is None or any(v is None for v in known.values()):
        for b in cfg.battery:
            w.battery_net_kw[b.name] = 0.0
            w.bind(b.name, "an asset's power is not reported: idle")
        return w
    target_total = sum(v for v in known.values() if v is not None) + obs.grid_net_kw + delta
    total = sum(b.capacity_kwh for b in cfg.battery) or 1.0
    for b in cfg.battery:
        w.battery_net_kw[b.name] = target_total * b.capacity_kwh / total
    return w


def rule_electrolyser_kw(cfg: SiteConfig, frame: pd.DataFrame, step_minutes: int) -> dict[str, float]:
    """The rule set's level per electrolyser (kW): its share of the average hydrogen offtake in
    ``frame`` (the inputs' ``h2:<offtake>_kg`` columns, kg per step) plus 5 %, within its limits;
    0 without offtake."""
    hours = len(frame) * step_minutes / 60.0
    out = {}
    for e in cfg.electrolyser:
        feeding = [x for x in cfg.electrolyser if x.tank == e.tank]
        kg = sum(float(frame[f"h2:{o.name}_kg"].sum()) for o in cfg.hydrogen_offtake if o.tank == e.tank)
        kw = 1.05 * kg / hours * e.kwh_per_kg / len(feeding) if hours > 0 else 0.0
        out[e.name] = min(e.rated_kw, max(e.min_load_fraction * e.rated_kw, kw)) if kw > 0 else 0.0
    return out
