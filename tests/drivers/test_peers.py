"""Our Modbus code against independent peers: mbpoll reads our simulator, our driver reads pyModbusTCP.

Expected register images are computed here with ``struct`` from the vendor encodings (IEEE 754
float32 / uint32 high word first, big-endian bytes), never with our own encoder.
"""

from __future__ import annotations

import asyncio
import math
import re
import shutil
import struct
from collections.abc import Iterator

import pytest
from pyModbusTCP.server import ModbusServer

from drivers.modbus.codec import encode
from drivers.modbus.device import ProfileDevice
from drivers.modbus.profile import Profile, load_profile
from drivers.modbus.transport import ModbusTcpTransport
from drivers.profiles import PROFILES_DIR
from drivers.sim.register_server import RegisterServer
from tests.drivers.support import pymodbustcp_server, run

MBPOLL = shutil.which("mbpoll")
needs_mbpoll = pytest.mark.skipif(MBPOLL is None, reason="mbpoll is not installed (apt-get install mbpoll)")

MBPOLL_LINE = re.compile(r"^\[(\d+)\]:\s+(\S+)\s*$")


# -- helpers ----------------------------------------------------------------------------------------



def f32_words(value: float) -> list[int]:
    """float32, high word first, each word big-endian."""
    hi, lo = struct.unpack(">HH", struct.pack(">f", value))
    return [hi, lo]


def u32_words(value: int) -> list[int]:
    hi, lo = struct.unpack(">HH", struct.pack(">I", value))
    return [hi, lo]


def as_f32(value: float) -> float:
    """The float32 nearest ``value``, as a Python float."""
    result: float = struct.unpack(">f", struct.pack(">f", value))[0]
    return result



async def mbpoll(port: int, *args: str, write: tuple[str, ...] = ()) -> dict[int, str]:
    """Run mbpoll once against 127.0.0.1:``port``; returns {reference: printed value}.

    Values to write go after the host: mbpoll takes its first positional argument as the host.
    """
    assert MBPOLL is not None
    cmd = [MBPOLL, "-m", "tcp", "-a", "1", *args, "-1", "-o", "2", "-p", str(port), "127.0.0.1", *write]
    proc = await asyncio.create_subprocess_exec(
        *cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 5.0)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    text = out.decode(errors="replace")
    assert proc.returncode == 0, (cmd, text, err.decode(errors="replace"))
    values: dict[int, str] = {}
    for line in text.splitlines():
        match = MBPOLL_LINE.match(line)
        if match:
            values[int(match.group(1))] = match.group(2)
    return values


@pytest.fixture(scope="module")
def sdm630() -> Profile:
    return load_profile(PROFILES_DIR / "sdm630.toml")


@pytest.fixture(scope="module")
def enapter() -> Profile:
    return load_profile(PROFILES_DIR / "enapter_el.toml")


# -- 1. mbpoll reads our simulator --------------------------------------------------------------------

SDM630_MBPOLL = {"voltage_l1_v": 230.1, "total_active_power_net_w": 2875.5, "frequency_hz": 50.02}


@needs_mbpoll
@pytest.mark.parametrize("name", sorted(SDM630_MBPOLL))
def test_mbpoll_reads_sdm630_float_from_simulator(sdm630: Profile, name: str) -> None:
    value = SDM630_MBPOLL[name]
    address = sdm630.points[name].address

    async def main() -> None:
        async with RegisterServer(sdm630) as server:
            for other, other_value in SDM630_MBPOLL.items():
                server.set_point(other, other_value)
            ref = str(address + 1)  # mbpoll references are 1-based by default
            floats = await mbpoll(server.port, "-t", "3:float", "-B", "-r", ref, "-c", "1")
            zero_based = await mbpoll(server.port, "-0", "-t", "3:float", "-B", "-r", str(address), "-c", "1")
            words = await mbpoll(server.port, "-t", "3:hex", "-r", ref, "-c", "2")
            swapped = await mbpoll(server.port, "-t", "3:float", "-r", ref, "-c", "1")

        # mbpoll prints floats with 6 significant digits
        assert math.isclose(float(floats[address + 1]), value, rel_tol=1e-5), floats
        assert math.isclose(float(zero_based[address]), value, rel_tol=1e-5), zero_based
        assert [int(words[address + 1], 16), int(words[address + 2], 16)] == f32_words(value), words
        # without -B mbpoll takes the low word first: it must then see the words swapped
        hi, lo = f32_words(value)
        expected_swapped = struct.unpack(">f", struct.pack(">HH", lo, hi))[0]
        assert math.isclose(float(swapped[address + 1]), expected_swapped, rel_tol=1e-5), swapped
        assert not math.isclose(float(swapped[address + 1]), value, rel_tol=1e-3)

    run(main())


