"""Re-solve timing of the RollingPlanner: 48 h horizon at 15 min (192 steps), hourly re-plans.

Sites: guangdong_factory and caltech_campus (bundled configs) and a large synthetic site
built directly as optimizer.Problem objects. Modes, each with its own planner:

  configured  as configured: on/off decisions binary in the first 12 h (48 steps)
  lp          every binary-needing feature off (electrolyser min load, start-up cost, standby,
              min up/down; EV minimum power): a pure LP re-solve
  relaxed     Solver(relax_integers=True): the LP fallback path (relaxation, safe rounding)

Each horizon's initial state (SOC, tank levels, electrolyser on/off, EV energy delivered,
billing-period peak) is carried from the previous plan's first hour. The first solve of a
run builds the model; it is reported separately and left out of the statistics.

Re-solves whose HiGHS time exceeded `Solver.time_limit_s` are counted ("over limit").

    python bench/bench_resolve.py [--n 48] [--sites ...] [--modes ...] [--json] [--profile 5]
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import io
import json
import pstats
import statistics
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
from _common import RESULTS, highs_clock, machine_info, over_limit

from ems.config import load_site
from ems.inputs import build_inputs
from ems.planning.problem_builder import billing_period, build_problem, initial_state, settings_from
from ems.planning.state import SiteState
from ems.whatif.simulate import max_sessions_per_horizon
from optimizer import (
    Battery,
    Charger,
    Electrolyser,
    EvSession,
    Grid,
    HydrogenOfftake,
    HydrogenTank,
    Load,
    Plan,
    Problem,
    Pv,
    RollingPlanner,
    Solver,
    TimeGrid,
)

STEP_MIN = 15
HORIZON = 192
REPLAN = 4
INTEGER_STEPS = 48
MODES = ("configured", "lp", "relaxed")
SITES = {"guangdong_factory": date(2025, 7, 14), "caltech_campus": date(2019, 10, 14),
         "synthetic_large": date(2025, 7, 14)}
TARGET_MS = {"guangdong_factory": 25.0, "caltech_campus": 25.0, "synthetic_large": 150.0}
TARGET_OVERHEAD = 1.5
PARTS = {  # name -> (file suffix, function) whose cumulative profiled time is reported
    "RollingPlanner.solve": ("planner.py", "solve"),
    "HiGHS run": ("~", "<built-in method highspy._core.run>"),
    "Pyomo solve() incl. HiGHS": ("persistent.py", "solve"),
    "SiteModel.update": ("model.py", "update"),
    "FastUpdater.push": ("fast_update.py", "push"),
    "SiteModel.extract": ("model.py", "extract"),
    "Problem.validate": ("problem.py", "validate"),
    "SiteModel.integer_vars": ("model.py", "integer_vars"),
    "SiteModel.round_integers": ("model.py", "round_integers"),
}

MakeProblem = Callable[[int, SiteState], Problem]


@dataclass
class Run:
    site: str
    mode: str
    build_ms: float = 0.0
    wall_ms: list[float] = field(default_factory=list)
    highs_ms: list[float] = field(default_factory=list)
    cpu_ms: list[float] = field(default_factory=list)
    methods: list[str] = field(default_factory=list)
    statuses: list[str] = field(default_factory=list)
    integer_variables: int = 0
    rebuilds: int = 0
    sessions: list[int] = field(default_factory=list)
    model: dict[str, int] = field(default_factory=dict)
    profile_top: list[str] = field(default_factory=list)
    profile_parts: dict[str, float] = field(default_factory=dict)
    time_limit_s: float = 0.0
    highs_clock_s: float = 0.0

    def summary(self) -> dict[str, Any]:
        wall, highs = statistics.median(self.wall_ms), statistics.median(self.highs_ms)
        return {
            "site": self.site, "mode": self.mode, "resolves": len(self.wall_ms),
            "build_ms": round(self.build_ms, 1),
            "median_wall_ms": round(wall, 2),
            "p90_wall_ms": round(float(np.percentile(self.wall_ms, 90)), 2),
            "max_wall_ms": round(max(self.wall_ms), 2),
            "median_highs_ms": round(highs, 2),
            "median_cpu_ms": round(statistics.median(self.cpu_ms), 2),
            "overhead": round(wall / highs, 2) if highs > 0 else None,
            "methods": dict(Counter(self.methods)), "statuses": dict(Counter(self.statuses)),
            "integer_variables": self.integer_variables, "rebuilds": self.rebuilds,
            "max_highs_ms": round(max(self.highs_ms), 2),
            "time_limit_s": self.time_limit_s,
            "over_limit": over_limit(self.highs_ms, self.time_limit_s),
            "highs_clock_s": round(self.highs_clock_s, 2),
            "ev_sessions_min_max": [min(self.sessions), max(self.sessions)],
            "model": self.model,
        }


def as_mode(p: Problem, mode: str) -> Problem:
    if mode == "lp":
        return dataclasses.replace(
            p,
            electrolysers=[dataclasses.replace(e, min_load_fraction=0.0, startup_cost=0.0,
                                               standby_kw=0.0, min_up_steps=1, min_down_steps=1)
                           for e in p.electrolysers],
            ev_sessions=[dataclasses.replace(s, min_charge_kw=0.0) for s in p.ev_sessions],
        )
    if mode == "relaxed":
        return dataclasses.replace(p, solver=dataclasses.replace(p.solver, relax_integers=True))
    return p


def advance(state: SiteState, p: Problem, plan: Plan, tz: str) -> None:
    """The state after the first hour of the plan (the plan is followed exactly)."""
    k = REPLAN - 1
    for b in p.batteries:
        state.battery_soc_kwh[b.name] = plan.series[f"{b.name}.soc_kwh"][k]
    for t in p.tanks:
        state.tank_kg[t.name] = plan.series[f"{t.name}.level_kg"][k]
    for e in p.electrolysers:
        on, run = e.initially_on, e.steps_in_state
        for v in plan.series[f"{e.name}.on"][:REPLAN]:
            now = v > 0.5
            run = run + 1 if now == on else 1
            on = now
        state.electrolyser_on[e.name], state.electrolyser_steps_in_state[e.name] = on, run
    for s in p.ev_sessions:
        state.ev_delivered_kwh[s.name] = (state.ev_delivered_kwh.get(s.name, 0.0)
                                          + plan.series[f"ev:{s.name}.delivered_kwh"][k])
    period = billing_period(p.grid.start_utc, tz)
    if state.billing_period != period:
        state.billing_period, state.peak_import_kw = period, 0.0
    window = p.connection.demand_window or [True] * p.grid.n_steps
    imports = plan.series[f"{p.connection.name}.import_kw"][:REPLAN]
    state.peak_import_kw = max([state.peak_import_kw,
                                *(x for x, w in zip(imports, window, strict=False) if w)])


# ---- sites -----------------------------------------------------------------------------------

def bundled_site(name: str, day: date, n: int) -> tuple[MakeProblem, SiteState, int, str]:
    site = load_site(name)
    cfg = site.config
    tz = cfg.site.timezone
    start = datetime(day.year, day.month, day.day, tzinfo=ZoneInfo(tz)).astimezone(UTC)
    end = start + timedelta(hours=n - 1, minutes=STEP_MIN * HORIZON)
    inputs = build_inputs(site, start, end)
    settings = settings_from(cfg)
    slots = max_sessions_per_horizon(inputs, start, (n - 1) * REPLAN + 1, REPLAN, HORIZON)

    def make(i: int, state: SiteState) -> Problem:
        return build_problem(site, inputs, start + timedelta(hours=i), state, settings)

    return make, initial_state(cfg), slots, tz


@dataclass(frozen=True)
class _Stay:
    name: str
    charger: str
    arrive: float  # step (may be fractional / negative)
    depart: float
    energy_kwh: float
    max_kw: float
    min_kw: float


def _ar1(rng: np.random.Generator, n: int, phi: float) -> np.ndarray:
    x = np.empty(n)
    x[0] = rng.normal()
    for k in range(1, n):
        x[k] = phi * x[k - 1] + np.sqrt(1 - phi * phi) * rng.normal()
    return x


def synthetic_site(n: int, seed: int = 7,
                   chargers: int = 18) -> tuple[MakeProblem, SiteState, int, str]:
    """4 batteries, 18 chargers with ~50 EV sessions per horizon, 2 electrolysers with tanks
    and offtake, PV, load, TOU + day-ahead-like price noise, demand charge."""
    rng = np.random.default_rng(seed)
    length = (max(n, 168) - 1) * REPLAN + HORIZON  # data of horizon i does not depend on n
    t0 = datetime(2025, 7, 14, tzinfo=UTC)
    hour = (np.arange(length) * STEP_MIN / 60.0) % 24
    tou = np.where(hour < 8, 0.27, 0.70)
    tou = np.where(((hour >= 10) & (hour < 12)) | ((hour >= 14) & (hour < 19)), 1.19, tou)
    price = np.clip(tou * (1 + 0.15 * _ar1(rng, length, 0.97)) + 0.03 * rng.normal(size=length),
                    0.02, None)
    export = np.clip(0.35 + 0.05 * _ar1(rng, length, 0.95), 0.0, None)
    carbon = np.clip(550 + 120 * np.cos(2 * np.pi * (hour - 13) / 24)
                     + 30 * rng.normal(size=length), 50, None)
    cloud = np.clip(0.8 + 0.25 * _ar1(rng, length, 0.98), 0.2, 1.0)
    pv = 3000.0 * np.clip(np.sin(np.pi * (hour - 6) / 12), 0, None) * cloud
    working = (hour >= 8) & (hour < 20)
    load = np.clip(1500 + 700 * working + 150 * _ar1(rng, length, 0.9), 200, None)
    h2_1 = np.where((hour >= 6) & (hour < 22), 1.2, 0.0) * (1 + 0.1 * rng.normal(size=length))
    h2_2 = 2.0 * np.clip(1 + 0.2 * _ar1(rng, length, 0.9), 0, None)

    stays: list[_Stay] = []
    for c in range(chargers):
        three_phase = c % 2 == 0
        t = -rng.uniform(0, 24) * 4
        while t < length:
            stay = rng.uniform(6, 30) * 4
            max_kw = 22.0 if three_phase else 7.4
            energy = min(rng.uniform(8, 90), 0.8 * max_kw * stay / 4)
            stays.append(_Stay(f"s{len(stays):04d}", f"ev_{c:02d}", t, t + stay, energy, max_kw,
                               4.14 if three_phase else 1.38))
            t += stay + rng.uniform(1, 10) * 4

    def in_horizon(i: int) -> list[_Stay]:
        a = i * REPLAN
        return [s for s in stays if s.depart > a and s.arrive < a + HORIZON]

    batteries = [("bess_a", 2000.0, 1000.0, 0.96, 0.03, True),
                 ("bess_b", 1000.0, 500.0, 0.95, 0.05, True),
                 ("bess_c", 500.0, 250.0, 0.94, 0.02, False),  # charges from PV only
                 ("bess_d", 4000.0, 1000.0, 0.97, 0.04, True)]
    electrolysers = [Electrolyser("pem_1", 600.0, 0.2, 53.0, standby_kw=4.0, startup_cost=25.0,
                                  min_up_steps=8, min_down_steps=4, tank="tank_1"),
                     Electrolyser("alk_2", 1000.0, 0.3, 50.0, standby_kw=8.0, startup_cost=60.0,
                                  min_up_steps=16, min_down_steps=8, tank="tank_2")]
    state = SiteState(
        battery_soc_kwh={name: 0.5 * cap for name, cap, *_ in batteries},
        tank_kg={"tank_1": 150.0, "tank_2": 250.0},
        electrolyser_on={"pem_1": False, "alk_2": True},
        electrolyser_steps_in_state={"pem_1": 1_000_000, "alk_2": 1_000_000},
    )

    def make(i: int, st: SiteState) -> Problem:
        a = i * REPLAN
        w = slice(a, a + HORIZON)
        sessions = []
        for s in in_horizon(i):
            plugged = [max(0.0, min(k + 1.0, s.depart - a) - max(float(k), s.arrive - a))
                       for k in range(HORIZON)]
            if not any(plugged):
                continue
            sessions.append(EvSession(
                s.name, s.charger, plugged,
                max(0.0, s.energy_kwh - st.ev_delivered_kwh.get(s.name, 0.0)), s.max_kw,
                min_charge_kw=s.min_kw,
                hours_plugged_after_horizon=max(0.0, (s.depart - a - HORIZON) / 4)))
        return Problem(
            grid=TimeGrid(t0 + timedelta(hours=i), STEP_MIN, HORIZON),
            connection=Grid([4000.0] * HORIZON, [1000.0] * HORIZON, price[w].tolist(),
                            export[w].tolist(), carbon[w].tolist(), demand_charge_per_kw=30.0,
                            peak_so_far_kw=st.peak_import_kw),
            pv=[Pv("pv", pv[w].tolist())],
            loads=[Load("plant", load[w].tolist())],
            batteries=[Battery(name, cap, kw, kw, st.battery_soc_kwh[name], eff, eff,
                               degradation_cost_per_kwh=deg, allow_grid_charging=grid)
                       for name, cap, kw, eff, deg, grid in batteries],
            chargers=[Charger(f"ev_{c:02d}", 22.0) for c in range(chargers)],
            ev_sessions=sessions,
            electrolysers=[dataclasses.replace(e, initially_on=st.electrolyser_on[e.name],
                                               steps_in_state=st.electrolyser_steps_in_state[e.name])
                           for e in electrolysers],
            tanks=[HydrogenTank("tank_1", 300.0, 30.0, st.tank_kg["tank_1"], 2.0),
                   HydrogenTank("tank_2", 500.0, 50.0, st.tank_kg["tank_2"], 2.0)],
            offtakes=[HydrogenOfftake("h2_1", h2_1[w].tolist(), "tank_1"),
                      HydrogenOfftake("h2_2", h2_2[w].tolist(), "tank_2")],
            solver=Solver(integer_horizon_steps=INTEGER_STEPS),
        )

    slots = max(len(in_horizon(i)) for i in range(n))
    return make, state, slots, "UTC"


# ---- measurement -----------------------------------------------------------------------------

def run(name: str, mode: str, n: int, profile_top: int = 0) -> Run:
    if name == "synthetic_large":
        make, state, slots, tz = synthetic_site(n)
    else:
        make, state, slots, tz = bundled_site(name, SITES[name], n)
    planner = RollingPlanner(ev_slots=slots)
    out = Run(name, mode)
    prof = cProfile.Profile() if profile_top else None
    for i in range(n):
        problem = as_mode(make(i, state), mode)
        if prof is not None and i > 0:
            prof.enable()
        cpu0 = time.process_time()
        plan = planner.solve(problem)
        cpu = (time.process_time() - cpu0) * 1000
        if prof is not None:
            prof.disable()
        rep = plan.solver
        if i == 0:
            out.build_ms = rep.wall_time_s * 1000
        else:
            out.wall_ms.append(rep.wall_time_s * 1000)
            out.highs_ms.append(rep.solver_time_s * 1000)
            out.cpu_ms.append(cpu)
            out.methods.append(rep.termination)
            out.statuses.append(rep.status)
        out.integer_variables = rep.integer_variables
        out.time_limit_s = problem.solver.time_limit_s
        out.sessions.append(len(problem.ev_sessions))
        advance(state, problem, plan, tz)
    h = planner.solver._solver_model
    out.model = {"cols": h.getNumCol(), "rows": h.getNumRow(), "nonzeros": h.getNumNz()}
    out.rebuilds = planner.rebuilds
    out.highs_clock_s = highs_clock(planner)
    if prof is not None:
        text = io.StringIO()
        pstats.Stats(prof, stream=text).sort_stats("tottime").print_stats(profile_top)
        out.profile_top = [ln for ln in text.getvalue().splitlines() if ln.strip()]
        out.profile_parts = profile_parts(pstats.Stats(prof), n - 1)
    return out


def profile_parts(stats: pstats.Stats, resolves: int) -> dict[str, float]:
    """Cumulative profiled ms per re-solve of the functions in PARTS."""
    out: dict[str, float] = {}
    for (file, _line, func), (_cc, _nc, _tt, cum, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        for name, (suffix, fn) in PARTS.items():
            if func == fn and file.endswith(suffix):
                out[name] = out.get(name, 0.0) + cum * 1000 / resolves
    return {name: round(out[name], 2) for name in PARTS if name in out}


def table(rows: list[dict[str, Any]]) -> str:
    head = ("| site | mode | re-solves | build ms | median wall ms | p90 wall ms | median HiGHS ms "
            "| median CPU ms | overhead | methods | int vars | over limit | target ms | wall met "
            "| overhead met |")
    lines = [head, "|" + "---|" * head.count(" | ") + "---|"]
    for r in rows:
        target = TARGET_MS[r["site"]]
        methods = ", ".join(f"{k} {v}" for k, v in sorted(r["methods"].items()))
        over = r["overhead"]
        lines.append(
            f"| {r['site']} | {r['mode']} | {r['resolves']} | {r['build_ms']:.0f} "
            f"| {r['median_wall_ms']:.1f} | {r['p90_wall_ms']:.1f} | {r['median_highs_ms']:.1f} "
            f"| {r['median_cpu_ms']:.1f} | {over if over is not None else '-'} | {methods} "
            f"| {r['integer_variables']} "
            f"| {r['over_limit']} "
            f"| {target:.0f} | {'yes' if r['median_wall_ms'] <= target else 'no'} "
            f"| {'yes' if over is not None and over <= TARGET_OVERHEAD else 'no'} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=48, help="hourly horizons per run (first builds)")
    ap.add_argument("--sites", nargs="+", choices=list(SITES), default=list(SITES))
    ap.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    ap.add_argument("--json", action="store_true", help="write bench/results/resolve.json")
    ap.add_argument("--profile", type=int, default=0, metavar="TOP",
                    help="cProfile the re-solves; print the TOP functions by own time "
                         "(timings of a profiled run are inflated)")
    args = ap.parse_args()
    machine = machine_info()
    started = time.perf_counter()
    runs = []
    for name in args.sites:
        for mode in args.modes:
            r = run(name, mode, args.n, args.profile)
            runs.append(r)
            s = r.summary()
            print(f"{name:18s} {mode:10s} build {s['build_ms']:7.0f} ms  "
                  f"median {s['median_wall_ms']:7.1f} ms  HiGHS {s['median_highs_ms']:7.1f} ms  "
                  f"{s['methods']}  over limit {s['over_limit']}", flush=True)
            if r.profile_top:
                print("\n".join(r.profile_top[-(args.profile + 1):]), flush=True)
                print("  cumulative ms per re-solve: " + ", ".join(
                    f"{k} {v:.1f}" for k, v in r.profile_parts.items()), flush=True)
    rows = [r.summary() for r in runs]
    print()
    print(table(rows))
    elapsed = time.perf_counter() - started
    print(f"\n{machine['nproc']} CPUs ({machine['cpu']}), load average at start "
          f"{machine['load_average_at_start']}, {elapsed:.0f} s in total")
    if args.json:
        RESULTS.mkdir(exist_ok=True)
        path = RESULTS / "resolve.json"
        payload = {"machine": machine, "n_horizons": args.n,
                   "horizon_steps": HORIZON,
                   "step_minutes": STEP_MIN, "targets": {"median_ms": TARGET_MS,
                                                         "overhead": TARGET_OVERHEAD},
                   "elapsed_s": round(elapsed, 1), "results": rows,
                   "per_solve": [{"site": r.site, "mode": r.mode,
                                  "wall_ms": [round(x, 3) for x in r.wall_ms],
                                  "highs_ms": [round(x, 3) for x in r.highs_ms],
                                  "cpu_ms": [round(x, 3) for x in r.cpu_ms],
                                  "methods": r.methods} for r in runs]}
        path.write_text(json.dumps(payload, indent=1))
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
