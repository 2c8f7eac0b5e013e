"""Impossible values are missing, not good: declared ranges, the vendors' "no value" patterns, the
device's nameplate power and monotonic energy counters. Values are those seen in the field; the
devices are independent pyModbusTCP servers with register words built here with ``struct``."""

from __future__ import annotations

import struct
from typing import Any

import pytest
from pyModbusTCP.server import DataBank

from drivers.modbus.device import ProfileDevice
from drivers.modbus.profile import Profile, ProfileError, Reading, parse_profile
from drivers.modbus.transport import ModbusTcpTransport
from drivers.poller import Poller, PollTarget
from drivers.profiles import get_profile
from drivers.sunspec import install_image, standard_profile
from tests.drivers.support import FakeClock, pymodbustcp_server, run


class Image:
    """Collects the holding registers `install_image` lays out (it only calls `set_registers`)."""

    def __init__(self) -> None:
        self.words: dict[int, int] = {}

    def set_registers(self, table: str, address: int, values: list[int]) -> None:
        assert table == "holding"
        for i, v in enumerate(values):
            self.words[address + i] = v & 0xFFFF

    def get_registers(self, table: str, address: int, count: int) -> list[int]:
        return [self.words.get(address + i, 0) for i in range(count)]


def f32(value: float) -> list[int]:
    return list(struct.unpack(">HH", struct.pack(">f", value)))


async def poll_once(profile: Profile, port: int) -> dict[str, Reading]:
    transport = ModbusTcpTransport("127.0.0.1", port, timeout_s=1.0)
    try:
        return dict(await ProfileDevice(profile, transport).poll())
    finally:
        transport.close()


def sunspec_bank(name: str, raw: dict[str, int]) -> DataBank:
    """The SunSpec image of ``name`` with the points of ``raw`` set to those raw words and their
    scale factors to -1."""
    profile = standard_profile(name)
    image = Image()
    install_image(image, name)  # type: ignore[arg-type]
    for point, value in raw.items():
        p = profile.points[point]
        assert p.scale_factor_point is not None
        image.set_registers("holding", profile.points[p.scale_factor_point].address, [0xFFFF])  # SF -1
        image.set_registers("holding", p.address, [value])
    bank = DataBank()
    for address, word in image.words.items():
        bank.set_holding_registers(address, [word])
    return bank


@pytest.mark.parametrize(("name", "raw", "shown"), [
    ("sunspec_battery", {"soc_pct": 1500}, "SoC 150 %"),
    ("sunspec_battery", {"soh_pct": 32768}, "SoH 3276.8 %"),
    ("sunspec_inverter", {"power_limit_pct": 32768}, "power limit 3276.8 %"),
])
def test_sunspec_percentages_beyond_100_are_missing(name: str, raw: dict[str, int], shown: str) -> None:
    profile = standard_profile(name)

    async def main() -> None:
        with pymodbustcp_server(sunspec_bank(name, raw)) as server:
            readings = await poll_once(profile, server.port)
        for point in raw:
            assert readings[point].value is None, (shown, readings[point])
            assert readings[point].missing_reason == "out of range"

    run(main())


def test_sunspec_percentage_within_range_is_read() -> None:
    async def main() -> None:
        with pymodbustcp_server(sunspec_bank("sunspec_battery", {"soc_pct": 875})) as server:
            readings = await poll_once(standard_profile("sunspec_battery"), server.port)
        assert readings["soc_pct"].value == pytest.approx(87.5)

    run(main())


@pytest.mark.parametrize(("profile_name", "table", "address", "words", "point"), [
    # EM24 INT32, least significant word first: 0x7FFFFFFF read 214,748 kW at x0.1
    ("carlo_gavazzi_em24", "input", 40, [0xFFFF, 0x7FFF], "total_active_power_net_w"),
    ("carlo_gavazzi_em24", "input", 52, [0xFFFF, 0x7FFF], "import_energy_kwh"),
    # SDM630 float32: FLT_MAX
    ("eastron_sdm630", "input", 52, [0x7F7F, 0xFFFF], "total_active_power_net_w"),
    ("eastron_sdm630", "input", 72, [0x7F7F, 0xFFFF], "import_energy_kwh"),
    # ABB Terra AC uint32: session energy 0xFFFFFFFF read 4.29 GWh
    ("abb_terra_ac", "holding", 0x401E, [0xFFFF, 0xFFFF], "session_energy_wh"),
])
def test_vendor_no_value_patterns_are_missing(
        profile_name: str, table: str, address: int, words: list[int], point: str) -> None:
    profile = get_profile(profile_name)
    bank = DataBank()
    if table == "input":
        bank.set_input_registers(address, words)
    else:
        bank.set_holding_registers(address, words)

    async def main() -> None:
        with pymodbustcp_server(bank) as server:
            readings = await poll_once(profile, server.port)
        reading = readings[point]
        assert reading.value is None, reading
        assert str(reading.missing_reason).startswith("no value (pattern 0x")

    run(main())


def _profile(points: dict[str, Any]) -> dict[str, Any]:
    return {"name": "t", "vendor": "v", "model": "m", "kind": "meter", "points": points}


