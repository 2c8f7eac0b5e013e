"""EV session: charging (and optional V2G) while plugged in, with a soft energy target."""

from __future__ import annotations

from itertools import accumulate
from typing import Any

import pyomo.environ as pyo

from optimizer.assets.base import (
    ELECTRICITY,
    AssetBlock,
    AssetResult,
    Context,
    ObjectiveTerm,
    mutable,
    slack_use,
)
from optimizer.problem import EvSession, Problem

EARLINESS_PER_KWH_STEP = 1e-6
"""Tie-break: at equal prices, charge earlier (money per kWh per step of delay)."""


def target_in_horizon_kwh(spec: EvSession) -> float:
    """Energy that must be delivered within the horizon: what the time after it cannot supply."""
    after = spec.max_charge_kw * spec.efficiency * spec.hours_plugged_after_horizon
    return max(0.0, spec.energy_needed_kwh - after)


class EvSessionBlock(AssetBlock):
    """Charge/discharge kW at the charger (grid side); delivered kWh into the vehicle.

    Power is zero outside the plugged steps. With a minimum power, an on/off binary makes
    charging either 0 or within [min, max]. Delivered energy never exceeds the need; the
    need by departure is soft (shortfall penalised and reported).
    """

    def __init__(self, name: str, with_min_power: bool, with_v2g: bool) -> None:
        super().__init__(name)
        self.with_min_power = with_min_power
        self.with_v2g = with_v2g
        self.session_name = name

    def build(self, b: Any, ctx: Context) -> None:
        self.ctx = ctx
        T, dt = ctx.steps, ctx.step_hours
        mutable(b, "plugged", ctx)
        mutable(b, "present", ctx)
        for name in ("max_charge", "min_charge", "max_discharge", "efficiency", "target",
                     "cap", "reserve", "penalty"):
            mutable(b, name, init=1.0)
        b.charge = pyo.Var(T, bounds=lambda b, t: (0.0, b.max_charge * b.plugged[t]))
        if self.with_v2g:
            b.discharge = pyo.Var(T, bounds=lambda b, t: (0.0, b.max_discharge * b.plugged[t]))
        b.shortfall = pyo.Var(within=pyo.NonNegativeReals)
        n = ctx.n_steps
        if self.with_v2g:
            # V2G needs the running energy: it may not take the vehicle below its reserve.
            b.delivered = pyo.Var(T, bounds=lambda b, t: (-b.reserve, b.cap))

            def dynamics(b: Any, t: int) -> Any:
                prev = 0.0 if t == 0 else b.delivered[t - 1]
                return b.delivered[t] == prev + dt * (b.efficiency * b.charge[t]
                                                      - b.discharge[t] / b.efficiency)

            b.dynamics = pyo.Constraint(T, rule=dynamics)
            b.target_con = pyo.Constraint(expr=b.delivered[n - 1] + b.shortfall >= b.target)
        else:
            # Charging only: the energy in by the end is one sum; no per-step state needed.
            total = sum(b.charge[t] for t in range(n)) * dt
            b.cap_con = pyo.Constraint(expr=b.efficiency * total <= b.cap)
            b.target_con = pyo.Constraint(expr=b.efficiency * total + b.shortfall >= b.target)
        if self.with_min_power and ctx.integer_steps > 0:
            # Only where on/off is exact: a relaxed on/off would let any power through anyway.
            K = pyo.RangeSet(0, ctx.integer_steps - 1)
            b.on = pyo.Var(K, within=pyo.Binary, bounds=lambda b, t: (0, b.present[t]))
            b.on_max = pyo.Constraint(K, rule=lambda b, t: b.charge[t] <= b.max_charge * b.on[t])
            # step-average minimum: the vehicle is there for `plugged` of the step
            b.on_min = pyo.Constraint(
                K, rule=lambda b, t: b.charge[t] >= b.min_charge * b.plugged[t] * b.on[t])
        self.block = b

    def injections(self) -> dict[str, list[Any]]:
        b = self.block
        n = self.ctx.n_steps
        if self.with_v2g:
            return {ELECTRICITY: [b.discharge[t] - b.charge[t] for t in range(n)]}
        return {ELECTRICITY: [-b.charge[t] for t in range(n)]}

    def objective_terms(self) -> list[ObjectiveTerm]:
        b, n, dt = self.block, self.ctx.n_steps, self.ctx.step_hours
        terms = [
            ObjectiveTerm("ev_shortfall", "penalty", b.penalty * b.shortfall),
            ObjectiveTerm("ev_earliness", "tiebreak",
                          sum(EARLINESS_PER_KWH_STEP * t * dt * b.charge[t] for t in range(n))),
        ]
        if self.with_v2g:
            terms.append(ObjectiveTerm("ev_v2g_tiebreak", "tiebreak",
                                       sum(1e-4 * dt * b.discharge[t] for t in range(n))))
        return terms

    def update(self, spec: EvSession, problem: Problem) -> None:
        b = self.block
        self.session_name = spec.name
        self.set_series(b.plugged, [float(p) for p in spec.plugged])
        self.set_series(b.present, [1.0 if p > 0 else 0.0 for p in spec.plugged])
        self.set(b.max_charge, spec.max_charge_kw)
        self.set(b.min_charge, spec.min_charge_kw)
        self.set(b.max_discharge, spec.max_discharge_kw)
        self.set(b.efficiency, spec.efficiency)
        self.set(b.target, target_in_horizon_kwh(spec))
        self.set(b.cap, max(0.0, spec.energy_needed_kwh))
        self.set(b.reserve, spec.v2g_reserve_kwh if spec.max_discharge_kw > 0 else 0.0)
        self.set(b.penalty, problem.penalties.ev_shortfall_per_kwh)

    def extract(self, spec: EvSession, problem: Problem) -> AssetResult:
        b, n = self.block, self.ctx.n_steps
        key = f"ev:{spec.name}"
        ch = self.values(b.charge)
        dis = self.values(b.discharge) if self.with_v2g else [0.0] * n
        res = AssetResult(series={
            f"{key}.charge_kw": ch,
            f"{key}.discharge_kw": dis,
            f"{key}.delivered_kwh": (self.values(b.delivered) if self.with_v2g else
                                     list(accumulate(c * spec.efficiency * self.ctx.step_hours for c in ch))),
        })
        short = self.value(b.shortfall)
        use = slack_use("ev_energy", spec.name, [short], "kWh",
                        problem.penalties.ev_shortfall_per_kwh)
        if use is not None:
            last_plugged = max((t for t, p in enumerate(spec.plugged) if p), default=0)
            res.slacks.append(use.__class__(**{**use.__dict__, "first_step": last_plugged}))
            res.costs["penalty_ev_energy"] = use.penalty_cost
        return res

    def on_off_vars(self) -> list[Any]:
        return [self.block.on] if self.with_min_power and self.ctx.integer_steps > 0 else []

    def integer_vars(self) -> list[Any]:
        if not self.with_min_power or self.ctx.integer_steps == 0:
            return []
        return [self.block.on[t] for t in range(self.ctx.integer_steps)]

    def round_integers(self, spec: EvSession) -> list[int]:
        """On where the relaxation charges most, until those steps can carry the energy the
        relaxation put into the exact part of the horizon, and never so many that the minimum
        power alone would exceed the vehicle's need."""
        k, dt, eff = self.ctx.integer_steps, self.ctx.step_hours, spec.efficiency
        charge = self.values(self.block.charge)[:k]
        wanted = sum(charge) * dt * eff
        on = [0] * k
        order = sorted((t for t in range(k) if spec.plugged[t] > 0 and charge[t] > 1e-6),
                       key=lambda t: -charge[t])
        carried, floor = 0.0, 0.0
        for t in order:
            if carried >= wanted - 1e-9:
                break
            floor_t = spec.min_charge_kw * spec.plugged[t] * dt * eff
            if floor + floor_t > max(0.0, spec.energy_needed_kwh) + 1e-9:
                break
            on[t] = 1
            floor += floor_t
            carried += spec.max_charge_kw * spec.plugged[t] * dt * eff
        return on
