"""The simulated site over real TCP: commands written by the drivers move the shared plant, and
every device (the meter included) shows the same plant state."""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from drivers.capabilities import (
    COMMAND_MAPPINGS,
    MAPPINGS,
    W_TO_KW,
    BatterySetpoint,
    CommandSource,
    ElectrolyserSetpoint,
    FieldSource,
    PvLimitSetpoint,
    to_capability,
    to_commands,
)
from drivers.modbus.device import PollResult, ProfileDevice
from drivers.modbus.profile import Profile, parse_profile
from drivers.modbus.safe_write import SafeWriter
from drivers.modbus.transport import ModbusTcpTransport
from drivers.profiles import get_profile
from drivers.sim.device_models import (
    HALTED,
    IDLE,
    STANDBY,
    STEADY,
    BatteryDeviceModel,
    ElectrolyserDeviceModel,
    EvChargerDeviceModel,
    MeterModel,
    PvInverterModel,
)
from drivers.sim.plant import BatteryModel, ElectrolyserModel, EvChargerModel, Plant, TankModel
from drivers.sim.site_sim import ConstantSeries, SimDevice, SiteSimulator, VehicleSession
from tests.drivers.support import FakeClock, run

START = datetime(2025, 6, 2, 8, 0, tzinfo=UTC)
PV_KW, LOAD_KW, STANDBY_KW = 50.0, 120.0, 1.0
KW_PER_A = 3 * 230.0 / 1000.0

TEST_BATTERY: Profile = parse_profile({
    "name": "test_battery", "vendor": "test", "model": "simulated pack", "kind": "battery",
    "points": {
        "power_w": {"address": 0, "table": "input", "type": "int32", "unit": "W",
                    "valid_range": [-1.0e6, 1.0e6]},
        "soc_pct": {"address": 2, "table": "input", "type": "float32", "unit": "%", "valid_range": [0, 100]},
        "temp_max_c": {"address": 4, "table": "input", "type": "float32", "unit": "°C"},
    },
    "commands": {
        "power_setpoint_w": {"address": 100, "type": "int32", "unit": "W", "limits": [-200000, 200000]},
    },
})


