"""From config, inputs and carried state to the optimiser's Problem: EV presence per step,
energy still needed, billing-period peak, electrolyser timing, initial states."""

from __future__ import annotations

import dataclasses
import math
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from ems.config import LoadedSite, load_site
from ems.inputs import EvSessionEvent, SiteInputs, build_inputs
from ems.planning.problem_builder import (
    billing_period,
    build_problem,
    initial_state,
    plugged_steps,
    settings_from,
)
from ems.planning.state import SiteState
from optimizer import ObjectiveMode, solve

T10 = datetime(2025, 7, 15, 10, 0, tzinfo=UTC)


def at(h: int, m: int = 0, day: int = 15, month: int = 7) -> datetime:
    return datetime(2025, month, day, h, m, tzinfo=UTC)


def session(arrive: datetime, depart: datetime, energy: float = 30.0, sid: str = "v1",
            charger: str = "fleet_1") -> EvSessionEvent:
    return EvSessionEvent(sid, charger, arrive, depart, energy)


@pytest.fixture(scope="module")
def site() -> LoadedSite:
    return load_site("guangdong_factory")


@pytest.fixture(scope="module")
def inputs(site: LoadedSite) -> SiteInputs:
    # UTC 2025-07-14 00:00 .. 2025-08-03 00:00: room for 48-h horizons around the month end
    return build_inputs(site, at(0, day=14), at(0, day=3, month=8))


def with_sessions(inputs: SiteInputs, *sessions: EvSessionEvent) -> SiteInputs:
    return dataclasses.replace(inputs, sessions=list(sessions))


# --- plugged fraction, by hand ------------------------------------------------------------


def test_plugged_fraction_by_hand() -> None:
    # 10:07 -> 11:52 on a 15-minute grid from 10:00:
    # [10:00,10:15) 8 of 15 min; six whole steps 10:15..11:45; [11:45,12:00) 7 of 15 min.
    got = plugged_steps(session(at(10, 7), at(11, 52)), T10, 10, 15)
    expect = [8 / 15, 1, 1, 1, 1, 1, 1, 7 / 15, 0, 0]
    assert got == pytest.approx(expect, abs=1e-12)


def test_plugged_fraction_edges() -> None:
    # arrived before the horizon, leaves 20 min into it
    assert plugged_steps(session(at(9), at(10, 20)), T10, 3, 15) == pytest.approx([1, 1 / 3, 0])
    # inside one step
    assert plugged_steps(session(at(10, 5), at(10, 10)), T10, 2, 15) == pytest.approx([1 / 3, 0])
    # beyond the horizon
    assert plugged_steps(session(at(10, 30), at(20)), T10, 4, 15) == pytest.approx([0, 0, 1, 1])
    # exactly on step boundaries
    assert plugged_steps(session(at(10, 15), at(10, 45)), T10, 4, 15) == pytest.approx(
        [0, 1, 1, 0])
    # gone before the horizon
    assert plugged_steps(session(at(8), at(9)), T10, 2, 15) == [0.0, 0.0]
    # a 60-minute grid: 10:07 -> 11:52 is 53/60 then 52/60
    assert plugged_steps(session(at(10, 7), at(11, 52)), T10, 3, 60) == pytest.approx(
        [53 / 60, 52 / 60, 0])


def test_problem_carries_plugged_fraction_and_charger_limits(site: LoadedSite,
                                                             inputs: SiteInputs) -> None:
    inp = with_sessions(inputs, session(at(10, 7), at(11, 52), energy=30.0))
    prob = build_problem(site, inp, T10, initial_state(site.config), settings_from(site.config),
                         n_steps=12)
    (ev,) = prob.ev_sessions
    assert ev.name == "v1" and ev.charger == "fleet_1"
    assert ev.plugged == pytest.approx([8 / 15, 1, 1, 1, 1, 1, 1, 7 / 15, 0, 0, 0, 0])
    assert ev.energy_needed_kwh == 30.0
    assert ev.max_charge_kw == pytest.approx(32 * 3 * 230 / 1000)
    assert ev.min_charge_kw == pytest.approx(6 * 3 * 230 / 1000)
    assert ev.hours_plugged_after_horizon == 0.0
    assert [c.name for c in prob.chargers] == [f"fleet_{i}" for i in range(1, 7)]


def test_planned_charging_respects_presence(site: LoadedSite, inputs: SiteInputs) -> None:
    # A real solve: the plan may not charge faster than the charger x the plugged fraction,
    # and delivers the 30 kWh before 11:52.
    inp = with_sessions(inputs, session(at(10, 7), at(11, 52), energy=30.0))
    prob = build_problem(site, inp, T10, initial_state(site.config), settings_from(site.config),
                         n_steps=12)
    plan = solve(prob)
    charge = plan.series["ev:v1.charge_kw"]
    (ev,) = prob.ev_sessions
    for k, (p, frac) in enumerate(zip(charge, ev.plugged, strict=True)):
        assert p <= ev.max_charge_kw * frac + 1e-6, (k, p, frac)
    delivered = sum(charge) * 0.25 * ev.efficiency
    assert delivered == pytest.approx(30.0, abs=1e-4)
    assert not plan.slacks


