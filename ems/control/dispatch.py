"""Setpoints for one step: plan-following, rule-based baseline, and grid-limit enforcement.

Inputs are what the controller knows now: the plan (targets for the slot), measured or
simulated PV/load, and the plant's current state. Battery net power is > 0 when discharging.
"""

from __future__ import annotations

from dataclasses import dataclass

from drivers.sim.plant import Plant, Setpoints
from optimizer import Plan


@dataclass(frozen=True)
class StepInputs:
    """Actual PV available and load for the step (kW), with the forecast the plan used."""

    pv_available_kw: dict[str, float]
    load_kw: dict[str, float]
    pv_forecast_kw: dict[str, float]
    load_forecast_kw: dict[str, float]
    import_limit_kw: float
    export_limit_kw: float


def follow_plan(plan: Plan, step: int, inputs: StepInputs, plant: Plant,
                session_on_charger: dict[str, str]) -> Setpoints:
    """Track the plan's slot targets; the batteries absorb the forecast error so that the grid
    exchange stays where the plan put it."""
    s = plan.series
    sp = Setpoints()
    for charger, session in session_on_charger.items():
        sp.ev_kw[charger] = s.get(f"ev:{session}.charge_kw", [0.0] * (step + 1))[step]
    for name in plant.electrolysers:
        on = s[f"{name}.on"][step] > 0.5
        sp.electrolyser_kw[name] = s[f"{name}.stack_kw"][step] if on else 0.0
    error_kw = (sum(inputs.load_kw.values()) - sum(inputs.load_forecast_kw.values())
                - sum(inputs.pv_available_kw.values()) + sum(inputs.pv_forecast_kw.values()))
    total_capacity = sum(b.capacity_kwh for b in plant.batteries.values()) or 1.0
    for name, b in plant.batteries.items():
        planned = s[f"{name}.discharge_kw"][step] - s[f"{name}.charge_kw"][step]
        sp.battery_net_kw[name] = planned + error_kw * b.capacity_kwh / total_capacity
    for name in inputs.pv_available_kw:
        # The plan curtails only when PV has no use (limits, negative prices): keep its output.
        curtailed = s.get(f"{name}.curtailed_kw", [0.0] * (step + 1))[step]
        sp.pv_limit_kw[name] = s[f"{name}.output_kw"][step] if curtailed > 1e-6 else None
    return sp


def baseline(inputs: StepInputs, plant: Plant, dt_h: float,
             electrolyser_flat_kw: dict[str, float]) -> Setpoints:
    """Rule-based control: battery in self-consumption, EVs at full power on arrival,
    electrolysers flat at the level that meets the offtake (standby when the tank is full)."""
    sp = Setpoints()
    for name, c in plant.chargers.items():
        sp.ev_kw[name] = c.wanted_kw(dt_h)
    for name, e in plant.electrolysers.items():
        tank = e.tank
        if tank.level_kg >= 0.95 * tank.capacity_kg or (not e.on and tank.level_kg > 0.85 * tank.capacity_kg):
            sp.electrolyser_kw[name] = 0.0
        else:
            sp.electrolyser_kw[name] = electrolyser_flat_kw[name]
    net = (sum(inputs.load_kw.values()) + sum(sp.ev_kw.values())
           + sum(_electric(plant, sp).values()) - sum(inputs.pv_available_kw.values()))
    _share_battery(sp, plant, net)
    return sp


def _electric(plant: Plant, sp: Setpoints) -> dict[str, float]:
    """What each electrolyser will draw: a request below its minimum load leaves it in standby."""
    out = {}
    for n, e in plant.electrolysers.items():
        request = sp.electrolyser_kw.get(n, 0.0)
        out[n] = request if request > 0 and request >= e.min_load_kw - 1e-9 else e.standby_kw
    return out


def _share_battery(sp: Setpoints, plant: Plant, net_kw: float) -> None:
    total = sum(b.capacity_kwh for b in plant.batteries.values()) or 1.0
    for name, b in plant.batteries.items():
        sp.battery_net_kw[name] = net_kw * b.capacity_kwh / total


def enforce_grid_limits(sp: Setpoints, inputs: StepInputs, plant: Plant, dt_h: float) -> list[str]:
    """Adjust setpoints so the meter stays within the import and export limits this step.

    Order for import: batteries discharge more, then EV charging is cut, then electrolysers
    drop to their minimum load, then to standby. For export: batteries charge more, then PV is
    curtailed. Returns the actions taken (for the audit trail)."""
    actions: list[str] = []
    bat_room = {n: (b.discharge_room_kw(dt_h), b.charge_room_kw(dt_h)) for n, b in plant.batteries.items()}
    for n, (dis, ch) in bat_room.items():
        sp.battery_net_kw[n] = min(dis, max(-ch, sp.battery_net_kw.get(n, 0.0)))
    ev = {n: min(sp.ev_kw.get(n, 0.0), c.wanted_kw(dt_h)) for n, c in plant.chargers.items()}
    sp.ev_kw.update(ev)
    pv = {n: (a if sp.pv_limit_kw.get(n) is None else min(a, sp.pv_limit_kw[n] or 0.0))
          for n, a in inputs.pv_available_kw.items()}

    def net() -> float:
        return (sum(inputs.load_kw.values()) + sum(sp.ev_kw.values()) + sum(_electric(plant, sp).values())
                - sum(pv.values()) - sum(sp.battery_net_kw.values()))

    excess = net() - inputs.import_limit_kw
    if excess > 1e-9:
        for n, (dis, _) in bat_room.items():
            more = min(excess, dis - sp.battery_net_kw[n])
            if more > 0:
                sp.battery_net_kw[n] += more
                excess -= more
                actions.append(f"{n}: discharge +{more:.1f} kW for the import limit")
        for n in sp.ev_kw:
            if excess <= 1e-9:
                break
            cut = min(excess, sp.ev_kw[n])
            if cut > 0:
                sp.ev_kw[n] -= cut
                if sp.ev_kw[n] < plant.chargers[n].min_kw:
                    cut += sp.ev_kw[n]
                    sp.ev_kw[n] = 0.0
                excess -= cut
                actions.append(f"{n}: EV charging -{cut:.1f} kW for the import limit")
        for n, e in plant.electrolysers.items():
            if excess <= 1e-9:
                break
            now = sp.electrolyser_kw.get(n, 0.0)
            if now > e.min_load_kw:
                cut = min(excess, now - e.min_load_kw)
                sp.electrolyser_kw[n] = now - cut
                excess -= cut
                actions.append(f"{n}: electrolyser -{cut:.1f} kW for the import limit")
            if excess > 1e-9 and sp.electrolyser_kw.get(n, 0.0) > 0:
                excess -= _electric(plant, sp)[n] - e.standby_kw
                sp.electrolyser_kw[n] = 0.0
                actions.append(f"{n}: electrolyser to standby for the import limit")
    surplus = -net() - inputs.export_limit_kw
    if surplus > 1e-9:
        for n, (_, ch) in bat_room.items():
            more = min(surplus, ch + sp.battery_net_kw[n])
            if more > 0:
                sp.battery_net_kw[n] -= more
                surplus -= more
                actions.append(f"{n}: charge +{more:.1f} kW for the export limit")
        for n in pv:
            if surplus <= 1e-9:
                break
            cut = min(surplus, pv[n])
            pv[n] -= cut
            sp.pv_limit_kw[n] = pv[n]
            surplus -= cut
            actions.append(f"{n}: PV limited to {pv[n]:.1f} kW for the export limit")
    return actions
