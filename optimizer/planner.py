"""Solve problems: a RollingPlanner keeps one persistent HiGHS model per site structure."""

from __future__ import annotations

import time
from typing import Any

import highspy
import numpy as np
from pyomo.contrib.solver.common.results import SolutionStatus, TerminationCondition
from pyomo.contrib.solver.solvers.highs import Highs

from optimizer.fast_update import FastUpdater, Unsupported
from optimizer.model import SiteModel, merge
from optimizer.plan import Plan, SolverReport
from optimizer.problem import ObjectiveMode, Problem


class _PushedHighs(Highs):  # type: ignore[misc]
    """Persistent HiGHS whose data is pushed by FastUpdater: once `structure_fixed`, the
    per-solve scan for model changes is skipped (a structural change builds a new model)."""

    structure_fixed = False

    def update(self, timer: Any = None) -> None:
        if not self.structure_fixed:
            super().update(timer=timer)


class RollingPlanner:
    """Builds the model once per site structure and re-solves it with new data.

    Each `solve` pushes only numbers (prices, carbon, forecasts, initial states, session
    windows) into mutable parameters; the persistent HiGHS interface updates its copy of the
    problem in place and warm-starts. The model is rebuilt only when the structure changes
    (e.g. more EV sessions than slots); `rebuilds` counts that.
    """

    def __init__(self, ev_slots: int | None = None) -> None:
        self.ev_slots = ev_slots
        self.site: SiteModel | None = None
        self.solver: Any = None
        self.rebuilds = 0
        self.solves = 0
        self.fast: FastUpdater | None = None
        self._threads: int | None = None
        self._solver_time = 0.0  # HiGHS seconds spent in the current solve

    def _ensure_model(self, problem: Problem) -> SiteModel:
        slots = max(self.ev_slots or 0, len(problem.ev_sessions))
        if self.site is None or not self.site.fits(problem, slots):
            if self.site is not None:
                self.rebuilds += 1
            self.ev_slots = slots
            self.site = SiteModel(problem, slots)
            self.site.update(problem)
            self.site.store.sync_to_pyomo()
            self.solver = _PushedHighs()
            cfg = self.solver.config
            cfg.load_solutions = False
            cfg.raise_exception_on_nonoptimal_result = False
            cfg.solver_options["output_flag"] = False
            self.solver.set_instance(self.site.model)
            self.site.ctx.var_map = self.solver._pyomo_var_to_solver_var_map
            au = self.solver.config.auto_updates
            for flag in ("check_for_new_or_removed_constraints", "check_for_new_or_removed_vars",
                         "check_for_new_or_removed_params", "check_for_new_objective",
                         "update_constraints", "update_vars", "update_named_expressions",
                         "update_objective", "update_parameters"):
                setattr(au, flag, False)
            try:
                self.fast = FastUpdater(self.solver, self.site.store)
                self.solver.structure_fixed = True
            except Unsupported:
                self.fast = None
                au.update_parameters = True
        else:
            self.site.update(problem)
            if self.fast is not None:
                self.fast.push()
            else:
                self.site.store.sync_to_pyomo()
        return self.site

    def solve(self, problem: Problem) -> Plan:
        """Plan one horizon. Never raises for conflicting data: limits become reported slacks.

        With on/off decisions: first the (warm) LP relaxation gives a lower bound; its safe
        rounding, re-solved with the decisions fixed, gives a plan. If that plan is within
        `mip_rel_gap` of the bound it is accepted (same guarantee as the MILP at that gap);
        otherwise the MILP runs with its time limit, and if it finds nothing the rounded
        plan is used ('relaxed' status, `used_lp_fallback`).
        """
        problem.validate()
        t0 = time.perf_counter()
        site = self._ensure_model(problem)
        integer_vars = site.integer_vars()
        opts = {"time_limit": problem.solver.time_limit_s, "rel_gap": problem.solver.mip_rel_gap}
        self._threads = problem.solver.threads
        self._solver_time = 0.0
        gap: float | None = None
        if not integer_vars:
            method, status = "lp", "optimal"
            results = self._run(opts)
            if results.solution_status not in (SolutionStatus.optimal, SolutionStatus.feasible):
                raise RuntimeError(
                    f"LP solve failed: {results.termination_condition.name} (a bug: every "
                    "limit is soft)"
                )
            self._read_solution()
        else:
            lower, upper = self._relaxed_then_rounded(site, problem, integer_vars, opts)
            rounded = site.ctx.solution
            feasible = upper < float("inf")
            gap = max(0.0, upper - lower) / max(1.0, abs(upper)) if feasible else None
            method, status = "rounded_lp", "optimal"
            if problem.solver.relax_integers and feasible:
                status = "relaxed"
            elif gap is None or gap > problem.solver.mip_rel_gap:
                results = self._run(opts, mip=True)
                if results.solution_status in (SolutionStatus.optimal, SolutionStatus.feasible):
                    self._read_solution()
                    method, gap = "milp", _mip_gap(self.solver)
                    if results.termination_condition is not TerminationCondition.convergenceCriteriaSatisfied:
                        status = "feasible"
                else:
                    site.ctx.solution = rounded
                    status = "relaxed"
        merged = merge(site.extract(problem))
        if problem.objective is ObjectiveMode.CARBON_PRICE and problem.carbon_price_per_kg:
            merged.costs["carbon"] = problem.carbon_price_per_kg * merged.emissions_kg
        self.solves += 1
        report = SolverReport(
            status=status, termination=method,
            wall_time_s=time.perf_counter() - t0, solver_time_s=self._solver_time,
            mip_gap=gap, used_lp_fallback=status == "relaxed", integer_variables=len(integer_vars),
        )
        return Plan(instants_utc=problem.grid.instants(), step_minutes=problem.grid.step_minutes,
                    series=merged.series, costs=merged.costs, emissions_kg=merged.emissions_kg,
                    slacks=merged.slacks, solver=report, binding=merged.binding)

    def _run(self, opts: dict[str, float], mip: bool = False) -> Any:
        highs = self.solver
        before = _run_time(highs)
        # HiGHS checks an LP's time_limit against its run clock, which accumulates over the
        # runs of a persistent instance; a MIP's limit counts from the start of its own run.
        lp = not mip
        results = highs.solve(self.site.model if self.site else None,
                              time_limit=(before if lp else 0.0) + opts["time_limit"],
                              rel_gap=opts["rel_gap"], threads=self._threads)
        self._solver_time += max(0.0, _run_time(highs) - before)
        return results

    def _objective(self) -> float:
        """Objective of the last solve without its constant offset (not kept up to date)."""
        h = self.solver._solver_model
        return float(h.getInfo().objective_function_value - h.getObjectiveOffset()[1])

    def _relaxed_then_rounded(self, site: SiteModel, problem: Problem,
                              integer_vars: list[Any], opts: dict[str, float]) -> tuple[float, float]:
        """LP relaxation (lower bound), safe rounding of the on/off decisions, then an LP with
        them fixed (a feasible plan). Returns both objective values; leaves the plan loaded."""
        highs = self.solver
        h = highs._solver_model
        var_map = highs._pyomo_var_to_solver_var_map
        int_cols = np.array([var_map[id(v)] for v in integer_vars], dtype=np.int32)
        h.changeColsIntegrality(len(int_cols), int_cols,
                                np.full(len(int_cols), highspy.HighsVarType.kContinuous))
        relaxed = self._run(opts)
        if not _solved(relaxed):
            raise RuntimeError(f"LP relaxation failed: {relaxed.termination_condition.name} "
                               "(a bug: every limit is soft)")
        self._read_solution()
        lower = self._objective()
        rounding = site.round_integers(problem)
        cols = np.array([var_map[id(var[t])] for var, vals in rounding for t in range(len(vals))],
                        dtype=np.int32)
        fixed = np.array([float(x) for _, vals in rounding for x in vals])
        h.changeColsBounds(len(cols), cols, fixed, fixed)
        rounded = self._run(opts)
        if _solved(rounded):
            self._read_solution()
            upper = self._objective()
        else:
            upper = float("inf")  # the rounding did not fit: the MILP decides
        h.changeColsIntegrality(len(int_cols), int_cols,
                                np.full(len(int_cols), highspy.HighsVarType.kInteger))
        if self.fast is not None:
            self.fast.push()  # restores every parameter-driven bound, the on/off ones included
        else:
            site.store.sync_to_pyomo()
            highs.update_variables([var[t] for var, vals in rounding for t in range(len(vals))])
        return lower, upper

    def _read_solution(self) -> None:
        assert self.site is not None
        self.site.ctx.solution = np.array(self.solver._solver_model.getSolution().col_value)


def _solved(results: Any) -> bool:
    return bool(results.solution_status in (SolutionStatus.optimal, SolutionStatus.feasible)
                and results.termination_condition is TerminationCondition.convergenceCriteriaSatisfied)


def _run_time(highs: Any) -> float:
    model = getattr(highs, "_solver_model", None)
    return float(model.getRunTime()) if model is not None else 0.0


def _mip_gap(highs: Any) -> float | None:
    model = getattr(highs, "_solver_model", None)
    if model is None:
        return None
    info = model.getInfo()
    gap = float(info.mip_gap)
    return gap if gap < 1e30 else None


def solve(problem: Problem) -> Plan:
    """One-off solve (builds a model, solves once)."""
    return RollingPlanner().solve(problem)
