"""Several demand charges on one connection (a flat monthly one and a window-only one), each
with its own peak variable, rate and peak so far; checked against hand-computed bills."""

from __future__ import annotations

import pytest

from optimizer import Battery, DemandCharge, Load, Problem, RollingPlanner, solve

from .support import connection, problem

LOAD = [10.0, 50.0, 30.0, 20.0]
EVENING = [False, False, True, True]


def two_charges(flat_rate: float = 10.0, window_rate: float = 5.0, window_so_far: float = 25.0,
                battery: bool = False) -> Problem:
    """Flat charge on every step (nothing reached yet) + a charge on steps 2-3 only, whose
    billing period already reached `window_so_far` kW."""
    charges = [DemandCharge(flat_rate, name="flat"),
               DemandCharge(window_rate, window=EVENING, peak_so_far_kw=window_so_far, name="evening")]
    bess = [Battery("bess", capacity_kwh=100.0, max_charge_kw=20.0, max_discharge_kw=20.0,
                    initial_soc_kwh=50.0, soc_min_fraction=0.0, soc_max_fraction=1.0)] if battery else []
    return problem(4, conn=connection(4, import_price=0.20, demand_charges=charges),
                   loads=[Load("site", LOAD)], batteries=bess)


def peak_values(planner: RollingPlanner) -> list[float]:
    assert planner.site is not None
    grid = planner.site.grid
    return [grid.value(p) for p in grid.peaks]


def test_each_peak_is_the_max_import_in_its_own_window() -> None:
    # No battery: import = load. Flat peak = max(10, 50, 30, 20) = 50; evening peak =
    # max(25 so far, 30, 20) = 30. Bill = 10 x (50 - 0) + 5 x (30 - 25) = 500 + 25 = 525.
    planner = RollingPlanner()
    plan = planner.solve(two_charges())
    assert plan.series["grid.import_kw"] == pytest.approx(LOAD, abs=1e-6)
    assert peak_values(planner) == pytest.approx([50.0, 30.0], abs=1e-6)
    assert plan.costs["demand_charge"] == pytest.approx(525.0, abs=1e-6)
    assert plan.costs["demand_charge"] == pytest.approx(
        10.0 * (peak_values(planner)[0] - 0.0) + 5.0 * (peak_values(planner)[1] - 25.0), abs=1e-6)
    assert plan.binding["demand_peak"] == 1 and plan.binding["demand_peak_1"] == 1


def test_window_charge_below_its_peak_so_far_costs_nothing() -> None:
    # The evening period already reached 40 kW > 30: only the flat charge bills (500).
    planner = RollingPlanner()
    plan = planner.solve(two_charges(window_so_far=40.0))
    assert peak_values(planner) == pytest.approx([50.0, 40.0], abs=1e-6)
    assert plan.costs["demand_charge"] == pytest.approx(500.0, abs=1e-6)


def test_battery_shaves_both_peaks_by_hand() -> None:
    # The battery gives at most 20 kW: the flat peak falls from 50 to 30 (step 1). The evening
    # charge pays 5/kW above 25, so step 2 is shaved from 30 to 25 (5 kW), step 3 (20) is below.
    # Energy kept is worth 0.19 < 0.20 to re-buy, so nothing is recharged. Bill = 10 x 30 = 300.
    planner = RollingPlanner()
    plan = planner.solve(two_charges(battery=True))
    assert plan.series["grid.import_kw"] == pytest.approx([10.0, 30.0, 25.0, 20.0], abs=1e-6)
    assert peak_values(planner) == pytest.approx([30.0, 25.0], abs=1e-6)
    assert plan.costs["demand_charge"] == pytest.approx(300.0, abs=1e-6)


def test_one_charge_in_the_list_is_the_single_charge() -> None:
    window = [True, False, True, True]
    single = problem(4, conn=connection(4, demand_charge_per_kw=10.0, demand_window=window,
                                        peak_so_far_kw=5.0), loads=[Load("site", LOAD)])
    listed = problem(4, conn=connection(4, demand_charges=[DemandCharge(10.0, window, 5.0)]),
                     loads=[Load("site", LOAD)])
    a, b = solve(single), solve(listed)
    assert a.costs == pytest.approx(b.costs, abs=1e-9)
    assert a.costs["demand_charge"] == pytest.approx(10.0 * (30.0 - 5.0), abs=1e-6)


def test_resolve_pushes_new_charge_data() -> None:
    # The persistent model takes new rates / peaks so far without a rebuild and matches a fresh solve.
    planner = RollingPlanner()
    planner.solve(two_charges(battery=True))
    again = planner.solve(two_charges(flat_rate=0.0, window_rate=8.0, window_so_far=0.0, battery=True))
    fresh = solve(two_charges(flat_rate=0.0, window_rate=8.0, window_so_far=0.0, battery=True))
    assert planner.rebuilds == 0
    assert again.costs["demand_charge"] == pytest.approx(fresh.costs["demand_charge"], abs=1e-6)
    # Only the evening counts now: shave steps 2 and 3 down to a common level p with 20 kW max:
    # p >= 30 - 20 = 10, so p = 10 and the bill is 8 x 10 = 80 (energy 20 + 10 kWh <= 50).
    assert again.costs["demand_charge"] == pytest.approx(80.0, abs=1e-6)


def test_list_and_single_fields_together_are_rejected() -> None:
    with pytest.raises(ValueError, match=r"connection\.demand_charges: give either the list"):
        problem(4, conn=connection(4, demand_charge_per_kw=1.0, demand_charges=[DemandCharge(2.0)]),
                loads=[Load("site", LOAD)]).validate()
    with pytest.raises(ValueError, match=r"demand_charges\[0\].window"):
        problem(4, conn=connection(4, demand_charges=[DemandCharge(2.0, window=[True])]),
                loads=[Load("site", LOAD)]).validate()
