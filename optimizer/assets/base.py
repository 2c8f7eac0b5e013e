"""What every asset block provides to the model assembler."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyomo.environ as pyo

from optimizer.plan import SlackUse
from optimizer.problem import Problem

ELECTRICITY = "electricity"


def hydrogen_bus(tank: str) -> str:
    """Hydrogen carriers are one bus per tank (what is piped to it)."""
    return f"hydrogen:{tank}"


@dataclass
class Context:
    """Shared, structural facts for building blocks."""

    n_steps: int
    step_hours: float
    steps: Any  # pyo.RangeSet over 0..n_steps-1
    cost_weight: Any  # mutable Param: weight of money in the objective
    carbon_weight: Any  # mutable Param: weight of kgCO2 in the objective
    integer_steps: int = 0
    """Steps (from the horizon start) whose on/off variables are binary; later ones are relaxed."""
    store: Any = None  # ParamStore, set once the model is built
    var_map: Any = None  # Pyomo var id -> HiGHS column, set once the solver has the model
    solution: Any = None  # numpy array of column values of the last solve
    columns: dict[int, Any] = field(default_factory=dict)


@dataclass
class ObjectiveTerm:
    """`kind` is 'money' (weighted by cost_weight), 'carbon' (kgCO2, weighted by carbon_weight),
    'penalty' (soft limits, unweighted) or 'tiebreak' (tiny, unweighted, not reported)."""

    name: str
    kind: str
    expr: Any


@dataclass
class AssetResult:
    series: dict[str, list[float]] = field(default_factory=dict)
    costs: dict[str, float] = field(default_factory=dict)
    emissions_kg: float = 0.0
    slacks: list[SlackUse] = field(default_factory=list)
    binding: dict[str, int] = field(default_factory=dict)


TIEBREAK_PER_KWH = 1e-4
"""Money per kWh of discretionary throughput: breaks exact ties without steering decisions."""
SLACK_TOLERANCE = 1e-5


def slack_use(limit: str, asset: str, amounts: Sequence[float], unit: str,
              penalty_per_unit: float) -> SlackUse | None:
    """Summarise a per-step slack as one SlackUse, or None if it is not in use."""
    total = float(sum(amounts))
    if total <= SLACK_TOLERANCE:
        return None
    # A total above the tolerance can be spread over steps that are each below it.
    first = next((k for k, a in enumerate(amounts) if a > SLACK_TOLERANCE),
                 next(k for k, a in enumerate(amounts) if a > 0))
    return SlackUse(limit=limit, asset=asset, amount=total, unit=unit, first_step=first,
                    penalty_cost=total * penalty_per_unit)


class AssetBlock(ABC):
    """An asset's Block: its variables, constraints, bus flows and objective terms."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.block: Any = None
        self.ctx: Context

    @abstractmethod
    def build(self, block: Any, ctx: Context) -> None:
        """Add variables, mutable parameters and constraints to `block`."""

    @abstractmethod
    def injections(self) -> dict[str, list[Any]]:
        """Per bus, per step: what the asset puts into the bus (kW or kg/step; negative = takes)."""

    @abstractmethod
    def objective_terms(self) -> list[ObjectiveTerm]:
        """Terms of the objective this asset contributes."""

    @abstractmethod
    def update(self, spec: Any, problem: Problem) -> None:
        """Push the spec's numbers into the mutable parameters."""

    @abstractmethod
    def extract(self, spec: Any, problem: Problem) -> AssetResult:
        """Read the solution back as series, costs and slacks."""

    def set_series(self, param: Any, data: Sequence[float]) -> None:
        """Set a step-indexed mutable parameter."""
        self.ctx.store.series(param, data)

    def set(self, param: Any, value: float) -> None:
        """Set a scalar mutable parameter."""
        self.ctx.store.scalar(param, value)

    def values(self, var: Any) -> list[float]:
        """Solution values of a step-indexed variable (solver noise below 1e-9 set to 0)."""
        ctx = self.ctx
        cols = ctx.columns.get(id(var))
        if cols is None:
            cols = np.array([ctx.var_map[id(var[t])] for t in range(ctx.n_steps)], dtype=np.int64)
            ctx.columns[id(var)] = cols
        v = ctx.solution[cols]
        v[np.abs(v) < 1e-9] = 0.0
        return [float(x) for x in v]

    def value(self, var: Any) -> float:
        """Solution value of a scalar variable."""
        return float(self.ctx.solution[self.ctx.var_map[id(var)]])

    def integer_vars(self) -> list[Any]:
        """Binary variable data (for the LP fallback)."""
        return []

    def on_off_vars(self) -> list[Any]:
        """Indexed on/off variables over the whole horizon (fixed by safe rounding)."""
        return []

    def round_integers(self, spec: Any) -> list[int]:
        """After an LP relaxation: safe 0/1 values for `on_off_vars()` (all steps, in order)."""
        return []


def mutable(block: Any, name: str, ctx: Context | None = None, init: float = 0.0) -> Any:
    """Add a mutable Param (indexed by step when ctx is given)."""
    if ctx is None:
        p = pyo.Param(mutable=True, initialize=init, within=pyo.Reals)
    else:
        p = pyo.Param(ctx.steps, mutable=True, initialize=init, within=pyo.Reals)
    block.add_component(name, p)
    return p
