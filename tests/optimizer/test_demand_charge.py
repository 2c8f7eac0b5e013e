"""Demand charge on the billing period's peak: peak shaving, the peak already reached, and the
window of steps that count."""

from __future__ import annotations

from typing import Any

import pytest

from optimizer import Battery, Load, Problem, solve

from .support import connection, problem

LOAD = [10.0, 50.0, 10.0, 10.0]


def shaving_site(demand_charge: float, **grid_kw: Any) -> Problem:
    # Flat 0.20/kWh. The battery holds 50 kWh and can give 20 kW (95 % one way); stored
    # energy is worth 0.19/kWh at the end, so with no demand charge it has no reason to move
    # (discharging 1 kWh of SOC saves 0.95 x 0.20 = 0.19, exactly what it is worth kept).
    bess = Battery("bess", capacity_kwh=100.0, max_charge_kw=20.0, max_discharge_kw=20.0,
                   initial_soc_kwh=50.0, soc_min_fraction=0.0, soc_max_fraction=1.0)
    return problem(4, conn=connection(4, import_price=0.20, demand_charge_per_kw=demand_charge,
                                      **grid_kw),
                   loads=[Load("site", LOAD)], batteries=[bess])


def peak(plan: Any, window: list[bool] | None = None) -> float:
    imp = plan.series["grid.import_kw"]
    return max(x for t, x in enumerate(imp) if window is None or window[t])


def test_high_demand_charge_lowers_the_horizon_peak() -> None:
    low = solve(shaving_site(0.0))
    high = solve(shaving_site(10.0))
    assert peak(low) == pytest.approx(50.0, abs=1e-6)
    # At 10/kW the battery shaves step 1 by its full 20 kW. Recharging elsewhere would cost
    # 0.20/kWh for 0.95 x 0.19 = 0.18 of value, so it does not: the peak is 50 - 20 = 30 kW.
    assert peak(high) == pytest.approx(30.0, abs=1e-6)
    assert peak(high) < peak(low)
    assert high.costs["demand_charge"] == pytest.approx(10.0 * 30.0, abs=1e-6)
    assert low.costs["demand_charge"] == pytest.approx(0.0, abs=1e-9)


def test_import_below_the_peak_so_far_costs_no_demand_charge() -> None:
    # The billing period already reached 60 kW: this horizon's 50 kW peak adds nothing, so
    # the plan is the one without a demand charge.
    carried = solve(shaving_site(10.0, peak_so_far_kw=60.0))
    free = solve(shaving_site(0.0))
    assert carried.costs["demand_charge"] == pytest.approx(0.0, abs=1e-9)
    assert carried.series["grid.import_kw"] == pytest.approx(free.series["grid.import_kw"],
                                                            abs=1e-6)
    assert carried.total_cost == pytest.approx(free.total_cost, abs=1e-6)


def test_only_the_excess_over_the_peak_so_far_is_shaved_and_charged() -> None:
    # Previous peak 40 kW: shaving below 40 saves nothing, so step 1 imports exactly 40 kW
    # (the battery gives 10 kW) and the increment is 0.
    plan = solve(shaving_site(10.0, peak_so_far_kw=40.0))
    assert plan.series["grid.import_kw"][1] == pytest.approx(40.0, abs=1e-6)
    assert plan.series["bess.discharge_kw"][1] == pytest.approx(10.0, abs=1e-6)
    assert plan.costs["demand_charge"] == pytest.approx(0.0, abs=1e-6)
    # A peak above the previous one is charged on the increment only: without a battery,
    # 50 kW against a 40 kW previous peak costs 10 x (50 - 40) = 100.
    no_bess = problem(4, conn=connection(4, demand_charge_per_kw=10.0, peak_so_far_kw=40.0),
                      loads=[Load("site", LOAD)])
    assert solve(no_bess).costs["demand_charge"] == pytest.approx(100.0, abs=1e-6)


def test_demand_window_restricts_which_steps_count() -> None:
    # No battery: the bill is the rate times the peak over the windowed steps.
    window = [True, False, True, True]
    plain = problem(4, conn=connection(4, demand_charge_per_kw=10.0), loads=[Load("site", LOAD)])
    windowed = problem(4, conn=connection(4, demand_charge_per_kw=10.0, demand_window=window),
                       loads=[Load("site", LOAD)])
    assert solve(plain).costs["demand_charge"] == pytest.approx(10.0 * 50.0, abs=1e-6)
    assert solve(windowed).costs["demand_charge"] == pytest.approx(10.0 * 10.0, abs=1e-6)
    # With a battery and the 50 kW step outside the window, shaving it is pointless; the
    # battery may lower windowed steps instead, and the bill follows the windowed peak.
    plan = solve(shaving_site(10.0, demand_window=window))
    assert plan.series["grid.import_kw"][1] == pytest.approx(50.0, abs=1e-6)
    assert plan.costs["demand_charge"] == pytest.approx(10.0 * peak(plan, window), abs=1e-6)
    assert peak(plan, window) <= 10.0 + 1e-6
