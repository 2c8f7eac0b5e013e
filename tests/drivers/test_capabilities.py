import dataclasses
from datetime import UTC, datetime, timedelta, timezone

import pytest

from drivers.capabilities import (
    COMMAND_MAPPINGS,
    MAPPINGS,
    READING_TYPES,
    ElectrolyserReading,
    ElectrolyserSetpoint,
    EvChargerReading,
    EvChargerSetpoint,
    Measured,
    MeterReading,
    check_mapping,
    field_units,
    from_capability,
    from_commands,
    to_capability,
    to_commands,
)
from drivers.modbus.device import PollResult
from drivers.modbus.profile import Profile, Reading, encode_command, load_profiles
from drivers.profiles import PROFILES_DIR
from drivers.sunspec import SUNSPEC_PROFILE_NAMES

TS = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
PROFILES = load_profiles(PROFILES_DIR)


def poll(
    profile: Profile, values: dict[str, float | str | None], reasons: dict[str, str] | None = None
) -> PollResult:
    """A PollResult with every point of ``profile``: given values, others missing "not set"."""
    reasons = reasons or {}
    readings = {}
    for name, point in profile.points.items():
        value = values.get(name)
        reason = None if value is not None else reasons.get(name, "not set")
        readings[name] = Reading(value, point.unit, reason)
    return PollResult(readings, TS)


def test_bundled_profiles_all_mapped() -> None:
    assert set(MAPPINGS) == set(PROFILES) | set(SUNSPEC_PROFILE_NAMES)
    for profile in PROFILES.values():
        assert check_mapping(profile) == []


def test_check_mapping_catches_unit_drift() -> None:
    profile = PROFILES["eastron_sdm630"]
    points = dict(profile.points)
    points["total_active_power_net_w"] = points["total_active_power_net_w"].model_copy(update={"unit": "kW"})
    drifted = profile.model_copy(update={"points": points})
    problems = check_mapping(drifted)
    assert len(problems) == 1 and "total_active_power_net_w" in problems[0]
    with pytest.raises(ValueError, match="mapping expects 'W'"):
        to_capability(drifted, poll(drifted, {}))


def test_field_units_match_dataclass_fields() -> None:
    for kind, cls in READING_TYPES.items():
        names = [f.name for f in dataclasses.fields(cls)]
        assert list(field_units(kind)) == names == list(cls.UNITS)


def test_meter_import_sign_and_units() -> None:
    profile = PROFILES["eastron_sdm630"]
    values: dict[str, float | str | None] = {
        "total_active_power_net_w": 2500.0,
        "active_power_l1_w": 1000.0,
        "active_power_l2_w": 1000.0,
        "active_power_l3_w": 500.0,
        "voltage_l1_v": 230.1,
        "current_l2_a": 4.5,
        "import_energy_kwh": 1234.5,
        "export_energy_kwh": 10.0,
        "frequency_hz": 50.02,
    }
    r = to_capability(profile, poll(profile, values))
    assert isinstance(r, MeterReading)
    assert r.power_net_kw == Measured(2.5, "kW", TS)
    assert r.power_l3_net_kw.value == pytest.approx(0.5)
    assert r.voltage_l1_v.value == pytest.approx(230.1)
    assert r.current_l2_a.value == pytest.approx(4.5)
    assert r.import_energy_kwh.value == pytest.approx(1234.5)
    assert r.import_energy_kwh.unit == "kWh"
    assert r.frequency_hz.value == pytest.approx(50.02)


def test_meter_export_is_negative() -> None:
    profile = PROFILES["eastron_sdm630"]
    r = to_capability(profile, poll(profile, {"total_active_power_net_w": -3200.0}))
    assert isinstance(r, MeterReading)
    assert r.power_net_kw.value == pytest.approx(-3.2)
    assert r.power_net_kw.quality == "good" and r.power_net_kw.reason is None


def test_missing_point_keeps_its_reason() -> None:
    profile = PROFILES["eastron_sdm630"]
    result = poll(
        profile, {}, {"total_active_power_net_w": "not available (NaN)", "frequency_hz": "out of range"}
    )
    r = to_capability(profile, result)
    assert isinstance(r, MeterReading)
    assert r.power_net_kw.value is None and r.power_net_kw.quality == "missing"
    assert r.power_net_kw.reason == "total_active_power_net_w: not available (NaN)"
    assert r.frequency_hz.reason == "frequency_hz: out of range"
    assert r.power_net_kw.unit == "kW" and r.power_net_kw.timestamp == TS


def test_point_absent_from_poll_is_missing() -> None:
    profile = PROFILES["eastron_sdm630"]
    result = PollResult({"frequency_hz": Reading(50.0, "Hz")}, TS)
    r = to_capability(profile, result)
    assert isinstance(r, MeterReading)
    assert r.frequency_hz.value == 50.0
    assert r.power_net_kw.reason == "total_active_power_net_w: not polled"


