"""Modbus RTU framing over a real byte stream: ModbusRtuTransport (pymodbus serial client on the
pyserial URL ``socket://127.0.0.1:PORT``) against RegisterServer in ``framing="rtu"``."""

from __future__ import annotations

import asyncio
import math
import struct

import pytest

from drivers.modbus.codec import RegisterSpec, encode
from drivers.modbus.device import ProfileDevice
from drivers.modbus.profile import Profile, load_profile
from drivers.modbus.rtu import ModbusRtuTransport, SerialLine
from drivers.modbus.transport import TransportError, TransportPool
from drivers.profiles import PROFILES_DIR
from drivers.sim.register_server import RegisterServer, crc16, rtu_frame
from tests.drivers.raw_peers import RtuStreamPeer
from tests.drivers.support import FakeClock, run

VALUES = {"voltage_l1_v": 230.1, "active_power_l1_w": 2875.0, "frequency_hz": 50.02}


@pytest.fixture(scope="module")
def sdm630() -> Profile:
    return load_profile(PROFILES_DIR / "sdm630.toml")


def rtu_server(profile: Profile) -> RegisterServer:
    server = RegisterServer(profile, framing="rtu")
    for name, value in VALUES.items():
        server.set_point(name, value)
    return server


def transport_for(server: RegisterServer, **options: float) -> ModbusRtuTransport:
    return ModbusRtuTransport(f"socket://127.0.0.1:{server.port}", SerialLine(9600, "N"), **options)


def test_crc16_matches_the_modbus_specification_example() -> None:
    # Modbus over serial line V1.02, and every RTU example: 01 03 00 00 00 0A -> CRC C5 CD on the wire.
    frame = bytes.fromhex("01030000000A")
    assert crc16(frame).to_bytes(2, "little") == bytes.fromhex("C5CD")
    assert rtu_frame(1, frame[1:]) == bytes.fromhex("01030000000AC5CD")


def test_serial_line_refuses_bad_settings() -> None:
    with pytest.raises(ValueError, match="parity: must be 'N', 'E' or 'O', got 'X'"):
        SerialLine(parity="X")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="stopbits: must be 1 or 2, got 3"):
        SerialLine(stopbits=3)
    assert str(SerialLine(9600, "N", 1, 8)) == "9600 8N1"


def test_reads_holding_and_input_registers(sdm630: Profile) -> None:
    async def main() -> None:
        async with rtu_server(sdm630) as server:
            server.set_registers("holding", 100, [0x1234, 0xABCD])
            transport = transport_for(server)
            try:
                assert await transport.read("holding", 100, 2, unit_id=1) == [0x1234, 0xABCD]
                words = await transport.read("input", 0, 2, unit_id=1)
            finally:
                transport.close()
        value = struct.unpack(">f", struct.pack(">HH", *words))[0]
        assert math.isclose(value, 230.1, rel_tol=1e-6)
        assert server.requests[3] == 1 and server.requests[4] == 1
        assert server.crc_errors == 0
        assert transport.stats.errors == 0 and transport.stats.connects == 1

    run(main())


def test_profile_device_polls_over_rtu(sdm630: Profile) -> None:
    async def main() -> None:
        async with rtu_server(sdm630) as server:
            transport = transport_for(server)
            try:
                result = await ProfileDevice(sdm630, transport).poll()
            finally:
                transport.close()
        for name, value in VALUES.items():
            reading = result[name]
            assert reading.missing_reason is None, (name, reading)
            assert math.isclose(float(reading.value), value, rel_tol=1e-6)  # type: ignore[arg-type]

    run(main())


def test_fc16_and_fc6_writes(sdm630: Profile) -> None:
    async def main() -> None:
        async with rtu_server(sdm630) as server:
            transport = transport_for(server)
            try:
                regs = encode(16.5, RegisterSpec(type="float32"))
                await transport.write_registers(1210, regs, unit_id=1)
                await transport.write_register(1000, 0xF63C, unit_id=1)
                assert await transport.read("holding", 1210, 2, unit_id=1) == regs
            finally:
                transport.close()
        assert server.requests[16] == 1 and server.requests[6] == 1
        assert server.get_registers("holding", 1210, 2) == regs
        assert server.get_registers("holding", 1000, 1) == [0xF63C]

    run(main())


