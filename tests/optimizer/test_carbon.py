"""Carbon in the objective: a rising carbon price trades money for emissions monotonically,
and the carbon-only objective is the cleanest plan."""

from __future__ import annotations

from dataclasses import replace

import pytest

from optimizer import Battery, Load, ObjectiveMode, Plan, Problem, Pv, solve

from .support import balance_errors, connection, problem

# Cheap power is dirty and dear power is clean, so money and carbon pull apart.
PRICE = [0.10, 0.09, 0.30, 0.32, 0.22, 0.15, 0.35, 0.25]
CARBON = [520.0, 560.0, 140.0, 110.0, 300.0, 430.0, 90.0, 210.0]
CARBON_PRICES = [0.0, 0.01, 0.03, 0.1, 0.2, 0.4, 0.8, 1.5, 3.0, 10.0]


def lp_site() -> Problem:
    n = len(PRICE)
    bess = Battery("bess", capacity_kwh=60.0, max_charge_kw=20.0, max_discharge_kw=20.0,
                   initial_soc_kwh=20.0, charge_efficiency=0.93, discharge_efficiency=0.93,
                   soc_min_fraction=0.1, soc_max_fraction=0.95, degradation_cost_per_kwh=0.01,
                   terminal_value_per_kwh=0.0)
    small = Battery("bess2", capacity_kwh=15.0, max_charge_kw=5.0, max_discharge_kw=5.0,
                    initial_soc_kwh=5.0, terminal_value_per_kwh=0.0)
    return problem(n, conn=connection(n, import_price=PRICE, export_price=0.04, carbon=CARBON,
                                      import_limit=80.0, export_limit=30.0),
                   pv=[Pv("roof", [0.0, 0.0, 8.0, 25.0, 40.0, 30.0, 5.0, 0.0])],
                   loads=[Load("site", [22.0, 18.0, 30.0, 35.0, 28.0, 26.0, 40.0, 33.0])],
                   batteries=[bess, small])


def money(plan: Plan) -> float:
    """Every money term of the plan except the priced carbon."""
    return sum(v for k, v in plan.costs.items() if k != "carbon")


def test_rising_carbon_price_never_raises_emissions_nor_lowers_cost() -> None:
    base = lp_site()
    plans = []
    for price in CARBON_PRICES:
        p = replace(base, objective=ObjectiveMode.CARBON_PRICE, carbon_price_per_kg=price)
        plan = solve(p)
        assert plan.solver.integer_variables == 0
        assert plan.slacks == []
        assert balance_errors(p, plan) == []
        assert plan.costs.get("carbon", 0.0) == pytest.approx(price * plan.emissions_kg)
        plans.append(plan)
    for price, before, after in zip(CARBON_PRICES[1:], plans, plans[1:], strict=False):
        tol_e = 1e-6 * max(1.0, before.emissions_kg)
        tol_c = 1e-6 * max(1.0, abs(money(before)))
        assert after.emissions_kg <= before.emissions_kg + tol_e, price
        assert money(after) >= money(before) - tol_c, price
    # The sweep is not flat: the price actually moves the plan.
    assert plans[-1].emissions_kg < plans[0].emissions_kg - 1.0
    assert money(plans[-1]) > money(plans[0]) + 0.1


def test_carbon_objective_is_at_least_as_clean_as_any_carbon_price() -> None:
    base = lp_site()
    clean = solve(replace(base, objective=ObjectiveMode.CARBON))
    assert "carbon" not in clean.costs
    for price in CARBON_PRICES:
        priced = solve(replace(base, objective=ObjectiveMode.CARBON_PRICE,
                               carbon_price_per_kg=price))
        assert clean.emissions_kg <= priced.emissions_kg + 1e-6 * max(1.0, priced.emissions_kg)


def test_emissions_are_import_times_intensity() -> None:
    p = lp_site()
    plan = solve(p)
    imp = plan.series["grid.import_kw"]
    expected = sum(x * 1.0 * c / 1000.0 for x, c in zip(imp, CARBON, strict=True))
    assert plan.emissions_kg == pytest.approx(expected, rel=1e-9)
    assert "carbon" not in plan.costs  # COST mode reports carbon, does not price it
