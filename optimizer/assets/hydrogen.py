"""Hydrogen tank (storage on its bus) and offtake (demand drawn from it)."""

from __future__ import annotations

from typing import Any

import pyomo.environ as pyo

from optimizer.assets.base import (
    AssetBlock,
    AssetResult,
    Context,
    ObjectiveTerm,
    hydrogen_bus,
    mutable,
    slack_use,
)
from optimizer.problem import HydrogenOfftake, HydrogenTank, Problem


class TankBlock(AssetBlock):
    """Level kg at the end of each step within [0, capacity]; the floor is soft.

    Production the tank cannot take is vented (penalised, reported).
    """

    def build(self, b: Any, ctx: Context) -> None:
        self.ctx = ctx
        T = ctx.steps
        for name in ("capacity", "floor", "initial", "penalty", "terminal_value"):
            mutable(b, name, init=1.0)
        b.level = pyo.Var(T, bounds=lambda b, t: (0.0, b.capacity))
        b.below = pyo.Var(T, within=pyo.NonNegativeReals)
        b.vent = pyo.Var(T, within=pyo.NonNegativeReals)
        b.floor_con = pyo.Constraint(T, rule=lambda b, t: b.level[t] + b.below[t] >= b.floor)
        self.block = b

    def injections(self) -> dict[str, list[Any]]:
        b = self.block
        flows = []
        for t in range(self.ctx.n_steps):
            prev = b.initial if t == 0 else b.level[t - 1]
            flows.append(prev - b.level[t] - b.vent[t])
        return {hydrogen_bus(self.name): flows}

    def objective_terms(self) -> list[ObjectiveTerm]:
        b, n = self.block, self.ctx.n_steps
        return [
            ObjectiveTerm("tank_window", "penalty",
                          b.penalty * sum(b.below[t] + b.vent[t] for t in range(n))),
            ObjectiveTerm("stored_hydrogen_value", "money", -b.terminal_value * b.level[n - 1]),
        ]

    def update(self, spec: HydrogenTank, problem: Problem) -> None:
        b = self.block
        self.set(b.capacity, spec.capacity_kg)
        self.set(b.floor, spec.floor_kg)
        self.set(b.initial, min(max(spec.initial_kg, 0.0), spec.capacity_kg))
        self.set(b.penalty, problem.penalties.tank_window_per_kg)
        self.set(b.terminal_value, spec.terminal_value_per_kg)

    def extract(self, spec: HydrogenTank, problem: Problem) -> AssetResult:
        b = self.block
        res = AssetResult(series={
            f"{self.name}.level_kg": self.values(b.level),
            f"{self.name}.vent_kg": self.values(b.vent),
        })
        pen = problem.penalties.tank_window_per_kg
        for limit, var in (("tank_floor", b.below), ("tank_capacity_vent", b.vent)):
            use = slack_use(limit, self.name, self.values(var), "kg", pen)
            if use is not None:
                res.slacks.append(use)
                res.costs[f"penalty_{limit}"] = use.penalty_cost
        return res


class OfftakeBlock(AssetBlock):
    """Hydrogen demand (kg per step); what cannot be served is unmet (penalised, reported)."""

    def __init__(self, name: str, tank: str) -> None:
        super().__init__(name)
        self.tank = tank

    def build(self, b: Any, ctx: Context) -> None:
        self.ctx = ctx
        mutable(b, "demand", ctx)
        mutable(b, "penalty", init=1.0)
        b.unmet = pyo.Var(ctx.steps, bounds=lambda b, t: (0.0, b.demand[t]))
        self.block = b

    def injections(self) -> dict[str, list[Any]]:
        b = self.block
        return {hydrogen_bus(self.tank): [b.unmet[t] - b.demand[t] for t in range(self.ctx.n_steps)]}

    def objective_terms(self) -> list[ObjectiveTerm]:
        b = self.block
        return [ObjectiveTerm("hydrogen_unmet", "penalty",
                              b.penalty * sum(b.unmet[t] for t in range(self.ctx.n_steps)))]

    def update(self, spec: HydrogenOfftake, problem: Problem) -> None:
        self.set_series(self.block.demand, spec.demand_kg)
        self.set(self.block.penalty, problem.penalties.hydrogen_shortfall_per_kg)

    def extract(self, spec: HydrogenOfftake, problem: Problem) -> AssetResult:
        unmet = self.values(self.block.unmet)
        res = AssetResult(series={
            f"{self.name}.demand_kg": [float(x) for x in spec.demand_kg],
            f"{self.name}.served_kg": [d - u for d, u in zip(spec.demand_kg, unmet, strict=True)],
        })
        use = slack_use("hydrogen_demand", self.name, unmet, "kg",
                        problem.penalties.hydrogen_shortfall_per_kg)
        if use is not None:
            res.slacks.append(use)
            res.costs["penalty_hydrogen_demand"] = use.penalty_cost
        return res
