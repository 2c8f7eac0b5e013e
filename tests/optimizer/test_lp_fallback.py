"""LP relaxation with safe rounding: used when asked (or when the MILP fails); the rounded
plan keeps the discrete rules and still balances."""

from __future__ import annotations

from typing import Any

from optimizer import (
    Charger,
    Electrolyser,
    EvSession,
    HydrogenOfftake,
    HydrogenTank,
    Load,
    Problem,
    RollingPlanner,
    Solver,
    solve,
)

from .support import balance_errors, connection, hard_limit_errors, problem, soft_limit_errors

PRICES = [0.12, 0.08, 0.20, 0.25, 0.07, 0.09, 0.30, 0.15]


def site(solver: Solver, *, min_up: int = 1, min_down: int = 1, initially_on: bool = False,
         steps_in_state: int = 1_000_000) -> Problem:
    n = len(PRICES)
    elz = Electrolyser("elz", rated_kw=100.0, min_load_fraction=0.3, kwh_per_kg=50.0,
                       standby_kw=1.5, startup_cost=2.0, min_up_steps=min_up,
                       min_down_steps=min_down, initially_on=initially_on,
                       steps_in_state=steps_in_state, tank="tank")
    return problem(n, conn=connection(n, import_price=PRICES),
                   loads=[Load("site", [20.0] * n)],
                   electrolysers=[elz],
                   tanks=[HydrogenTank("tank", capacity_kg=20.0, floor_kg=2.0, initial_kg=2.5)],
                   offtakes=[HydrogenOfftake("h2use", [0.4] * n, tank="tank")],
                   solver=solver)


def test_relaxed_solve_reports_fallback_and_rounds_to_valid_on_off() -> None:
    p = site(Solver(relax_integers=True))
    plan = solve(p)
    assert plan.solver.used_lp_fallback is True
    assert plan.solver.status == "relaxed"
    assert plan.solver.integer_variables > 0
    stack = plan.series["elz.stack_kw"]
    assert any(x > 0 for x in stack)
    for t, x in enumerate(stack):
        assert x == 0.0 or 30.0 - 1e-6 <= x <= 100.0 + 1e-6, (t, x)
    assert balance_errors(p, plan) == []
    assert hard_limit_errors(p, plan) == []
    assert soft_limit_errors(p, plan) == []


def test_milp_solve_does_not_use_the_fallback() -> None:
    plan = solve(site(Solver()))
    assert plan.solver.used_lp_fallback is False
    assert plan.solver.status in ("optimal", "feasible")


def test_relaxed_rounding_keeps_min_up_down_and_the_carried_state() -> None:
    cases: list[dict[str, Any]] = [
        dict(min_up=3, min_down=3),
        dict(min_up=4, min_down=2, initially_on=True, steps_in_state=1),
        dict(min_up=2, min_down=4, initially_on=False, steps_in_state=2),
    ]
    for kw in cases:
        p = site(Solver(relax_integers=True), **kw)
        plan = solve(p)
        assert plan.solver.status == "relaxed"
        assert hard_limit_errors(p, plan) == [], kw
        assert balance_errors(p, plan) == [], kw


def test_relaxed_rounding_of_ev_minimum_power() -> None:
    # 3 kWh wanted, at least 6 kW when charging, hourly steps: the relaxation charges 3 kW
    # "half on"; a rounded plan may not charge inside (0, 6) kW nor above the need.
    n = 3
    car = EvSession("car", "cp1", [True, True, False], energy_needed_kwh=3.0,
                    max_charge_kw=11.0, min_charge_kw=6.0, efficiency=1.0)
    car2 = EvSession("van", "cp2", [True, True, True], energy_needed_kwh=20.0,
                     max_charge_kw=11.0, min_charge_kw=6.0, efficiency=0.9)
    p = problem(n, conn=connection(n, import_price=[0.1, 0.2, 0.3]),
                chargers=[Charger("cp1", 11.0), Charger("cp2", 11.0)], ev_sessions=[car, car2],
                solver=Solver(relax_integers=True))
    plan = solve(p)
    assert plan.solver.status == "relaxed"
    assert hard_limit_errors(p, plan) == []
    assert balance_errors(p, plan) == []
    assert soft_limit_errors(p, plan) == []


def test_planner_is_reusable_after_a_relaxed_solve() -> None:
    # The fallback relaxes and fixes the binaries in place; the next MILP solve must see
    # them binary and free again, and match a fresh planner.
    planner = RollingPlanner()
    relaxed = planner.solve(site(Solver(relax_integers=True), min_up=2, min_down=2))
    assert relaxed.solver.used_lp_fallback
    p = site(Solver(mip_rel_gap=0.0), min_up=2, min_down=2)
    again = planner.solve(p)
    assert again.solver.used_lp_fallback is False
    fresh = RollingPlanner().solve(p)
    assert abs(again.total_cost - fresh.total_cost) <= 1e-6 * max(1.0, abs(fresh.total_cost))
    assert hard_limit_errors(p, again) == []
