"""Determinism, the Plan's frame, and input validation messages."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

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
    TimeGrid,
    solve,
)

from .support import T0, connection, problem


def busy_site(n: int = 8) -> Problem:
    return problem(
        n, step_minutes=15,
        conn=connection(n, import_price=[0.1 + 0.03 * ((t * 7) % 5) for t in range(n)],
                        export_price=0.02, carbon=[200.0 + 25.0 * t for t in range(n)]),
        pv=[Pv("roof", [3.0 * t for t in range(n)])],
        loads=[Load("site", [12.0] * n)],
        batteries=[Battery("bess", capacity_kwh=20.0, max_charge_kw=10.0, max_discharge_kw=10.0,
                           initial_soc_kwh=8.0)],
        chargers=[Charger("cp1", 11.0)],
        ev_sessions=[EvSession("car", "cp1", [True] * n, energy_needed_kwh=6.0,
                               max_charge_kw=11.0, min_charge_kw=4.0)],
        electrolysers=[Electrolyser("elz", rated_kw=30.0, min_load_fraction=0.3,
                                    kwh_per_kg=50.0, startup_cost=1.0)],
        tanks=[HydrogenTank("tank", capacity_kg=3.0, floor_kg=0.5, initial_kg=1.0)],
        offtakes=[HydrogenOfftake("h2use", [0.05] * n)],
    )


def test_same_problem_twice_gives_identical_series() -> None:
    p = busy_site()
    a, b = solve(p), solve(p)
    assert a.series == b.series
    assert a.costs == b.costs
    assert a.slacks == b.slacks


def test_to_frame_has_one_row_per_step_on_the_utc_grid() -> None:
    p = busy_site(8)
    plan = solve(p)
    frame = plan.to_frame()
    assert len(frame) == 8
    expected = pd.DatetimeIndex([T0 + timedelta(minutes=15 * k) for k in range(8)])
    assert isinstance(frame.index, pd.DatetimeIndex)
    assert str(frame.index.tz) == "UTC"
    assert frame.index.equals(expected)
    assert list(frame.index.to_pydatetime()) == p.grid.instants()
    assert set(frame.columns) == set(plan.series)
    assert frame["grid.import_kw"].tolist() == plan.series["grid.import_kw"]


def test_time_grid_rejects_naive_start() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        TimeGrid(datetime(2024, 1, 1), 60, 4)
    assert TimeGrid(datetime(2024, 1, 1, tzinfo=UTC), 30, 4).step_hours == 0.5


def test_wrong_series_length_names_the_field_and_the_count() -> None:
    p = problem(4)
    bad = replace(p, connection=replace(p.connection, import_price_per_kwh=[0.1, 0.2, 0.3]))
    with pytest.raises(ValueError, match=r"connection\.import_price_per_kwh.*4.*3"):
        bad.validate()
    bad_load = replace(p, loads=[Load("site", [1.0] * 5)])
    with pytest.raises(ValueError, match=r"loads\[site\]\.demand_kw.*got 5"):
        bad_load.validate()
    bad_ev = replace(p, chargers=[Charger("cp1", 7.0)],
                     ev_sessions=[EvSession("car", "cp1", [True] * 3, 5.0, 7.0)])
    with pytest.raises(ValueError, match=r"ev_sessions\[car\]\.plugged.*got 3"):
        bad_ev.validate()


def test_nan_price_names_the_field_and_the_step() -> None:
    p = problem(4)
    prices = [0.1, math.nan, 0.2, 0.2]
    bad = replace(p, connection=replace(p.connection, export_price_per_kwh=prices))
    with pytest.raises(ValueError, match=r"connection\.export_price_per_kwh\[1\].*NaN"):
        bad.validate()
    with pytest.raises(ValueError, match=r"export_price_per_kwh\[1\]"):
        solve(bad)  # the planner validates before building anything


def test_nan_or_negative_forecast_names_the_field_and_value() -> None:
    p = problem(3)
    with pytest.raises(ValueError, match=r"pv\[roof\]\.available_kw\[2\] = nan"):
        replace(p, pv=[Pv("roof", [1.0, 2.0, math.nan])]).validate()
    with pytest.raises(ValueError, match=r"loads\[site\]\.demand_kw\[0\] = -1\.0"):
        replace(p, loads=[Load("site", [-1.0, 0.0, 0.0])]).validate()


def test_unknown_tank_and_charger_are_named() -> None:
    p = problem(3)
    elz = Electrolyser("elz", rated_kw=10.0, min_load_fraction=0.2, kwh_per_kg=50.0,
                       tank="nowhere")
    with pytest.raises(ValueError, match=r"electrolysers\[elz\]\.tank = 'nowhere'"):
        replace(p, electrolysers=[elz]).validate()
    tank = HydrogenTank("tank", capacity_kg=1.0, floor_kg=0.0, initial_kg=0.0)
    with pytest.raises(ValueError, match=r"offtakes\[use\]\.tank = 'other'"):
        replace(p, tanks=[tank], offtakes=[HydrogenOfftake("use", [0.1] * 3, tank="other")]
                ).validate()
    session = EvSession("car", "cp9", [True] * 3, energy_needed_kwh=5.0, max_charge_kw=7.0)
    with pytest.raises(ValueError, match=r"ev_sessions\[car\]\.charger = 'cp9'"):
        replace(p, chargers=[Charger("cp1", 7.0)], ev_sessions=[session]).validate()


def test_inconsistent_asset_parameters_are_named() -> None:
    p = problem(3)
    with pytest.raises(ValueError, match=r"batteries\[b\]\.capacity_kwh = 0"):
        replace(p, batteries=[Battery("b", 0.0, 1.0, 1.0, 0.0)]).validate()
    with pytest.raises(ValueError, match=r"min_charge_kw = 8.0 exceeds max_charge_kw = 7.0"):
        replace(p, chargers=[Charger("cp1", 7.0)], ev_sessions=[
            EvSession("car", "cp1", [True] * 3, 5.0, 7.0, min_charge_kw=8.0)]).validate()
    with pytest.raises(ValueError, match=r"electrolysers\[e\]\.min_load_fraction = 1.5"):
        replace(p, tanks=[HydrogenTank("tank", 1.0, 0.0, 0.0)], electrolysers=[
            Electrolyser("e", rated_kw=10.0, min_load_fraction=1.5, kwh_per_kg=50.0)]).validate()


def test_valid_problem_passes_validation() -> None:
    busy_site().validate()
