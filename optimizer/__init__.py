"""Pure planning: a Problem (time grid, assets, signals, initial state) becomes a Plan.

No files, no clocks, no configuration: deterministic given its input.
"""

from optimizer.plan import Plan, SlackUse, SolverReport
from optimizer.planner import RollingPlanner, solve
from optimizer.problem import (
    Battery,
    Charger,
    DemandCharge,
    Electrolyser,
    EvSession,
    Grid,
    HydrogenOfftake,
    HydrogenTank,
    Load,
    ObjectiveMode,
    Penalties,
    Problem,
    Pv,
    Solver,
    TimeGrid,
)

__all__ = [
    "Battery", "Charger", "DemandCharge", "Electrolyser", "EvSession", "Grid", "HydrogenOfftake",
    "HydrogenTank", "Load", "ObjectiveMode", "Penalties", "Plan", "Problem", "Pv",
    "RollingPlanner", "SlackUse", "Solver", "SolverReport", "TimeGrid", "solve",
]
