"""The service's dispatcher by hand: an electrolyser's electrical input when the device has no
power point (Enapter), and the grid limits held from the meter."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from drivers.capabilities import ElectrolyserReading, Measured
from ems.config import LoadedSite
from ems.config.models import ElectrolyserConfig
from ems.runtime.dispatcher import Measured as DispatchMeasured
from ems.runtime.dispatcher import Wanted, electrolyser_input_kw, from_plan, hold_grid_limits

NOW = datetime(2026, 1, 15, 4, 0, tzinfo=UTC)
PEM = ElectrolyserConfig(name="pem", rated_kw=250, kwh_per_kg=55.0, standby_kw=1.5, tank="t")


def ok(value: Any) -> Measured[Any]:
    return Measured(value, None, NOW)


def gone() -> Measured[Any]:
    return Measured(None, None, NOW, "missing", "not provided by enapter_el")


def reading(state: str | None, flow: float | None, power: float | None = None) -> ElectrolyserReading:
    return ElectrolyserReading(state=ok(state) if state else gone(),
                               power_kw=ok(power) if power is not None else gone(),
                               production_rate_pct=ok(80.0),
                               h2_flow_kg_per_h=ok(flow) if flow is not None else gone(),
                               h2_total_kg=ok(10.0), tank_pressure_bar=gone(), tank_level_pct=gone())


def test_a_power_reading_is_used_as_it_is() -> None:
    assert electrolyser_input_kw(PEM, reading("steady", 2.0, power=120.0)) == 120.0


def test_without_a_power_point_the_flow_times_the_specific_energy() -> None:
    assert electrolyser_input_kw(PEM, reading("steady", 2.0)) == pytest.approx(110.0)


def test_idle_standby_and_halted_draw_their_standby_or_nothing() -> None:
    assert electrolyser_input_kw(PEM, reading("idle", None)) == 1.5
    assert electrolyser_input_kw(PEM, reading("standby", None)) == 1.5
    assert electrolyser_input_kw(PEM, reading("halted", None)) == 0.0


def test_nothing_known_is_none_never_zero() -> None:
    assert electrolyser_input_kw(PEM, reading(None, None)) is None
    assert electrolyser_input_kw(PEM, reading("steady", None)) is None
    assert electrolyser_input_kw(PEM, None) is None


# -- grid limits from the meter (guangdong_factory: bess 1000 kW charge and discharge) -----------

def measured(grid_kw: float, battery_kw: float = 0.0, ev: dict[str, float] | None = None,
             pem_kw: float = 0.0, pv_kw: float = 0.0) -> DispatchMeasured:
    return DispatchMeasured(grid_net_kw=grid_kw, battery_net_kw={"bess": battery_kw},
                            ev_kw=dict(ev or {}), electrolyser_kw={"pem": pem_kw},
                            battery_soc_fraction={"bess": 0.5}, plugged={}, pv_kw={"roof_pv": pv_kw})


def test_over_the_import_limit_the_battery_discharges_first(guangdong: LoadedSite) -> None:
    w = Wanted(battery_net_kw={"bess": 100.0}, ev_kw={"fleet_1": 22.0}, electrolyser_kw={"pem": 0.0})
    # the meter shows 900 kW with the battery at 100 kW: 200 kW over a 700 kW limit
    hold_grid_limits(w, guangdong.config, measured(900.0, battery_kw=100.0, ev={"fleet_1": 22.0}),
                     700.0, 0.0)
    assert w.battery_net_kw["bess"] == pytest.approx(300.0)
    assert w.ev_kw["fleet_1"] == 22.0 and "bess" in w.bound_by


def test_with_the_battery_at_its_rating_the_chargers_share_the_cut(guangdong: LoadedSite) -> None:
    w = Wanted(battery_net_kw={"bess": 1000.0}, ev_kw={"fleet_1": 20.0, "fleet_2": 10.0, "fleet_3": 0.0},
               electrolyser_kw={"pem": 50.0})
    ev = {"fleet_1": 20.0, "fleet_2": 10.0, "fleet_3": 0.0}
    # 15 kW over with the battery already at 1000 kW discharge: EVs give 15 of their 30 kW,
    # each in proportion (10 and 5); the electrolyser keeps its 50 kW
    hold_grid_limits(w, guangdong.config, measured(715.0, battery_kw=1000.0, ev=ev, pem_kw=50.0),
                     700.0, 0.0)
    assert w.ev_kw == pytest.approx({"fleet_1": 10.0, "fleet_2": 5.0, "fleet_3": 0.0})
    assert w.electrolyser_kw["pem"] == 50.0
    # more over than the EVs draw: they stop and the electrolyser gives the rest
    w = Wanted(battery_net_kw={"bess": 1000.0}, ev_kw=dict(ev), electrolyser_kw={"pem": 50.0})
    hold_grid_limits(w, guangdong.config, measured(740.0, battery_kw=1000.0, ev=ev, pem_kw=50.0),
                     700.0, 0.0)
    assert w.ev_kw == pytest.approx({"fleet_1": 0.0, "fleet_2": 0.0, "fleet_3": 0.0})
    assert w.electrolyser_kw["pem"] == pytest.approx(40.0)


def test_under_the_export_limit_the_battery_charges_then_pv_is_curtailed(guangdong: LoadedSite) -> None:
    w = Wanted(battery_net_kw={"bess": -900.0}, ev_kw={}, electrolyser_kw={"pem": 0.0},
               pv_limit_kw={"roof_pv": None})
    # exporting 300 kW with zero export allowed: the battery has 100 kW of charge left, PV gives 200
    hold_grid_limits(w, guangdong.config, measured(-300.0, battery_kw=-900.0, pv_kw=800.0), 2500.0, 0.0)
    assert w.battery_net_kw["bess"] == pytest.approx(-1000.0)
    assert w.pv_limit_kw["roof_pv"] == pytest.approx(600.0)


def plan_at(grid_import_kw: float, battery_net_kw: float) -> Any:
    """A one-step plan of the guangdong site's battery and grid (no EVs, electrolyser off)."""
    from types import SimpleNamespace

    # from_plan reads only the plan's series
    return SimpleNamespace(series={"grid.import_kw": [grid_import_kw], "grid.export_kw": [0.0],
                                   "bess.discharge_kw": [max(0.0, battery_net_kw)],
                                   "bess.charge_kw": [max(0.0, -battery_net_kw)],
                                   "pem.on": [0.0], "pem.stack_kw": [0.0], "roof_pv.output_kw": [0.0]})


