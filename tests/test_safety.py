"""The safety guard on its own: hand-checked values on the guangdong_factory assets.

Assets (site_configs/guangdong_factory.toml): battery "bess" 2000 kWh, 1000 kW charge and
discharge, SOC window 10–95 %; six chargers "fleet_1".."fleet_6", 6–32 A × 3 phases × 230 V, so
4.14–22.08 kW; electrolyser "pem" 250 kW with min load 0.15 → 37.5 kW; PV "roof_pv" 1000 kWp.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from drivers.capabilities import (
    BatteryReading,
    CapabilityReading,
    ElectrolyserReading,
    EvChargerReading,
    Measured,
    PvInverterReading,
)
from drivers.setpoints import Setpoints
from ems.config import load_site
from ems.config.models import BatteryConfig, BatterySafety, SiteConfig
from ems.control.safety import SafetyGuard, apply_battery_limits, safe_state

NOW = datetime(2026, 1, 15, 4, 0, tzinfo=UTC)
STALE_S = 10.0
CHARGERS = [f"fleet_{i}" for i in range(1, 7)]
EV_MIN_KW = 6 * 3 * 230 / 1000  # 4.14
EV_MAX_KW = 32 * 3 * 230 / 1000  # 22.08


@pytest.fixture(scope="module")
def cfg() -> SiteConfig:
    return load_site("guangdong_factory").config


def ok(value: Any, ts: datetime = NOW) -> Measured[Any]:
    return Measured(value, None, ts)


def gone(reason: str, ts: datetime = NOW) -> Measured[Any]:
    return Measured(None, None, ts, "missing", reason)


def battery(soc: float = 50.0, t_max: float = 30.0, t_min: float = 25.0, spread: float = 0.02,
            soh: float = 95.0, alarms: tuple[str, ...] = (), ts: datetime = NOW) -> BatteryReading:
    return BatteryReading(state=ok("idle", ts), power_net_kw=ok(0.0, ts), soc_pct=ok(soc, ts),
                          soh_pct=ok(soh, ts), cell_temperature_min_c=ok(t_min, ts),
                          cell_temperature_max_c=ok(t_max, ts), cell_voltage_spread_v=ok(spread, ts),
                          alarms=ok(alarms, ts))


def charger(state: str = "C2", ts: datetime = NOW) -> EvChargerReading:
    return EvChargerReading(state=ok(state, ts), plugged=ok(state != "A", ts), power_kw=ok(0.0, ts),
                            applied_current_a=ok(16.0, ts), session_energy_kwh=ok(1.0, ts),
                            total_energy_kwh=gone("not provided by alfen_ng9xx", ts))


def electrolyser(ts: datetime = NOW) -> ElectrolyserReading:
    return ElectrolyserReading(state=ok("steady", ts), power_kw=gone("not provided by enapter_el", ts),
                               production_rate_pct=ok(60.0, ts), h2_flow_kg_per_h=ok(1.0, ts),
                               h2_total_kg=ok(10.0, ts), tank_pressure_bar=ok(30.0, ts),
                               tank_level_pct=ok(40.0, ts))


def pv(ts: datetime = NOW) -> PvInverterReading:
    return PvInverterReading(state=ok("mppt", ts), power_kw=ok(400.0, ts), energy_kwh=ok(1e5, ts),
                             power_limit_pct=ok(100.0, ts))


def readings(**override: CapabilityReading | None) -> dict[str, CapabilityReading | None]:
    out: dict[str, CapabilityReading | None] = {"bess": battery(), "pem": electrolyser(), "roof_pv": pv()}
    out.update({c: charger() for c in CHARGERS})
    out.update(override)
    return out


def want(bess: float | None = None, pem: float | None = None, ev: dict[str, float] | None = None,
         pv_limit: float | str | None = "unset") -> Setpoints:
    sp = Setpoints()
    if bess is not None:
        sp.battery_net_kw["bess"] = bess
    if pem is not None:
        sp.electrolyser_kw["pem"] = pem
    sp.ev_kw.update(ev or {})
    if pv_limit != "unset":
        sp.pv_limit_kw["roof_pv"] = None if pv_limit is None else float(pv_limit)
    return sp


def guard(cfg: SiteConfig, **kw: Any) -> SafetyGuard:
    return SafetyGuard(cfg, staleness_s=STALE_S, **kw)


def codes(events: list[Any]) -> list[tuple[str, str]]:
    return [(e.device, e.code) for e in events]


# -- battery limits ------------------------------------------------------------------------------


def test_discharge_clamped_to_rating(cfg: SiteConfig) -> None:
    r = guard(cfg).check(want(bess=1200.0), readings(), NOW)
    assert r.setpoints.battery_net_kw["bess"] == 1000.0
    assert r.bound_by["bess"] == ["max_discharge_kw"]
    assert r.events == [] and r.fallback_devices == frozenset()


def test_charge_clamped_and_value_inside_passes(cfg: SiteConfig) -> None:
    g = guard(cfg)
    r = g.check(want(bess=-1500.0), readings(), NOW)
    assert r.setpoints.battery_net_kw["bess"] == -1000.0
    assert r.bound_by["bess"] == ["max_charge_kw"]
    r = g.check(want(bess=-700.0), readings(), NOW)
    assert r.setpoints.battery_net_kw["bess"] == -700.0
    assert r.bounds["bess"] == [] and "bess" not in r.bound_by


def test_no_discharge_at_soc_floor_but_charging_allowed(cfg: SiteConfig) -> None:
    g = guard(cfg)
    r = g.check(want(bess=300.0), readings(bess=battery(soc=10.0)), NOW)  # floor 0.10 → 10 %
    assert r.setpoints.battery_net_kw["bess"] == 0.0
    assert r.bound_by["bess"] == ["soc_min_fraction"]
    r = g.check(want(bess=-300.0), readings(bess=battery(soc=10.0)), NOW)
    assert r.setpoints.battery_net_kw["bess"] == -300.0
    r = g.check(want(bess=300.0), readings(bess=battery(soc=10.5)), NOW)
    assert r.setpoints.battery_net_kw["bess"] == 300.0


def test_no_charge_at_soc_ceiling(cfg: SiteConfig) -> None:
    g = guard(cfg)
    r = g.check(want(bess=-300.0), readings(bess=battery(soc=95.0)), NOW)  # ceiling 0.95 → 95 %
    assert r.setpoints.battery_net_kw["bess"] == 0.0
    assert r.bound_by["bess"] == ["soc_max_fraction"]
    assert g.check(want(bess=300.0), readings(bess=battery(soc=95.0)), NOW).setpoints.battery_net_kw[
        "bess"] == 300.0


# -- early warning: temperature --------------------------------------------------------------


def test_over_temperature_derates_raises_once_and_clears_below_hysteresis(cfg: SiteConfig) -> None:
    g = guard(cfg)
    r = g.check(want(bess=800.0), readings(bess=battery(t_max=47.0)), NOW)
    assert r.setpoints.battery_net_kw["bess"] == 500.0  # 0.5 × 1000 kW
    assert r.bound_by["bess"] == ["over_temperature"]
    assert codes(r.raised) == [("bess", "over_temperature")]
    event = r.raised[0]
    assert event.severity == "warning" and "47 °C" in event.message and "45 °C" in event.message
    assert event.time == NOW
    # Same condition next cycle: still derated, no new event.
    r = g.check(want(bess=800.0), readings(bess=battery(t_max=47.0)), NOW + timedelta(seconds=2))
    assert r.setpoints.battery_net_kw["bess"] == 500.0 and r.events == []
    # 44 °C and 42 °C are below the threshold but not 3 °C below: still active, still derated.
    for t in (44.0, 42.0):
        r = g.check(want(bess=-800.0), readings(bess=battery(t_max=t)), NOW)
        assert r.setpoints.battery_net_kw["bess"] == -500.0 and r.events == []
    r = g.check(want(bess=800.0), readings(bess=battery(t_max=41.9)), NOW)
    assert r.setpoints.battery_net_kw["bess"] == 800.0
    assert codes(r.cleared) == [("bess", "over_temperature")] and r.raised == []
    assert g.active_alarms == ()


def test_over_temperature_stop_is_critical(cfg: SiteConfig) -> None:
    g = guard(cfg)
    r = g.check(want(bess=800.0), readings(bess=battery(t_max=56.0)), NOW)
    assert r.setpoints.battery_net_kw["bess"] == 0.0
    assert "over_temperature_stop" in r.bound_by["bess"]
    severity = {e.code: e.severity for e in r.raised}
    assert severity == {"over_temperature": "warning", "over_temperature_stop": "critical"}
    # 53 °C: the stop holds until below 52 °C; at 51 °C only the derate remains.
    assert g.check(want(bess=800.0), readings(bess=battery(t_max=53.0)), NOW).setpoints.battery_net_kw[
        "bess"] == 0.0
    r = g.check(want(bess=800.0), readings(bess=battery(t_max=51.0)), NOW)
    assert r.setpoints.battery_net_kw["bess"] == 500.0
    assert codes(r.cleared) == [("bess", "over_temperature_stop")]


def test_cold_cells_block_charging_only(cfg: SiteConfig) -> None:
    g = guard(cfg)
    r = g.check(want(bess=-400.0), readings(bess=battery(t_min=-2.0)), NOW)
    assert r.setpoints.battery_net_kw["bess"] == 0.0
    assert r.bound_by["bess"] == ["under_temperature_charge"]
    assert codes(r.raised) == [("bess", "under_temperature_charge")]
    assert g.check(want(bess=400.0), readings(bess=battery(t_min=-2.0)), NOW).setpoints.battery_net_kw[
        "bess"] == 400.0
    # Clears only above 0 + 3 °C.
    assert g.check(want(bess=-400.0), readings(bess=battery(t_min=2.0)), NOW).setpoints.battery_net_kw[
        "bess"] == 0.0
    r = g.check(want(bess=-400.0), readings(bess=battery(t_min=3.5)), NOW)
    assert r.setpoints.battery_net_kw["bess"] == -400.0 and codes(r.cleared) == [
        ("bess", "under_temperature_charge")]


def test_missing_temperature_keeps_the_derate(cfg: SiteConfig) -> None:
    g = guard(cfg)
    g.check(want(bess=800.0), readings(bess=battery(t_max=47.0)), NOW)
    no_temp = dataclasses.replace(battery(), cell_temperature_max_c=gone("cell_t_max: sentinel 0x8000"))
    r = g.check(want(bess=800.0), readings(bess=no_temp), NOW)
    assert r.setpoints.battery_net_kw["bess"] == 500.0  # alarm never clears on missing data
    assert codes(r.raised) == [("bess", "cell_temperature_max_c_missing")] and r.cleared == []


def test_field_not_provided_by_profile_is_not_an_alarm(cfg: SiteConfig) -> None:
    # sunspec_battery has no cell temperatures: nothing to check, nothing to raise.
    reading = dataclasses.replace(battery(), cell_temperature_max_c=gone("not provided by sunspec_battery"),
                                  cell_temperature_min_c=gone("not provided by sunspec_battery"))
    r = guard(cfg).check(want(bess=800.0), readings(bess=reading), NOW)
    assert r.setpoints.battery_net_kw["bess"] == 800.0 and r.events == []


# -- early warning: spread, SOH, BMS ------------------------------------------------------------


def test_cell_voltage_spread_derates_then_stops(cfg: SiteConfig) -> None:
    g = guard(cfg)
    r = g.check(want(bess=900.0), readings(bess=battery(spread=0.20)), NOW)
    assert r.setpoints.battery_net_kw["bess"] == 500.0
    assert codes(r.raised) == [("bess", "cell_voltage_spread")] and r.raised[0].severity == "warning"
    assert "0.200 V" in r.raised[0].message and "0.150 V" in r.raised[0].message
    r = g.check(want(bess=900.0), readings(bess=battery(spread=0.31)), NOW)
    assert r.setpoints.battery_net_kw["bess"] == 0.0
    assert [(e.code, e.severity) for e in r.raised] == [("cell_voltage_spread_stop", "critical")]
    # Back under 0.13 V (0.15 − 0.02): both clear.
    r = g.check(want(bess=900.0), readings(bess=battery(spread=0.12)), NOW)
    assert r.setpoints.battery_net_kw["bess"] == 900.0
    assert sorted(e.code for e in r.cleared) == ["cell_voltage_spread", "cell_voltage_spread_stop"]


def test_low_state_of_health_derates(cfg: SiteConfig) -> None:
    r = guard(cfg).check(want(bess=-1000.0), readings(bess=battery(soh=65.0)), NOW)
    assert r.setpoints.battery_net_kw["bess"] == -500.0
    assert r.bound_by["bess"] == ["low_soh"]
    assert [(e.code, e.severity) for e in r.raised] == [("low_soh", "warning")]
    assert "65 %" in r.raised[0].message and "70 %" in r.raised[0].message


def test_bms_alarm_stops_until_it_is_gone(cfg: SiteConfig) -> None:
    g = guard(cfg)
    r = g.check(want(bess=600.0), readings(bess=battery(alarms=("cell_overvoltage",))), NOW)
    assert r.setpoints.battery_net_kw["bess"] == 0.0
    assert r.bound_by["bess"] == ["bms_alarm:cell_overvoltage"]
    assert [(e.code, e.severity) for e in r.raised] == [("bms_alarm:cell_overvoltage", "critical")]
    # The alarm list going missing does not clear it.
    no_list = dataclasses.replace(battery(), alarms=gone("alarm bits: read failed"))
    r = g.check(want(bess=600.0), readings(bess=no_list), NOW)
    assert r.setpoints.battery_net_kw["bess"] == 0.0
    assert codes(r.raised) == [("bess", "alarms_missing")]
    r = g.check(want(bess=600.0), readings(bess=battery(alarms=())), NOW)
    assert r.setpoints.battery_net_kw["bess"] == 600.0
    assert sorted(e.code for e in r.cleared) == ["alarms_missing", "bms_alarm:cell_overvoltage"]


def test_tightest_limit_wins_and_ties_are_all_named(cfg: SiteConfig) -> None:
    r = guard(cfg).check(want(bess=800.0), readings(bess=battery(t_max=47.0, soh=65.0, soc=10.0)), NOW)
    assert r.setpoints.battery_net_kw["bess"] == 0.0
    assert r.bound_by["bess"] == ["soc_min_fraction"]
    r = guard(cfg).check(want(bess=800.0), readings(bess=battery(t_max=47.0, soh=65.0)), NOW)
    assert r.setpoints.battery_net_kw["bess"] == 500.0
    assert sorted(r.bound_by["bess"]) == ["low_soh", "over_temperature"]


def test_apply_battery_limits_by_hand() -> None:
    from ems.control.safety import Limit

    limits = [Limit("discharge", 1000.0, "max_discharge_kw", ""), Limit("charge", 250.0, "x", "")]
    assert apply_battery_limits(1200.0, limits)[0] == 1000.0
    assert apply_battery_limits(-300.0, limits)[0] == -250.0
    assert apply_battery_limits(-200.0, limits) == (-200.0, [])
    assert apply_battery_limits(0.0, limits) == (0.0, [])


# -- stale and missing readings ------------------------------------------------------------------


def test_stale_battery_goes_idle_and_returns_on_fresh_reading(cfg: SiteConfig) -> None:
    g = guard(cfg)
    old = battery(ts=NOW - timedelta(seconds=11))  # 11 s > 10 s limit
    r = g.check(want(bess=500.0), readings(bess=old), NOW)
    assert r.setpoints.battery_net_kw["bess"] == 0.0
    assert r.fallback_devices == frozenset({"bess"})
    assert r.bound_by["bess"] == ["fallback"]
    assert codes(r.raised) == [("bess", "reading_unavailable")] and "11.0 s old" in r.raised[0].message
    r = g.check(want(bess=500.0), readings(bess=old), NOW)
    assert r.events == [] and r.setpoints.battery_net_kw["bess"] == 0.0
    r = g.check(want(bess=500.0), readings(bess=battery()), NOW)
    assert r.setpoints.battery_net_kw["bess"] == 500.0 and r.fallback_devices == frozenset()
    assert codes(r.cleared) == [("bess", "reading_unavailable")]


def test_reading_exactly_at_the_limit_is_fresh(cfg: SiteConfig) -> None:
    r = guard(cfg).check(want(bess=500.0), readings(bess=battery(ts=NOW - timedelta(seconds=10))), NOW)
    assert r.setpoints.battery_net_kw["bess"] == 500.0


def test_no_reading_or_missing_soc_is_fallback(cfg: SiteConfig) -> None:
    no_soc = dataclasses.replace(battery(), soc_pct=gone("soc: not implemented (0xFFFF)"))
    for reading in (None, no_soc, charger()):
        r = guard(cfg).check(want(bess=-500.0), readings(bess=reading), NOW)
        assert r.setpoints.battery_net_kw["bess"] == 0.0 and "bess" in r.fallback_devices
    # A device with no entry at all in the readings is also without a reading.
    rd = readings()
    del rd["bess"]
    assert "bess" in guard(cfg).check(want(), rd, NOW).fallback_devices


def test_fallback_is_commanded_even_without_a_wanted_value(cfg: SiteConfig) -> None:
    r = guard(cfg).check(Setpoints(), readings(pem=None, fleet_3=None, roof_pv=None), NOW)
    assert r.fallback_devices == frozenset({"pem", "fleet_3", "roof_pv"})
    assert r.setpoints.electrolyser_kw == {"pem": 0.0}
    assert r.setpoints.ev_kw == {"fleet_3": pytest.approx(EV_MIN_KW)}
    assert r.setpoints.pv_limit_kw == {"roof_pv": None}
    assert "bess" not in r.setpoints.battery_net_kw  # fresh and not asked for: nothing to write


# -- electrolyser, EV, PV ------------------------------------------------------------------------


def test_electrolyser_below_min_load_is_standby(cfg: SiteConfig) -> None:
    g = guard(cfg)
    r = g.check(want(pem=10.0), readings(), NOW)
    assert r.setpoints.electrolyser_kw["pem"] == 0.0
    assert r.bound_by["pem"] == ["min_load_fraction"]
    assert "37.5 kW" in r.bounds["pem"][0].detail
    assert g.check(want(pem=37.5), readings(), NOW).setpoints.electrolyser_kw["pem"] == 37.5
    r = g.check(want(pem=300.0), readings(), NOW)
    assert r.setpoints.electrolyser_kw["pem"] == 250.0 and r.bound_by["pem"] == ["rated_kw"]


def test_stale_electrolyser_goes_to_standby(cfg: SiteConfig) -> None:
    r = guard(cfg).check(want(pem=200.0), readings(pem=electrolyser(ts=NOW - timedelta(minutes=1))), NOW)
    assert r.setpoints.electrolyser_kw["pem"] == 0.0 and r.fallback_devices == frozenset({"pem"})


def test_ev_power_within_min_max_or_zero(cfg: SiteConfig) -> None:
    g = guard(cfg)
    r = g.check(want(ev={"fleet_1": 30.0, "fleet_2": 2.0, "fleet_3": 10.0, "fleet_4": -5.0}), readings(), NOW)
    assert r.setpoints.ev_kw["fleet_1"] == pytest.approx(EV_MAX_KW)
    assert r.bound_by["fleet_1"] == ["max_current_a"]
    assert r.setpoints.ev_kw["fleet_2"] == 0.0 and r.bound_by["fleet_2"] == ["min_current_a"]
    assert r.setpoints.ev_kw["fleet_3"] == 10.0 and "fleet_3" not in r.bound_by
    assert r.setpoints.ev_kw["fleet_4"] == 0.0 and r.bound_by["fleet_4"] == ["v2g"]


def test_stale_charger_goes_to_safe_current(cfg: SiteConfig) -> None:
    stale = charger(ts=NOW - timedelta(seconds=30))
    r = guard(cfg).check(want(ev={"fleet_1": 20.0}), readings(fleet_1=stale), NOW)
    assert r.setpoints.ev_kw["fleet_1"] == pytest.approx(EV_MIN_KW)
    r = guard(cfg, ev_fallback="pause").check(want(ev={"fleet_1": 20.0}), readings(fleet_1=stale), NOW)
    assert r.setpoints.ev_kw["fleet_1"] == 0.0


def test_charger_in_error_state_gets_zero(cfg: SiteConfig) -> None:
    r = guard(cfg).check(want(ev={"fleet_5": 11.0}), readings(fleet_5=charger(state="F")), NOW)
    assert r.setpoints.ev_kw["fleet_5"] == 0.0 and r.bound_by["fleet_5"] == ["charger_fault"]
    assert codes(r.raised) == [("fleet_5", "charger_fault")]


def test_pv_limit_floor_and_release_on_stale(cfg: SiteConfig) -> None:
    g = guard(cfg)
    r = g.check(want(pv_limit=0.0), readings(), NOW)
    assert r.setpoints.pv_limit_kw["roof_pv"] == 10.0  # 1 % of 1000 kWp, never 0 %
    assert g.check(want(pv_limit=None), readings(), NOW).setpoints.pv_limit_kw["roof_pv"] is None
    r = g.check(want(pv_limit=300.0), readings(roof_pv=pv(ts=NOW - timedelta(seconds=60))), NOW)
    assert r.setpoints.pv_limit_kw["roof_pv"] is None and "roof_pv" in r.fallback_devices


# -- other inputs ------------------------------------------------------------------------------


def test_non_finite_and_unknown_setpoints(cfg: SiteConfig) -> None:
    sp = want(bess=float("nan"))
    sp.battery_net_kw["ghost"] = 100.0
    r = guard(cfg).check(sp, readings(), NOW)
    assert r.setpoints.battery_net_kw == {"bess": 0.0}
    assert r.bound_by["bess"] == ["invalid_setpoint"] and r.bound_by["ghost"] == ["not_configured"]


def test_now_must_be_utc(cfg: SiteConfig) -> None:
    with pytest.raises(ValueError, match="UTC"):
        guard(cfg).check(Setpoints(), readings(), datetime(2026, 1, 15, 4, 0))


def test_safe_state_for_shutdown(cfg: SiteConfig) -> None:
    sp = safe_state(cfg)
    assert sp.battery_net_kw == {"bess": 0.0}
    assert sp.ev_kw == {c: pytest.approx(EV_MIN_KW) for c in CHARGERS}
    assert sp.electrolyser_kw == {"pem": 0.0}
    assert sp.pv_limit_kw == {"roof_pv": None}
    assert set(safe_state(cfg, ev_fallback="pause").ev_kw.values()) == {0.0}


# -- config --------------------------------------------------------------------------------------


def test_battery_safety_defaults_and_validation(cfg: SiteConfig) -> None:
    assert cfg.battery[0].safety == BatterySafety()
    b = BatteryConfig(name="b", capacity_kwh=100, max_charge_kw=50, max_discharge_kw=50,
                      safety={"derate_above_c": 40.0, "derate_fraction": 0.3})  # type: ignore[arg-type]
    assert b.safety.derate_above_c == 40.0 and b.safety.stop_above_c == 55.0
    with pytest.raises(ValidationError, match="derate_above_c"):
        BatterySafety(derate_above_c=60.0)
    with pytest.raises(ValidationError, match="spread_derate_v"):
        BatterySafety(spread_derate_v=0.4)


def test_site_thresholds_are_used(cfg: SiteConfig) -> None:
    small = BatteryConfig(name="bess", capacity_kwh=100, max_charge_kw=50, max_discharge_kw=40,
                          safety=BatterySafety(derate_above_c=40.0, derate_fraction=0.3,
                                               stop_on_bms_alarm=False))
    site = cfg.model_copy(update={"battery": [small]})
    g = SafetyGuard(site, staleness_s=STALE_S)
    r = g.check(want(bess=40.0), readings(bess=battery(t_max=41.0)), NOW)
    assert r.setpoints.battery_net_kw["bess"] == pytest.approx(12.0)  # 0.3 × 40 kW
    r = g.check(want(bess=-50.0), readings(bess=battery(t_max=41.0, alarms=("fan",))), NOW)
    assert r.setpoints.battery_net_kw["bess"] == pytest.approx(-15.0)  # 0.3 × 50 kW; alarm only warns
    assert [(e.code, e.severity) for e in r.raised] == [("bms_alarm:fan", "warning")]
