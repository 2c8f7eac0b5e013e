"""SunSpec profiles resolved on the simulator's image and driven by the generic driver over TCP.

Register images are written here with ``struct`` (raw values), and expected values computed as
raw × 10^SF, never with our own encoder.
"""

from __future__ import annotations

import math
import struct
from typing import Any

import pytest

from drivers.capabilities import (
    BatterySetpoint,
    PvLimitSetpoint,
    check_mapping,
    from_capability,
    to_capability,
    to_commands,
)
from drivers.modbus.device import ProfileDevice
from drivers.modbus.profile import Profile
from drivers.modbus.safe_write import SafeWriter
from drivers.modbus.transport import ModbusTcpTransport
from drivers.sim.register_server import RegisterServer
from drivers.sunspec import (
    NEVER_ZERO,
    SUNSPEC_PROFILE_NAMES,
    ModelEntry,
    SunSpecError,
    SunSpecMap,
    get_spec,
    install_image,
    resolve,
    standard_layout,
    standard_profile,
)
from drivers.sunspec.capability_map import REVERT_S
from drivers.sunspec.layout import SIM_DEFAULTS, SIM_SCALE_FACTORS
from drivers.sunspec.profile_spec import SunSpecProfileSpec
from tests.drivers.support import FakeClock, run

TEST_SCALE_FACTORS: dict[int, dict[str, int]] = {
    103: {"A_SF": -2, "V_SF": -1, "W_SF": 1, "Hz_SF": -2, "WH_SF": 1, "DCW_SF": 1, "Tmp_SF": -1},
    120: {"WRtg_SF": 1},
    121: {"WMax_SF": 2},
    123: {"WMaxLimPct_SF": -1},
    160: {"DCV_SF": -1, "DCW_SF": -1},
    203: {"A_SF": -2, "V_SF": -1, "Hz_SF": -2, "W_SF": 1, "TotWh_SF": 2},
    701: {"V_SF": -1, "Hz_SF": -3, "W_SF": 1},
    704: {"WSet_SF": 1},
    802: {"WHRtg_SF": 1, "WChaDisChaMax_SF": 1, "SoC_SF": -1, "SoH_SF": -1, "V_SF": -1, "CellV_SF": -3,
          "A_SF": -1},
}
"""Non-zero scale factors, so that scaling is visible in every value."""

_PACK = {"int16": ">h", "uint16": ">H", "int32": ">i", "uint32": ">I", "float32": ">f"}


def words(dtype: str, raw: float) -> list[int]:
    data = struct.pack(_PACK[dtype], raw)
    return [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]


def string_words(text: str, count: int) -> list[int]:
    data = text.encode("ascii").ljust(2 * count, b"\0")
    return [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]


def sf_points(profile: Profile) -> set[str]:
    return {p.scale_factor_point for p in profile.points.values() if p.scale_factor_point}


def sf_value(profile: Profile, server: RegisterServer, point: str) -> int:
    sf = profile.points[point].scale_factor_point
    if sf is None:
        return 0
    raw = server.get_registers("holding", profile.points[sf].address, 1)[0]
    value: int = struct.unpack(">h", struct.pack(">H", raw))[0]
    return value


async def poll(profile: Profile, server: RegisterServer) -> Any:
    transport = ModbusTcpTransport("127.0.0.1", server.port, timeout_s=1.0)
    try:
        return await ProfileDevice(profile, transport).poll()
    finally:
        transport.close()


@pytest.mark.parametrize("name", SUNSPEC_PROFILE_NAMES)
def test_every_point_reads_raw_times_ten_to_the_sf(name: str) -> None:
    profile = standard_profile(name, scale_factors=TEST_SCALE_FACTORS)
    sfs = sf_points(profile)

    async def main() -> None:
        async with RegisterServer(profile) as server:
            install_image(server, name, scale_factors=TEST_SCALE_FACTORS)
            expected: dict[str, float | str] = {}
            for i, (pname, p) in enumerate(profile.points.items()):
                if pname in sfs:
                    continue
                if p.type == "string":
                    expected[pname] = f"S{i}"
                    server.set_registers("holding", p.address, string_words(f"S{i}", p.count or 1))
                    continue
                raw = (-1 if p.type.startswith("int") else 1) * (1000 + i)
                exponent = sf_value(profile, server, pname)
                rng = p.valid_range
                if rng is not None and not rng[0] <= raw * 10.0**exponent <= rng[1]:
                    raw = round(0.3 * rng[1] / 10.0**exponent)  # a percentage: inside its range
                server.set_registers("holding", p.address, words(p.type, raw))
                expected[pname] = raw * 10.0 ** exponent
            result = await poll(profile, server)
        assert set(result) == set(profile.points)
        assert len(expected) == len(profile.points) - len(sfs)
        for pname, want in expected.items():
            reading = result[pname]
            assert reading.missing_reason is None, (pname, reading)
            if isinstance(want, str):
                assert reading.value == want
            else:
                assert isinstance(reading.value, int | float)
                assert math.isclose(reading.value, want, rel_tol=1e-9), (pname, reading.value, want)
        for sf in sfs:
            assert result[sf].value == sf_value(profile, server, next(
                n for n, p in profile.points.items() if p.scale_factor_point == sf))

    run(main())