def test_alfen_conversions() -> None:
    profile = PROFILES["alfen_ng9xx"]
    values: dict[str, float | str | None] = {
        "mode3_state": "C2",
        "active_power_w": 7360.0,
        "applied_max_current_a": 16.0,
        "energy_delivered_wh": 123456.0,
    }
    r = to_capability(profile, poll(profile, values))
    assert isinstance(r, EvChargerReading)
    assert r.state.value == "C2"
    assert r.plugged.value is True
    assert r.power_kw == Measured(7.36, "kW", TS)
    assert r.applied_current_a.value == 16.0
    assert r.total_energy_kwh.value == pytest.approx(123.456)
    assert r.session_energy_kwh.value is None
    assert r.session_energy_kwh.reason == "not provided by alfen_ng9xx"


@pytest.mark.parametrize(
    ("state", "plugged"),
    [("A", False), ("B1", True), ("C2", True), ("D1", True)],
)
def test_alfen_plugged_from_state(state: str, plugged: bool) -> None:
    profile = PROFILES["alfen_ng9xx"]
    r = to_capability(profile, poll(profile, {"mode3_state": state}))
    assert isinstance(r, EvChargerReading)
    assert r.plugged.value is plugged


@pytest.mark.parametrize("state", ["F", "X9"])
def test_alfen_error_or_unknown_state_leaves_plugged_missing(state: str) -> None:
    profile = PROFILES["alfen_ng9xx"]
    r = to_capability(profile, poll(profile, {"mode3_state": state}))
    assert isinstance(r, EvChargerReading)
    assert r.plugged.value is None and r.plugged.reason is not None
    assert r.plugged.reason.startswith("mode3_state: ")
    assert (r.state.value is None) == (state == "X9")


def test_abb_conversions() -> None:
    profile = PROFILES["abb_terra_ac"]
    values: dict[str, float | str | None] = {
        "charging_state_raw": 4 << 8,
        "socket_lock_state": 0x111,
        "active_power_w": 11000.0,
        "applied_current_limit_a": 16.0,
        "session_energy_wh": 2500.0,
    }
    r = to_capability(profile, poll(profile, values))
    assert isinstance(r, EvChargerReading)
    assert r.state.value == "C2"
    assert r.plugged.value is True
    assert r.power_kw.value == pytest.approx(11.0)
    assert r.applied_current_a.value == 16.0
    assert r.session_energy_kwh.value == pytest.approx(2.5)
    assert r.total_energy_kwh.reason == "not provided by abb_terra_ac"


def test_abb_unplugged_and_unknown_state() -> None:
    profile = PROFILES["abb_terra_ac"]
    r = to_capability(profile, poll(profile, {"charging_state_raw": 5 << 8, "socket_lock_state": 0x011}))
    assert isinstance(r, EvChargerReading)
    assert r.plugged.value is False
    assert r.state.value is None
    assert r.state.reason == "charging_state_raw: state code 5 has no IEC 61851 equivalent"


def test_enapter_conversions() -> None:
    profile = PROFILES["enapter_el"]
    values: dict[str, float | str | None] = {
        "system_state": 1,
        "electrolyser_state": 3,
        "production_rate_pct": 80.0,
        "h2_flow_nl_per_h": 500.0,
        "h2_total_nl": 1_000_000.0,
    }
    r = to_capability(profile, poll(profile, values))
    assert isinstance(r, ElectrolyserReading)
    assert r.state.value == "steady"
    idle = to_capability(profile, poll(profile, {**values, "electrolyser_state": 1}))
    assert isinstance(idle, ElectrolyserReading)
    assert idle.state.reason == "electrolyser_state: unknown electrolyser state 1"
    assert r.production_rate_pct.value == 80.0
    # 500 NL/h of H2 is 44.94 g/h; 1e6 NL is 89.88 kg.
    assert r.h2_flow_kg_per_h.value == pytest.approx(0.04494)
    assert r.h2_total_kg.value == pytest.approx(89.88)
    for name in ("power_kw", "tank_pressure_bar", "tank_level_pct"):
        m = getattr(r, name)
        assert m.value is None and m.reason == "not provided by enapter_el"


def test_enapter_idle_flow_stays_missing() -> None:
    profile = PROFILES["enapter_el"]
    result = poll(profile, {"electrolyser_state": 2}, {"h2_flow_nl_per_h": "not available (NaN)"})
    r = to_capability(profile, result)
    assert isinstance(r, ElectrolyserReading)
    assert r.state.value == "idle"
    assert r.h2_flow_kg_per_h.reason == "h2_flow_nl_per_h: not available (NaN)"
    unknown = to_capability(profile, poll(profile, {"electrolyser_state": 9}))
    assert isinstance(unknown, ElectrolyserReading)
    assert unknown.state.value is None
    assert unknown.state.reason == "electrolyser_state: unknown electrolyser state 9"


