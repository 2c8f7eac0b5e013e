"""Stationary battery: SOC dynamics with losses, a soft SOC window, degradation cost."""

from __future__ import annotations

from typing import Any

import pyomo.environ as pyo

from optimizer.assets.base import (
    ELECTRICITY,
    TIEBREAK_PER_KWH,
    AssetBlock,
    AssetResult,
    Context,
    ObjectiveTerm,
    mutable,
    slack_use,
)
from optimizer.plan import SlackUse
from optimizer.problem import Battery, Problem


class BatteryBlock(AssetBlock):
    """Charge and discharge kW (both >= 0); SOC kWh at the end of each step.

    The SOC window [soc_min, soc_max] is soft (slack penalised) so a measured SOC outside it
    never makes the plan infeasible; physical bounds [0, capacity] are hard. Simultaneous
    charge and discharge only appears when it lowers cost (e.g. negative prices): it costs
    losses, degradation and a tie-break.
    """

    def __init__(self, name: str, allow_grid_charging: bool) -> None:
        super().__init__(name)
        self.allow_grid_charging = allow_grid_charging

    def build(self, b: Any, ctx: Context) -> None:
        self.ctx = ctx
        T, dt = ctx.steps, ctx.step_hours
        for name in ("capacity", "max_charge", "max_discharge", "eta_charge", "eta_discharge",
                     "soc_min", "soc_max", "soc_initial", "degradation", "terminal_value",
                     "penalty"):
            mutable(b, name, init=1.0)
        b.charge = pyo.Var(T, bounds=lambda b, t: (0.0, b.max_charge))
        b.discharge = pyo.Var(T, bounds=lambda b, t: (0.0, b.max_discharge))
        b.soc = pyo.Var(T, bounds=lambda b, t: (0.0, b.capacity))
        b.below = pyo.Var(T, within=pyo.NonNegativeReals)
        b.above = pyo.Var(T, within=pyo.NonNegativeReals)

        def dynamics(b: Any, t: int) -> Any:
            prev = b.soc_initial if t == 0 else b.soc[t - 1]
            return b.soc[t] == prev + dt * (b.eta_charge * b.charge[t]
                                            - b.discharge[t] / b.eta_discharge)

        b.dynamics = pyo.Constraint(T, rule=dynamics)
        b.window_low = pyo.Constraint(T, rule=lambda b, t: b.soc[t] + b.below[t] >= b.soc_min)
        b.window_high = pyo.Constraint(T, rule=lambda b, t: b.soc[t] - b.above[t] <= b.soc_max)
        self.block = b

    def limit_to_pv(self, pv_output: list[Any]) -> None:
        """Without grid charging, charge power is bounded by PV output in each step."""
        b = self.block
        b.pv_only = pyo.Constraint(self.ctx.steps, rule=lambda b, t: b.charge[t] <= pv_output[t])

    def injections(self) -> dict[str, list[Any]]:
        b = self.block
        return {ELECTRICITY: [b.discharge[t] - b.charge[t] for t in range(self.ctx.n_steps)]}

    def objective_terms(self) -> list[ObjectiveTerm]:
        b, dt, n = self.block, self.ctx.step_hours, self.ctx.n_steps
        throughput = sum(b.charge[t] + b.discharge[t] for t in range(n)) * dt
        return [
            ObjectiveTerm("degradation", "money", b.degradation * throughput),
            ObjectiveTerm("stored_energy_value", "money", -b.terminal_value * b.soc[n - 1]),
            ObjectiveTerm("soc_window", "penalty",
                          b.penalty * sum(b.below[t] + b.above[t] for t in range(n))),
            ObjectiveTerm("battery_tiebreak", "tiebreak", TIEBREAK_PER_KWH * throughput),
        ]

    def update(self, spec: Battery, problem: Problem) -> None:
        b = self.block
        terminal = spec.terminal_value_per_kwh
        if terminal is None:
            terminal = max(0.0, min(problem.connection.import_price_per_kwh)) * spec.discharge_efficiency
        self.set(b.capacity, spec.capacity_kwh)
        self.set(b.max_charge, spec.max_charge_kw)
        self.set(b.max_discharge, spec.max_discharge_kw)
        self.set(b.eta_charge, spec.charge_efficiency)
        self.set(b.eta_discharge, spec.discharge_efficiency)
        self.set(b.soc_min, spec.soc_min_fraction * spec.capacity_kwh)
        self.set(b.soc_max, spec.soc_max_fraction * spec.capacity_kwh)
        self.set(b.soc_initial, min(max(spec.initial_soc_kwh, 0.0), spec.capacity_kwh))
        self.set(b.degradation, spec.degradation_cost_per_kwh)
        self.set(b.terminal_value, terminal)
        self.set(b.penalty, problem.penalties.soc_window_per_kwh)

    def extract(self, spec: Battery, problem: Problem) -> AssetResult:
        b, dt = self.block, self.ctx.step_hours
        ch, dis, soc = self.values(b.charge), self.values(b.discharge), self.values(b.soc)
        res = AssetResult(series={
            f"{self.name}.charge_kw": ch,
            f"{self.name}.discharge_kw": dis,
            f"{self.name}.soc_kwh": soc,
        })
        res.costs = {"degradation": spec.degradation_cost_per_kwh * dt * (sum(ch) + sum(dis))}
        pen = problem.penalties.soc_window_per_kwh
        for limit, var in (("soc_min", b.below), ("soc_max", b.above)):
            use = slack_use(limit, self.name, self.values(var), "kWh", pen)
            if use is not None:
                res.slacks.append(use)
                res.costs[f"penalty_{limit}"] = res.costs.get(f"penalty_{limit}", 0.0) + use.penalty_cost
        clamped = abs(spec.initial_soc_kwh - min(max(spec.initial_soc_kwh, 0.0), spec.capacity_kwh))
        if clamped > 0:
            res.slacks.append(SlackUse(limit="initial_soc_outside_capacity", asset=self.name,
                                       amount=clamped, unit="kWh", first_step=0, penalty_cost=0.0))
        lo, hi = spec.soc_min_fraction * spec.capacity_kwh, spec.soc_max_fraction * spec.capacity_kwh
        res.binding = {
            f"{self.name}.soc_min": sum(1 for s in soc if abs(s - lo) < 1e-4),
            f"{self.name}.soc_max": sum(1 for s in soc if abs(s - hi) < 1e-4),
            f"{self.name}.power": sum(1 for c, d in zip(ch, dis, strict=True)
                                      if c >= spec.max_charge_kw - 1e-6 or d >= spec.max_discharge_kw - 1e-6),
        }
        return res