def test_profile_refuses_power_or_percentage_point_without_range() -> None:
    with pytest.raises(ProfileError) as info:
        parse_profile(_profile({
            "p": {"address": 0, "table": "input", "type": "float32", "unit": "kW"},
            "soc": {"address": 2, "table": "input", "type": "uint16", "unit": "%"},
            "e": {"address": 4, "table": "input", "type": "float32", "unit": "A", "monotonic": True},
            "v": {"address": 6, "table": "input", "type": "uint16", "unit": "V", "no_value": [0x10000]},
        }))
    assert info.value.problems == [
        "<profile>: points.p: valid_range: a power (kW) point needs a plausibility range, got None",
        "<profile>: points.soc: valid_range: a percentage point needs a plausibility range, got None",
        "<profile>: points.e: monotonic: only for energy counters (Wh, kWh, MWh), got unit 'A'",
        "<profile>: points.v: no_value: 0x10000 does not fit uint16, got [65536]",
    ]


def test_poller_checks_power_against_nameplate_and_counters_for_steps() -> None:
    sdm630 = get_profile("eastron_sdm630")
    bank = DataBank()

    def show(power_w: float, energy_kwh: float) -> None:
        bank.set_input_registers(52, f32(power_w))
        bank.set_input_registers(72, f32(energy_kwh))

    async def main() -> None:
        clock = FakeClock()
        with pymodbustcp_server(bank) as server:
            target = PollTarget("meter", sdm630, "127.0.0.1", server.port, interval_s=60.0, ttl_s=1000.0,
                                nameplate_w=10_000.0)
            poller = Poller([target], clock=clock, timeout_s=1.0)
            try:
                show(25_000.0, 100.0)  # 2.5 x nameplate: plausible
                first = await poller.poll_once("meter")
                clock.advance(60.0)
                show(35_000.0, 99.0)  # 3.5 x nameplate; the counter goes down
                second = await poller.poll_once("meter")
                clock.advance(60.0)
                show(1000.0, 1.0e6)  # the counter jumps by a GWh in a minute
                third = await poller.poll_once("meter")
                clock.advance(60.0)
                show(1000.0, 100.25)  # 250 Wh in 3 min: within 3 x 10 kW
                fourth = await poller.poll_once("meter")
            finally:
                await poller.stop()
        power, energy = "total_active_power_net_w", "import_energy_kwh"
        assert first[power].value == pytest.approx(25_000.0) and first[energy].value == pytest.approx(100.0)
        assert second[power].value is None
        assert str(second[power].missing_reason).startswith("implausible: 35000 W beyond 3 x nameplate")
        assert second[energy].value is None
        assert str(second[energy].missing_reason) == "implausible: counter went down from 100 to 99 kWh"
        assert third[power].value == pytest.approx(1000.0)
        assert str(third[energy].missing_reason).startswith("implausible: counter rose by")
        assert fourth[energy].value == pytest.approx(100.25)

    run(main())


def test_counter_read_lower_several_polls_in_a_row_is_taken_as_reset() -> None:
    sdm630 = get_profile("eastron_sdm630")
    bank = DataBank()

    async def main() -> None:
        clock = FakeClock()
        with pymodbustcp_server(bank) as server:
            poller = Poller([PollTarget("meter", sdm630, "127.0.0.1", server.port, ttl_s=1000.0)],
                            clock=clock, timeout_s=1.0)
            try:
                bank.set_input_registers(72, f32(500.0))
                await poller.poll_once("meter")
                bank.set_input_registers(72, f32(2.0))  # the meter was replaced
                seen = []
                for _ in range(3):
                    clock.advance(1.0)
                    seen.append((await poller.poll_once("meter"))["import_energy_kwh"].value)
            finally:
                await poller.stop()
        assert seen[:2] == [None, None]
        assert seen[2] == pytest.approx(2.0)

    run(main())


@pytest.mark.parametrize("site_clock", [True, False])
def test_counter_step_is_judged_in_the_devices_time(site_clock: bool) -> None:
    """A simulation at 120x: the meter's counter advances 120 s of site time per wall second."""
    sdm630 = get_profile("eastron_sdm630")
    bank = DataBank()

    async def main() -> None:
        wall, site = FakeClock(), FakeClock()
        with pymodbustcp_server(bank) as server:
            target = PollTarget("meter", sdm630, "127.0.0.1", server.port, ttl_s=1000.0,
                                nameplate_w=100_000.0)
            poller = Poller([target], clock=wall, timeout_s=1.0, device_clock=site if site_clock else None)
            try:
                bank.set_input_registers(72, f32(100.0))
                await poller.poll_once("meter")
                wall.advance(1.0)
                site.advance(120.0)
                bank.set_input_registers(72, f32(103.0))  # 90 kW for 120 s
                reading = (await poller.poll_once("meter"))["import_energy_kwh"]
            finally:
                await poller.stop()
        if site_clock:
            assert reading.value == pytest.approx(103.0)
        else:
            assert str(reading.missing_reason).startswith("implausible: counter rose by")

    run(main())
