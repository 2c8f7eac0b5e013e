"""Conflicting inputs never raise: the plan relaxes soft limits and reports each with its size."""

from __future__ import annotations

import pytest

from optimizer import (
    Battery,
    Charger,
    Electrolyser,
    EvSession,
    HydrogenOfftake,
    HydrogenTank,
    Load,
    solve,
)

from .support import (
    balance_errors,
    connection,
    hard_limit_errors,
    problem,
    soft_limit_errors,
    the_slack,
)


def window_battery(initial: float) -> Battery:
    # Window [20, 80] kWh of 100; 5 kW either way, lossless.
    return Battery("bess", capacity_kwh=100.0, max_charge_kw=5.0, max_discharge_kw=5.0,
                   initial_soc_kwh=initial, charge_efficiency=1.0, discharge_efficiency=1.0,
                   soc_min_fraction=0.2, soc_max_fraction=0.8)


def test_initial_soc_above_its_window() -> None:
    # From 95 kWh at most 5 kWh/h can leave: end-of-step SOC 90, 85, 80.
    # Excess over the 80 kWh top: 10 + 5 + 0 = 15 kWh.
    p = problem(3, loads=[Load("site", [10.0] * 3)], batteries=[window_battery(95.0)])
    plan = solve(p)
    assert plan.series["bess.soc_kwh"] == pytest.approx([90.0, 85.0, 80.0], abs=1e-6)
    s = the_slack(plan, "soc_max", "bess")
    assert s.amount == pytest.approx(15.0, abs=1e-6)
    assert (s.unit, s.first_step) == ("kWh", 0)
    assert soft_limit_errors(p, plan) == []


def test_initial_soc_below_its_window() -> None:
    # From 5 kWh at most 5 kWh/h can enter: SOC 10, 15, 20. Shortfall under the 20 kWh
    # bottom: 10 + 5 + 0 = 15 kWh.
    p = problem(3, batteries=[window_battery(5.0)])
    plan = solve(p)
    assert plan.series["bess.soc_kwh"] == pytest.approx([10.0, 15.0, 20.0], abs=1e-6)
    assert the_slack(plan, "soc_min", "bess").amount == pytest.approx(15.0, abs=1e-6)
    assert soft_limit_errors(p, plan) == []


def test_initial_soc_above_capacity_is_clamped_and_reported() -> None:
    # A reading of 120 kWh on a 100 kWh battery: planned from 100 (20 kWh reported), then
    # SOC 95, 90, 85 against the 80 kWh top: 15 + 10 + 5 = 30 kWh over.
    p = problem(3, loads=[Load("site", [10.0] * 3)], batteries=[window_battery(120.0)])
    plan = solve(p)
    assert the_slack(plan, "initial_soc_outside_capacity", "bess").amount == pytest.approx(20.0)
    assert the_slack(plan, "soc_max", "bess").amount == pytest.approx(30.0, abs=1e-6)
    assert hard_limit_errors(p, plan) == []


def test_ev_that_cannot_get_its_energy_in_time() -> None:
    # 30 kWh needed, two plugged hours at 7 kW and 90 %: 12.6 kWh possible, 17.4 short.
    car = EvSession("car", "cp1", [True, True, False], energy_needed_kwh=30.0,
                    max_charge_kw=7.0, efficiency=0.9)
    p = problem(3, chargers=[Charger("cp1", 7.0)], ev_sessions=[car])
    plan = solve(p)
    s = the_slack(plan, "ev_energy", "car")
    assert s.amount == pytest.approx(17.4, abs=1e-6)
    assert s.unit == "kWh"
    assert soft_limit_errors(p, plan) == []


def test_hydrogen_demand_above_what_can_be_produced() -> None:
    # 50 kW at 50 kWh/kg makes at most 1 kg/h. 2 kg in the tank, no floor, 3 kg/h wanted for
    # two hours: supply 2 + 1 + 1 = 4 kg against 6 kg wanted, 2 kg unmet (all in step 1:
    # step 0 is served from 2 kg stored + 1 kg made).
    elz = Electrolyser("elz", rated_kw=50.0, min_load_fraction=0.2, kwh_per_kg=50.0)
    p = problem(2, electrolysers=[elz],
                tanks=[HydrogenTank("tank", capacity_kg=10.0, floor_kg=0.0, initial_kg=2.0)],
                offtakes=[HydrogenOfftake("h2use", [3.0, 3.0])])
    plan = solve(p)
    assert plan.series["elz.stack_kw"] == pytest.approx([50.0, 50.0], abs=1e-6)
    s = the_slack(plan, "hydrogen_demand", "h2use")
    assert s.amount == pytest.approx(2.0, abs=1e-6)
    assert s.unit == "kg"
    assert sum(plan.series["h2use.served_kg"]) == pytest.approx(4.0, abs=1e-6)
    assert soft_limit_errors(p, plan) == [] and balance_errors(p, plan) == []


