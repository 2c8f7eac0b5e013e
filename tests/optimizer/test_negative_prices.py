"""Simultaneous charge and discharge of a battery only when it pays."""

from __future__ import annotations

import pytest

from optimizer import Battery, Load, Pv, solve

from .support import balance_errors, connection, hard_limit_errors, problem


def full_battery() -> Battery:
    # Full to its physical capacity: SOC cannot rise any further.
    return Battery("bess", capacity_kwh=100.0, max_charge_kw=10.0, max_discharge_kw=10.0,
                   initial_soc_kwh=100.0, charge_efficiency=0.9, discharge_efficiency=0.9,
                   soc_min_fraction=0.0, soc_max_fraction=1.0, terminal_value_per_kwh=0.0)


def test_negative_price_makes_a_full_battery_burn_energy() -> None:
    # Import pays 1.00/kWh. The full battery can take c kW only if it gives back d kW with
    # 0.9 c - d / 0.9 <= 0, i.e. d >= 0.81 c. Net import is c - d = 0.19 c, largest at
    # c = 10 kW: d = 8.1 kW, import 1.9 kW, cost -1.9.
    p = problem(1, conn=connection(1, import_price=-1.0, export_price=-1.0),
                batteries=[full_battery()])
    plan = solve(p)
    s = plan.series
    assert s["bess.charge_kw"] == pytest.approx([10.0], abs=1e-6)
    assert s["bess.discharge_kw"] == pytest.approx([8.1], abs=1e-6)
    assert s["grid.import_kw"] == pytest.approx([1.9], abs=1e-6)
    assert plan.total_cost == pytest.approx(-1.9, abs=1e-6)
    assert hard_limit_errors(p, plan) == []


def test_positive_price_never_charges_and_discharges_at_once() -> None:
    p = problem(1, conn=connection(1, import_price=1.0), batteries=[full_battery()])
    plan = solve(p)
    assert plan.series["bess.charge_kw"] == [0.0]
    assert plan.series["bess.discharge_kw"] == [0.0]


def test_with_positive_prices_charge_times_discharge_is_zero_every_step() -> None:
    n = 8
    prices = [0.05, 0.30, 0.02, 0.40, 0.10, 0.35, 0.01, 0.25]
    batteries = [
        Battery("a", capacity_kwh=30.0, max_charge_kw=15.0, max_discharge_kw=15.0,
                initial_soc_kwh=15.0, charge_efficiency=0.9, discharge_efficiency=0.9),
        Battery("b", capacity_kwh=10.0, max_charge_kw=8.0, max_discharge_kw=8.0,
                initial_soc_kwh=9.5, soc_max_fraction=0.8),  # starts above its window
    ]
    p = problem(n, conn=connection(n, import_price=prices, export_price=0.01, export_limit=5.0),
                pv=[Pv("roof", [0.0, 12.0, 30.0, 45.0, 40.0, 10.0, 0.0, 0.0])],
                loads=[Load("site", [8.0, 10.0, 12.0, 9.0, 11.0, 14.0, 9.0, 7.0])],
                batteries=batteries)
    plan = solve(p)
    for b in batteries:
        ch, dis = plan.series[f"{b.name}.charge_kw"], plan.series[f"{b.name}.discharge_kw"]
        assert any(x > 0 for x in ch) and any(x > 0 for x in dis)
        for t in range(n):
            assert ch[t] * dis[t] == 0.0, (b.name, t, ch[t], dis[t])
    assert balance_errors(p, plan) == []


def test_simultaneous_operation_only_where_it_pays_around_a_negative_price() -> None:
    # The full battery over three steps, no export, a 5 kW load; only step 1 pays for import.
    # Room in the battery is worth money in step 1, so step 0 makes as much as it can
    # without importing: discharge 10 kW (max), of which 5 kW serves the load and 5 kW is
    # charged back, leaving 100 + 0.9 x 5 - 10 / 0.9 = 93.39 kWh (6.61 kWh of room).
    # Step 1: charge 10 kW (+9 kWh) and give back d with 9 - d / 0.9 = 6.61, d = 2.15 kW;
    # import 5 + 10 - 2.15 = 12.85 kW, cost -0.5 x 12.85 = -6.425.
    # Step 2 (positive price): the battery serves the load alone, one direction only.
    p = problem(3, conn=connection(3, import_price=[0.2, -0.5, 0.2], export_limit=0.0),
                loads=[Load("site", [5.0, 5.0, 5.0])], batteries=[full_battery()])
    plan = solve(p)
    room = 10.0 / 0.9 - 0.9 * 5.0
    s = plan.series
    assert s["bess.charge_kw"] == pytest.approx([5.0, 10.0, 0.0], abs=1e-6)
    assert s["bess.discharge_kw"] == pytest.approx([10.0, 0.9 * (9.0 - room), 5.0], abs=1e-6)
    assert s["grid.import_kw"] == pytest.approx([0.0, 15.0 - 0.9 * (9.0 - room), 0.0], abs=1e-6)
    assert plan.total_cost == pytest.approx(-0.5 * 12.85, abs=1e-6)
    assert balance_errors(p, plan) == [] and hard_limit_errors(p, plan) == []
