"""The vendor profiles against an independent server: pyModbusTCP serves register images laid out
here by hand from the vendors' register tables, and our driver reads them into capability values.

Expected register words come from the documented encodings (EM24 INT32 least significant word
first, Victron int16 two's complement, CHARX int32/int64 high word first and an ASCII state letter
in the high byte), never from our encoder; the expected capability values (sign, unit) come from
the same documents.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pyModbusTCP.server import DataBank, ModbusServer

from drivers.capabilities import (
    BatteryReading,
    BatterySetpoint,
    EvChargerReading,
    EvChargerSetpoint,
    MeterReading,
    to_capability,
    to_commands,
)
from drivers.modbus.device import ProfileDevice
from drivers.modbus.profile import Profile
from drivers.modbus.safe_write import SafeWriter
from drivers.modbus.transport import ModbusTcpTransport
from drivers.profiles import get_profile
from tests.drivers.support import FakeClock, pymodbustcp_server, run


@pytest.fixture
def bank() -> DataBank:
    return DataBank()


@pytest.fixture
def peer(bank: DataBank) -> Iterator[ModbusServer]:
    with pymodbustcp_server(bank) as server:
        yield server


async def poll(profile: Profile, port: int) -> tuple[dict[str, object], object]:
    transport = ModbusTcpTransport("127.0.0.1", port, timeout_s=1.0)
    try:
        result = await ProfileDevice(profile, transport).poll()
    finally:
        transport.close()
    assert transport.stats.errors == 0, transport.stats.last_error
    return {name: r.value for name, r in result.items()}, to_capability(profile, result)


async def send(profile: Profile, port: int, commands: dict[str, float]) -> list[str | None]:
    """Write ``commands`` through SafeWriter (FC6 or FC16 as the profile says); errors by command."""
    transport = ModbusTcpTransport("127.0.0.1", port, timeout_s=1.0)
    writer = SafeWriter(profile, transport, profile.unit_id, clock=FakeClock(), sleep=_no_wait)
    try:
        outcomes = [await writer.write(name, value) for name, value in commands.items()]
    finally:
        transport.close()
    assert all(o.written for o in outcomes), outcomes
    assert writer.alarms == []
    return [o.error for o in outcomes]


async def _no_wait(_: float) -> None:
    return None


# -- Carlo Gavazzi EM24 ---------------------------------------------------------------------------


def test_em24_int32_lsw_first_and_signs(bank: DataBank, peer: ModbusServer) -> None:
    """EM24: INT32 with the low word first; V and W ×0.1, A ×0.001, Hz ×0.1, kWh ×0.1 (FC4)."""
    em24 = get_profile("carlo_gavazzi_em24")
    image = {
        0: [0x0900, 0x0000],  # V L1-N 2304 -> 230.4 V
        2: [0x08FC, 0x0000],  # V L2-N 2300 -> 230.0 V
        4: [0x0906, 0x0000],  # V L3-N 2310 -> 231.0 V
        11: [1648],  # model code EM24DINAV23XE1X
        12: [0x1403, 0x0000],  # A L1 5123 -> 5.123 A
        14: [0x07D0, 0x0000],  # A L2 2000 -> 2.0 A
        16: [0x0000, 0x0000],  # A L3 0
        18: [0x2D3C, 0x0000],  # W L1 11580 -> 1158.0 W (import)
        20: [0xEC78, 0xFFFF],  # W L2 -5000 -> -500.0 W (export)
        22: [0x0000, 0x0000],  # W L3 0
        40: [0x3039, 0x0000],  # W sys 12345 -> 1234.5 W (import)
        51: [0x01F4],  # Hz 500 -> 50.0 Hz
        52: [0xD687, 0x0012],  # kWh(+) 0x0012D687 = 1234567 -> 123456.7 kWh
        78: [0x3039, 0x0000],  # kWh(-) 12345 -> 1234.5 kWh
    }
    for address, words in image.items():
        assert bank.set_input_registers(address, words)
        assert bank.set_holding_registers(address, [0xFFFF] * len(words))  # wrong table reads junk

    values, reading = run_poll(em24, peer.port)
    assert isinstance(reading, MeterReading)
    assert values["model_code"] == 1648
    assert reading.power_net_kw.value == pytest.approx(1.2345)
    assert reading.power_l1_net_kw.value == pytest.approx(1.158)
    assert reading.power_l2_net_kw.value == pytest.approx(-0.5)
    assert reading.power_l3_net_kw.value == 0.0
    assert reading.voltage_l1_v.value == pytest.approx(230.4)
    assert reading.voltage_l3_v.value == pytest.approx(231.0)
    assert reading.current_l1_a.value == pytest.approx(5.123)
    assert reading.current_l2_a.value == pytest.approx(2.0)
    assert reading.frequency_hz.value == pytest.approx(50.0)
    assert reading.import_energy_kwh.value == pytest.approx(123456.7)
    assert reading.export_energy_kwh.value == pytest.approx(1234.5)
    assert reading.power_net_kw.unit == "kW" and reading.import_energy_kwh.unit == "kWh"


def test_em24_export_total_is_negative(bank: DataBank, peer: ModbusServer) -> None:
    em24 = get_profile("carlo_gavazzi_em24")
    assert bank.set_input_registers(40, [0xCFC7, 0xFFFF])  # W sys -12345 -> -1234.5 W
    _, reading = run_poll(em24, peer.port)
    assert isinstance(reading, MeterReading)
    assert reading.power_net_kw.value == pytest.approx(-1.2345)


# -- Victron GX (unit 100) and VE.Bus ---------------------------------------------------------------


def test_victron_gx_battery_sign_soc_and_state(bank: DataBank, peer: ModbusServer) -> None:
    """GX system: 842 int16 W, positive = charging; 843 SoC %; 844 0/1/2 idle/charging/discharging."""
    gx = get_profile("victron_gx")
    assert bank.set_holding_registers(820, [500, 0xFF9C, 0])  # grid L1 +500 W import, L2 -100 W
    assert bank.set_holding_registers(840, [528, 0xFFE2, 0xFA24, 87, 2])  # 52.8 V, -3.0 A, -1500 W
    assert bank.set_holding_registers(2700, [0xFF38, 100, 50])  # setpoint -200 W, 100 %, 50 %
    assert bank.set_holding_registers(2901, [200, 3])  # min SoC 20.0 %, external control

    values, reading = run_poll(gx, peer.port)
    assert isinstance(reading, BatteryReading)
    # -1500 W on the GX (discharging) is +1.5 kW in the capability (positive = discharging).
    assert reading.power_net_kw.value == pytest.approx(1.5)
    assert reading.soc_pct.value == 87
    assert reading.state.value == "discharging"
    assert values["grid_l1_w"] == 500 and values["grid_l2_w"] == -100
    assert values["battery_voltage_v"] == pytest.approx(52.8)
    assert values["battery_current_a"] == pytest.approx(-3.0)
    assert values["ess_grid_setpoint_w"] == -200
    assert values["min_soc_limit_pct"] == pytest.approx(20.0)
    assert values["hub4_mode"] == 3


def test_victron_gx_charging_is_negative(bank: DataBank, peer: ModbusServer) -> None:
    gx = get_profile("victron_gx")
    assert bank.set_holding_registers(842, [2500, 55, 1])  # +2500 W = charging
    _, reading = run_poll(gx, peer.port)
    assert isinstance(reading, BatteryReading)
    assert reading.power_net_kw.value == pytest.approx(-2.5)
    assert reading.state.value == "charging"


def test_victron_gx_setting_is_written_with_fc6(bank: DataBank, peer: ModbusServer) -> None:
    gx = get_profile("victron_gx")
    assert gx.commands["ess_grid_setpoint_w"].encoding == "write_single"

    async def main() -> None:
        await send(gx, peer.port, {"ess_grid_setpoint_w": -200, "max_charge_pct": 80})

    run(main())
    assert bank.get_holding_registers(2700, 2) == [0xFF38, 80]  # -200 as int16, 80 %


def test_victron_vebus_battery_setpoint_splits_over_phases(bank: DataBank, peer: ModbusServer) -> None:
    """VE.Bus 37/40/41: W at AC-in per phase, negative = discharge; 38/39 0 = allowed."""
    vebus = get_profile("victron_vebus")
    assert bank.set_holding_registers(30, [875, 9])  # SoC 87.5 %, state 9 inverting
    assert bank.set_holding_registers(38, [1, 1])  # both disabled before the setpoint

    commands = to_commands(vebus, BatterySetpoint(power_net_kw=3.0))  # discharge 3 kW
    assert list(commands)[:2] == ["disable_charge", "disable_feed_in"]

    async def main() -> None:
        await send(vebus, peer.port, commands)
        values, reading = await poll(vebus, peer.port)
        assert isinstance(reading, BatteryReading)
        assert reading.soc_pct.value == pytest.approx(87.5)
        assert values["vebus_state"] == 9
        assert values["ess_setpoint_l1_w"] == -1000

    run(main())
    assert bank.get_holding_registers(37, 5) == [0xFC18, 0, 0, 0xFC18, 0xFC18]  # -1000 W each


# -- Phoenix CHARX ----------------------------------------------------------------------------------


def test_charx_power_energy_and_state_letter(bank: DataBank, peer: ModbusServer) -> None:
    """CHARX connector 1: 1244 int32 mW, 1250 int64 Wh, 1299 state letter in the high byte."""
    charx = get_profile("phoenix_charx")
    assert bank.set_holding_registers(114, [1])
    assert bank.set_holding_registers(1112, [1])
    assert bank.set_holding_registers(1232, [0x0003, 0x8270])  # 230000 mV -> 230.0 V
    assert bank.set_holding_registers(1238, [0x0000, 0x3E80])  # 16000 mA -> 16.0 A
    assert bank.set_holding_registers(1244, [0x0070, 0x4E00])  # 7 360 000 mW -> 7.36 kW
    assert bank.set_holding_registers(1250, [0, 0, 0x0001, 0xE240])  # 123456 Wh -> 123.456 kWh
    # State letter "C" in the high byte (evcc reads only that byte); the low byte "2" is this
    # test's choice, to cover a full IEC 61851 state.
    assert bank.set_holding_registers(1299, [0x4332, 1, 16])  # "C2", enabled, 16 A

    values, reading = run_poll(charx, peer.port)
    assert isinstance(reading, EvChargerReading)
    assert reading.state.value == "C2"
    assert reading.plugged.value is True
    assert reading.power_kw.value == pytest.approx(7.36)
    assert reading.total_energy_kwh.value == pytest.approx(123.456)
    assert values["voltage_l1_v"] == pytest.approx(230.0)
    assert values["current_l1_a"] == pytest.approx(16.0)
    assert values["energy_high_wh"] == 0
    assert values["enable"] == 1 and values["max_current_a"] == 16


@pytest.mark.parametrize(
    ("word", "state", "plugged"), [(0x4100, "A", False), (0x4300, None, True), (0x4600, "F", None)]
)
def test_charx_bare_state_letter(
    bank: DataBank, peer: ModbusServer, word: int, state: str | None, plugged: bool | None
) -> None:
    charx = get_profile("phoenix_charx")
    assert bank.set_holding_registers(1299, [word])
    _, reading = run_poll(charx, peer.port)
    assert isinstance(reading, EvChargerReading)
    assert reading.state.value == state
    assert reading.plugged.value is plugged
    if state is None:
        assert reading.state.reason is not None and "without the PWM digit" in reading.state.reason


def test_charx_current_setpoint_enables_and_writes_amps(bank: DataBank, peer: ModbusServer) -> None:
    charx = get_profile("phoenix_charx")
    commands = to_commands(charx, EvChargerSetpoint(current_a=16.0))
    assert commands == {"enable": 1.0, "max_current_a": 16.0}
    with pytest.raises(ValueError, match=r"current_a: outside max_current_a limits \[6, 32\], got 3\.0"):
        to_commands(charx, EvChargerSetpoint(current_a=3.0))

    async def main() -> None:
        await send(charx, peer.port, commands)

    run(main())
    assert bank.get_holding_registers(1300, 2) == [1, 16]


def run_poll(profile: Profile, port: int) -> tuple[dict[str, object], object]:
    out: list[tuple[dict[str, object], object]] = []

    async def main() -> None:
        out.append(await poll(profile, port))

    run(main())
    return out[0]
