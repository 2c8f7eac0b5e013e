"""Shared by the benchmarks: machine facts, and a watch on HiGHS's run clock.

HiGHS (1.16 here) checks `time_limit` for an LP run against the cumulative run clock of its
Highs object, not the current run (ERGO-Code/HiGHS#1331, #1477; highspy does not expose
`zeroAllClocks`); a MIP run is limited on its own. A RollingPlanner keeps one Highs object and
passes `Solver.time_limit_s` unchanged to every run, so once it has spent that long in HiGHS
in total, every later LP run (the pure LP, the relaxation and the fixed-rounding LP) stops at
once with 'time limit' and the plan is read from whatever values HiGHS holds. The
benchmarks count solves that start with the clock already past the limit
("clock-exhausted"). With `per_run_limit` they pass `time_limit + clock` to LP runs, which
gives every run its own limit.
"""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import os
import platform
import subprocess
import sys
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import highspy

from optimizer import Plan, Problem, RollingPlanner

RESULTS = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parent.parent


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load_average() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def code_state() -> dict[str, str]:
    """Commit, and a digest of uncommitted changes to optimizer/ and ems/ (code under test)."""
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                                  check=False).stdout
        except OSError:
            return ""

    diff = git("diff", "HEAD", "--", "optimizer", "ems")
    return {"commit": git("rev-parse", "--short", "HEAD").strip(),
            "uncommitted_diff_sha1": hashlib.sha1(diff.encode()).hexdigest()[:12] if diff else ""}


def machine_info() -> dict[str, Any]:
    h = highspy.Highs()
    return {
        "date_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "cpu": cpu_model(),
        "python": sys.version.split()[0],
        "highs": f"{h.version()} (git {h.githash()})",
        "highspy": version("highspy"),
        "pyomo": version("pyomo"),
        "numpy": version("numpy"),
        "load_average_at_start": load_average(),
        **code_state(),
    }


def highs_clock(planner: RollingPlanner) -> float:
    return float(planner.solver._solver_model.getRunTime()) if planner.solver is not None else 0.0


def clock_exhausted(planner: RollingPlanner, problem: Problem) -> bool:
    """True when the planner's HiGHS clock is already past the problem's time limit: HiGHS
    will stop every LP run of this solve at once."""
    return planner.solver is not None and highs_clock(planner) >= problem.solver.time_limit_s


_INT_COL: dict[int, tuple[int, int | None]] = {}


def _is_mip(planner: RollingPlanner) -> bool:
    """Whether the HiGHS model currently has integer columns (checked on one on/off column)."""
    site = planner.site
    cached = _INT_COL.get(id(planner))
    if cached is None or cached[0] != id(site):
        ints = site.integer_vars() if site is not None else []
        col = planner.solver._pyomo_var_to_solver_var_map[id(ints[0])] if ints else None
        cached = _INT_COL[id(planner)] = (id(site), col)
    col = cached[1]
    if col is None:
        return False
    return bool(planner.solver._solver_model.getColIntegrality(col)[1]
                == highspy.HighsVarType.kInteger)


class PlannerWatch:
    """Wraps RollingPlanner for the benchmark run (also in what-if worker processes forked
    afterwards): counts solves and clock-exhausted solves. With `per_run_limit`, each LP run
    gets `time_limit + clock` (MIP runs are already limited per run), i.e. the time limit
    applies to each run as the planner intends; clock-exhausted solves are then not counted."""

    def __init__(self, per_run_limit: bool) -> None:
        ctx = mp.get_context("fork")
        self.solves = ctx.Value("i", 0)
        self.exhausted = ctx.Value("i", 0)
        solve, run = RollingPlanner.solve, RollingPlanner._run
        watch = self

        def watched_solve(planner: RollingPlanner, problem: Problem) -> Plan:
            if not per_run_limit and clock_exhausted(planner, problem):
                with watch.exhausted.get_lock():
                    watch.exhausted.value += 1
            with watch.solves.get_lock():
                watch.solves.value += 1
            return solve(planner, problem)

        def own_limit_run(planner: RollingPlanner, opts: dict[str, float]) -> Any:
            if not _is_mip(planner):
                opts = {**opts, "time_limit": opts["time_limit"] + highs_clock(planner)}
            return run(planner, opts)

        RollingPlanner.solve = watched_solve  # type: ignore[method-assign]
        if per_run_limit:
            RollingPlanner._run = own_limit_run  # type: ignore[method-assign]
