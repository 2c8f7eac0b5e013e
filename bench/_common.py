"""Shared by the benchmarks: machine and code facts, and a check on HiGHS time limits.

HiGHS 1.16 checks `time_limit` for an LP run against the cumulative run clock of its Highs
object (ERGO-Code/HiGHS#1331, #1477), but limits a MIP run on its own; the planner passes
"clock + allowance" to every run. The benchmarks count solves whose HiGHS time exceeded
`Solver.time_limit_s` ("over limit").
"""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
import sys
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import highspy

from optimizer import RollingPlanner

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
    """The planner's cumulative HiGHS run clock (s)."""
    return float(planner.solver._solver_model.getRunTime()) if planner.solver is not None else 0.0


def over_limit(highs_ms: list[float], limit_s: float) -> int:
    """Solves whose HiGHS time exceeded the time limit (5 % + 0.1 s of slack for its checks)."""
    return sum(ms > (limit_s * 1.05 + 0.1) * 1000 for ms in highs_ms)