@pytest.fixture(autouse=True)
def battery_mapping(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setitem(MAPPINGS, "test_battery", {
        "power_net_kw": FieldSource("power_w", "W", W_TO_KW),
        "soc_pct": FieldSource("soc_pct", "%"),
        "cell_temperature_max_c": FieldSource("temp_max_c", "°C"),
    })
    monkeypatch.setitem(COMMAND_MAPPINGS, "test_battery",
                        {"power_net_kw": CommandSource("power_setpoint_w", 1000.0)})
    yield


def make_site(clock: FakeClock, extra: list[SimDevice] | None = None,
              battery: str | Profile = TEST_BATTERY) -> SiteSimulator:
    tank = TankModel("h2_tank", capacity_kg=100.0, level_kg=10.0)
    plant = Plant(
        batteries={"bess": BatteryModel("bess", 200.0, 100.0, 100.0, 0.95, 0.95, soc_kwh=100.0,
                                        soc_min_kwh=20.0, soc_max_kwh=180.0)},
        chargers={"ev1": EvChargerModel("ev1", max_kw=32 * KW_PER_A, min_kw=6 * KW_PER_A)},
        electrolysers={"pem": ElectrolyserModel("pem", rated_kw=100.0, min_load_kw=15.0, kwh_per_kg=53.0,
                                                standby_kw=STANDBY_KW, tank=tank)},
        tanks={"h2_tank": tank},
        offtake_tank={},
    )
    devices = [
        SimDevice("grid", "eastron_sdm630", MeterModel("grid")),
        SimDevice("factory", "eastron_sdm630", MeterModel("factory")),
        SimDevice("ev1", "alfen_ng9xx", EvChargerDeviceModel("ev1", 3, 230.0, safe_current_a=6.0)),
        SimDevice("pem", "enapter_el", ElectrolyserDeviceModel("pem", startup_s=30.0)),
        SimDevice("bess", battery, BatteryDeviceModel("bess")),
        *(extra or []),
    ]
    sessions = [VehicleSession("ev1", "van-1", START, START + timedelta(hours=8), energy_kwh=40.0)]
    return SiteSimulator(plant, devices, ConstantSeries({"roof": PV_KW}, {"factory": LOAD_KW}),
                         start_utc=START, clock=clock, sessions=sessions)


class Link:
    """A driver-side connection to one simulated device: polling and guarded writes."""

    def __init__(self, sim: SiteSimulator, name: str, clock: FakeClock) -> None:
        dev = sim.device(name)
        self.profile = dev.profile
        self.transport = ModbusTcpTransport("127.0.0.1", dev.server.port, timeout_s=1.0, clock=clock)
        self.device = ProfileDevice(dev.profile, self.transport, dev.server.unit_id)
        self.writer = SafeWriter(dev.profile, self.transport, dev.server.unit_id, clock)

    async def poll(self) -> PollResult:
        return await self.device.poll()

    async def value(self, field: str) -> object:
        return getattr(to_capability(self.profile, await self.poll()), field).value

    def close(self) -> None:
        self.transport.close()


def test_ev_current_moves_charger_and_meter() -> None:
    async def body() -> None:
        clock = FakeClock()
        async with make_site(clock) as sim:
            ev, grid, factory = (Link(sim, n, clock) for n in ("ev1", "grid", "factory"))
            # Never written: the charger applies its safe current.
            clock.advance(1.0)
            sim.step()
            assert await ev.value("applied_current_a") == pytest.approx(6.0)
            assert await ev.value("state") == "C2"
            outcome = await ev.writer.write("max_current_a", 16.0)
            assert outcome.written and outcome.readback == "readback_ok"
            clock.advance(10.0)
            sim.step()
            assert await ev.value("power_kw") == pytest.approx(16 * KW_PER_A, rel=1e-6)
            meter = await grid.value("power_net_kw")
            load = await factory.value("power_net_kw")
            ev_kw = await ev.value("power_kw")
            assert isinstance(meter, float) and isinstance(load, float) and isinstance(ev_kw, float)
            # Meter = the sum of the devices (import positive): load + EV + electrolyser standby - PV.
            assert meter == pytest.approx(load + ev_kw + STANDBY_KW - PV_KW, abs=1e-3)
            assert sim.last_result is not None
            assert meter == pytest.approx(sim.last_result.grid_import_kw, abs=1e-3)
            for link in (ev, grid, factory):
                link.close()

    run(body())


def test_charger_falls_back_to_safe_current_without_keepalive() -> None:
    async def body() -> None:
        clock = FakeClock()
        async with make_site(clock) as sim:
            ev = Link(sim, "ev1", clock)
            await ev.writer.write("max_current_a", 20.0)
            clock.advance(30.0)
            sim.step()
            result = await ev.poll()
            assert result["applied_max_current_a"].value == pytest.approx(20.0)
            assert result["max_current_valid_time_s"].value == 30
            assert result["setpoint_accounted_for"].value == 1
            clock.advance(31.0)  # 61 s since the write: past the 60 s watchdog
            sim.step()
            result = await ev.poll()
            assert result["applied_max_current_a"].value == pytest.approx(6.0)
            assert result["active_power_w"].value == pytest.approx(6 * KW_PER_A * 1000, rel=1e-6)
            assert result["setpoint_accounted_for"].value == 0
            assert result["max_current_a"].value == pytest.approx(20.0)  # the register keeps the write
            # The keep-alive re-writes the last value and the charger follows it again.
            outcomes = await ev.writer.keepalive()
            assert [o.written for o in outcomes] == [True]
            clock.advance(1.0)
            sim.step()
            assert await ev.value("applied_current_a") == pytest.approx(20.0)
            ev.close()

    run(body())


def test_electrolyser_state_machine_production_and_tank() -> None:
    async def body() -> None:
        clock = FakeClock()
        async with make_site(clock) as sim:
            pem = Link(sim, "pem", clock)
            tank = sim.plant.tanks["h2_tank"]
            assert (await pem.poll())["electrolyser_state"].value == HALTED
            for name, value in to_commands(pem.profile, ElectrolyserSetpoint(True, 80.0)).items():
                assert (await pem.writer.write(name, value)).written
            clock.advance(10.0)
            sim.step()
            result = await pem.poll()
            assert result["electrolyser_state"].value == IDLE
            assert result["h2_flow_nl_per_h"].value is None  # NaN while not producing
            level = tank.level_kg
            clock.advance(60.0)  # past the 30 s start-up
            sim.step()
            result = await pem.poll()
            assert result["electrolyser_state"].value == STEADY
            assert sim.last_result is not None
            assert sim.last_result.electrolyser_kw["pem"] == pytest.approx(80.0)
            assert tank.level_kg > level
            flow = await pem.value("h2_flow_kg_per_h")
            assert flow == pytest.approx(80.0 / 53.0, rel=1e-5)
            # Below the minimum load the stack runs at the minimum load.
            await pem.writer.write("production_rate_pct", 60.0)
            clock.advance(60.0)
            sim.step()
            assert sim.last_result.electrolyser_kw["pem"] == pytest.approx(60.0)
            # Tank full: standby, no hydrogen, standby draw; room again: steady.
            tank.level_kg = tank.capacity_kg
            clock.advance(60.0)
            sim.step()
            assert (await pem.poll())["electrolyser_state"].value == STANDBY
            assert sim.last_result.electrolyser_kw["pem"] == pytest.approx(STANDBY_KW)
            tank.level_kg = 50.0
            clock.advance(60.0)
            sim.step()
            assert (await pem.poll())["electrolyser_state"].value == STEADY
            # Stop: halted.
            await pem.writer.write("start_stop", 0)
            clock.advance(5.0)
            sim.step()
            assert (await pem.poll())["electrolyser_state"].value == HALTED
            pem.close()

    run(body())


def test_electrolyser_heartbeat_timeout_stops_it() -> None:
    async def body() -> None:
        clock = FakeClock()
        async with make_site(clock) as sim:
            pem = Link(sim, "pem", clock)
            assert (await pem.writer.write("heartbeat_timeout", 120)).written
            await pem.writer.write("start_stop", 1)
            clock.advance(60.0)
            sim.step()
            assert (await pem.poll())["electrolyser_state"].value == STEADY
            clock.advance(61.0)  # 121 s without a command
            sim.step()
            assert (await pem.poll())["electrolyser_state"].value == HALTED
            await pem.transport.write_register(1000, 1, 1)  # a fresh start command re-arms it
            clock.advance(1.0)
            sim.step()
            assert (await pem.poll())["electrolyser_state"].value == IDLE
            pem.close()

    run(body())


def test_battery_setpoint_moves_soc_and_heats_the_pack() -> None:
    async def body() -> None:
        clock = FakeClock()
        async with make_site(clock) as sim:
            bess = Link(sim, "bess", clock)
            soc0 = await bess.value("soc_pct")
            temp0 = await bess.value("cell_temperature_max_c")
            assert soc0 == pytest.approx(50.0)
            await bess.writer.write("power_setpoint_w", 80_000)  # 80 kW discharge
            clock.advance(600.0)
            sim.step()
            soc1 = await bess.value("soc_pct")
            temp1 = await bess.value("cell_temperature_max_c")
            assert isinstance(soc1, float) and isinstance(temp1, float) and isinstance(temp0, float)
            assert await bess.value("power_net_kw") == pytest.approx(80.0)
            # 80 kW for 10 min through a 0.95 discharge efficiency, of 200 kWh.
            assert soc1 == pytest.approx(50.0 - 100 * (80 / 6 / 0.95) / 200, rel=1e-4)
            assert temp1 > temp0
            # Charging beyond the power limit is held at the limit.
            await bess.writer.write("power_setpoint_w", -150_000)
            clock.advance(60.0)
            sim.step()
            assert await bess.value("power_net_kw") == pytest.approx(-100.0)
            bess.close()

    run(body())


def test_fault_injection_and_forced_values() -> None:
    async def body() -> None:
        clock = FakeClock()
        async with make_site(clock) as sim:
            grid, ev = Link(sim, "grid", clock), Link(sim, "ev1", clock)
            sim.faults("grid").exception_code = 2
            reading = (await grid.poll())["total_active_power_net_w"]
            assert reading.value is None and "modbus exception 2" in (reading.missing_reason or "")
            sim.faults("grid").clear()
            sim.override_point("grid", "total_active_power_net_w", math.nan)
            sim.override_point("ev1", "availability", "sentinel")
            clock.advance(5.0)
            sim.step()  # forced values survive a step
            assert (await grid.poll())["total_active_power_net_w"].missing_reason == "not available (NaN)"
            assert "not implemented" in ((await ev.poll())["availability"].missing_reason or "")
            sim.clear_override("grid")
            clock.advance(5.0)
            sim.step()
            assert (await grid.poll())["total_active_power_net_w"].value is not None
            sim.drop_connections("ev1")
            assert (await ev.poll())["availability"].value is None  # the dropped link fails once
            grid.close()
            ev.close()

    run(body())


def test_unavailable_profile_is_skipped_with_a_reason() -> None:
    sim = make_site(FakeClock(), [SimDevice("roof", "sunspec_inverter", PvInverterModel("roof", 100.0))])
    if "roof" in sim.skipped:
        assert "sunspec_inverter" in sim.skipped["roof"]
    else:
        assert sim.device("roof").profile.kind == "pv_inverter"
    with pytest.raises(KeyError, match="no such point"):
        sim.override_point("grid", "nope", 1.0)


def test_profile_of_the_wrong_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="alfen_ng9xx is a ev_charger"):
        make_site(FakeClock(), [SimDevice("m2", get_profile("alfen_ng9xx"), MeterModel("grid"))])