@needs_mbpoll
def test_mbpoll_reads_enapter_holding_float_and_ints_from_simulator(enapter: Profile) -> None:
    rate = 87.5
    uptime = 1_234_567  # 0x0012_D687: both words non-zero and different
    heartbeat = 70_000  # 0x0001_1170
    state = 1

    async def main() -> None:
        async with RegisterServer(enapter) as server:
            server.set_point("production_rate_pct", rate)
            server.set_point("uptime_s", uptime)
            server.set_point("heartbeat_timeout", heartbeat)
            server.set_point("system_state", state)
            port = server.port
            rate_f = await mbpoll(port, "-t", "4:float", "-B", "-r", "1003", "-c", "1")
            rate_hex = await mbpoll(port, "-t", "4:hex", "-r", "1003", "-c", "2")
            uptime_i = await mbpoll(port, "-t", "3:int", "-B", "-r", "23", "-c", "1")
            uptime_hex = await mbpoll(port, "-t", "3:hex", "-r", "23", "-c", "2")
            heartbeat_i = await mbpoll(port, "-t", "4:int", "-B", "-r", "4601", "-c", "1")
            state_d = await mbpoll(port, "-t", "3", "-r", "19", "-c", "1")

        assert math.isclose(float(rate_f[1003]), rate, rel_tol=1e-6), rate_f
        assert [int(rate_hex[1003], 16), int(rate_hex[1004], 16)] == f32_words(rate), rate_hex
        assert int(uptime_i[23]) == uptime, uptime_i
        assert [int(uptime_hex[23], 16), int(uptime_hex[24], 16)] == u32_words(uptime), uptime_hex
        assert int(heartbeat_i[4601]) == heartbeat, heartbeat_i
        assert int(state_d[19]) == state, state_d

    run(main())


@needs_mbpoll
def test_mbpoll_write_is_decoded_by_our_driver(enapter: Profile) -> None:
    rate = 72.25

    async def main() -> None:
        async with RegisterServer(enapter) as server:
            await mbpoll(server.port, "-t", "4:float", "-B", "-r", "1003", write=(str(rate),))
            words = server.get_registers("holding", 1002, 2)
            transport = ModbusTcpTransport("127.0.0.1", server.port, timeout_s=1.0)
            try:
                readings = await ProfileDevice(enapter, transport).poll()
            finally:
                transport.close()
        assert words == f32_words(rate)
        reading = readings["production_rate_pct"]
        assert reading.missing_reason is None, reading
        assert reading.value == rate

    run(main())


# -- 2. our driver reads an independent server (pyModbusTCP) ------------------------------------------


@pytest.fixture
def peer() -> Iterator[ModbusServer]:
    with pymodbustcp_server() as server:
        yield server


SDM630_PEER = {
    "voltage_l1_v": 230.1,
    "voltage_l2_v": 229.7,
    "voltage_l3_v": 231.4,
    "current_l1_a": 12.5,
    "current_l2_a": -3.25,
    "current_l3_a": 0.1,
    "active_power_l1_w": 2875.5,
    "active_power_l2_w": -746.6,
    "active_power_l3_w": 23.0,
    "total_active_power_net_w": 2151.9,
    "frequency_hz": 50.02,
    "import_energy_kwh": 123456.7,
    "export_energy_kwh": 8901.25,
}
# Vendor document addresses (30001-based) minus 30001, independent of our profile file.
SDM630_DOC_ADDRESS = {
    "voltage_l1_v": 0,
    "voltage_l2_v": 2,
    "voltage_l3_v": 4,
    "current_l1_a": 6,
    "current_l2_a": 8,
    "current_l3_a": 10,
    "active_power_l1_w": 12,
    "active_power_l2_w": 14,
    "active_power_l3_w": 16,
    "total_active_power_net_w": 52,
    "frequency_hz": 70,
    "import_energy_kwh": 72,
    "export_energy_kwh": 74,
}