def test_more_import_than_planned_goes_to_the_grid_up_to_the_ceiling(guangdong: LoadedSite) -> None:
    # planned: 500 kW from the grid, battery 100 kW discharge; measured: the load is 80 kW more
    plan = plan_at(500.0, 100.0)
    m = measured(580.0, battery_kw=100.0)
    assert from_plan(plan, 0, guangdong.config, m, {}).battery_net_kw["bess"] == pytest.approx(180.0)
    # a ceiling of 550 kW: the grid takes 50 kW of the error, the battery the other 30
    w = from_plan(plan, 0, guangdong.config, m, {}, import_ceiling_kw=550.0)
    assert w.battery_net_kw["bess"] == pytest.approx(130.0)
    # a ceiling above the error: the battery keeps to its plan
    w = from_plan(plan, 0, guangdong.config, m, {}, import_ceiling_kw=800.0)
    assert w.battery_net_kw["bess"] == pytest.approx(100.0)


def test_less_import_than_planned_is_banked_in_the_battery(guangdong: LoadedSite) -> None:
    plan = plan_at(500.0, 100.0)
    w = from_plan(plan, 0, guangdong.config, measured(440.0, battery_kw=100.0), {}, import_ceiling_kw=800.0)
    assert w.battery_net_kw["bess"] == pytest.approx(40.0)  # 60 kW less discharge


