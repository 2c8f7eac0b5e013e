"""Electrolyser with tank and offtake: minimum load, tank window, start-ups, min up/down time,
and the on/off state carried from one plan to the next."""

from __future__ import annotations

from typing import Any

import pytest

from optimizer import (
    Electrolyser,
    HydrogenOfftake,
    HydrogenTank,
    Problem,
    RollingPlanner,
    solve,
)

from .support import (
    balance_errors,
    connection,
    count_starts,
    hard_limit_errors,
    min_up_down_errors,
    on_runs,
    problem,
    series_differences,
    soft_limit_errors,
)

# 100 kW rated, 30 kW minimum, 50 kWh/kg: at most 2 kg and at least 0.6 kg per running hour.
RATED, MIN_KW, KWH_PER_KG = 100.0, 30.0, 50.0


def electrolyser(**kw: Any) -> Electrolyser:
    args: dict[str, Any] = dict(rated_kw=RATED, min_load_fraction=MIN_KW / RATED,
                                kwh_per_kg=KWH_PER_KG, tank="tank")
    args.update(kw)
    return Electrolyser("elz", **args)


def h2_problem(prices: list[float], demand_kg: list[float], *, elz: Electrolyser | None = None,
               capacity_kg: float = 20.0, floor_kg: float = 2.0, initial_kg: float = 2.5,
               **kw: Any) -> Problem:
    n = len(prices)
    return problem(n, conn=connection(n, import_price=prices),
                   electrolysers=[elz or electrolyser()],
                   tanks=[HydrogenTank("tank", capacity_kg=capacity_kg, floor_kg=floor_kg,
                                       initial_kg=initial_kg)],
                   offtakes=[HydrogenOfftake("h2use", demand_kg, tank="tank")], **kw)


PRICES = [0.12, 0.08, 0.20, 0.25, 0.07, 0.09, 0.30, 0.15]


def test_power_is_zero_or_between_minimum_and_rated() -> None:
    # 0.4 kg per hour of offtake is 20 kWh/h: below the 30 kW minimum, so a continuous answer
    # would run the stack inside (0, 30) kW. It must batch instead.
    p = h2_problem(PRICES, [0.4] * 8)
    plan = solve(p)
    stack = plan.series["elz.stack_kw"]
    assert any(x > 0 for x in stack)
    for t, x in enumerate(stack):
        assert x == 0.0 or MIN_KW - 1e-6 <= x <= RATED + 1e-6, (t, x)
    assert hard_limit_errors(p, plan) == [] and balance_errors(p, plan) == []


def test_tank_window_and_offtake_met_when_feasible() -> None:
    p = h2_problem(PRICES, [0.4, 0.4, 1.5, 0.4, 0.0, 0.8, 1.2, 0.4])
    plan = solve(p)
    level = plan.series["tank.level_kg"]
    assert all(-1e-6 <= x <= 20.0 + 1e-6 for x in level)
    assert all(x >= 2.0 - 1e-6 for x in level)  # the floor
    assert plan.series["h2use.served_kg"] == pytest.approx(p.offtakes[0].demand_kg, abs=1e-6)
    assert plan.slacks == []
    assert soft_limit_errors(p, plan) == []
    assert balance_errors(p, plan) == []


def test_startups_are_counted_and_costed() -> None:
    # Cheap power in steps 0-1 and 4-5; a small tank means two production runs are needed.
    prices = [0.05, 0.05, 0.60, 0.60, 0.05, 0.05, 0.60, 0.60]
    demand = [1.0] * 8
    cheap = solve(h2_problem(prices, demand, elz=electrolyser(startup_cost=1.0),
                             capacity_kg=5.0, floor_kg=1.0, initial_kg=1.0))
    on = cheap.series["elz.on"]
    starts = count_starts(on, initially_on=False)
    assert starts >= 2
    assert cheap.costs["startup"] / 1.0 == pytest.approx(starts)
    assert cheap.binding["elz.starts"] == starts
    # A dear start-up: the plan avoids restarts, and each start it keeps is costed.
    dear_p = h2_problem(prices, demand, elz=electrolyser(startup_cost=500.0),
                        capacity_kg=5.0, floor_kg=1.0, initial_kg=1.0)
    dear = solve(dear_p)
    dear_starts = count_starts(dear.series["elz.on"], initially_on=False)
    assert dear_starts < starts
    assert dear.costs["startup"] == pytest.approx(500.0 * dear_starts)
    assert dear.total_cost == pytest.approx(sum(dear.costs.values()))
    assert hard_limit_errors(dear_p, dear) == []


