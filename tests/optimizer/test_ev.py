"""EV sessions: energy by departure, shortfall reporting, session window, minimum power, V2G."""

from __future__ import annotations

from typing import Any

import pytest

from optimizer import Charger, EvSession, Load, Problem, solve

from .support import (
    balance_errors,
    connection,
    hard_limit_errors,
    problem,
    slacks_for,
    soft_limit_errors,
    the_slack,
)


def session(name: str = "car", **kw: Any) -> EvSession:
    args: dict[str, Any] = dict(charger="cp1", plugged=[False, True, True, False],
                                energy_needed_kwh=10.0, max_charge_kw=11.0, efficiency=0.92)
    args.update(kw)
    return EvSession(name, **args)


def ev_problem(sessions: list[EvSession], prices: list[float], **kw: Any) -> Problem:
    n = len(prices)
    chargers = sorted({s.charger for s in sessions})
    return problem(n, conn=connection(n, import_price=prices),
                   chargers=[Charger(c, 22.0) for c in chargers], ev_sessions=sessions, **kw)


def test_energy_delivered_by_departure_when_feasible() -> None:
    # 10 kWh through a 0.92 efficient charger needs 10 / 0.92 = 10.87 kWh at the plug; the
    # session has two plugged hours at up to 11 kW, so it fits, in the cheaper plugged step.
    p = ev_problem([session()], prices=[0.05, 0.30, 0.20, 0.05])
    plan = solve(p)
    s = plan.series
    assert s["ev:car.delivered_kwh"][2] == pytest.approx(10.0, abs=1e-6)
    assert s["ev:car.charge_kw"] == pytest.approx([0.0, 0.0, 10.0 / 0.92, 0.0], abs=1e-6)
    assert slacks_for(plan, "ev_energy", "car") == []
    assert plan.costs["import"] == pytest.approx(0.20 * 10.0 / 0.92, abs=1e-6)
    assert balance_errors(p, plan) == [] and hard_limit_errors(p, plan) == []


def test_infeasible_target_delivers_the_most_possible_and_reports_the_shortfall() -> None:
    # Two plugged hours at 7 kW, 90 % efficient: at most 7 x 2 x 0.9 = 12.6 kWh can go in.
    # The vehicle needs 30 kWh, so the shortfall is 30 - 12.6 = 17.4 kWh.
    car = session(energy_needed_kwh=30.0, max_charge_kw=7.0, efficiency=0.9)
    p = ev_problem([car], prices=[0.1, 0.5, 0.5, 0.1])
    plan = solve(p)
    s = plan.series
    assert s["ev:car.charge_kw"] == pytest.approx([0.0, 7.0, 7.0, 0.0], abs=1e-6)
    assert s["ev:car.delivered_kwh"][-1] == pytest.approx(7.0 * 2 * 0.9, abs=1e-6)
    short = the_slack(plan, "ev_energy", "car")
    assert short.amount == pytest.approx(30.0 - 12.6, abs=1e-6)
    assert short.unit == "kWh"
    assert short.first_step == 2  # the last plugged step: where the need falls due
    assert short.penalty_cost == pytest.approx(17.4 * p.penalties.ev_shortfall_per_kwh, abs=1e-4)
    assert soft_limit_errors(p, plan) == []


def test_never_charges_outside_the_session_even_when_paid_to() -> None:
    # Negative prices while unplugged would pay for charging; the plugged steps are dear.
    car = session(plugged=[False, True, True, False, False, True], energy_needed_kwh=12.0)
    p = ev_problem([car], prices=[-0.5, 0.3, 0.4, -0.5, -0.2, 0.35])
    plan = solve(p)
    ch = plan.series["ev:car.charge_kw"]
    for t, plugged in enumerate(car.plugged):
        if not plugged:
            assert ch[t] == 0.0, f"charging at unplugged step {t}"
    assert plan.series["ev:car.delivered_kwh"][-1] == pytest.approx(12.0, abs=1e-6)
    assert hard_limit_errors(p, plan) == []


def test_minimum_power_when_charging() -> None:
    # 12 kWh at 100 % efficiency over three plugged hours priced 0.1, 0.2, 0.3, at most 11 kW,
    # at least 6 kW when charging. Without the minimum: 11 + 1 + 0. With it, the second step is
    # 0 or >= 6, and delivery may not exceed the need, so 12 - x1 >= 6 forces x0 <= 6:
    # the optimum is 6 + 6 + 0 (cost 0.6 + 1.2 = 1.8).
    car = session(plugged=[True, True, True], energy_needed_kwh=12.0, min_charge_kw=6.0,
                  efficiency=1.0)
    p = ev_problem([car], prices=[0.1, 0.2, 0.3])
    plan = solve(p)
    assert plan.solver.integer_variables > 0
    assert plan.series["ev:car.charge_kw"] == pytest.approx([6.0, 6.0, 0.0], abs=1e-6)
    assert plan.costs["import"] == pytest.approx(1.8, abs=1e-6)
    free = solve(ev_problem([session(plugged=[True, True, True], energy_needed_kwh=12.0,
                                     efficiency=1.0)], prices=[0.1, 0.2, 0.3]))
    assert free.series["ev:car.charge_kw"] == pytest.approx([11.0, 1.0, 0.0], abs=1e-6)


