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
from ems.runtime.dispatcher import Wanted, electrolyser_input_kw, hold_grid_limits

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