def test_driver_reads_sdm630_from_pymodbustcp(sdm630: Profile, peer: ModbusServer) -> None:
    assert set(SDM630_PEER) == set(sdm630.points)
    bank = peer.data_bank
    for name, value in SDM630_PEER.items():
        address = SDM630_DOC_ADDRESS[name]
        assert bank.set_input_registers(address, f32_words(value))
        # same addresses in the holding table hold NaN: reading the wrong table cannot pass
        assert bank.set_holding_registers(address, [0x7FC0, 0x0000])

    async def main() -> None:
        transport = ModbusTcpTransport("127.0.0.1", peer.port, timeout_s=1.0)
        try:
            result = await ProfileDevice(sdm630, transport).poll()
        finally:
            transport.close()
        assert set(result) == set(SDM630_PEER)
        for name, value in SDM630_PEER.items():
            reading = result[name]
            assert reading.missing_reason is None, (name, reading)
            assert reading.value == as_f32(value), (name, reading, value)
            assert reading.unit == sdm630.points[name].unit
        assert transport.stats.errors == 0

    run(main())


def test_driver_reads_enapter_ints_floats_and_nan_from_pymodbustcp(
    enapter: Profile, peer: ModbusServer
) -> None:
    bank = peer.data_bank
    assert bank.set_input_registers(18, [1])
    assert bank.set_input_registers(22, u32_words(3_000_000_000))  # above 2**31: must stay unsigned
    assert bank.set_input_registers(1006, f32_words(12345.5))
    assert bank.set_input_registers(1008, [0x7FC0, 0x0000])  # NaN while idle
    assert bank.set_input_registers(1200, [3])  # steady
    assert bank.set_holding_registers(1000, [1])
    assert bank.set_holding_registers(1002, f32_words(80.0))
    assert bank.set_holding_registers(4600, u32_words(70_000))

    async def main() -> None:
        transport = ModbusTcpTransport("127.0.0.1", peer.port, timeout_s=1.0)
        try:
            result = await ProfileDevice(enapter, transport).poll()
        finally:
            transport.close()
        values = {name: reading.value for name, reading in result.items()}
        assert values == {
            "system_state": 1,
            "uptime_s": 3_000_000_000,
            "h2_total_nl": 12345.5,
            "h2_flow_nl_per_h": None,
            "start_stop": 1,
            "production_rate_pct": 80.0,
            "heartbeat_timeout": 70_000,
            "electrolyser_state": 3,
        }
        reason = result["h2_flow_nl_per_h"].missing_reason
        assert reason is not None and "NaN" in reason
        assert transport.stats.errors == 0

    run(main())


def test_write_registers_lands_in_pymodbustcp_databank(enapter: Profile, peer: ModbusServer) -> None:
    rate = 66.6
    words = f32_words(rate)
    assert encode(rate, enapter.command_spec("production_rate_pct")) == words
    assert encode(70_000, enapter.command_spec("heartbeat_timeout")) == u32_words(70_000)

    async def main() -> None:
        transport = ModbusTcpTransport("127.0.0.1", peer.port, timeout_s=1.0)
        try:
            await transport.write_registers(1002, words, unit_id=1)
            await transport.write_registers(4600, u32_words(70_000), unit_id=1)
        finally:
            transport.close()
        assert transport.stats.errors == 0

    run(main())
    bank = peer.data_bank
    assert bank.get_holding_registers(1002, 2) == words
    assert bank.get_holding_registers(4600, 2) == [0x0001, 0x1170]
    assert bank.get_input_registers(1002, 2) == [0, 0]  # a write goes to the holding table only