def sunspec_or_skip() -> None:
    from drivers.sim.device_profiles import ProfileUnavailable, profile_for_device

    try:
        profile_for_device("sunspec_inverter")
        profile_for_device("sunspec_battery")
    except ProfileUnavailable as exc:
        pytest.skip(str(exc))


def test_sunspec_pv_limit_and_battery_setpoint() -> None:
    sunspec_or_skip()

    async def body() -> None:
        clock = FakeClock()
        roof = SimDevice("roof", "sunspec_inverter", PvInverterModel("roof", rated_kw=100.0))
        async with make_site(clock, [roof], battery="sunspec_battery") as sim:
            pv, bess = Link(sim, "roof", clock), Link(sim, "bess", clock)
            clock.advance(1.0)
            sim.step()
            assert await pv.value("power_kw") == pytest.approx(PV_KW, rel=1e-3)
            for name, value in to_commands(pv.profile, PvLimitSetpoint(30.0)).items():
                assert (await pv.writer.write(name, value)).written
            for name, value in to_commands(bess.profile, BatterySetpoint(-40.0)).items():
                assert (await bess.writer.write(name, value)).written
            clock.advance(60.0)
            sim.step()
            assert await pv.value("power_kw") == pytest.approx(30.0, rel=1e-3)
            assert await bess.value("power_net_kw") == pytest.approx(-40.0, rel=1e-3)
            assert sim.plant.batteries["bess"].soc_kwh > 100.0
            # No keep-alive: the limit and the setpoint revert after the 60 s watchdog.
            clock.advance(61.0)
            sim.step()
            assert await pv.value("power_kw") == pytest.approx(PV_KW, rel=1e-3)
            assert await bess.value("power_net_kw") == pytest.approx(0.0, abs=1e-3)
            pv.close()
            bess.close()

    run(body())