def test_session_outside_horizon_is_left_out(site: LoadedSite, inputs: SiteInputs) -> None:
    inp = with_sessions(inputs,
                        session(at(8), at(10), sid="gone"),            # left at the start
                        session(at(13), at(14), sid="later"),          # after a 3-h horizon
                        session(at(12, 50), at(14), sid="edge"))       # arrives in the last step
    prob = build_problem(site, inp, T10, initial_state(site.config), settings_from(site.config),
                         n_steps=12)
    assert [s.name for s in prob.ev_sessions] == ["edge"]
    assert prob.ev_sessions[0].plugged[-1] == pytest.approx(10 / 15)


def test_hours_plugged_after_horizon(site: LoadedSite, inputs: SiteInputs) -> None:
    inp = with_sessions(inputs, session(at(10, 7), at(11, 52)))
    prob = build_problem(site, inp, T10, initial_state(site.config), settings_from(site.config),
                         n_steps=4)  # horizon ends 11:00
    assert prob.ev_sessions[0].hours_plugged_after_horizon == pytest.approx(52 / 60)


# --- carried state -----------------------------------------------------------------------


@pytest.mark.parametrize(("delivered", "needed"), [(0.0, 45.0), (12.5, 32.5), (45.0, 0.0),
                                                   (50.0, 0.0)])
def test_delivered_energy_reduces_need(site: LoadedSite, inputs: SiteInputs, delivered: float,
                                       needed: float) -> None:
    s = session(at(10, 30, day=14), at(23, day=14), energy=45.0, sid="van")
    inp = with_sessions(inputs, s)
    state = initial_state(site.config)
    state.ev_delivered_kwh = {"van": delivered, "other": 99.0}
    prob = build_problem(site, inp, at(12, day=14), state, settings_from(site.config), n_steps=8)
    assert prob.ev_sessions[0].energy_needed_kwh == pytest.approx(needed)


def test_daily_session_ids_match_state(site: LoadedSite, inputs: SiteInputs) -> None:
    # the state is keyed by the session ids the inputs produce
    sid = next(s.session_id for s in inputs.sessions
               if s.charger == "fleet_3" and s.arrival_utc == at(10, 30))
    state = initial_state(site.config)
    state.ev_delivered_kwh = {sid: 20.0}
    prob = build_problem(site, inputs, at(11), state, settings_from(site.config), n_steps=8)
    need = {s.name: s.energy_needed_kwh for s in prob.ev_sessions}
    assert need[sid] == pytest.approx(25.0)
    assert sorted(need.values()) == pytest.approx([25.0] + [45.0] * 5)


def _peak(site: LoadedSite, inputs: SiteInputs, when: datetime, period: str,
          peak: float) -> float:
    state = initial_state(site.config)
    state.billing_period, state.peak_import_kw = period, peak
    prob = build_problem(site, inputs, when, state, settings_from(site.config), n_steps=4)
    return prob.connection.peak_so_far_kw


def test_peak_carried_within_the_local_billing_month(site: LoadedSite,
                                                     inputs: SiteInputs) -> None:
    assert _peak(site, inputs, at(10), "2025-07", 700.0) == 700.0
    assert _peak(site, inputs, at(10), "2025-06", 700.0) == 0.0
    assert _peak(site, inputs, at(10), "", 700.0) == 0.0
    # 2025-07-31T15:45Z is 23:45 on 31 July in Shanghai: still July
    assert _peak(site, inputs, at(15, 45, day=31), "2025-07", 700.0) == 700.0
    # 2025-07-31T16:00Z is already 1 August in Shanghai: a new billing period, though UTC
    # is still in July
    assert _peak(site, inputs, at(16, day=31), "2025-07", 700.0) == 0.0
    assert _peak(site, inputs, at(16, day=31), "2025-08", 650.0) == 650.0


def test_billing_period_is_local() -> None:
    assert billing_period(at(16, day=31), "Asia/Shanghai") == "2025-08"
    assert billing_period(at(16, day=31), "UTC") == "2025-07"
    assert billing_period(datetime(2019, 12, 1, 7, 59, tzinfo=UTC), "America/Los_Angeles") == \
        "2019-11"


def test_demand_charge_and_grid_series(site: LoadedSite, inputs: SiteInputs) -> None:
    prob = build_problem(site, inputs, T10, initial_state(site.config),
                         settings_from(site.config), n_steps=8)
    c = prob.connection
    assert c.demand_charge_per_kw == 32.0
    w = inputs.window(pd.Timestamp(T10), 8)
    assert list(c.import_price_per_kwh) == w["import_price_per_kwh"].tolist()
    assert list(c.carbon_intensity_g_per_kwh) == w["carbon_g_per_kwh"].tolist()
    assert prob.grid.start_utc == T10 and prob.grid.n_steps == 8 and prob.grid.step_minutes == 15
    assert list(prob.offtakes[0].demand_kg) == w["h2:forklifts_kg"].tolist()