def test_poll_timestamp_stamps_every_field() -> None:
    profile = PROFILES["enapter_el"]
    r = to_capability(profile, poll(profile, {"system_state": 1}))
    for name in field_units("electrolyser"):
        assert getattr(r, name).timestamp == TS
    with pytest.raises(ValueError, match="no timestamp"):
        to_capability(profile, {"system_state": Reading(1, None)})


def test_measured_invariants() -> None:
    with pytest.raises(ValueError):
        Measured(None, "kW", TS)
    with pytest.raises(ValueError):
        Measured(1.0, "kW", TS, "missing", "x")
    with pytest.raises(ValueError, match="UTC"):
        Measured(1.0, "kW", datetime(2026, 3, 1, 12, 0))
    with pytest.raises(ValueError, match="UTC"):
        Measured(1.0, "kW", datetime(2026, 3, 1, 12, 0, tzinfo=timezone(timedelta(hours=1))))


@pytest.mark.parametrize(
    ("name", "command"), [("alfen_ng9xx", "max_current_a"), ("abb_terra_ac", "current_limit_a")]
)
def test_ev_setpoint_to_commands(name: str, command: str) -> None:
    profile = PROFILES[name]
    commands = to_commands(profile, EvChargerSetpoint(current_a=16.0))
    assert commands == {command: 16.0}
    encode_command(profile, command, commands[command])  # within limits: encodes without error
    assert to_commands(profile, EvChargerSetpoint(0.0)) == {command: 0.0}
    with pytest.raises(ValueError, match=r"current_a: outside .* got 40\.0"):
        to_commands(profile, EvChargerSetpoint(40.0))
    with pytest.raises(ValueError, match="finite"):
        to_commands(profile, EvChargerSetpoint(float("nan")))


def test_abb_setpoint_encodes_milliamps() -> None:
    profile = PROFILES["abb_terra_ac"]
    commands = to_commands(profile, EvChargerSetpoint(16.0))
    assert encode_command(profile, "current_limit_a", commands["current_limit_a"]) == [0, 16000]


def test_electrolyser_setpoint_to_commands() -> None:
    profile = PROFILES["enapter_el"]
    commands = to_commands(profile, ElectrolyserSetpoint(run=True, production_rate_pct=75.0))
    assert commands == {"production_rate_pct": 75.0, "start_stop": 1.0}
    assert list(commands) == ["production_rate_pct", "start_stop"]
    assert to_commands(profile, ElectrolyserSetpoint(run=False)) == {"start_stop": 0.0}
    for command, value in commands.items():
        encode_command(profile, command, value)
    with pytest.raises(ValueError, match=r"production_rate_pct: outside .*\[60, 100\], got 30"):
        to_commands(profile, ElectrolyserSetpoint(run=True, production_rate_pct=30))


def test_setpoint_for_wrong_device_class() -> None:
    with pytest.raises(ValueError, match="needs a ev_charger"):
        to_commands(PROFILES["enapter_el"], EvChargerSetpoint(10.0))
    with pytest.raises(ValueError, match="needs a electrolyser"):
        to_commands(PROFILES["alfen_ng9xx"], ElectrolyserSetpoint(run=True))
    assert {"alfen_ng9xx", "abb_terra_ac", "enapter_el"} <= set(COMMAND_MAPPINGS)


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_from_capability_round_trips_through_to_capability(name: str) -> None:
    """Publishing capability values as points (what a simulator does) reads back as the same values."""
    profile = PROFILES[name]
    samples: dict[str, object] = {
        "state": {"ev_charger": "C2", "electrolyser": "steady", "battery": "charging"}.get(
            profile.kind
        ),
        "plugged": True,
    }
    values: dict[str, object] = {}
    for field_name, src in MAPPINGS[name].items():
        if src.convert is None:
            values[field_name] = 12.5
        elif src.inverse is not None:
            values[field_name] = samples[field_name]
    points = from_capability(profile, values)
    reading = to_capability(profile, poll(profile, points))
    for field_name, value in values.items():
        got = getattr(reading, field_name)
        assert got.ok, (field_name, got.reason)
        assert got.value == pytest.approx(value) if isinstance(value, float) else got.value == value


def test_from_commands_inverts_to_commands_with_factor() -> None:
    profile = PROFILES["enapter_el"]
    sp = ElectrolyserSetpoint(run=True, production_rate_pct=80.0)
    assert from_commands(profile, to_commands(profile, sp)) == {"run": 1.0, "production_rate_pct": 80.0}
    assert from_commands(profile, {"production_rate_pct": 70.0}) == {"production_rate_pct": 70.0}