@pytest.mark.parametrize("name", SUNSPEC_PROFILE_NAMES)
def test_fresh_image_reads_not_implemented_as_missing(name: str) -> None:
    profile = standard_profile(name, scale_factors=TEST_SCALE_FACTORS)
    sfs = sf_points(profile)
    published = set(SIM_DEFAULTS[name]) | {"manufacturer", "device_model", "serial_number"}

    async def main() -> None:
        async with RegisterServer(profile) as server:
            install_image(server, name, scale_factors=TEST_SCALE_FACTORS)
            result = await poll(profile, server)
        for pname, reading in result.items():
            if pname in sfs or pname in published:
                assert reading.missing_reason is None, (pname, reading)
            else:
                assert reading.value is None, (pname, reading)
                assert reading.missing_reason is not None
                assert reading.missing_reason.startswith("not implemented (sentinel"), (pname, reading)

    run(main())


def test_sentinel_images() -> None:
    """int16 0x8000, uint16 0xFFFF, acc32 0 and an unimplemented scale factor read as missing."""
    profile = standard_profile("sunspec_inverter")

    async def main() -> None:
        async with RegisterServer(profile) as server:
            install_image(server, "sunspec_inverter")
            pts = profile.points
            server.set_registers("holding", pts["ac_power_w"].address, [0x8000])
            server.set_registers("holding", pts["frequency_hz"].address, [0xFFFF])
            server.set_registers("holding", pts["energy_wh"].address, [0, 0])
            server.set_registers("holding", pts["voltage_l1_v"].address, [2301])
            server.set_registers("holding", pts["inverter_V_SF"].address, [0x8000])
            server.set_registers("holding", pts["dc_power_w"].address, [1234])
            result = await poll(profile, server)
        assert result["ac_power_w"].missing_reason == "not implemented (sentinel 0x8000)"
        assert result["frequency_hz"].missing_reason == "not implemented (sentinel 0xffff)"
        assert result["energy_wh"].missing_reason == "not implemented (sentinel 0x00000000)"
        assert result["voltage_l1_v"].value is None
        assert "scale factor inverter_V_SF: not implemented" in (result["voltage_l1_v"].missing_reason or "")
        assert result["dc_power_w"].value == 1234 * 10 ** SIM_SCALE_FACTORS[160]["DCW_SF"]

    run(main())


def float_meter_map() -> SunSpecMap:
    return SunSpecMap(40000, (ModelEntry(1, 40002, 66), ModelEntry(213, 40070, 124)))


def test_float_meter_nan_is_missing() -> None:
    profile = resolve(get_spec("sunspec_meter"), float_meter_map())
    assert profile.points["power_w"].type == "float32"
    assert profile.points["power_w"].scale_factor_point is None

    async def main() -> None:
        async with RegisterServer(profile) as server:
            server.set_registers("holding", profile.points["power_w"].address, words("float32", -1234.5))
            server.set_registers("holding", profile.points["power_l1_w"].address, [0x7FC0, 0])
            result = await poll(profile, server)
        assert result["power_w"].value == -1234.5
        assert result["power_l1_w"].value is None
        assert result["power_l1_w"].missing_reason == "not available (NaN)"

    run(main())


def command_value(profile: Profile, name: str) -> float:
    command = profile.commands[name]
    assert command.limits is not None
    lo, hi = command.limits
    value = lo + 0.37 * (hi - lo)
    step = command.scale or 1.0
    return round(value / step) * step


def command_params() -> list[Any]:
    return [
        pytest.param(name, command, id=f"{name}-{command}")
        for name in SUNSPEC_PROFILE_NAMES
        for command in standard_profile(name).commands
    ]