def test_minimum_power_holds_in_every_step_over_a_longer_session() -> None:
    car = session(plugged=[False] + [True] * 6 + [False], energy_needed_kwh=23.0,
                  min_charge_kw=4.2, max_charge_kw=7.4)
    p = ev_problem([car], prices=[0.2, 0.11, 0.13, 0.12, 0.3, 0.1, 0.25, 0.2])
    plan = solve(p)
    for t, x in enumerate(plan.series["ev:car.charge_kw"]):
        assert x == 0.0 or 4.2 - 1e-6 <= x <= 7.4 + 1e-6, (t, x)
    assert plan.series["ev:car.delivered_kwh"][-1] == pytest.approx(23.0, abs=1e-6)


def test_hours_plugged_after_horizon_reduce_the_in_horizon_target() -> None:
    # Needs 20 kWh; two more hours after the horizon at 7 kW x 0.92 supply 12.88 kWh, so only
    # 20 - 12.88 = 7.12 kWh is required now; energy is dear, so no more than that is bought.
    prices = [0.4, 0.4, 0.4, 0.4]
    base = dict(plugged=[True] * 4, energy_needed_kwh=20.0, max_charge_kw=7.0, efficiency=0.92)
    later = solve(ev_problem([session(hours_plugged_after_horizon=2.0, **base)], prices))
    assert later.series["ev:car.delivered_kwh"][-1] == pytest.approx(20.0 - 12.88, abs=1e-6)
    assert slacks_for(later, "ev_energy", "car") == []
    now = solve(ev_problem([session(**base)], prices))
    assert now.series["ev:car.delivered_kwh"][-1] == pytest.approx(20.0, abs=1e-6)
    # Enough time after the horizon: nothing is needed now.
    none = solve(ev_problem([session(hours_plugged_after_horizon=5.0, **base)], prices))
    assert sum(none.series["ev:car.charge_kw"]) == pytest.approx(0.0, abs=1e-9)


def test_v2g_only_when_the_session_allows_discharge() -> None:
    # A dear step with a site load: a V2G-capable car discharges into it and recharges when
    # cheap; a car with max_discharge_kw = 0 on the same site never discharges.
    prices = [0.10, 1.00, 0.10]
    plugged = [True, True, True]
    v2g = session("v2g", charger="cp1", plugged=plugged, energy_needed_kwh=5.0,
                  max_discharge_kw=5.0, v2g_reserve_kwh=6.0)
    plain = session("plain", charger="cp2", plugged=plugged, energy_needed_kwh=5.0)
    p = ev_problem([v2g, plain], prices, loads=[Load("site", [0.0, 20.0, 0.0])])
    plan = solve(p)
    s = plan.series
    assert s["ev:v2g.discharge_kw"][1] > 1.0
    assert s["ev:plain.discharge_kw"] == [0.0, 0.0, 0.0]
    assert min(s["ev:v2g.delivered_kwh"]) >= -6.0 - 1e-6
    for name in ("v2g", "plain"):
        assert s[f"ev:{name}.delivered_kwh"][-1] == pytest.approx(5.0, abs=1e-6)
    assert balance_errors(p, plan) == [] and hard_limit_errors(p, plan) == []
    # Alone on the site, a car without V2G never discharges either.
    alone = solve(ev_problem([plain], prices, loads=[Load("site", [0.0, 20.0, 0.0])]))
    assert alone.series["ev:plain.discharge_kw"] == [0.0, 0.0, 0.0]


def test_v2g_never_discharges_when_unplugged() -> None:
    v2g = session("v2g", plugged=[False, True, False, True], energy_needed_kwh=2.0,
                  max_discharge_kw=7.0, v2g_reserve_kwh=10.0)
    p = ev_problem([v2g], prices=[2.0, 0.1, 2.0, 0.1], loads=[Load("site", [10.0] * 4)])
    plan = solve(p)
    dis = plan.series["ev:v2g.discharge_kw"]
    assert dis[0] == 0.0 and dis[2] == 0.0
    assert hard_limit_errors(p, plan) == []