@pytest.mark.parametrize(("overrides", "up", "down"), [
    ([], 8, 4),  # bundled: 2 h up, 1 h down on 15-minute steps
    (["electrolyser.pem.min_up_hours=0.3", "electrolyser.pem.min_down_hours=0"], 2, 1),
    (["electrolyser.pem.min_up_hours=0.5", "electrolyser.pem.min_down_hours=0.25"], 2, 1),
    (["electrolyser.pem.min_up_hours=3.1", "electrolyser.pem.min_down_hours=0.26"], 13, 2),
])
def test_electrolyser_min_times_in_steps(overrides: list[str], up: int, down: int) -> None:
    site = load_site("guangdong_factory", overrides)
    inputs = build_inputs(site, at(0), at(0, day=18))
    prob = build_problem(site, inputs, T10, initial_state(site.config),
                         settings_from(site.config), n_steps=8)
    (e,) = prob.electrolysers
    assert (e.min_up_steps, e.min_down_steps) == (up, down)


def test_electrolyser_min_times_on_hourly_steps() -> None:
    site = load_site("guangdong_factory", ["planning.step_minutes=60"])
    inputs = build_inputs(site, at(0), at(0, day=18))
    prob = build_problem(site, inputs, T10, initial_state(site.config),
                         settings_from(site.config), n_steps=8)
    (e,) = prob.electrolysers
    assert (e.min_up_steps, e.min_down_steps) == (2, 1)
    assert e.min_load_fraction == 0.15 and e.rated_kw == 250.0 and e.kwh_per_kg == 53.0


def test_initial_state_from_config(site: LoadedSite) -> None:
    state = initial_state(site.config)
    assert state.battery_soc_kwh == {"bess": 1000.0}  # 0.5 x 2000 kWh
    assert state.tank_kg == {"h2_tank": 100.0}
    assert state.electrolyser_on == {"pem": False}
    assert state.ev_delivered_kwh == {}


def test_state_sets_initial_conditions(site: LoadedSite, inputs: SiteInputs) -> None:
    state = SiteState(battery_soc_kwh={"bess": 1234.5}, tank_kg={"h2_tank": 42.0},
                      electrolyser_on={"pem": True}, electrolyser_steps_in_state={"pem": 3})
    prob = build_problem(site, inputs, T10, state, settings_from(site.config), n_steps=8)
    assert prob.batteries[0].initial_soc_kwh == 1234.5
    assert prob.tanks[0].initial_kg == 42.0
    assert prob.electrolysers[0].initially_on is True
    assert prob.electrolysers[0].steps_in_state == 3


def test_empty_state_falls_back_to_config(site: LoadedSite, inputs: SiteInputs) -> None:
    prob = build_problem(site, inputs, T10, SiteState(), settings_from(site.config), n_steps=8)
    assert prob.batteries[0].initial_soc_kwh == pytest.approx(1000.0)
    assert prob.tanks[0].initial_kg == 100.0
    assert prob.electrolysers[0].initially_on is False


def test_initial_soc_drives_the_plan(site: LoadedSite, inputs: SiteInputs) -> None:
    # A real solve: SOC after the first step follows from the state's SOC and the first
    # step's flows with the configured efficiencies (0.96 each way).
    state = initial_state(site.config)
    state.battery_soc_kwh = {"bess": 1500.0}
    prob = build_problem(site, inputs, T10, state, settings_from(site.config), n_steps=8)
    plan = solve(prob)
    s = plan.series
    soc1 = 1500.0 + 0.25 * (0.96 * s["bess.charge_kw"][0] - s["bess.discharge_kw"][0] / 0.96)
    assert s["bess.soc_kwh"][0] == pytest.approx(soc1, abs=1e-4)


def test_settings_from_carbon_price(site: LoadedSite) -> None:
    assert settings_from(site.config).objective is ObjectiveMode.COST
    s = settings_from(site.config, carbon_price=5.0)
    assert s.objective is ObjectiveMode.CARBON_PRICE and s.carbon_price_per_kg == 5.0
    assert settings_from(site.config, carbon_price=0.0).objective is ObjectiveMode.COST
    carbon = load_site("guangdong_factory", ['planning.objective="carbon"'])
    assert settings_from(carbon.config).objective is ObjectiveMode.CARBON


def test_default_horizon_is_48_hours(site: LoadedSite, inputs: SiteInputs) -> None:
    prob = build_problem(site, inputs, T10, initial_state(site.config), settings_from(site.config))
    assert prob.grid.n_steps == 192
    assert prob.grid.instants()[-1] == T10 + timedelta(hours=48) - timedelta(minutes=15)
    assert math.isclose(prob.grid.step_hours, 0.25)
