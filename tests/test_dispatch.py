"""Fast-loop control: grid-limit enforcement in its stated order, checked by stepping the plant;
plan following and the rule-based baseline."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from drivers.sim.plant import (
    BatteryModel,
    ElectrolyserModel,
    EvChargerModel,
    Plant,
    Setpoints,
    StepResult,
    TankModel,
    Vehicle,
)
from ems.control.dispatch import StepInputs, baseline, enforce_grid_limits, follow_plan
from optimizer import Plan, SolverReport

DT = 0.25


def make_plant(soc: float = 500.0, ev_min_kw: float = 10.0, tank_level: float = 0.0) -> Plant:
    bat = BatteryModel("bess", capacity_kwh=1000.0, max_charge_kw=100.0, max_discharge_kw=100.0,
                       charge_efficiency=1.0, discharge_efficiency=1.0, soc_kwh=soc,
                       soc_min_kwh=100.0, soc_max_kwh=900.0)
    ev = EvChargerModel("ev1", max_kw=50.0, min_kw=ev_min_kw, efficiency=1.0,
                        vehicle=Vehicle("s1", needed_kwh=200.0))
    tank = TankModel("tank", capacity_kg=1000.0, level_kg=tank_level)
    el = ElectrolyserModel("pem", rated_kw=200.0, min_load_kw=40.0, kwh_per_kg=50.0,
                           standby_kw=5.0, tank=tank)
    return Plant(batteries={"bess": bat}, chargers={"ev1": ev}, electrolysers={"pem": el},
                 tanks={"tank": tank}, offtake_tank={})


def step_in(load: float, pv: float = 0.0, imp: float = 300.0, exp: float = 50.0) -> StepInputs:
    return StepInputs(pv_available_kw={"pv": pv}, load_kw={"load": load},
                      pv_forecast_kw={"pv": pv}, load_forecast_kw={"load": load},
                      import_limit_kw=imp, export_limit_kw=exp)


def full_setpoints(battery_kw: float = 0.0) -> Setpoints:
    return Setpoints(battery_net_kw={"bess": battery_kw}, ev_kw={"ev1": 50.0},
                     electrolyser_kw={"pem": 200.0})


def run(plant: Plant, inp: StepInputs, sp: Setpoints) -> StepResult:
    return plant.step(DT, inp.pv_available_kw, inp.load_kw, {}, sp)


# --- import limit: battery, then EV, then electrolyser to minimum, then standby ------------


def test_import_within_limit_changes_nothing() -> None:
    plant, inp = make_plant(), step_in(load=40.0)
    sp = full_setpoints()  # 40 + 50 + 200 = 290 <= 300
    assert enforce_grid_limits(sp, inp, plant, DT) == []
    assert sp.battery_net_kw["bess"] == 0.0 and sp.ev_kw["ev1"] == 50.0
    assert sp.electrolyser_kw["pem"] == 200.0
    assert run(plant, inp, sp).grid_import_kw == pytest.approx(290.0)


def test_import_battery_first() -> None:
    plant, inp = make_plant(), step_in(load=100.0)
    sp = full_setpoints()  # 350 kW wanted, 50 over
    actions = enforce_grid_limits(sp, inp, plant, DT)
    assert sp.battery_net_kw["bess"] == pytest.approx(50.0)
    assert sp.ev_kw["ev1"] == 50.0 and sp.electrolyser_kw["pem"] == 200.0
    assert len(actions) == 1 and "bess" in actions[0]
    assert run(plant, inp, sp).grid_import_kw == pytest.approx(300.0)


def test_import_planned_charging_is_reversed_first() -> None:
    plant, inp = make_plant(), step_in(load=100.0)
    sp = full_setpoints(battery_kw=-60.0)  # the plan charges: 410 kW, 110 over
    enforce_grid_limits(sp, inp, plant, DT)
    assert sp.battery_net_kw["bess"] == pytest.approx(50.0)
    assert sp.ev_kw["ev1"] == 50.0 and sp.electrolyser_kw["pem"] == 200.0
    assert run(plant, inp, sp).grid_import_kw == pytest.approx(300.0)


def test_import_then_ev_is_cut() -> None:
    plant, inp = make_plant(), step_in(load=170.0)
    sp = full_setpoints()  # 420 kW: battery gives 100, EV gives 20
    enforce_grid_limits(sp, inp, plant, DT)
    assert sp.battery_net_kw["bess"] == pytest.approx(100.0)
    assert sp.ev_kw["ev1"] == pytest.approx(30.0)
    assert sp.electrolyser_kw["pem"] == 200.0
    assert run(plant, inp, sp).grid_import_kw == pytest.approx(300.0)


def test_import_ev_below_its_minimum_stops() -> None:
    plant, inp = make_plant(ev_min_kw=10.0), step_in(load=195.0)
    sp = full_setpoints()  # 445 kW: battery 100, EV 45 -> 5 kW left is below 10 kW: off
    enforce_grid_limits(sp, inp, plant, DT)
    assert sp.ev_kw["ev1"] == 0.0
    assert sp.electrolyser_kw["pem"] == 200.0
    r = run(plant, inp, sp)
    assert r.ev_kw["ev1"] == 0.0
    assert r.grid_import_kw == pytest.approx(295.0)


def test_import_then_electrolyser_down_toward_min_load() -> None:
    plant, inp = make_plant(), step_in(load=350.0)
    sp = full_setpoints()  # 600 kW: battery 100, EV 50, electrolyser 150 (200 -> 50)
    enforce_grid_limits(sp, inp, plant, DT)
    assert sp.battery_net_kw["bess"] == pytest.approx(100.0)
    assert sp.ev_kw["ev1"] == 0.0
    assert sp.electrolyser_kw["pem"] == pytest.approx(50.0)
    r = run(plant, inp, sp)
    assert r.electrolyser_kw["pem"] == pytest.approx(50.0) and r.hydrogen_kg["pem"] > 0
    assert r.grid_import_kw == pytest.approx(300.0)


def test_import_then_electrolyser_to_standby() -> None:
    plant, inp = make_plant(), step_in(load=380.0)
    # 630 kW: battery 100, EV 50, electrolyser to 40 kW min still 20 over -> standby (5 kW)
    sp = full_setpoints()
    actions = enforce_grid_limits(sp, inp, plant, DT)
    assert sp.electrolyser_kw["pem"] == 0.0
    assert any("standby" in a for a in actions)
    r = run(plant, inp, sp)
    assert r.electrolyser_kw["pem"] == 5.0 and r.hydrogen_kg["pem"] == 0.0
    assert r.grid_import_kw == pytest.approx(380.0 + 5.0 - 100.0)
    assert r.grid_import_kw <= 300.0


def test_import_battery_limited_by_its_soc() -> None:
    # 10 kWh above the floor give 40 kW over 15 minutes; the EV and electrolyser make up
    # the rest
    plant, inp = make_plant(soc=110.0), step_in(load=100.0)
    sp = full_setpoints()  # 350 kW, 50 over: battery 40, EV 10
    enforce_grid_limits(sp, inp, plant, DT)
    assert sp.battery_net_kw["bess"] == pytest.approx(40.0)
    assert sp.ev_kw["ev1"] == pytest.approx(40.0)
    r = run(plant, inp, sp)
    assert r.battery_net_kw["bess"] == pytest.approx(40.0)
    assert r.grid_import_kw == pytest.approx(300.0)


def test_import_impossible_does_its_best() -> None:
    plant, inp = make_plant(), step_in(load=500.0)
    sp = full_setpoints()
    enforce_grid_limits(sp, inp, plant, DT)
    r = run(plant, inp, sp)
    # everything flexible is at its limit; the meter shows the unavoidable rest
    assert r.battery_net_kw["bess"] == pytest.approx(100.0)
    assert r.ev_kw["ev1"] == 0.0 and r.electrolyser_kw["pem"] == 5.0
    assert r.grid_import_kw == pytest.approx(405.0)


@pytest.mark.parametrize("load", [0.0, 60.0, 120.0, 180.0, 240.0, 300.0, 330.0, 370.0, 390.0])
@pytest.mark.parametrize("soc", [100.0, 112.5, 500.0])
@pytest.mark.parametrize("pv", [0.0, 80.0])
def test_import_limit_held_when_physically_possible(load: float, soc: float, pv: float) -> None:
    plant, inp = make_plant(soc=soc), step_in(load=load, pv=pv)
    sp = full_setpoints(battery_kw=-30.0)
    enforce_grid_limits(sp, inp, plant, DT)
    r = run(plant, inp, sp)
    # least import the plant can reach: battery at its room, EV off, electrolyser at standby
    floor = max(0.0, load - pv + 5.0 - min(100.0, (soc - 100.0) / DT))
    if floor <= inp.import_limit_kw:
        assert r.grid_import_kw <= inp.import_limit_kw + 1e-6, (r, sp)
    else:
        assert r.grid_import_kw == pytest.approx(floor)
    assert r.grid_export_kw <= inp.export_limit_kw + 1e-6


def test_request_below_min_load_counts_as_standby_draw() -> None:
    # A 3 kW request is below the 40 kW minimum: the electrolyser idles at its 5 kW standby.
    # 290 load + 10 EV + 5 standby is 5 over, so the EV must give 5 kW, not 3.
    plant, inp = make_plant(soc=100.0, ev_min_kw=0.0), step_in(load=290.0)
    sp = Setpoints(battery_net_kw={"bess": 0.0}, ev_kw={"ev1": 10.0}, electrolyser_kw={"pem": 3.0})
    enforce_grid_limits(sp, inp, plant, DT)
    r = run(plant, inp, sp)
    assert r.electrolyser_kw["pem"] == 5.0
    assert r.grid_import_kw <= 300.0 + 1e-6
    assert r.ev_kw["ev1"] == pytest.approx(5.0)


def test_electrolyser_missing_from_setpoints() -> None:
    plant, inp = make_plant(), step_in(load=500.0)
    sp = Setpoints(battery_net_kw={"bess": 0.0}, ev_kw={"ev1": 50.0})
    enforce_grid_limits(sp, inp, plant, DT)
    r = run(plant, inp, sp)
    assert r.grid_import_kw == pytest.approx(500.0 + 5.0 - 100.0)


# --- export limit: battery charges, then PV is curtailed -------------------------------------


def idle_setpoints(battery_kw: float = 0.0) -> Setpoints:
    return Setpoints(battery_net_kw={"bess": battery_kw}, ev_kw={"ev1": 0.0},
                     electrolyser_kw={"pem": 0.0})


def test_export_battery_charges_first() -> None:
    plant, inp = make_plant(), step_in(load=45.0, pv=170.0, exp=50.0)
    sp = idle_setpoints()  # 45 + 5 standby - 170 = -120: 70 over the export limit
    enforce_grid_limits(sp, inp, plant, DT)
    assert sp.battery_net_kw["bess"] == pytest.approx(-70.0)
    assert sp.pv_limit_kw.get("pv") is None
    r = run(plant, inp, sp)
    assert r.pv_curtailed_kw["pv"] == 0.0
    assert r.grid_export_kw == pytest.approx(50.0)


def test_export_then_pv_curtailed() -> None:
    plant, inp = make_plant(), step_in(load=45.0, pv=600.0, exp=50.0)
    sp = idle_setpoints(battery_kw=20.0)  # the plan discharges: 570 kW export, 520 over
    actions = enforce_grid_limits(sp, inp, plant, DT)
    assert sp.battery_net_kw["bess"] == pytest.approx(-100.0)
    assert sp.pv_limit_kw["pv"] == pytest.approx(600.0 - 400.0)
    assert any("PV limited" in a for a in actions)
    r = run(plant, inp, sp)
    assert r.pv_kw["pv"] == pytest.approx(200.0) and r.pv_curtailed_kw["pv"] == pytest.approx(400.0)
    assert r.grid_export_kw == pytest.approx(50.0)


def test_export_full_battery_curtails_pv_only() -> None:
    plant, inp = make_plant(soc=900.0), step_in(load=45.0, pv=300.0, exp=0.0)
    sp = idle_setpoints()
    enforce_grid_limits(sp, inp, plant, DT)
    assert sp.battery_net_kw["bess"] == 0.0
    r = run(plant, inp, sp)
    assert r.grid_export_kw == pytest.approx(0.0, abs=1e-9)
    assert r.pv_kw["pv"] == pytest.approx(50.0)


@pytest.mark.parametrize("pv", [0.0, 100.0, 200.0, 400.0, 800.0])
@pytest.mark.parametrize("soc", [500.0, 890.0, 900.0])
def test_export_limit_always_held(pv: float, soc: float) -> None:
    plant, inp = make_plant(soc=soc), step_in(load=30.0, pv=pv, exp=20.0)
    sp = idle_setpoints(battery_kw=50.0)
    enforce_grid_limits(sp, inp, plant, DT)
    r = run(plant, inp, sp)
    assert r.grid_export_kw <= 20.0 + 1e-6
    assert r.grid_import_kw <= inp.import_limit_kw + 1e-6


# --- plan following and baseline -------------------------------------------------------------


def fake_plan(series: dict[str, list[float]]) -> Plan:
    n = len(next(iter(series.values())))
    report = SolverReport("optimal", "lp", 0.0, 0.0, 0.0, False, 0)
    return Plan(instants_utc=[datetime(2025, 7, 15, tzinfo=UTC)] * n, step_minutes=15,
                series=series, costs={}, emissions_kg=0.0, slacks=[], solver=report)


def test_follow_plan_battery_absorbs_forecast_error() -> None:
    plant = make_plant()
    plan = fake_plan({
        "bess.charge_kw": [0.0, 40.0], "bess.discharge_kw": [30.0, 0.0],
        "pem.on": [1.0, 0.0], "pem.stack_kw": [120.0, 0.0],
        "ev:s1.charge_kw": [22.0, 11.0],
        "pv.output_kw": [100.0, 90.0], "pv.curtailed_kw": [0.0, 10.0],
    })
    # load 20 kW above forecast, PV 15 kW below it: the battery gives 35 kW more
    inp = StepInputs(pv_available_kw={"pv": 85.0}, load_kw={"load": 220.0},
                     pv_forecast_kw={"pv": 100.0}, load_forecast_kw={"load": 200.0},
                     import_limit_kw=1000.0, export_limit_kw=0.0)
    sp = follow_plan(plan, 0, inp, plant, {"ev1": "s1"})
    assert sp.battery_net_kw["bess"] == pytest.approx(30.0 + 35.0)
    assert sp.ev_kw["ev1"] == 22.0
    assert sp.electrolyser_kw["pem"] == 120.0
    assert sp.pv_limit_kw["pv"] is None
    sp = follow_plan(plan, 1, inp, plant, {"ev1": "s1"})
    assert sp.battery_net_kw["bess"] == pytest.approx(-40.0 + 35.0)
    assert sp.electrolyser_kw["pem"] == 0.0
    assert sp.pv_limit_kw["pv"] == 90.0  # the plan curtails in this slot


def test_follow_plan_keeps_grid_where_planned() -> None:
    plant = make_plant()
    plan = fake_plan({"bess.charge_kw": [0.0], "bess.discharge_kw": [50.0],
                      "pem.on": [0.0], "pem.stack_kw": [0.0],
                      "pv.output_kw": [100.0], "pv.curtailed_kw": [0.0]})
    planned_import = 200.0 + 5.0 - 100.0 - 50.0
    inp = StepInputs(pv_available_kw={"pv": 80.0}, load_kw={"load": 230.0},
                     pv_forecast_kw={"pv": 100.0}, load_forecast_kw={"load": 200.0},
                     import_limit_kw=1000.0, export_limit_kw=0.0)
    sp = follow_plan(plan, 0, inp, plant, {})
    r = run(plant, inp, sp)
    assert r.grid_import_kw == pytest.approx(planned_import)


def test_baseline_rules() -> None:
    plant = make_plant(tank_level=100.0)
    inp = step_in(load=150.0, pv=100.0, imp=1000.0)
    sp = baseline(inp, plant, DT, {"pem": 80.0})
    assert sp.ev_kw["ev1"] == pytest.approx(50.0)        # full power while it needs energy
    assert sp.electrolyser_kw["pem"] == 80.0              # flat level
    # self-consumption: the battery covers 150 + 50 + 80 - 100 = 180 kW (its limit is 100)
    assert sp.battery_net_kw["bess"] == pytest.approx(180.0)
    enforce_grid_limits(sp, inp, plant, DT)
    r = run(plant, inp, sp)
    assert r.battery_net_kw["bess"] == pytest.approx(100.0)
    assert r.grid_import_kw == pytest.approx(80.0)


def test_baseline_electrolyser_standby_when_tank_nearly_full() -> None:
    plant = make_plant(tank_level=960.0)
    sp = baseline(step_in(load=100.0), plant, DT, {"pem": 80.0})
    assert sp.electrolyser_kw["pem"] == 0.0
    # hysteresis: off above 85 % until it has drained, on again below
    plant = make_plant(tank_level=900.0)
    assert baseline(step_in(load=100.0), plant, DT, {"pem": 80.0}).electrolyser_kw["pem"] == 0.0
    plant.electrolysers["pem"].on = True
    assert baseline(step_in(load=100.0), plant, DT, {"pem": 80.0}).electrolyser_kw["pem"] == 80.0


def test_baseline_surplus_pv_charges_battery() -> None:
    plant = make_plant()
    plant.chargers["ev1"].vehicle = None
    sp = baseline(step_in(load=50.0, pv=120.0), plant, DT, {"pem": 0.0})
    assert sp.ev_kw["ev1"] == 0.0
    assert sp.battery_net_kw["bess"] == pytest.approx(50.0 + 5.0 - 120.0)