def test_a_battery_at_its_floor_leaves_the_cut_to_the_loads(guangdong: LoadedSite) -> None:
    # 40 kW over the limit with the battery at its 10 % floor: the guard would refuse a discharge,
    # so the chargers and the electrolyser give the 40 kW
    w = Wanted(battery_net_kw={"bess": 0.0}, ev_kw={"fleet_1": 20.0}, electrolyser_kw={"pem": 60.0})
    m = measured(840.0, ev={"fleet_1": 20.0}, pem_kw=60.0)
    m.battery_soc_fraction["bess"] = 0.10
    hold_grid_limits(w, guangdong.config, m, 800.0, 0.0)
    assert w.battery_net_kw["bess"] == 0.0
    assert w.ev_kw["fleet_1"] == pytest.approx(0.0) and w.electrolyser_kw["pem"] == pytest.approx(40.0)


def test_a_full_battery_leaves_the_export_to_pv_curtailment(guangdong: LoadedSite) -> None:
    w = Wanted(battery_net_kw={"bess": 0.0}, ev_kw={}, electrolyser_kw={"pem": 0.0},
               pv_limit_kw={"roof_pv": None})
    m = measured(-100.0, pv_kw=700.0)
    m.battery_soc_fraction["bess"] = 0.95  # its soc_max_fraction
    hold_grid_limits(w, guangdong.config, m, 2500.0, 0.0)
    assert w.battery_net_kw["bess"] == 0.0 and w.pv_limit_kw["roof_pv"] == pytest.approx(600.0)


def test_a_discharge_asked_of_an_empty_battery_does_not_hide_the_overload(guangdong: LoadedSite) -> None:
    # the plan's error share asks the battery for 100 kW it cannot give (SOC at its floor): the
    # 60 kW over the limit come off the chargers instead
    w = Wanted(battery_net_kw={"bess": 100.0}, ev_kw={"fleet_1": 20.0, "fleet_2": 20.0},
               electrolyser_kw={"pem": 0.0})
    m = measured(820.0, ev={"fleet_1": 0.0, "fleet_2": 0.0})
    m.battery_soc_fraction["bess"] = 0.10
    hold_grid_limits(w, guangdong.config, m, 800.0, 0.0)
    assert w.battery_net_kw["bess"] == 0.0
    assert w.ev_kw == pytest.approx({"fleet_1": 0.0, "fleet_2": 0.0})


def test_an_electrolyser_that_cannot_turn_down_is_stopped_rather_than_trusted(guangdong: LoadedSite) -> None:
    # the plan wants the electrolyser at 37.5 kW; its device runs at 60 % of 250 kW at least (150):
    # that is what counts, and a cut that would take it under 150 kW stops it
    w = Wanted(battery_net_kw={"bess": 0.0}, ev_kw={}, electrolyser_kw={"pem": 37.5})
    m = measured(700.0)
    m.battery_soc_fraction["bess"] = 0.10
    hold_grid_limits(w, guangdong.config, m, 800.0, 0.0, electrolyser_min_kw={"pem": 150.0})
    assert w.electrolyser_kw["pem"] == 0.0  # 700 + 150 is over 800: stop
    w = Wanted(battery_net_kw={"bess": 0.0}, ev_kw={}, electrolyser_kw={"pem": 37.5})
    hold_grid_limits(w, guangdong.config, m, 900.0, 0.0, electrolyser_min_kw={"pem": 150.0})
    assert w.electrolyser_kw["pem"] == 150.0  # 850 is within 900: it runs at its minimum


def test_without_a_meter_reading_nothing_may_add_import(guangdong: LoadedSite) -> None:
    w = Wanted(battery_net_kw={"bess": -1000.0}, ev_kw={"fleet_1": 22.0, "fleet_2": 5.0},
               electrolyser_kw={"pem": 150.0})
    m = measured(0.0, battery_kw=-400.0, ev={"fleet_1": 10.0, "fleet_2": 10.0}, pem_kw=0.0)
    m.grid_net_kw = None
    hold_grid_limits(w, guangdong.config, m, 800.0, 0.0)
    assert w.battery_net_kw["bess"] == -400.0  # charges no more than now
    assert w.ev_kw == {"fleet_1": 10.0, "fleet_2": 5.0}  # less is allowed, more is not
    assert w.electrolyser_kw["pem"] == 0.0