def test_exception_reply_is_a_transport_error(sdm630: Profile) -> None:
    async def main() -> None:
        async with rtu_server(sdm630) as server:
            server.faults.exception_code = 2
            transport = transport_for(server)
            try:
                with pytest.raises(TransportError) as info:
                    await transport.read("input", 0, 2, unit_id=1)
                server.faults.clear()
                assert len(await transport.read("input", 0, 2, unit_id=1)) == 2
            finally:
                transport.close()
        assert info.value.exception_code == 2
        assert "exception 2 (illegal data address)" in info.value.reason
        assert transport.stats.errors == 1

    run(main())


def test_wrong_crc_is_an_error_not_a_crash(sdm630: Profile) -> None:
    async def main() -> None:
        clock = FakeClock()
        async with rtu_server(sdm630) as server:
            server.faults.bad_crc = True
            transport = transport_for(server, timeout_s=0.3, clock=clock)
            try:
                with pytest.raises(TransportError) as info:
                    await transport.read("input", 0, 2, unit_id=1)
                server.faults.clear()
                clock.advance(10.0)  # past any reconnect backoff
                words = await transport.read("input", 0, 2, unit_id=1)
            finally:
                transport.close()
        assert info.value.exception_code is None
        assert words == server.get_registers("input", 0, 2)
        assert transport.stats.errors == 1

    run(main())


def test_request_with_wrong_crc_is_ignored_by_the_server(sdm630: Profile) -> None:
    async def main() -> None:
        async with rtu_server(sdm630) as server:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            good = rtu_frame(1, bytes.fromhex("0300640001"))
            writer.write(good[:-1] + bytes([good[-1] ^ 0x01]) + good)  # a corrupted frame, then a good one
            await writer.drain()
            answer = await asyncio.wait_for(reader.readexactly(7), 2.0)
            writer.close()
            await writer.wait_closed()
        assert answer == rtu_frame(1, bytes([3, 2, 0, 0]))
        assert server.crc_errors == 1 and server.requests[3] == 1

    run(main())


def test_pool_keys_rtu_transports_by_serial_port() -> None:
    pool = TransportPool(timeout_s=0.5)
    a = pool.get_serial("socket://127.0.0.1:1", baudrate=9600, parity="N")
    assert pool.get_serial("socket://127.0.0.1:1", baudrate=9600, parity="N") is a
    assert isinstance(a, ModbusRtuTransport) and a.line == SerialLine(9600, "N")
    assert pool.get_serial("socket://127.0.0.1:2") is not a
    with pytest.raises(ValueError, match="already open with 9600 8N1, got 19200 8E1"):
        pool.get_serial("socket://127.0.0.1:1")
    tcp = pool.get("127.0.0.1", 1)
    assert pool.get("127.0.0.1", 1) is tcp and tcp is not a
    pool.close()


# -- replies matched to their request, against an independent byte-stream peer -------------------


def test_late_rtu_reply_is_discarded_not_taken_for_the_next_request() -> None:
    async def main() -> None:
        clock = FakeClock()
        async with RtuStreamPeer(unit=1) as peer:
            late_reply = peer.held[100] = asyncio.Event()  # the first read is answered when told
            transport = ModbusRtuTransport(f"socket://127.0.0.1:{peer.port}", SerialLine(9600, "N"),
                                           timeout_s=0.3, clock=clock)
            try:
                with pytest.raises(TransportError, match="timeout") as late:
                    await transport.read("holding", 100, 2, unit_id=1)
                clock.advance(transport.unit_state(1).backoff_s)
                late_reply.set()  # the late reply goes out as the next request is made
                words = await transport.read("holding", 200, 2, unit_id=1)
                again = await transport.read("holding", 100, 2, unit_id=1)
            finally:
                transport.close()
        assert late.value.exception_code is None
        assert words == [1200, 1201]  # not the late [1100, 1101]
        assert again == [1100, 1101]
        assert transport.late_replies == 1

    run(main())


def test_reply_longer_than_requested_is_refused_not_cut() -> None:
    async def main() -> None:
        async with RtuStreamPeer(unit=1) as peer:
            peer.registers[(1, 300)] = [1, 2, 3, 4]
            transport = ModbusRtuTransport(f"socket://127.0.0.1:{peer.port}", SerialLine(9600, "N"),
                                           timeout_s=0.5)
            try:
                with pytest.raises(TransportError, match="reply has 4 registers, not 2"):
                    await transport.read("holding", 300, 2, unit_id=1)
                assert await transport.read("holding", 400, 2, unit_id=1) == [1400, 1401]
            finally:
                transport.close()

    run(main())