@pytest.mark.parametrize(("name", "command"), command_params())
def test_every_command_is_written_and_read_back(name: str, command: str) -> None:
    profile = standard_profile(name, scale_factors=TEST_SCALE_FACTORS)
    c = profile.commands[command]
    value = command_value(profile, command)

    async def main() -> None:
        async with RegisterServer(profile) as server:
            install_image(server, name, scale_factors=TEST_SCALE_FACTORS)
            transport = ModbusTcpTransport("127.0.0.1", server.port, timeout_s=1.0)
            writer = SafeWriter(profile, transport, 1, FakeClock(), never_zero=NEVER_ZERO.get(name, ()))
            try:
                outcome = await writer.write(command, value)
            finally:
                transport.close()
            registers = server.get_registers("holding", c.address, c.width)
        assert outcome.written and outcome.error is None, outcome
        if c.readback:
            assert outcome.readback == "readback_ok", outcome
        raw = struct.unpack(_PACK[c.type], b"".join(r.to_bytes(2, "big") for r in registers))[0]
        assert math.isclose(raw * (c.scale or 1.0), value, rel_tol=1e-9), (raw, c.scale, value)
        assert server.requests[16] == 1

    run(main())


def test_command_scale_is_the_discovered_scale_factor() -> None:
    profile = standard_profile("sunspec_inverter", scale_factors=TEST_SCALE_FACTORS)
    assert profile.commands["power_limit_pct"].scale == pytest.approx(0.1)
    battery = standard_profile("sunspec_battery", scale_factors=TEST_SCALE_FACTORS)
    assert battery.commands["power_setpoint_w"].scale == pytest.approx(10.0)
    smap = standard_layout("sunspec_inverter")
    controls = smap.find(123)
    assert controls is not None
    sfs = {k: v for k, v in smap.scale_factors.items() if k != (controls.address, "WMaxLimPct_SF")}
    broken = SunSpecMap(smap.base, smap.models, smap.common, sfs)
    with pytest.raises(SunSpecError, match=r"power_limit_pct: scale factor 123.WMaxLimPct_SF at 40205 was"):
        resolve(get_spec("sunspec_inverter"), broken)


def test_watchdog_and_revert_timeout_agree() -> None:
    for name, commands in (("sunspec_inverter", ("power_limit_pct", "power_limit_enable")),
                           ("sunspec_battery", ("power_setpoint_w", "power_setpoint_enable"))):
        profile = standard_profile(name)
        for command in commands:
            c = profile.commands[command]
            assert c.watchdog_s == REVERT_S, (name, command)
            assert c.keepalive_s is not None and c.keepalive_s <= REVERT_S / 2


def test_pv_limit_setpoint_round_trip_and_never_zero() -> None:
    profile = standard_profile("sunspec_inverter", scale_factors=TEST_SCALE_FACTORS)

    async def main() -> None:
        async with RegisterServer(profile) as server:
            install_image(server, "sunspec_inverter", scale_factors=TEST_SCALE_FACTORS)
            transport = ModbusTcpTransport("127.0.0.1", server.port, timeout_s=1.0)
            clock = FakeClock()
            writer = SafeWriter(profile, transport, 1, clock, never_zero=NEVER_ZERO["sunspec_inverter"])
            try:
                commands = to_commands(profile, PvLimitSetpoint(0.0))
                assert list(commands) == ["power_limit_timeout_s", "power_limit_pct", "power_limit_enable"]
                outcomes = [await writer.write(n, v) for n, v in commands.items()]
                assert all(o.written and o.readback == "readback_ok" for o in outcomes), outcomes
                assert outcomes[1].value == pytest.approx(0.1)  # never 0 %: one step of 10^-1
                clock.advance(31)
                assert set(writer.due_keepalives()) == {"power_limit_pct", "power_limit_enable"}
                result = await ProfileDevice(profile, transport).poll()
            finally:
                transport.close()
        assert result["power_limit_pct"].value == pytest.approx(0.1)
        assert result["power_limit_enable"].value == 1
        assert result["power_limit_timeout_s"].value == REVERT_S
        reading = to_capability(profile, result)
        assert reading.power_limit_pct.value == pytest.approx(0.1)  # type: ignore[union-attr]

    run(main())


def test_battery_setpoint_sign_and_order() -> None:
    profile = standard_profile("sunspec_battery")
    commands = to_commands(profile, BatterySetpoint(-2.5))
    assert commands == {
        "power_setpoint_timeout_s": REVERT_S,
        "power_setpoint_mode": 1,
        "power_setpoint_w": -2500.0,
        "power_setpoint_enable": 1,
    }


