"""Electrolyser: on/off with minimum stable load, standby draw, start-up cost, min up/down time."""

from __future__ import annotations

from typing import Any

import pyomo.environ as pyo

from optimizer.assets.base import (
    ELECTRICITY,
    AssetBlock,
    AssetResult,
    Context,
    ObjectiveTerm,
    hydrogen_bus,
    mutable,
)
from optimizer.problem import Electrolyser, Problem


def needs_binaries(spec: Electrolyser) -> bool:
    """On/off binaries only where the device needs them."""
    return (spec.min_load_fraction > 0 or spec.startup_cost > 0 or spec.min_up_steps > 1
            or spec.min_down_steps > 1 or spec.standby_kw > 0)


def forced_states(spec: Electrolyser, n_steps: int) -> tuple[list[float], list[float]]:
    """Steps that must stay on (off) to finish a minimum up (down) time begun before the horizon."""
    forced_on, forced_off = [0.0] * n_steps, [0.0] * n_steps
    if spec.initially_on:
        for t in range(min(n_steps, max(0, spec.min_up_steps - spec.steps_in_state))):
            forced_on[t] = 1.0
    else:
        for t in range(min(n_steps, max(0, spec.min_down_steps - spec.steps_in_state))):
            forced_off[t] = 1.0
    return forced_on, forced_off


def round_on_off(spec: Electrolyser, power_kw: list[float]) -> list[int]:
    """Safe rounding of a relaxed schedule: on where the LP ran at >= half the minimum load,
    then minimum up/down times enforced from the initial state forward."""
    min_kw = spec.min_load_fraction * spec.rated_kw
    wanted = [1 if p > 1e-6 and p >= 0.5 * min_kw else 0 for p in power_kw]
    forced_on, forced_off = forced_states(spec, len(power_kw))
    state, run = (1 if spec.initially_on else 0), spec.steps_in_state
    out = []
    for t, w in enumerate(wanted):
        want = 1 if forced_on[t] else (0 if forced_off[t] else w)
        locked = run < (spec.min_up_steps if state == 1 else spec.min_down_steps)
        if want != state and locked:
            want = state
        run = run + 1 if want == state else 1
        state = want
        out.append(state)
    return out


class ElectrolyserBlock(AssetBlock):
    """Electric kW in, hydrogen kg out (power x step hours / kWh per kg).

    Off means standby: it draws `standby_kw`. On means power within [min load, rated].
    """

    def __init__(self, name: str, spec: Electrolyser) -> None:
        super().__init__(name)
        self.tank = spec.tank
        self.binary = needs_binaries(spec)
        self.min_up = max(1, spec.min_up_steps)
        self.min_down = max(1, spec.min_down_steps)

    def build(self, b: Any, ctx: Context) -> None:
        self.ctx = ctx
        T = ctx.steps
        for name in ("rated", "min_power", "kg_per_kwh", "standby", "startup_cost", "initially_on"):
            mutable(b, name, init=1.0)
        b.power = pyo.Var(T, bounds=lambda b, t: (0.0, b.rated))
        if self.binary:
            mutable(b, "forced_on", ctx)
            mutable(b, "forced_off", ctx)
            b.on = pyo.Var(T, within=pyo.Binary, bounds=lambda b, t: (b.forced_on[t], 1 - b.forced_off[t]))
            for t in range(ctx.integer_steps, ctx.n_steps):
                b.on[t].domain = pyo.UnitInterval
            b.start = pyo.Var(T, bounds=(0.0, 1.0))
            b.stop = pyo.Var(T, bounds=(0.0, 1.0))
            b.max_load = pyo.Constraint(T, rule=lambda b, t: b.power[t] <= b.rated * b.on[t])
            b.min_load = pyo.Constraint(T, rule=lambda b, t: b.power[t] >= b.min_power * b.on[t])

            def switching(b: Any, t: int) -> Any:
                prev = b.initially_on if t == 0 else b.on[t - 1]
                return b.start[t] - b.stop[t] == b.on[t] - prev

            b.switching = pyo.Constraint(T, rule=switching)
            b.one_switch = pyo.Constraint(T, rule=lambda b, t: b.start[t] + b.stop[t] <= 1)
            up, down = self.min_up, self.min_down
            if up > 1:
                b.min_up = pyo.Constraint(T, rule=lambda b, t: sum(
                    b.start[k] for k in range(max(0, t - up + 1), t + 1)) <= b.on[t])
            if down > 1:
                b.min_down = pyo.Constraint(T, rule=lambda b, t: sum(
                    b.stop[k] for k in range(max(0, t - down + 1), t + 1)) <= 1 - b.on[t])
        self.block = b

    def _electric(self, t: int) -> Any:
        b = self.block
        if self.binary:
            return b.power[t] + b.standby * (1 - b.on[t])
        return b.power[t]

    def injections(self) -> dict[str, list[Any]]:
        b, n, dt = self.block, self.ctx.n_steps, self.ctx.step_hours
        return {
            ELECTRICITY: [-self._electric(t) for t in range(n)],
            hydrogen_bus(self.tank): [b.kg_per_kwh * dt * b.power[t] for t in range(n)],
        }

    def objective_terms(self) -> list[ObjectiveTerm]:
        if not self.binary:
            return []
        b = self.block
        return [ObjectiveTerm("startup", "money",
                              b.startup_cost * sum(b.start[t] for t in range(self.ctx.n_steps)))]

    def update(self, spec: Electrolyser, problem: Problem) -> None:
        b = self.block
        self.set(b.rated, spec.rated_kw)
        self.set(b.min_power, spec.min_load_fraction * spec.rated_kw)
        self.set(b.kg_per_kwh, 1.0 / spec.kwh_per_kg)
        self.set(b.standby, spec.standby_kw)
        self.set(b.startup_cost, spec.startup_cost)
        self.set(b.initially_on, 1.0 if spec.initially_on else 0.0)
        if self.binary:
            forced_on, forced_off = forced_states(spec, self.ctx.n_steps)
            self.set_series(b.forced_on, forced_on)
            self.set_series(b.forced_off, forced_off)

    def extract(self, spec: Electrolyser, problem: Problem) -> AssetResult:
        b, dt = self.block, self.ctx.step_hours
        power = self.values(b.power)
        if self.binary:
            on = [1 if v > 0.5 or (v > 1e-6 and p > 1e-6) else 0
                  for v, p in zip(self.values(b.on), power, strict=True)]
        else:
            on = [1 if p > 1e-6 else 0 for p in power]
        prev = 1 if spec.initially_on else 0
        starts = 0
        for s in on:
            starts += 1 if s == 1 and prev == 0 else 0
            prev = s
        standby = spec.standby_kw if self.binary else 0.0
        electric = [p + standby * (1 - s) for p, s in zip(power, on, strict=True)]
        res = AssetResult(series={
            f"{self.name}.power_kw": electric,
            f"{self.name}.stack_kw": power,
            f"{self.name}.on": [float(s) for s in on],
            f"{self.name}.hydrogen_kg": [p * dt / spec.kwh_per_kg for p in power],
        })
        res.costs = {"startup": spec.startup_cost * starts}
        res.binding = {f"{self.name}.starts": starts}
        return res

    def on_off_vars(self) -> list[Any]:
        return [self.block.on] if self.binary else []

    def integer_vars(self) -> list[Any]:
        return [self.block.on[t] for t in range(self.ctx.integer_steps)] if self.binary else []

    def round_integers(self, spec: Electrolyser) -> list[int]:
        return round_on_off(spec, self.values(self.block.power))
