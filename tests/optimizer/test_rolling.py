"""RollingPlanner: re-solves push new data into one model and agree with fresh solves."""

from __future__ import annotations

from dataclasses import replace

import pytest

from optimizer import (
    Battery,
    Charger,
    Electrolyser,
    EvSession,
    Grid,
    HydrogenOfftake,
    HydrogenTank,
    Load,
    ObjectiveMode,
    Plan,
    Problem,
    Pv,
    RollingPlanner,
    Solver,
    solve,
)

from .support import balance_errors, connection, hard_limit_errors, problem

N = 12


def shifted(values: list[float], k: int) -> list[float]:
    return values[k:] + values[:k]


PRICE = [0.21, 0.18, 0.12, 0.09, 0.11, 0.16, 0.27, 0.33, 0.29, 0.22, 0.14, 0.19]
CARBON = [320.0, 300.0, 260.0, 240.0, 210.0, 190.0, 230.0, 280.0, 350.0, 380.0, 360.0, 330.0]
PV = [0.0, 0.0, 4.0, 15.0, 28.0, 36.0, 33.0, 22.0, 9.0, 1.0, 0.0, 0.0]
LOAD = [14.0, 12.0, 12.0, 15.0, 20.0, 24.0, 26.0, 25.0, 22.0, 19.0, 17.0, 15.0]


def site(k: int = 0, *, sessions: list[EvSession] | None = None, mip: bool = True,
         soc: float = 30.0, elz_on: bool = False, elz_steps: int = 10) -> Problem:
    """The site `k` steps later: signals shift, states and sessions change."""
    conn = connection(N, import_price=shifted(PRICE, k), export_price=0.05,
                      carbon=shifted(CARBON, k), import_limit=[70.0] * (N - 2) + [45.0, 45.0])
    if sessions is None:
        sessions = [
            EvSession("car-a", "cp1", [t >= 2 + k % 3 and t < 9 for t in range(N)],
                      energy_needed_kwh=18.0 - k, max_charge_kw=11.0, min_charge_kw=4.2),
            EvSession("car-b", "cp2", [t < 5 + k for t in range(N)], energy_needed_kwh=9.0,
                      max_charge_kw=7.4, min_charge_kw=1.4, max_discharge_kw=5.0,
                      v2g_reserve_kwh=3.0),
        ]
    elz = Electrolyser("elz", rated_kw=40.0, min_load_fraction=0.25, kwh_per_kg=52.0,
                       standby_kw=0.5, startup_cost=3.0, min_up_steps=2, min_down_steps=2,
                       initially_on=elz_on, steps_in_state=elz_steps)
    return problem(
        N, conn=conn, pv=[Pv("roof", shifted(PV, k))], loads=[Load("site", shifted(LOAD, k))],
        batteries=[Battery("bess", capacity_kwh=60.0, max_charge_kw=25.0,
                           max_discharge_kw=25.0, initial_soc_kwh=soc)],
        chargers=[Charger("cp1", 11.0), Charger("cp2", 7.4)], ev_sessions=sessions,
        electrolysers=[elz] if mip else [],
        tanks=[HydrogenTank("tank", capacity_kg=8.0, floor_kg=1.0, initial_kg=2.0 + 0.3 * k)],
        offtakes=[HydrogenOfftake("h2use", [0.25] * N)],
        solver=Solver(mip_rel_gap=0.0),
    )


def same_plan(a: Plan, b: Plan) -> None:
    assert abs(a.total_cost - b.total_cost) <= 1e-6 * max(1.0, abs(b.total_cost))


def test_new_prices_do_not_rebuild_and_match_a_fresh_solve() -> None:
    planner = RollingPlanner()
    planner.solve(site())
    new_prices = replace(site(), connection=replace(
        site().connection, import_price_per_kwh=[p * 1.7 - 0.05 for p in reversed(PRICE)]))
    again = planner.solve(new_prices)
    assert planner.rebuilds == 0
    assert planner.solves == 2
    same_plan(again, solve(new_prices))


def test_rolling_sequence_of_changing_data_matches_fresh_solves() -> None:
    # Prices, carbon, PV, load, SOC, tank level, sessions' windows and needs, the
    # electrolyser's carried state: all pushed as data, none a rebuild.
    planner = RollingPlanner()
    states = [(False, 10), (True, 1), (True, 2), (False, 1)]
    for k, (on, steps) in enumerate(states):
        p = site(k, soc=30.0 + 7.0 * k, elz_on=on, elz_steps=steps)
        plan = planner.solve(p)
        same_plan(plan, solve(p))
        assert balance_errors(p, plan) == []
        assert hard_limit_errors(p, plan) == []
    assert planner.rebuilds == 0


def test_lp_site_replans_match_fresh_solves_exactly_in_cost() -> None:
    planner = RollingPlanner()
    for k in range(4):
        p = site(k, mip=False, sessions=[
            EvSession("car", "cp1", [k <= t < 8 for t in range(N)], energy_needed_kwh=10.0 + k,
                      max_charge_kw=11.0)])
        plan = planner.solve(p)
        assert plan.solver.integer_variables == 0
        same_plan(plan, solve(p))
    assert planner.rebuilds == 0


def test_more_sessions_than_slots_rebuilds_exactly_once() -> None:
    planner = RollingPlanner(ev_slots=2)
    planner.solve(site())
    assert planner.rebuilds == 0
    extra = EvSession("car-c", "cp1", [t >= 9 for t in range(N)], energy_needed_kwh=5.0,
                      max_charge_kw=11.0, min_charge_kw=4.2)
    three = site(sessions=[*site().ev_sessions, extra])
    plan = planner.solve(three)
    assert planner.rebuilds == 1
    assert "ev:car-c.charge_kw" in plan.series
    same_plan(plan, solve(three))
    # The grown model keeps its slots: fewer sessions again is only data.
    planner.solve(site(1))
    planner.solve(three)
    assert planner.rebuilds == 1


def test_fewer_sessions_leave_idle_slots_out_of_the_plan() -> None:
    planner = RollingPlanner(ev_slots=3)
    one = site(sessions=[EvSession("solo", "cp1", [True] * N, energy_needed_kwh=6.0,
                                   max_charge_kw=11.0, min_charge_kw=4.2)])
    plan = planner.solve(one)
    ev_keys = {k.split(".")[0] for k in plan.series if k.startswith("ev:")}
    assert ev_keys == {"ev:solo"}
    assert balance_errors(one, plan) == []


def test_carbon_price_and_intensity_changes_are_data() -> None:
    planner = RollingPlanner()
    for k, price in enumerate([0.0, 0.5, 2.0]):
        p = replace(site(k, mip=False), objective=ObjectiveMode.CARBON_PRICE,
                    carbon_price_per_kg=price)
        plan = planner.solve(p)
        fresh = solve(p)
        same_plan(plan, fresh)
        assert plan.emissions_kg == pytest.approx(fresh.emissions_kg, rel=1e-6, abs=1e-6)
    clean = replace(site(3, mip=False), objective=ObjectiveMode.CARBON)
    same_plan(planner.solve(clean), solve(clean))
    assert planner.rebuilds == 0


def test_problem_with_other_grid_changes_only_data() -> None:
    planner = RollingPlanner()
    p = site()
    planner.solve(p)
    g: Grid = p.connection
    tight = replace(p, connection=replace(g, import_limit_kw=[20.0] * N, demand_charge_per_kw=8.0,
                                          peak_so_far_kw=25.0))
    plan = planner.solve(tight)
    assert planner.rebuilds == 0
    same_plan(plan, solve(tight))
