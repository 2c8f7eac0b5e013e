"""Random small sites: every plan balances every bus in every step, keeps every hard limit,
and either keeps each soft limit or reports it with the size of the violation."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from optimizer import (
    Battery,
    Charger,
    Electrolyser,
    EvSession,
    HydrogenOfftake,
    HydrogenTank,
    Load,
    Problem,
    Pv,
    Solver,
    solve,
)

from .support import (
    balance_errors,
    connection,
    hard_limit_errors,
    problem,
    soft_limit_errors,
)


def floats(lo: float, hi: float) -> st.SearchStrategy[float]:
    """Data-like numbers: four decimals, so no 1e-300 prices (HiGHS may crash on those)."""
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False).map(lambda x: round(x, 4))


@st.composite
def batteries(draw: Any, name: str) -> Battery:
    cap = draw(floats(5.0, 80.0))
    lo = draw(floats(0.0, 0.4))
    hi = draw(floats(max(lo, 0.6), 1.0))
    return Battery(name, capacity_kwh=cap, max_charge_kw=draw(floats(1.0, 40.0)),
                   max_discharge_kw=draw(floats(1.0, 40.0)),
                   initial_soc_kwh=draw(floats(0.0, 1.1)) * cap,  # may start outside its window
                   charge_efficiency=draw(floats(0.8, 1.0)),
                   discharge_efficiency=draw(floats(0.8, 1.0)),
                   soc_min_fraction=lo, soc_max_fraction=hi,
                   degradation_cost_per_kwh=draw(floats(0.0, 0.05)),
                   terminal_value_per_kwh=draw(st.none() | floats(0.0, 0.3)),
                   allow_grid_charging=draw(st.booleans()))


@st.composite
def sessions(draw: Any, name: str, n: int) -> EvSession:
    first = draw(st.integers(0, n - 1))
    last = draw(st.integers(first, n - 1))
    max_kw = draw(floats(3.0, 22.0))
    v2g = draw(st.booleans())
    return EvSession(name, charger=f"cp-{name}", plugged=[first <= t <= last for t in range(n)],
                     energy_needed_kwh=draw(floats(0.0, 60.0)), max_charge_kw=max_kw,
                     min_charge_kw=draw(st.sampled_from([0.0, 0.25, 0.5])) * max_kw,
                     max_discharge_kw=draw(floats(1.0, 10.0)) if v2g else 0.0,
                     efficiency=draw(floats(0.85, 1.0)),
                     v2g_reserve_kwh=draw(floats(0.0, 10.0)) if v2g else 0.0,
                     hours_plugged_after_horizon=draw(st.sampled_from([0.0, 0.0, 1.0, 3.0])))


@st.composite
def problems(draw: Any) -> Problem:
    n = draw(st.integers(2, 8))
    step = draw(st.sampled_from([15, 30, 60]))

    def per_step(lo: float, hi: float) -> list[float]:
        return draw(st.lists(floats(lo, hi), min_size=n, max_size=n))  # type: ignore[no-any-return]

    import_price = per_step(-0.2, 0.6)
    conn = connection(
        n, import_price=import_price, export_price=per_step(-0.1, 0.4),
        import_limit=per_step(0.0, 120.0), export_limit=per_step(0.0, 60.0),
        carbon=per_step(0.0, 700.0),
        demand_charge_per_kw=draw(st.sampled_from([0.0, 0.0, 2.0, 15.0])),
        peak_so_far_kw=draw(floats(0.0, 60.0)),
        demand_window=draw(st.none() | st.lists(st.booleans(), min_size=n, max_size=n)),
    )
    n_pv = draw(st.integers(0, 1))
    pv = [Pv("roof", per_step(0.0, 80.0), curtailable=draw(st.booleans())) for _ in range(n_pv)]
    loads = [Load(f"load{k}", per_step(0.0, 60.0)) for k in range(draw(st.integers(0, 2)))]
    bats = [draw(batteries(f"bess{k}")) for k in range(draw(st.integers(0, 2)))]
    evs = [draw(sessions(f"car{k}", n)) for k in range(draw(st.integers(0, 2)))]
    chargers = [Charger(s.charger, s.max_charge_kw) for s in evs]
    elzs, tanks, offtakes = [], [], []
    if draw(st.booleans()):
        rated = draw(floats(5.0, 80.0))
        elzs = [Electrolyser("elz", rated_kw=rated, min_load_fraction=draw(floats(0.0, 0.5)),
                             kwh_per_kg=draw(floats(45.0, 60.0)),
                             standby_kw=draw(st.sampled_from([0.0, 0.5, 2.0])),
                             startup_cost=draw(st.sampled_from([0.0, 1.0, 10.0])),
                             min_up_steps=draw(st.integers(1, 3)),
                             min_down_steps=draw(st.integers(1, 3)),
                             initially_on=draw(st.booleans()),
                             steps_in_state=draw(st.integers(1, 4)))]
        cap = draw(floats(0.5, 10.0))
        tanks = [HydrogenTank("tank", capacity_kg=cap, floor_kg=draw(floats(0.0, 0.5)) * cap,
                              initial_kg=draw(floats(0.0, 1.0)) * cap,
                              terminal_value_per_kg=draw(floats(0.0, 5.0)))]
        offtakes = [HydrogenOfftake("h2use", per_step(0.0, 1.5))]
    return problem(n, step_minutes=step, conn=conn, pv=pv, loads=loads, batteries=bats,
                   chargers=chargers, ev_sessions=evs, electrolysers=elzs, tanks=tanks,
                   offtakes=offtakes, solver=Solver(mip_rel_gap=0.0))


@settings(max_examples=25, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(problems())
def test_random_sites_balance_keep_hard_limits_and_report_soft_ones(p: Problem) -> None:
    plan = solve(p)
    assert plan.solver.status in ("optimal", "feasible")
    assert balance_errors(p, plan) == []
    assert hard_limit_errors(p, plan) == []
    assert soft_limit_errors(p, plan) == []
    assert len(plan.to_frame()) == p.grid.n_steps


@settings(max_examples=25, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(problems())
def test_random_sites_through_the_lp_fallback_keep_the_same_rules(p: Problem) -> None:
    relaxed = replace(p, solver=Solver(relax_integers=True))
    plan = solve(relaxed)
    assert plan.solver.used_lp_fallback == (plan.solver.integer_variables > 0)
    assert balance_errors(relaxed, plan) == []
    assert hard_limit_errors(relaxed, plan) == []
    assert soft_limit_errors(relaxed, plan) == []
