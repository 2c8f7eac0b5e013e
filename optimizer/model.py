"""Assemble asset blocks into one Pyomo model: one balance per bus per step, one objective."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Sequence
from typing import Any

import pyomo.environ as pyo

from optimizer.assets.base import AssetBlock, AssetResult, Context
from optimizer.assets.battery import BatteryBlock
from optimizer.assets.electrolyser import ElectrolyserBlock, needs_binaries
from optimizer.assets.ev import EvSessionBlock
from optimizer.assets.grid import GridBlock
from optimizer.assets.hydrogen import OfftakeBlock, TankBlock
from optimizer.assets.load import LoadBlock
from optimizer.assets.pv import PvBlock
from optimizer.fast_update import ParamStore
from optimizer.problem import EvSession, ObjectiveMode, Problem

CARBON_MODE_COST_WEIGHT = 1e-3
"""In carbon-only mode money still breaks ties, with this weight."""


def ev_features(problem: Problem) -> tuple[bool, bool]:
    """(minimum charging power, V2G): EV model features the problem needs."""
    sessions = problem.ev_sessions
    return (any(s.min_charge_kw > 0 for s in sessions), any(s.max_discharge_kw > 0 for s in sessions))


def structure_key(problem: Problem, ev_slots: int) -> Hashable:
    """What shapes the model apart from its numbers (EV features are checked by `fits`)."""
    return (
        problem.grid.n_steps,
        problem.grid.step_minutes,
        integer_steps(problem),
        len(problem.connection.charges()),
        tuple((p.name, p.curtailable) for p in problem.pv),
        tuple(ld.name for ld in problem.loads),
        tuple((b.name, b.allow_grid_charging) for b in problem.batteries),
        ev_slots,
        tuple((e.name, e.tank, needs_binaries(e), max(1, e.min_up_steps), max(1, e.min_down_steps))
              for e in problem.electrolysers),
        tuple(t.name for t in problem.tanks),
        tuple((o.name, o.tank) for o in problem.offtakes),
    )


def integer_steps(problem: Problem) -> int:
    limit = problem.solver.integer_horizon_steps
    n = problem.grid.n_steps
    return n if limit is None else max(0, min(n, limit))


def idle_session(n_steps: int, slot: int) -> EvSession:
    """Fills an EV slot that has no session in this horizon."""
    return EvSession(name=f"_idle_{slot}", charger="", plugged=[False] * n_steps,
                     energy_needed_kwh=0.0, max_charge_kw=0.0)


class SiteModel:
    """The Pyomo model of one site structure, with mutable data."""

    def __init__(self, problem: Problem, ev_slots: int) -> None:
        self.key = structure_key(problem, ev_slots)
        self.ev_slots = ev_slots
        n = problem.grid.n_steps
        m = pyo.ConcreteModel(name="site")
        m.steps = pyo.RangeSet(0, n - 1)
        m.cost_weight = pyo.Param(mutable=True, initialize=1.0)
        m.carbon_weight = pyo.Param(mutable=True, initialize=0.0)
        ctx = Context(n_steps=n, step_hours=problem.grid.step_hours, steps=m.steps,
                      cost_weight=m.cost_weight, carbon_weight=m.carbon_weight,
                      integer_steps=integer_steps(problem))
        self.ctx = ctx
        self.grid = GridBlock("grid", len(problem.connection.charges()))
        self.pv = [PvBlock(p.name, p.curtailable) for p in problem.pv]
        self.loads = [LoadBlock(ld.name) for ld in problem.loads]
        self.batteries = [BatteryBlock(b.name, b.allow_grid_charging) for b in problem.batteries]
        with_min, with_v2g = ev_features(problem)
        self.ev_features = (with_min, with_v2g)
        self.ev = [EvSessionBlock(f"ev_slot_{k}", with_min, with_v2g) for k in range(ev_slots)]
        self.electrolysers = [ElectrolyserBlock(e.name, e) for e in problem.electrolysers]
        self.tanks = [TankBlock(t.name) for t in problem.tanks]
        self.offtakes = [OfftakeBlock(o.name, o.tank) for o in problem.offtakes]
        self.blocks: list[AssetBlock] = [self.grid, *self.pv, *self.loads, *self.batteries,
                                         *self.ev, *self.electrolysers, *self.tanks, *self.offtakes]
        for k, blk in enumerate(self.blocks):
            b = pyo.Block()
            m.add_component(f"asset_{k}_{_safe(blk.name)}", b)
            blk.build(b, ctx)
        pv_out = [sum(p.block.out[t] for p in self.pv) for t in range(n)]
        for bat, spec in zip(self.batteries, problem.batteries, strict=True):
            if not spec.allow_grid_charging:
                bat.limit_to_pv(pv_out)

        bus_terms: dict[str, list[list[Any]]] = defaultdict(lambda: [[] for _ in range(n)])
        for blk in self.blocks:
            for bus, flows in blk.injections().items():
                for t, f in enumerate(flows):
                    bus_terms[bus][t].append(f)
        self.buses = sorted(bus_terms)
        for bus in self.buses:
            terms = bus_terms[bus]
            m.add_component(f"balance_{_safe(bus)}",
                            pyo.Constraint(m.steps, rule=lambda m, t, terms=terms: sum(terms[t]) == 0))

        objective = 0
        for blk in self.blocks:
            for term in blk.objective_terms():
                if term.kind == "money":
                    objective += m.cost_weight * term.expr
                elif term.kind == "carbon":
                    objective += m.carbon_weight * term.expr
                else:
                    objective += term.expr
        m.objective = pyo.Objective(expr=objective, sense=pyo.minimize)
        self.model = m
        self.store = ParamStore(m)
        ctx.store = self.store

    def fits(self, problem: Problem, ev_slots: int) -> bool:
        """True when this model can take the problem's numbers (an EV feature the model has
        but the problem does not use is harmless: it is bounded to zero)."""
        need_min, need_v2g = ev_features(problem)
        has_min, has_v2g = self.ev_features
        return (self.key == structure_key(problem, ev_slots) and (has_min or not need_min)
                and (has_v2g or not need_v2g))

    def specs(self, problem: Problem) -> list[Any]:
        """The spec for each block, in block order (EV sessions into slots)."""
        n = problem.grid.n_steps
        sessions = list(problem.ev_sessions) + [
            idle_session(n, k) for k in range(len(problem.ev_sessions), self.ev_slots)
        ]
        return [problem.connection, *problem.pv, *problem.loads, *problem.batteries, *sessions,
                *problem.electrolysers, *problem.tanks, *problem.offtakes]

    def update(self, problem: Problem) -> None:
        m, store = self.model, self.store
        if problem.objective is ObjectiveMode.COST:
            weights = (1.0, 0.0)
        elif problem.objective is ObjectiveMode.CARBON_PRICE:
            weights = (1.0, problem.carbon_price_per_kg)
        else:
            weights = (CARBON_MODE_COST_WEIGHT, 1.0)
        store.scalar(m.cost_weight, weights[0])
        store.scalar(m.carbon_weight, weights[1])
        for blk, spec in zip(self.blocks, self.specs(problem), strict=True):
            blk.update(spec, problem)

    def integer_vars(self) -> list[Any]:
        return [v for blk in self.blocks for v in blk.integer_vars()]

    def on_off_vars(self) -> list[Any]:
        return [v for blk in self.blocks for v in blk.on_off_vars()]

    def round_integers(self, problem: Problem) -> list[tuple[Any, list[int]]]:
        """(indexed on/off var, safe 0/1 per step) for every block that has them."""
        out = []
        for blk, spec in zip(self.blocks, self.specs(problem), strict=True):
            for var in blk.on_off_vars():
                out.append((var, blk.round_integers(spec)))
        return out

    def extract(self, problem: Problem) -> list[AssetResult]:
        out = []
        for blk, spec in zip(self.blocks, self.specs(problem), strict=True):
            if isinstance(blk, EvSessionBlock) and spec.name.startswith("_idle_"):
                continue
            out.append(blk.extract(spec, problem))
        return out


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name)


def merge(results: Sequence[AssetResult]) -> AssetResult:
    total = AssetResult()
    for r in results:
        total.series.update(r.series)
        for k, v in r.costs.items():
            total.costs[k] = total.costs.get(k, 0.0) + v
        total.emissions_kg += r.emissions_kg
        total.slacks.extend(r.slacks)
        total.binding.update(r.binding)
    return total