def test_grid_import_limit_below_the_inflexible_load() -> None:
    # 30 kW of load behind a 20 kW import limit, two half-hour steps: 10 kW over for 1 h in
    # all, i.e. 10 kWh over the limit.
    p = problem(2, step_minutes=30, conn=connection(2, import_limit=20.0),
                loads=[Load("site", [30.0, 30.0])])
    plan = solve(p)
    assert plan.series["grid.import_kw"] == pytest.approx([30.0, 30.0], abs=1e-6)
    s = the_slack(plan, "import_limit", "grid")
    assert s.amount == pytest.approx(10.0, abs=1e-6)
    assert s.unit == "kWh"
    assert s.penalty_cost == pytest.approx(10.0 * p.penalties.grid_limit_per_kwh, abs=1e-3)
    assert balance_errors(p, plan) == []


def test_import_limit_slack_is_what_storage_cannot_cover() -> None:
    # Same load, hourly, with a 5 kW lossless battery holding 40 kWh (window 20..80):
    # it covers 5 of the 10 kW excess in each of 2 steps, leaving 5 + 5 = 10 kWh over.
    p = problem(2, conn=connection(2, import_limit=20.0),
                loads=[Load("site", [30.0, 30.0])], batteries=[window_battery(40.0)])
    plan = solve(p)
    assert the_slack(plan, "import_limit", "grid").amount == pytest.approx(10.0, abs=1e-6)
    assert plan.series["bess.discharge_kw"] == pytest.approx([5.0, 5.0], abs=1e-6)
    assert soft_limit_errors(p, plan) == []


def test_everything_in_conflict_at_once_still_gives_a_plan() -> None:
    car = EvSession("car", "cp1", [True, False, False], energy_needed_kwh=50.0,
                    max_charge_kw=11.0, min_charge_kw=6.0)
    elz = Electrolyser("elz", rated_kw=50.0, min_load_fraction=0.4, kwh_per_kg=55.0,
                       startup_cost=5.0, min_up_steps=2, initially_on=True, steps_in_state=1)
    p = problem(3, conn=connection(3, import_limit=5.0, export_limit=0.0),
                loads=[Load("site", [20.0, 25.0, 30.0])],
                batteries=[window_battery(99.0)], chargers=[Charger("cp1", 11.0)],
                ev_sessions=[car], electrolysers=[elz],
                tanks=[HydrogenTank("tank", capacity_kg=1.0, floor_kg=0.8, initial_kg=0.1)],
                offtakes=[HydrogenOfftake("h2use", [2.0, 2.0, 2.0])])
    plan = solve(p)
    limits = {(s.limit, s.asset) for s in plan.slacks}
    assert {("import_limit", "grid"), ("soc_max", "bess"), ("ev_energy", "car"),
            ("hydrogen_demand", "h2use"), ("tank_floor", "tank")} <= limits
    assert balance_errors(p, plan) == []
    assert hard_limit_errors(p, plan) == []
    assert soft_limit_errors(p, plan) == []


def test_tiny_violation_spread_over_many_steps_is_still_reported() -> None:
    # 3e-6 kWh under the window bottom, and no way to charge (PV only, no PV): each step is
    # below the reporting tolerance, the six steps together (1.8e-5 kWh) are not.
    bess = Battery("bess", capacity_kwh=100.0, max_charge_kw=5.0, max_discharge_kw=5.0,
                   initial_soc_kwh=20.0 - 3e-6, soc_min_fraction=0.2, soc_max_fraction=0.8,
                   allow_grid_charging=False)
    plan = solve(problem(6, batteries=[bess]))
    s = the_slack(plan, "soc_min", "bess")
    assert s.amount == pytest.approx(6 * 3e-6, rel=1e-3)
    assert s.first_step == 0
