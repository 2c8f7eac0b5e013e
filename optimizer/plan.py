"""The result of one solve: per-step flows and states, costs, emissions, slacks, solver facts."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import pandas as pd


@dataclass(frozen=True)
class SlackUse:
    """A soft limit the plan had to relax.

    `amount` is the total violation over the horizon in `unit`; `first_step` is where it starts.
    """

    limit: str
    asset: str
    amount: float
    unit: str
    first_step: int
    penalty_cost: float


@dataclass(frozen=True)
class SolverReport:
    """How the solve went. Times in seconds."""

    status: str
    """'optimal' (proven within the MILP gap), 'feasible' (MILP stopped by its time limit) or
    'relaxed' (LP relaxation rounded safely: the fallback, or asked for)."""
    termination: str
    """How the plan was found: 'lp', 'rounded_lp' (relaxation rounded and re-solved) or 'milp'."""
    wall_time_s: float
    solver_time_s: float
    mip_gap: float | None
    used_lp_fallback: bool
    integer_variables: int


@dataclass(frozen=True)
class Plan:
    """Per-step schedule for every asset, with its costs and emissions.

    `series` maps "asset.quantity_unit" (e.g. "bess.charge_kw", "bess.soc_kwh",
    "grid.import_kw") to one value per step; state series (`*_kwh` SOC, `*_kg` level,
    `*.delivered_kwh`) hold the value at the END of each step.
    `costs` holds each objective term in money (import, export revenue as negative, demand
    charge increment, carbon, degradation, start-up, penalties); `total_cost` is their sum.
    The objective also credits energy and hydrogen left in storage at the horizon end; that
    credit is not money spent, so it is not among `costs`.
    """

    instants_utc: list[datetime]
    step_minutes: int
    series: dict[str, list[float]]
    costs: dict[str, float]
    emissions_kg: float
    slacks: list[SlackUse]
    solver: SolverReport
    binding: dict[str, int] = field(default_factory=dict)
    """Limit name -> number of steps at which it is binding (for explanations)."""

    @property
    def total_cost(self) -> float:
        return sum(self.costs.values())

    def to_frame(self) -> pd.DataFrame:
        """All series as columns, indexed by step start (UTC)."""
        return pd.DataFrame(self.series, index=pd.DatetimeIndex(self.instants_utc, name="utc"))

    def value(self, key: str, step: int) -> float:
        return self.series[key][step]