SAMPLES: dict[str, dict[str, Any]] = {
    # On the simulator's grid: W_SF = 2 (100 W), WMaxLimPct_SF = -1 (0.1 %).
    "sunspec_inverter": {"state": "mppt", "power_kw": 812.3, "energy_kwh": 4321.5, "power_limit_pct": 80.5},
    "sunspec_battery": {"state": "connected", "power_net_kw": -2.5, "soc_pct": 55.0, "soh_pct": 98.0,
                        "alarms": ("over_temp_warning", "under_volt_alarm")},
    "sunspec_meter": {"power_net_kw": -3.2, "power_l1_net_kw": -1.1, "power_l2_net_kw": -1.0,
                      "power_l3_net_kw": -1.1, "voltage_l1_v": 231.0, "voltage_l2_v": 229.0,
                      "voltage_l3_v": 230.0, "current_l1_a": 5.0, "current_l2_a": 4.0, "current_l3_a": 5.0,
                      "import_energy_kwh": 1500.0, "export_energy_kwh": 250.5, "frequency_hz": 50.0},
}


@pytest.mark.parametrize("name", SUNSPEC_PROFILE_NAMES)
def test_simulator_publishes_capability_values(name: str) -> None:
    """What a site simulator does: from_capability → set_point on the standard image → poll."""
    profile = standard_profile(name)
    assert check_mapping(profile) == []

    async def main() -> None:
        async with RegisterServer(profile) as server:
            install_image(server, name)
            for point, value in from_capability(profile, SAMPLES[name]).items():
                server.set_point(point, value)
            result = await poll(profile, server)
        reading = to_capability(profile, result)
        for field, want in SAMPLES[name].items():
            got = getattr(reading, field)
            assert got.ok, (field, got)
            if isinstance(want, float):
                assert got.value == pytest.approx(want), field
            else:
                assert got.value == want, field

    run(main())


def test_resolve_errors_name_the_field_and_value() -> None:
    spec = get_spec("sunspec_inverter")
    meter_only = standard_layout("sunspec_meter")
    with pytest.raises(SunSpecError, match=r"points.ac_current_a: the device has none of models \[103, 102"):
        resolve(spec, meter_only)
    data = spec.model_dump()
    data["points"]["string3_dc_power_w"] = {"model": "mppt", "point": "DCW", "module": 3}
    with pytest.raises(SunSpecError, match=r"points.string3_dc_power_w: module: model 160 at 40208 has 2"):
        resolve(SunSpecProfileSpec.model_validate(data), standard_layout("sunspec_inverter"))
    short = SunSpecProfileSpec.model_validate(
        {"name": "x", "vendor": "v", "model": "m", "kind": "meter", "models": {"common": [1]},
         "points": {"address": {"model": "common", "point": "DA"}}}
    )
    beyond = r"points.address: point DA \(\+66, 1 registers\) lies beyond model 1 at 40002 with L=64"
    with pytest.raises(SunSpecError, match=beyond):
        resolve(short, SunSpecMap(40000, (ModelEntry(1, 40002, 64),)))
    read_only = SunSpecProfileSpec.model_validate(
        {"name": "x", "vendor": "v", "model": "m", "kind": "meter", "models": {"m": [203]},
         "commands": {"w": {"model": "m", "point": "W"}}}
    )
    with pytest.raises(SunSpecError, match=r"commands.w: point 203.W is read-only"):
        resolve(read_only, standard_layout("sunspec_meter"))


def test_battery_cell_voltage_spread_is_max_minus_min_over_tcp() -> None:
    """802 CellVMax and CellVMin (scaled by CellV_SF) give the spread; a missing minimum makes it missing."""
    profile = standard_profile("sunspec_battery")

    async def main() -> None:
        async with RegisterServer(profile) as server:
            install_image(server, "sunspec_battery")
            server.set_point("cell_voltage_max_v", 3.412)
            server.set_point("cell_voltage_min_v", 3.371)
            reading = to_capability(profile, await poll(profile, server))
            assert reading.cell_voltage_spread_v.value == pytest.approx(0.041, abs=1e-9)
            server.set_registers("holding", profile.points["cell_voltage_min_v"].address, [0xFFFF])
            reading = to_capability(profile, await poll(profile, server))
            assert reading.cell_voltage_spread_v.value is None
            assert "cell_voltage_min_v: not implemented" in (reading.cell_voltage_spread_v.reason or "")

    run(main())
