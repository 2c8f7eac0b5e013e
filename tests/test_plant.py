"""The plant model's physics, checked against hand-computed steps."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.sim.plant import (
    BatteryModel,
    ElectrolyserModel,
    EvChargerModel,
    Plant,
    Setpoints,
    TankModel,
    Vehicle,
)


def battery(soc: float = 50.0, **kw: float) -> BatteryModel:
    args: dict[str, float] = dict(capacity_kwh=100.0, max_charge_kw=50.0, max_discharge_kw=50.0,
                                  charge_efficiency=0.9, discharge_efficiency=0.8, soc_kwh=soc,
                                  soc_min_kwh=10.0, soc_max_kwh=90.0)
    args.update(kw)
    return BatteryModel(name="b", **args)  # type: ignore[arg-type]


def electrolyser(level: float = 0.0, capacity: float = 10.0) -> ElectrolyserModel:
    tank = TankModel("t", capacity_kg=capacity, level_kg=level)
    return ElectrolyserModel("e", rated_kw=100.0, min_load_kw=20.0, kwh_per_kg=50.0,
                             standby_kw=2.0, tank=tank, on=False)


# --- battery -----------------------------------------------------------------------------


def test_battery_charge_uses_charge_efficiency() -> None:
    b = battery(soc=50.0)
    assert b.apply(-40.0, 0.5) == -40.0
    # 40 kW x 0.5 h x 0.9 into the cells
    assert b.soc_kwh == pytest.approx(68.0)
    assert b.throughput_kwh == pytest.approx(20.0)


def test_battery_discharge_uses_discharge_efficiency() -> None:
    b = battery(soc=50.0)
    assert b.apply(30.0, 0.5) == 30.0
    # 30 kW x 0.5 h delivered takes 15 / 0.8 = 18.75 kWh out of the cells
    assert b.soc_kwh == pytest.approx(31.25)


def test_battery_round_trip() -> None:
    b = battery(soc=50.0)
    b.apply(-40.0, 0.25)   # +9 kWh stored
    b.apply(20.0, 0.25)    # -6.25 kWh
    b.apply(0.0, 0.25)
    assert b.soc_kwh == pytest.approx(50.0 + 9.0 - 6.25)
    assert b.throughput_kwh == pytest.approx(10.0 + 5.0)


def test_battery_power_limits() -> None:
    b = battery(soc=50.0, max_charge_kw=25.0, max_discharge_kw=30.0)
    assert b.apply(80.0, 0.25) == 30.0
    assert b.soc_kwh == pytest.approx(50.0 - 30.0 * 0.25 / 0.8)
    assert b.apply(-80.0, 0.25) == -25.0


def test_battery_stops_at_soc_min() -> None:
    b = battery(soc=20.0)
    # 10 kWh above the floor deliver 8 kWh: 16 kW for half an hour
    assert b.discharge_room_kw(0.5) == pytest.approx(16.0)
    assert b.apply(50.0, 0.5) == pytest.approx(16.0)
    assert b.soc_kwh == pytest.approx(10.0)
    assert b.apply(50.0, 0.5) == 0.0
    assert b.soc_kwh == pytest.approx(10.0)


def test_battery_stops_at_soc_max() -> None:
    b = battery(soc=85.0)
    # 5 kWh of room take 5 / 0.9 kWh from outside
    assert b.charge_room_kw(0.5) == pytest.approx(5.0 / 0.9 / 0.5)
    assert b.apply(-50.0, 0.5) == pytest.approx(-5.0 / 0.9 / 0.5)
    assert b.soc_kwh == pytest.approx(90.0)
    assert b.apply(-50.0, 0.5) == 0.0


def test_battery_without_soc_max_uses_capacity() -> None:
    b = battery(soc=99.0, soc_max_kwh=None)  # type: ignore[arg-type]
    b.apply(-50.0, 1.0)
    assert b.soc_kwh == pytest.approx(100.0)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.floats(min_value=-120.0, max_value=120.0), min_size=1, max_size=40),
       st.floats(min_value=10.0, max_value=90.0))
def test_battery_limits_hold_for_any_requests(requests: list[float], soc0: float) -> None:
    b = battery(soc=soc0)
    dt = 0.25
    for r in requests:
        before = b.soc_kwh
        p = b.apply(r, dt)
        assert -50.0 - 1e-9 <= p <= 50.0 + 1e-9
        assert 10.0 - 1e-9 <= b.soc_kwh <= 90.0 + 1e-9
        # never more than asked, in the asked direction
        assert (0.0 <= p <= r + 1e-9) if r >= 0 else (r - 1e-9 <= p <= 0.0)
        expect = before - (p * dt / 0.8 if p >= 0 else p * dt * 0.9)
        assert b.soc_kwh == pytest.approx(expect, abs=1e-9)


# --- EV charger --------------------------------------------------------------------------


def charger(needed: float = 40.0, delivered: float = 0.0, presence: float = 1.0) -> EvChargerModel:
    return EvChargerModel("c", max_kw=11.0, min_kw=4.14, efficiency=0.9,
                          vehicle=Vehicle("s1", needed, delivered), presence=presence)


def test_ev_charger_never_exceeds_max_times_presence() -> None:
    c = charger(presence=1.0)
    assert c.apply(50.0, 0.25) == 11.0
    assert c.vehicle is not None and c.vehicle.delivered_kwh == pytest.approx(11.0 * 0.25 * 0.9)
    c.presence = 0.5
    assert c.wanted_kw(0.25) == pytest.approx(5.5)
    assert c.apply(50.0, 0.25) == pytest.approx(5.5)
    c.presence = 0.0
    assert c.apply(50.0, 0.25) == 0.0


def test_ev_charger_stops_at_the_need() -> None:
    c = charger(needed=10.0, delivered=8.0)
    # 2 kWh into the car need 2 / 0.9 kWh from the grid: 8.89 kW over 15 minutes
    assert c.wanted_kw(0.25) == pytest.approx(2.0 / 0.9 / 0.25)
    assert c.apply(11.0, 0.25) == pytest.approx(2.0 / 0.9 / 0.25)
    assert c.vehicle is not None and c.vehicle.delivered_kwh == pytest.approx(10.0)
    assert c.wanted_kw(0.25) == 0.0
    assert c.apply(11.0, 0.25) == 0.0
    assert c.vehicle.delivered_kwh == pytest.approx(10.0)


def test_ev_charger_pauses_below_minimum() -> None:
    c = charger()
    assert c.apply(3.0, 0.25) == 0.0
    assert c.vehicle is not None and c.vehicle.delivered_kwh == 0.0
    assert c.apply(4.14, 0.25) == pytest.approx(4.14)


def test_ev_charger_without_vehicle() -> None:
    c = EvChargerModel("c", max_kw=11.0)
    assert c.wanted_kw(0.25) == 0.0
    assert c.apply(11.0, 0.25) == 0.0


# --- electrolyser and tank -----------------------------------------------------------------


def test_electrolyser_below_min_load_is_standby() -> None:
    e = electrolyser()
    kw, kg = e.apply(10.0, 0.25)
    assert (kw, kg) == (2.0, 0.0)
    assert e.on is False and e.tank.level_kg == 0.0 and e.starts == 0


def test_electrolyser_zero_request_is_standby() -> None:
    e = electrolyser()
    assert e.apply(0.0, 0.25) == (2.0, 0.0)


def test_electrolyser_production() -> None:
    e = electrolyser()
    kw, kg = e.apply(60.0, 0.25)
    # 60 kW x 0.25 h / 50 kWh/kg
    assert kw == 60.0 and kg == pytest.approx(0.3)
    assert e.tank.level_kg == pytest.approx(0.3)
    assert e.on and e.starts == 1 and e.steps_in_state == 1
    kw, kg = e.apply(20.0, 0.5)  # exactly the minimum load
    assert kw == 20.0 and kg == pytest.approx(0.2)
    assert e.starts == 1 and e.steps_in_state == 2


def test_electrolyser_rated_power_limit() -> None:
    e = electrolyser()
    kw, kg = e.apply(150.0, 0.25)
    assert kw == 100.0 and kg == pytest.approx(0.5)


def test_electrolyser_turning_off_and_restarting_counts_starts() -> None:
    e = electrolyser()
    e.apply(60.0, 0.25)
    e.apply(5.0, 0.25)
    assert e.on is False and e.steps_in_state == 1
    e.apply(60.0, 0.25)
    assert e.starts == 2


def test_full_tank_cuts_production() -> None:
    e = electrolyser(level=9.9)
    # room 0.1 kg = 5 kWh = 20 kW over 15 minutes, which is still the minimum load
    kw, kg = e.apply(60.0, 0.25)
    assert kw == pytest.approx(20.0) and kg == pytest.approx(0.1)
    assert e.tank.level_kg == pytest.approx(10.0)
    kw, kg = e.apply(60.0, 0.25)
    assert (kw, kg) == (2.0, 0.0)
    assert e.tank.level_kg == pytest.approx(10.0)


def test_nearly_full_tank_below_min_load_is_standby() -> None:
    e = electrolyser(level=9.95)  # room for 10 kW only, below the 20 kW minimum
    assert e.apply(60.0, 0.25) == (2.0, 0.0)
    assert e.tank.level_kg == pytest.approx(9.95)


# --- the whole plant behind one meter -------------------------------------------------------


def plant(soc: float = 50.0, tank_level: float = 1.0) -> Plant:
    e = electrolyser(level=tank_level)
    return Plant(batteries={"b": battery(soc=soc)},
                 chargers={"c": charger()},
                 electrolysers={"e": e},
                 tanks={"t": e.tank},
                 offtake_tank={"o": "t"})


def test_meter_is_the_balance_importing() -> None:
    p = plant()
    sp = Setpoints(battery_net_kw={"b": 30.0}, ev_kw={"c": 11.0}, electrolyser_kw={"e": 60.0})
    r = p.step(0.25, {"pv": 40.0}, {"l1": 100.0, "l2": 20.0}, {"o": 0.0}, sp)
    # 120 load + 11 EV + 60 electrolyser - 40 PV - 30 battery
    assert r.grid_import_kw == pytest.approx(121.0)
    assert r.grid_export_kw == 0.0
    assert r.battery_net_kw == {"b": 30.0}
    assert r.ev_kw == {"c": 11.0}
    assert r.electrolyser_kw == {"e": 60.0}
    assert r.pv_kw == {"pv": 40.0} and r.pv_curtailed_kw == {"pv": 0.0}
    assert r.load_kw == {"l1": 100.0, "l2": 20.0}


def test_meter_is_the_balance_exporting_with_actual_not_requested_flows() -> None:
    p = plant(soc=85.0)
    # battery asked to charge 50 kW but has room for 5/0.9/0.25 = 22.2 kW; electrolyser asked
    # below its minimum runs at standby; the vehicle takes its 11 kW maximum
    sp = Setpoints(battery_net_kw={"b": -50.0}, ev_kw={"c": 30.0}, electrolyser_kw={"e": 10.0})
    r = p.step(0.25, {"pv": 200.0}, {"l": 50.0}, {"o": 0.0}, sp)
    bat = -5.0 / 0.9 / 0.25
    assert r.battery_net_kw["b"] == pytest.approx(bat)
    net = 50.0 + 11.0 + 2.0 - 200.0 - bat
    assert net < 0
    assert r.grid_export_kw == pytest.approx(-net) and r.grid_import_kw == 0.0


def test_pv_limit_curtails() -> None:
    p = plant()
    r = p.step(0.25, {"pv": 200.0}, {"l": 50.0}, {}, Setpoints(pv_limit_kw={"pv": 80.0}))
    assert r.pv_kw["pv"] == 80.0 and r.pv_curtailed_kw["pv"] == 120.0
    # idle electrolyser at standby, nothing else
    assert r.grid_import_kw == 0.0 and r.grid_export_kw == pytest.approx(80.0 - 50.0 - 2.0)


def test_offtake_served_from_tank_with_this_steps_production() -> None:
    p = plant(tank_level=0.1)
    r = p.step(0.25, {}, {"l": 0.0}, {"o": 0.5}, Setpoints(electrolyser_kw={"e": 60.0}))
    assert r.hydrogen_kg["e"] == pytest.approx(0.3)
    assert r.offtake_served_kg["o"] == pytest.approx(0.4)
    assert r.offtake_unmet_kg["o"] == pytest.approx(0.1)
    assert p.tanks["t"].level_kg == pytest.approx(0.0)