def test_startup_cost_counts_a_start_from_the_initial_state() -> None:
    # The offtake (2 kg/h, the rated output) keeps it running in every step.
    # Initially off: the first step on is a start. Initially on: continuing is not.
    prices = [0.05, 0.05, 0.05]
    for initially_on, expected in ((False, 1), (True, 0)):
        elz = electrolyser(startup_cost=3.0, initially_on=initially_on)
        plan = solve(h2_problem(prices, [2.0] * 3, elz=elz, initial_kg=0.5, floor_kg=0.0))
        assert plan.series["elz.on"] == [1.0, 1.0, 1.0]
        assert plan.costs["startup"] == pytest.approx(3.0 * expected)


def test_minimum_up_and_down_times_inside_the_horizon() -> None:
    # Alternating cheap/dear hours tempt a one-step-on, one-step-off pattern.
    prices = [0.05, 0.50] * 6
    demand = [0.8] * 12
    free_p = h2_problem(prices, demand)
    free = solve(free_p)
    assert min(length for _, _, length in on_runs(free.series["elz.on"])[:-1]) == 1
    elz = electrolyser(min_up_steps=3, min_down_steps=3)
    p = h2_problem(prices, demand, elz=elz)
    plan = solve(p)
    on = plan.series["elz.on"]
    assert 0 < sum(on) < 12
    assert min_up_down_errors(elz, on) == []
    for state, first, length in on_runs(on)[:-1]:
        assert length >= 3, (state, first, length, on)
    assert hard_limit_errors(p, plan) == [] and balance_errors(p, plan) == []


def replan_problem(prices: list[float], **elz_kw: Any) -> Problem:
    elz = electrolyser(min_up_steps=4, min_down_steps=4, **elz_kw)
    return h2_problem(prices, [0.0] * len(prices), elz=elz, capacity_kg=50.0, floor_kg=0.0,
                      initial_kg=10.0)


def test_state_carried_across_replans_min_up() -> None:
    planner = RollingPlanner()
    # First plan: off for long, cheap power: it starts.
    first = planner.solve(replan_problem([-0.5] * 6, initially_on=False, steps_in_state=100))
    assert first.series["elz.on"][0] == 1.0
    # Next plan: it has been on for one step, needs four; power is now very dear.
    p = replan_problem([5.0] * 6, initially_on=True, steps_in_state=1)
    plan = planner.solve(p)
    assert plan.series["elz.on"] == [1.0, 1.0, 1.0, 0.0, 0.0, 0.0]
    assert plan.series["elz.stack_kw"][:3] == pytest.approx([MIN_KW] * 3, abs=1e-6)
    assert planner.rebuilds == 0
    assert series_differences(plan, solve(p)) == []
    # Once the minimum is served, it may stop at once.
    done = planner.solve(replan_problem([5.0] * 6, initially_on=True, steps_in_state=4))
    assert done.series["elz.on"] == [0.0] * 6


def test_state_carried_across_replans_min_down() -> None:
    planner = RollingPlanner()
    first = planner.solve(replan_problem([5.0] * 6, initially_on=True, steps_in_state=100))
    assert first.series["elz.on"][0] == 0.0
    # Off for one step, needs four; power now pays to be used.
    p = replan_problem([-1.0] * 6, initially_on=False, steps_in_state=1)
    plan = planner.solve(p)
    assert plan.series["elz.on"] == [0.0, 0.0, 0.0, 1.0, 1.0, 1.0]
    assert plan.series["elz.stack_kw"][3:] == pytest.approx([RATED] * 3, abs=1e-6)
    assert planner.rebuilds == 0
    assert series_differences(plan, solve(p)) == []
    done = planner.solve(replan_problem([-1.0] * 6, initially_on=False, steps_in_state=4))
    assert done.series["elz.on"] == [1.0] * 6
