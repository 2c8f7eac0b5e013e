"""Cases small enough to solve on paper; the expected numbers are worked out in each test."""

from __future__ import annotations

from typing import Any

import pytest

from optimizer import Battery, Load, Pv, solve

from .support import balance_errors, connection, hard_limit_errors, problem


def lossy_battery(**kw: Any) -> Battery:
    args: dict[str, Any] = dict(capacity_kwh=100.0, max_charge_kw=10.0, max_discharge_kw=10.0,
                                  initial_soc_kwh=0.0, charge_efficiency=0.9,
                                  discharge_efficiency=0.9, soc_min_fraction=0.0,
                                  soc_max_fraction=1.0, terminal_value_per_kwh=0.0)
    args.update(kw)
    return Battery("bess", **args)


def test_two_step_arbitrage_with_losses() -> None:
    # Step 0 costs 0.10/kWh, step 1 costs 0.30/kWh; the 10 kW load runs in step 1 only.
    # One kWh bought in step 0 reaches the load as 0.9 x 0.9 = 0.81 kWh, saving
    # 0.81 x 0.30 = 0.243 > 0.10: charging pays, so the battery charges at its 10 kW limit.
    #   SOC after step 0 = 0 + 1 h x 0.9 x 10 kW = 9 kWh
    #   discharge in step 1 = 9 kWh x 0.9 / 1 h = 8.1 kW (empties it; nothing is left to value)
    #   import = [10, 10 - 8.1] = [10, 1.9] kW
    #   cost = 0.10 x 10 + 0.30 x 1.9 = 1.00 + 0.57 = 1.57   (without the battery: 3.00)
    p = problem(2, conn=connection(2, import_price=[0.10, 0.30]),
                loads=[Load("site", [0.0, 10.0])], batteries=[lossy_battery()])
    plan = solve(p)
    s = plan.series
    assert s["bess.charge_kw"] == pytest.approx([10.0, 0.0], abs=1e-6)
    assert s["bess.soc_kwh"] == pytest.approx([9.0, 0.0], abs=1e-6)
    assert s["bess.discharge_kw"] == pytest.approx([0.0, 8.1], abs=1e-6)
    assert s["grid.import_kw"] == pytest.approx([10.0, 1.9], abs=1e-6)
    assert s["grid.export_kw"] == pytest.approx([0.0, 0.0], abs=1e-6)
    assert plan.costs["import"] == pytest.approx(1.57, abs=1e-6)
    assert plan.total_cost == pytest.approx(1.57, abs=1e-6)
    assert plan.slacks == []
    assert balance_errors(p, plan) == []


def test_arbitrage_that_losses_make_unprofitable_is_not_done() -> None:
    # Same site, step 1 at 0.12/kWh: a kWh bought at 0.10 saves only 0.81 x 0.12 = 0.0972.
    # The battery stays idle and the load is served from the grid: cost = 0.12 x 10 = 1.20.
    p = problem(2, conn=connection(2, import_price=[0.10, 0.12]),
                loads=[Load("site", [0.0, 10.0])], batteries=[lossy_battery()])
    plan = solve(p)
    assert plan.series["bess.charge_kw"] == pytest.approx([0.0, 0.0], abs=1e-6)
    assert plan.series["grid.import_kw"] == pytest.approx([0.0, 10.0], abs=1e-6)
    assert plan.total_cost == pytest.approx(1.20, abs=1e-6)


def test_pv_surplus_above_export_limit_is_curtailed_after_storage_and_load() -> None:
    # PV 50 and 30 kW, load 10 kW, export limit 15 kW (export pays 0.05/kWh, so it is used).
    # Surplus beyond load and export: (50 - 10 - 15) + (30 - 10 - 15) = 25 + 5 = 30 kWh.
    # The battery (worth 0.10/kWh stored) takes what its window allows: from 10 kWh up to
    # soc_max = 0.9 x 20 = 18 kWh, i.e. 8 kWh stored = 8 / 0.95 = 8.421 kWh of charge.
    # Curtailed = 30 - 8.421 = 21.579 kWh, and in each step
    #   curtailed = PV - load - export limit - battery charge.
    pv = [50.0, 30.0]
    bess = Battery("bess", capacity_kwh=20.0, max_charge_kw=12.0, max_discharge_kw=12.0,
                   initial_soc_kwh=10.0, charge_efficiency=0.95, discharge_efficiency=0.95,
                   soc_min_fraction=0.1, soc_max_fraction=0.9, terminal_value_per_kwh=0.10)
    p = problem(2, conn=connection(2, import_price=0.20, export_price=0.05, export_limit=15.0),
                pv=[Pv("roof", pv)], loads=[Load("site", [10.0, 10.0])], batteries=[bess])
    plan = solve(p)
    s = plan.series
    charge = s["bess.charge_kw"]
    assert sum(charge) == pytest.approx(8.0 / 0.95, abs=1e-6)
    assert s["bess.soc_kwh"][-1] == pytest.approx(18.0, abs=1e-6)
    assert s["grid.export_kw"] == pytest.approx([15.0, 15.0], abs=1e-6)
    assert s["grid.import_kw"] == pytest.approx([0.0, 0.0], abs=1e-6)
    for t in range(2):
        assert s["roof.curtailed_kw"][t] == pytest.approx(pv[t] - 10.0 - 15.0 - charge[t], abs=1e-6)
    assert sum(s["roof.curtailed_kw"]) == pytest.approx(30.0 - 8.0 / 0.95, abs=1e-6)
    assert plan.slacks == []
    assert balance_errors(p, plan) == [] and hard_limit_errors(p, plan) == []


def test_pv_surplus_without_storage_curtails_surplus_minus_export_limit() -> None:
    # No battery: curtailed = PV - load - export limit = 40 - 5 - 12 = 23 kW in the one step.
    p = problem(1, conn=connection(1, export_price=0.05, export_limit=12.0),
                pv=[Pv("roof", [40.0])], loads=[Load("site", [5.0])])
    plan = solve(p)
    assert plan.series["roof.curtailed_kw"] == pytest.approx([23.0], abs=1e-6)
    assert plan.series["grid.export_kw"] == pytest.approx([12.0], abs=1e-6)
    assert plan.costs["export"] == pytest.approx(-0.05 * 12.0, abs=1e-6)
