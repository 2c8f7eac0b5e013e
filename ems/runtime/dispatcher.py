"""The fast loop's arithmetic: wanted power per asset for this instant, from the current plan slot
(mode "auto") or from rules (mode "fallback"), corrected by the grid meter so the import and export
limits hold whatever the plan says.

Signs: battery net kW > 0 discharging; EV and electrolyser kW >= 0 consumed; grid net kW > 0
importing. A PV limit of None means no curtailment.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from drivers.capabilities import CapabilityReading, ElectrolyserReading
from drivers.sim.plant import Setpoints
from ems.config.models import ElectrolyserConfig, SiteConfig
from optimizer import Plan


@dataclass
class Measured:
    """What the meters and devices say now (None: missing)."""

    grid_net_kw: float | None
    battery_net_kw: dict[str, float | None]
    ev_kw: dict[str, float | None]
    electrolyser_kw: dict[str, float | None]
    battery_soc_fraction: dict[str, float | None]
    plugged: dict[str, bool]
    """Charger -> a vehicle is plugged in."""
    tank_fraction: dict[str, float | None] = field(default_factory=dict)
    """Electrolyser -> fill of the tank it feeds (0..1), when known."""
    pv_kw: dict[str, float | None] = field(default_factory=dict)


def electrolyser_input_kw(cfg: ElectrolyserConfig, reading: CapabilityReading | None) -> float | None:
    """Electrical input of an electrolyser (kW): its power reading; else, for a device with no
    power point (Enapter), its hydrogen flow times the configured kWh per kg while it produces,
    its standby draw while idle or in standby, 0 when halted; None when nothing is known."""
    if not isinstance(reading, ElectrolyserReading):
        return None
    if reading.power_kw.value is not None:
        return float(reading.power_kw.value)
    state = reading.state.value
    flow = reading.h2_flow_kg_per_h.value
    if flow is not None and math.isfinite(flow) and state not in ("idle", "standby", "halted"):
        return max(0.0, float(flow)) * cfg.kwh_per_kg
    if state == "halted":
        return 0.0
    if state in ("idle", "standby"):
        return cfg.standby_kw
    return None


@dataclass
class Wanted(Setpoints):
    """Setpoints the dispatcher wants (what the safety guard then checks)."""

    bound_by: dict[str, list[str]] = field(default_factory=dict)
    """Asset -> limits that bound its value this cycle (for the audit log)."""

    def bind(self, asset: str, why: str) -> None:
        self.bound_by.setdefault(asset, []).append(why)


def from_plan(plan: Plan, step: int, cfg: SiteConfig, measured: Measured,
              session_on_charger: dict[str, str], import_ceiling_kw: float | None = None) -> Wanted:
    """The plan's slot targets, with the forecast error (measured minus planned grid exchange)
    absorbed by the batteries, shared by capacity. Less import than planned is banked (the
    batteries charge more or discharge less). More import than planned is left to the grid up to
    ``import_ceiling_kw`` (e.g. the import limit, or the billing period's demand peak), and only
    the excess is covered by the batteries: their energy is kept for the limits the plan counted
    on. None: the batteries absorb all of it."""
    s = plan.series
    w = Wanted()
    for c in cfg.ev_charger:
        sid = session_on_charger.get(c.name)
        key = f"ev:{sid}.charge_kw"
        w.ev_kw[c.name] = s[key][step] if sid and key in s else 0.0
    for e in cfg.electrolyser:
        on = s[f"{e.name}.on"][step] > 0.5
        w.electrolyser_kw[e.name] = s[f"{e.name}.stack_kw"][step] if on else 0.0
    for p in cfg.pv:
        curtailed = s.get(f"{p.name}.curtailed_kw", [0.0] * (step + 1))[step]
        w.pv_limit_kw[p.name] = s[f"{p.name}.output_kw"][step] if curtailed > 1e-6 else None
    planned_grid = s["grid.import_kw"][step] - s["grid.export_kw"][step]
    error_kw = 0.0
    if measured.grid_net_kw is not None:
        # what the grid would do with every asset at its planned value, minus the plan's grid
        delta = 0.0
        for b in cfg.battery:
            now = measured.battery_net_kw.get(b.name)
            planned = s[f"{b.name}.discharge_kw"][step] - s[f"{b.name}.charge_kw"][step]
            delta -= planned - (now or 0.0)
        for name, kw in w.ev_kw.items():
            delta += kw - (measured.ev_kw.get(name) or 0.0)
        for name, kw in w.electrolyser_kw.items():
            delta += kw - (measured.electrolyser_kw.get(name) or 0.0)
        error_kw = measured.grid_net_kw + delta - planned_grid
        if error_kw > 0 and import_ceiling_kw is not None:
            error_kw = max(0.0, error_kw - max(0.0, import_ceiling_kw - planned_grid))
    total = sum(b.capacity_kwh for b in cfg.battery) or 1.0
    for b in cfg.battery:
        planned = s[f"{b.name}.discharge_kw"][step] - s[f"{b.name}.charge_kw"][step]
        w.battery_net_kw[b.name] = planned + error_kw * b.capacity_kwh / total
    return w


def fallback(cfg: SiteConfig, measured: Measured) -> Wanted:
    """Rules when there is no current plan: batteries hold the grid at zero exchange
    (self-consumption), EVs charge at full power, electrolysers at their minimum load while their
    tank is below 90 % (else standby), PV unlimited."""
    w = Wanted()
    for c in cfg.ev_charger:
        w.ev_kw[c.name] = c.max_power_kw if measured.plugged.get(c.name) else 0.0
    for e in cfg.electrolyser:
        fill = measured.tank_fraction.get(e.name)
        w.electrolyser_kw[e.name] = e.min_load_fraction * e.rated_kw if fill is None or fill < 0.9 else 0.0
    for p in cfg.pv:
        w.pv_limit_kw[p.name] = None
    grid = measured.grid_net_kw
    delta = sum(w.ev_kw[n] - (measured.ev_kw.get(n) or 0.0) for n in w.ev_kw)
    delta += sum(w.electrolyser_kw[n] - (measured.electrolyser_kw.get(n) or 0.0) for n in w.electrolyser_kw)
    current = sum(v or 0.0 for v in measured.battery_net_kw.values())
    target_total = current + (grid + delta if grid is not None else 0.0)
    total = sum(b.capacity_kwh for b in cfg.battery) or 1.0
    for b in cfg.battery:
        w.battery_net_kw[b.name] = target_total * b.capacity_kwh / total if grid is not None else 0.0
    return w


def hold_grid_limits(w: Wanted, cfg: SiteConfig, measured: Measured, import_limit_kw: float,
                     export_limit_kw: float, electrolyser_min_kw: dict[str, float] | None = None) -> None:
    """Correct ``w`` in place so the predicted grid exchange stays within the limits: over the
    import limit, first discharge the batteries (within rating, not below their SOC floor), then
    cut EVs and electrolysers; over the export limit, charge the batteries (not above their SOC
    ceiling), then curtail PV. ``electrolyser_min_kw``: the least each electrolyser device runs at
    (kW) when it runs, whatever the config says."""
    minimum = electrolyser_min_kw or {}
    for n, kw in w.electrolyser_kw.items():
        # a device that cannot run below its own minimum (e.g. Enapter at 60 %) draws that much
        if 0 < kw < minimum.get(n, 0.0):
            w.electrolyser_kw[n] = minimum[n]
            w.bind(n, f"device minimum {minimum[n]:g} kW")
    if measured.grid_net_kw is None:
        _add_no_import(w, measured)
        return
    for b in cfg.battery:  # what the safety guard will refuse does not count as help
        soc = measured.battery_soc_fraction.get(b.name)
        if _at_floor(b.name, b.soc_min_fraction, measured) and w.battery_net_kw[b.name] > 0:
            w.battery_net_kw[b.name] = 0.0
            w.bind(b.name, "SOC floor")
        elif soc is not None and soc >= b.soc_max_fraction - 1e-3 and w.battery_net_kw[b.name] < 0:
            w.battery_net_kw[b.name] = 0.0
            w.bind(b.name, "SOC ceiling")
    predicted = measured.grid_net_kw
    for b in cfg.battery:
        predicted -= w.battery_net_kw[b.name] - (measured.battery_net_kw.get(b.name) or 0.0)
    for n, kw in w.ev_kw.items():
        predicted += kw - (measured.ev_kw.get(n) or 0.0)
    for n, kw in w.electrolyser_kw.items():
        predicted += kw - (measured.electrolyser_kw.get(n) or 0.0)
    over = predicted - import_limit_kw
    if over > 1e-6:
        for b in cfg.battery:
            if _at_floor(b.name, b.soc_min_fraction, measured):
                continue  # the safety guard would refuse the discharge: cut loads instead
            room = b.max_discharge_kw - w.battery_net_kw[b.name]
            take = min(room, over)
            if take > 0:
                w.battery_net_kw[b.name] += take
                w.bind(b.name, f"grid import limit {import_limit_kw:g} kW")
                over -= take
        # EV chargers share the cut in proportion to their power (then the electrolysers do; one
        # cut below its device minimum stops)
        for group, floor in ((w.ev_kw, {}), (w.electrolyser_kw, minimum)):
            total = sum(kw for kw in group.values() if kw > 0)
            if over <= 1e-6 or total <= 0:
                continue
            share = min(total, over) / total
            for n, kw in group.items():
                if kw > 0:
                    after = kw - share * kw
                    group[n] = 0.0 if after < floor.get(n, 0.0) else after
                    w.bind(n, f"grid import limit {import_limit_kw:g} kW")
                    over -= kw - group[n]
    under = -predicted - export_limit_kw
    if under > 1e-6:
        for b in cfg.battery:
            soc = measured.battery_soc_fraction.get(b.name)
            if soc is not None and soc >= b.soc_max_fraction - 1e-3:
                continue  # full: curtail PV instead
            room = b.max_charge_kw + w.battery_net_kw[b.name]
            take = min(room, under)
            if take > 0:
                w.battery_net_kw[b.name] -= take
                w.bind(b.name, f"grid export limit {export_limit_kw:g} kW")
                under -= take
        for p in cfg.pv:
            if under <= 1e-6:
                break
            output = measured.pv_kw.get(p.name)
            cut = under if output is None else min(output, under)
            w.pv_limit_kw[p.name] = 0.0 if output is None else max(0.0, output - cut)
            w.bind(p.name, f"grid export limit {export_limit_kw:g} kW")
            under -= cut


def _at_floor(battery: str, soc_min_fraction: float, measured: Measured) -> bool:
    """The battery's measured SOC is at or under its floor (no more discharge)."""
    soc = measured.battery_soc_fraction.get(battery)
    return soc is not None and soc <= soc_min_fraction + 1e-3


def _add_no_import(w: Wanted, measured: Measured) -> None:
    """Without a meter reading the limits cannot be checked: nothing may add import. Batteries
    charge no more (or discharge no less) than they do now, EVs and electrolysers draw no more."""
    for name, kw in w.battery_net_kw.items():
        now = measured.battery_net_kw.get(name)
        floor = now if now is not None else 0.0
        if kw < floor:
            w.battery_net_kw[name] = floor
            w.bind(name, "no grid meter reading")
    for group, now_kw in ((w.ev_kw, measured.ev_kw), (w.electrolyser_kw, measured.electrolyser_kw)):
        for name, kw in group.items():
            ceiling = now_kw.get(name) or 0.0
            if kw > ceiling:
                group[name] = ceiling
                w.bind(name, "no grid meter reading")
