"""Builders for small problems and independent checks of a plan against its problem.

The checks recompute everything from the problem's inputs and the plan's series (never from
the model), so they hold the optimiser to the physics, not to itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from optimizer import Grid, Plan, Problem, SlackUse, TimeGrid

T0 = datetime(2024, 6, 3, tzinfo=UTC)
TOL = 1e-6


def per_step(value: float | Sequence[float], n: int) -> list[float]:
    if isinstance(value, int | float):
        return [float(value)] * n
    values = [float(v) for v in value]
    assert len(values) == n, f"expected {n} values, got {len(values)}"
    return values


def connection(n: int, *, import_price: float | Sequence[float] = 0.20,
               export_price: float | Sequence[float] = 0.0,
               import_limit: float | Sequence[float] = 1000.0,
               export_limit: float | Sequence[float] = 1000.0,
               carbon: float | Sequence[float] = 300.0, **kw: Any) -> Grid:
    return Grid(import_limit_kw=per_step(import_limit, n),
                export_limit_kw=per_step(export_limit, n),
                import_price_per_kwh=per_step(import_price, n),
                export_price_per_kwh=per_step(export_price, n),
                carbon_intensity_g_per_kwh=per_step(carbon, n), **kw)


def problem(n: int, *, step_minutes: int = 60, conn: Grid | None = None, **kw: Any) -> Problem:
    """A problem on an `n`-step grid; `conn` defaults to a flat tariff with ample limits."""
    return Problem(grid=TimeGrid(T0, step_minutes, n), connection=conn or connection(n), **kw)


def slacks_for(plan: Plan, limit: str, asset: str) -> list[SlackUse]:
    return [s for s in plan.slacks if s.limit == limit and s.asset == asset]


def the_slack(plan: Plan, limit: str, asset: str) -> SlackUse:
    found = slacks_for(plan, limit, asset)
    assert len(found) == 1, f"expected one {limit!r} slack on {asset!r}, plan has {plan.slacks}"
    return found[0]


def close(a: float, b: float, tol: float = TOL) -> bool:
    return abs(a - b) <= tol * max(1.0, abs(a), abs(b))


def on_runs(on: Sequence[float]) -> list[tuple[int, int, int]]:
    """Maximal runs of equal state as (state, first step, length)."""
    runs: list[tuple[int, int, int]] = []
    for t, v in enumerate(on):
        s = round(v)
        if runs and runs[-1][0] == s:
            state, first, length = runs[-1]
            runs[-1] = (state, first, length + 1)
        else:
            runs.append((s, t, 1))
    return runs


def count_starts(on: Sequence[float], initially_on: bool) -> int:
    prev, starts = (1 if initially_on else 0), 0
    for v in on:
        s = round(v)
        starts += 1 if (s == 1 and prev == 0) else 0
        prev = s
    return starts


# ---------------------------------------------------------------------------------------------
# Bus balances


def electricity_residuals(prob: Problem, plan: Plan) -> list[float]:
    """import - export + PV + battery discharge - charge - load - EV charge + EV discharge
    - electrolyser electric power, per step (kW)."""
    s, n = plan.series, prob.grid.n_steps
    g = prob.connection.name
    out = []
    for t in range(n):
        r = s[f"{g}.import_kw"][t] - s[f"{g}.export_kw"][t]
        r += sum(s[f"{p.name}.output_kw"][t] for p in prob.pv)
        r -= sum(ld.demand_kw[t] for ld in prob.loads)
        r += sum(s[f"{b.name}.discharge_kw"][t] - s[f"{b.name}.charge_kw"][t]
                 for b in prob.batteries)
        r += sum(s[f"ev:{e.name}.discharge_kw"][t] - s[f"ev:{e.name}.charge_kw"][t]
                 for e in prob.ev_sessions)
        r -= sum(s[f"{e.name}.power_kw"][t] for e in prob.electrolysers)
        out.append(r)
    return out


def hydrogen_residuals(prob: Problem, plan: Plan) -> dict[str, list[float]]:
    """Per tank and step: production - served offtake - vent - change of level (kg)."""
    s, n, dt = plan.series, prob.grid.n_steps, prob.grid.step_hours
    out = {}
    for tank in prob.tanks:
        level = s[f"{tank.name}.level_kg"]
        prev = min(max(tank.initial_kg, 0.0), tank.capacity_kg)
        res = []
        for t in range(n):
            made = sum(s[f"{e.name}.stack_kw"][t] * dt / e.kwh_per_kg
                       for e in prob.electrolysers if e.tank == tank.name)
            served = sum(s[f"{o.name}.served_kg"][t] for o in prob.offtakes if o.tank == tank.name)
            res.append(made - served - s[f"{tank.name}.vent_kg"][t] - (level[t] - prev))
            prev = level[t]
        out[tank.name] = res
    return out


def balance_errors(prob: Problem, plan: Plan, tol: float = TOL) -> list[str]:
    errors = [f"electricity step {t}: residual {r:.3g}"
              for t, r in enumerate(electricity_residuals(prob, plan)) if abs(r) > tol]
    for tank, res in hydrogen_residuals(prob, plan).items():
        errors += [f"hydrogen:{tank} step {t}: residual {r:.3g}"
                   for t, r in enumerate(res) if abs(r) > tol]
    return errors


# ---------------------------------------------------------------------------------------------
# Hard limits (must always hold)

MIP_FEASIBILITY_TOLERANCE = 1e-6
"""HiGHS accepts a binary within this of 0 or 1, so an "off" device may carry this fraction
of its maximum power."""


def off_tol(max_kw: float) -> float:
    return TOL + 2 * MIP_FEASIBILITY_TOLERANCE * max_kw


def hard_limit_errors(prob: Problem, plan: Plan, tol: float = TOL) -> list[str]:
    s, n, dt = plan.series, prob.grid.n_steps, prob.grid.step_hours
    err: list[str] = []

    def need(cond: bool, what: str) -> None:
        if not cond:
            err.append(what)

    g = prob.connection.name
    for t in range(n):
        imp, exp = s[f"{g}.import_kw"][t], s[f"{g}.export_kw"][t]
        need(imp >= -tol and exp >= -tol, f"grid import {imp} or export {exp} < 0 at {t}")
        # One meter: a step imports or exports, not both.
        need(min(imp, exp) <= tol, f"grid imports {imp} and exports {exp} at {t}")

    for p in prob.pv:
        out = s[f"{p.name}.output_kw"]
        for t in range(n):
            need(-tol <= out[t] <= p.available_kw[t] + tol,
                 f"pv {p.name} output {out[t]} outside [0, {p.available_kw[t]}] at {t}")
            if not p.curtailable:
                need(out[t] >= p.available_kw[t] - tol, f"pv {p.name} curtailed at {t}")

    pv_total = [sum(s[f"{p.name}.output_kw"][t] for p in prob.pv) for t in range(n)]
    for b in prob.batteries:
        ch, dis, soc = (s[f"{b.name}.charge_kw"], s[f"{b.name}.discharge_kw"],
                        s[f"{b.name}.soc_kwh"])
        prev = min(max(b.initial_soc_kwh, 0.0), b.capacity_kwh)
        for t in range(n):
            need(-tol <= ch[t] <= b.max_charge_kw + tol, f"battery {b.name} charge {ch[t]} at {t}")
            need(-tol <= dis[t] <= b.max_discharge_kw + tol,
                 f"battery {b.name} discharge {dis[t]} at {t}")
            need(-tol <= soc[t] <= b.capacity_kwh + tol, f"battery {b.name} soc {soc[t]} at {t}")
            expected = prev + dt * (b.charge_efficiency * ch[t] - dis[t] / b.discharge_efficiency)
            need(close(soc[t], expected), f"battery {b.name} soc {soc[t]} != {expected} at {t}")
            if not b.allow_grid_charging:
                need(ch[t] <= pv_total[t] + tol, f"battery {b.name} grid-charged at {t}")
            prev = soc[t]

    for e in prob.ev_sessions:
        ch, dis, dlv = (s[f"ev:{e.name}.charge_kw"], s[f"ev:{e.name}.discharge_kw"],
                        s[f"ev:{e.name}.delivered_kwh"])
        prev = 0.0
        for t in range(n):
            top = e.max_charge_kw if e.plugged[t] else 0.0
            need(-tol <= ch[t] <= top + tol, f"ev {e.name} charge {ch[t]} > {top} at {t}")
            if e.min_charge_kw > 0:
                need(ch[t] <= off_tol(e.max_charge_kw) or ch[t] >= e.min_charge_kw - tol,
                     f"ev {e.name} charge {ch[t]} strictly inside (0, {e.min_charge_kw}) at {t}")
            top = e.max_discharge_kw if e.plugged[t] else 0.0
            need(-tol <= dis[t] <= top + tol, f"ev {e.name} discharge {dis[t]} > {top} at {t}")
            expected = prev + dt * (e.efficiency * ch[t] - dis[t] / e.efficiency)
            need(close(dlv[t], expected), f"ev {e.name} delivered {dlv[t]} != {expected} at {t}")
            need(dlv[t] <= max(0.0, e.energy_needed_kwh) + tol,
                 f"ev {e.name} delivered {dlv[t]} above its need at {t}")
            reserve = e.v2g_reserve_kwh if e.max_discharge_kw > 0 else 0.0
            need(dlv[t] >= -reserve - tol, f"ev {e.name} below its V2G reserve at {t}")
            prev = dlv[t]

    for e in prob.electrolysers:
        stack, power, on = s[f"{e.name}.stack_kw"], s[f"{e.name}.power_kw"], s[f"{e.name}.on"]
        lo = e.min_load_fraction * e.rated_kw
        for t in range(n):
            need(stack[t] <= off_tol(e.rated_kw) or lo - tol <= stack[t] <= e.rated_kw + tol,
                 f"electrolyser {e.name} stack {stack[t]} not 0 nor in [{lo}, {e.rated_kw}] at {t}")
            need(on[t] in (0.0, 1.0), f"electrolyser {e.name} on = {on[t]} at {t}")
            need(stack[t] <= off_tol(e.rated_kw) or on[t] == 1.0,
                 f"electrolyser {e.name} runs while off at {t}")
            standby = e.standby_kw * (1.0 - on[t])
            need(close(power[t], stack[t] + standby),
                 f"electrolyser {e.name} electric {power[t]} != stack + standby at {t}")
        err += min_up_down_errors(e, on)

    for tank in prob.tanks:
        level, vent = s[f"{tank.name}.level_kg"], s[f"{tank.name}.vent_kg"]
        for t in range(n):
            need(-tol <= level[t] <= tank.capacity_kg + tol, f"tank {tank.name} level {level[t]}")
            need(vent[t] >= -tol, f"tank {tank.name} vent {vent[t]} < 0 at {t}")
    for o in prob.offtakes:
        served = s[f"{o.name}.served_kg"]
        for t in range(n):
            need(-tol <= served[t] <= o.demand_kg[t] + tol,
                 f"offtake {o.name} served {served[t]} outside [0, {o.demand_kg[t]}] at {t}")
    return err


def min_up_down_errors(e: Any, on: Sequence[float]) -> list[str]:
    """Every on (off) run lasts at least min_up_steps (min_down_steps) unless the horizon cuts
    it short; a run that continues the state held before the horizon counts those steps too."""
    err = []
    runs = on_runs(on)
    initial = 1 if e.initially_on else 0
    if runs and runs[0][0] != initial:
        held = e.min_up_steps if initial == 1 else e.min_down_steps
        if e.steps_in_state < held:
            err.append(f"electrolyser {e.name}: left its initial state at step 0 after "
                       f"{e.steps_in_state} steps, minimum {held}")
    for k, (state, first, length) in enumerate(runs[:-1]):
        minimum = e.min_up_steps if state == 1 else e.min_down_steps
        lasted = length + (e.steps_in_state if k == 0 and state == initial else 0)
        if lasted < minimum:
            err.append(f"electrolyser {e.name}: state {state} from step {first} lasts {lasted}, "
                       f"minimum {minimum}")
    return err


# ---------------------------------------------------------------------------------------------
# Soft limits: either kept, or reported in plan.slacks with the size of the violation


def soft_violations(prob: Problem, plan: Plan) -> dict[tuple[str, str], float]:
    """(limit, asset) -> size of the violation recomputed from the series (0 when kept)."""
    s, n, dt = plan.series, prob.grid.n_steps, prob.grid.step_hours
    c = prob.connection
    imp, exp = s[f"{c.name}.import_kw"], s[f"{c.name}.export_kw"]
    v: dict[tuple[str, str], float] = {
        ("import_limit", c.name): sum(max(0.0, imp[t] - c.import_limit_kw[t]) * dt
                                      for t in range(n)),
        ("export_limit", c.name): sum(max(0.0, exp[t] - c.export_limit_kw[t]) * dt
                                      for t in range(n)),
    }
    for b in prob.batteries:
        soc = s[f"{b.name}.soc_kwh"]
        lo, hi = b.soc_min_fraction * b.capacity_kwh, b.soc_max_fraction * b.capacity_kwh
        v[("soc_min", b.name)] = sum(max(0.0, lo - x) for x in soc)
        v[("soc_max", b.name)] = sum(max(0.0, x - hi) for x in soc)
    for e in prob.ev_sessions:
        after = e.max_charge_kw * e.efficiency * e.hours_plugged_after_horizon
        target = max(0.0, e.energy_needed_kwh - after)
        v[("ev_energy", e.name)] = max(0.0, target - s[f"ev:{e.name}.delivered_kwh"][-1])
    for tank in prob.tanks:
        level = s[f"{tank.name}.level_kg"]
        v[("tank_floor", tank.name)] = sum(max(0.0, tank.floor_kg - x) for x in level)
        v[("tank_capacity_vent", tank.name)] = sum(s[f"{tank.name}.vent_kg"])
    for o in prob.offtakes:
        v[("hydrogen_demand", o.name)] = sum(
            d - x for d, x in zip(o.demand_kg, s[f"{o.name}.served_kg"], strict=True))
    return v


def soft_limit_errors(prob: Problem, plan: Plan, tol: float = 1e-5) -> list[str]:
    """Every violated soft limit is reported with its size; nothing else is reported."""
    err = []
    violations = soft_violations(prob, plan)
    for (limit, asset), size in violations.items():
        found = slacks_for(plan, limit, asset)
        if size > tol:
            if len(found) != 1:
                err.append(f"{limit} on {asset} violated by {size:.6g} but reported as {found}")
            elif not close(found[0].amount, size, 1e-5):
                err.append(f"{limit} on {asset}: violation {size:.6g}, reported {found[0].amount}")
        elif found and found[0].amount > 2 * tol:
            err.append(f"{limit} on {asset} kept (violation {size:.3g}) but reported {found}")
    known = set(violations) | {("initial_soc_outside_capacity", b.name) for b in prob.batteries}
    err += [f"unexpected slack {u}" for u in plan.slacks if (u.limit, u.asset) not in known]
    return err


def series_differences(a: Plan, b: Plan, tol: float = TOL) -> list[str]:
    """Keys and steps where two plans' series differ by more than `tol`."""
    if set(a.series) != set(b.series):
        return [f"keys differ: {sorted(set(a.series) ^ set(b.series))}"]
    return [f"{k}[{t}]: {x} != {y}" for k in sorted(a.series)
            for t, (x, y) in enumerate(zip(a.series[k], b.series[k], strict=True))
            if abs(x - y) > tol * max(1.0, abs(x), abs(y))]
