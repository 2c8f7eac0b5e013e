"""Transport, ProfileDevice and RegisterServer over real TCP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import math
from datetime import UTC, datetime
from typing import Any

import pytest

from drivers.modbus.codec import RegisterSpec, encode
from drivers.modbus.device import ProfileDevice
from drivers.modbus.profile import Profile, load_profile
from drivers.modbus.transport import ModbusTcpTransport, TransportError, TransportPool
from drivers.profiles import PROFILES_DIR
from drivers.sim.register_server import RegisterServer
from tests.drivers.support import FakeClock, free_port, run

VALUES = {
    "voltage_l1_v": 230.1,
    "current_l1_a": 12.5,
    "active_power_l1_w": 2875.0,
    "frequency_hz": 50.02,
}
FIXED_TIME = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)



@pytest.fixture(scope="module")
def sdm630() -> Profile:
    return load_profile(PROFILES_DIR / "sdm630.toml")


def serve(profile: Profile, port: int = 0) -> RegisterServer:
    server = RegisterServer(profile, port=port)
    for name, value in VALUES.items():
        server.set_point(name, value)
    return server


def assert_values(readings: dict[str, Any]) -> None:
    for name, value in VALUES.items():
        reading = readings[name]
        assert reading.missing_reason is None, (name, reading)
        assert math.isclose(reading.value, value, rel_tol=1e-6), (name, reading)



def test_poll_reads_values_over_tcp(sdm630: Profile) -> None:
    async def main() -> None:
        async with serve(sdm630) as server:
            transport = ModbusTcpTransport("127.0.0.1", server.port, timeout_s=1.0)
            device = ProfileDevice(sdm630, transport, unit_id=1, clock=lambda: FIXED_TIME)
            result = await device.poll()
            transport.close()
        assert_values(result)
        assert set(result) == set(sdm630.points)
        assert result["voltage_l1_v"].unit == "V"
        assert result.timestamp == FIXED_TIME
        # sdm630 plans to one block, so one request
        assert server.requests[4] == 1
        assert transport.stats.requests == 1 and transport.stats.errors == 0
        assert transport.stats.last_good_read_at is not None
        assert transport.stats.latency_p50_s is not None and transport.stats.latency_p99_s is not None

    run(main())


def test_exception_response_gives_missing_readings(sdm630: Profile) -> None:
    async def main() -> None:
        async with serve(sdm630) as server:
            server.faults.exception_code = 2
            transport = ModbusTcpTransport("127.0.0.1", server.port, timeout_s=1.0)
            device = ProfileDevice(sdm630, transport)
            result = await device.poll()
            with pytest.raises(TransportError) as info:
                await transport.read("input", 0, 2, 1)
            transport.close()
        assert info.value.exception_code == 2
        for reading in result.values():
            assert reading.value is None
            assert reading.missing_reason is not None
            assert reading.missing_reason.startswith("error: ")
            assert "exception 2 (illegal data address)" in reading.missing_reason
        assert transport.stats.errors == 2
        assert transport.stats.last_error is not None and "exception 2" in transport.stats.last_error

    run(main())


def test_no_answer_times_out_then_recovers(sdm630: Profile) -> None:
    async def main() -> None:
        async with serve(sdm630) as server:
            server.faults.no_answer = True
            clock = FakeClock()
            transport = ModbusTcpTransport("127.0.0.1", server.port, timeout_s=0.2, clock=clock)
            device = ProfileDevice(sdm630, transport)
            # a swallowed request must end in the transport's timeout, not hang the poll
            result = await asyncio.wait_for(device.poll(), timeout=5.0)
            reason = result["voltage_l1_v"].missing_reason
            assert result["voltage_l1_v"].value is None
            assert reason is not None and "timeout" in reason
            server.faults.clear()
            # the unit is backing off: not asked again at once, then read again after its backoff
            backing_off = await device.poll()
            assert "not answering" in str(backing_off["voltage_l1_v"].missing_reason)
            assert server.requests[4] == 1
            clock.advance(transport.unit_state(1).backoff_s)
            assert_values(await device.poll())
            transport.close()
        assert transport.stats.errors == 2

    run(main())


def test_server_restart_reconnects(sdm630: Profile) -> None:
    async def main() -> None:
        clock = FakeClock()
        server = serve(sdm630)
        await server.start()
        port = server.port
        transport = ModbusTcpTransport("127.0.0.1", port, timeout_s=0.3, backoff_max_s=2.0, clock=clock)
        device = ProfileDevice(sdm630, transport)
        assert_values(await device.poll())
        await server.stop()

        down = await device.poll()
        assert all(r.value is None and r.missing_reason for r in down.values())
        assert not transport.connected
        errors_while_down = transport.stats.errors
        assert errors_while_down >= 1

        restarted = serve(sdm630, port=port)
        async with restarted:
            assert restarted.port == port
            clock.advance(2.0)  # past any backoff
            assert_values(await device.poll())
            transport.close()
        assert transport.connected is False
        assert transport.stats.errors == errors_while_down
        assert transport.stats.connects == 2

    run(main())


def test_dropped_connection_is_reopened_on_next_poll(sdm630: Profile) -> None:
    async def main() -> None:
        async with serve(sdm630) as server:
            transport = ModbusTcpTransport("127.0.0.1", server.port, timeout_s=0.3)
            device = ProfileDevice(sdm630, transport)
            assert_values(await device.poll())
            server.drop_connections()
            for _ in range(100):  # wait until the client has seen the close
                if not transport.connected:
                    break
                await asyncio.sleep(0.01)
            assert not transport.connected
            assert_values(await device.poll())
            transport.close()
        assert transport.stats.connects == 2
        assert transport.stats.errors == 0

    run(main())


def test_first_connect_fails_then_backoff_then_success(sdm630: Profile) -> None:
    async def main() -> None:
        clock = FakeClock()
        port = free_port()
        transport = ModbusTcpTransport(
            "127.0.0.1", port, timeout_s=0.3, backoff_max_s=1.0, backoff_initial_s=0.25, clock=clock
        )
        device = ProfileDevice(sdm630, transport)
        first = await device.poll()
        reason = first["voltage_l1_v"].missing_reason
        assert reason is not None and "cannot connect" in reason
        assert transport.stats.connect_failures == 1

        async with serve(sdm630, port=port):
            # still inside the backoff window: no new attempt is made
            waiting = await device.poll()
            reason = waiting["voltage_l1_v"].missing_reason
            assert reason is not None and "reconnect in" in reason
            assert transport.stats.connect_failures == 1
            clock.advance(0.25)
            assert_values(await device.poll())
            transport.close()
        assert transport.stats.errors == 2

    run(main())


def test_backoff_doubles_and_is_capped() -> None:
    async def main() -> None:
        clock = FakeClock()
        transport = ModbusTcpTransport(
            "127.0.0.1", free_port(), timeout_s=0.3, backoff_max_s=1.0, backoff_initial_s=0.25, clock=clock
        )
        waits = []
        for _ in range(5):
            with pytest.raises(TransportError, match="cannot connect"):
                await transport.read("input", 0, 2, 1)
            assert transport.next_attempt_at is not None
            wait = transport.next_attempt_at - clock()
            waits.append(wait)
            clock.advance(wait)
        assert waits == [0.25, 0.5, 1.0, 1.0, 1.0]
        assert transport.stats.connect_failures == 5

    run(main())


def test_slow_device_does_not_delay_other_server(sdm630: Profile) -> None:
    async def main() -> None:
        async with serve(sdm630) as slow_server, serve(sdm630) as fast_server:
            slow_server.faults.delay_s = 0.3
            pool = TransportPool(timeout_s=1.0)
            slow = ProfileDevice(sdm630, pool.get("127.0.0.1", slow_server.port))
            fast = ProfileDevice(sdm630, pool.get("127.0.0.1", fast_server.port))
            order: list[str] = []

            async def poll(name: str, device: ProfileDevice) -> None:
                assert_values(await device.poll())
                order.append(name)

            await asyncio.gather(poll("slow", slow), poll("fast", fast))
            pool.close()
        assert order == ["fast", "slow"]

    run(main())


def test_pool_shares_one_transport_per_host_port(sdm630: Profile) -> None:
    async def main() -> None:
        async with serve(sdm630) as server:
            pool = TransportPool(timeout_s=1.0)
            t1 = pool.get("127.0.0.1", server.port)
            assert pool.get("127.0.0.1", server.port) is t1
            unit1 = ProfileDevice(sdm630, t1, unit_id=1)
            unit7 = ProfileDevice(sdm630, pool.get("127.0.0.1", server.port), unit_id=7)
            r1, r7 = await asyncio.gather(unit1.poll(), unit7.poll())
            pool.close()
        assert_values(r1)
        reason = r7["voltage_l1_v"].missing_reason
        assert reason is not None and "exception 11" in reason
        assert t1.stats.connects == 1 and t1.stats.requests == 2

    run(main())


def test_write_registers_is_one_fc16_request(sdm630: Profile) -> None:
    async def main() -> None:
        async with serve(sdm630) as server:
            transport = ModbusTcpTransport("127.0.0.1", server.port, timeout_s=1.0)
            regs = encode(16.5, RegisterSpec(type="float32"))
            await transport.write_registers(1210, regs, unit_id=1)
            assert server.requests[16] == 1
            assert server.get_registers("holding", 1210, 2) == regs
            assert await transport.read("holding", 1210, 2, 1) == regs
            with pytest.raises(TransportError):
                await transport.write_registers(0, [70000], unit_id=1)
            transport.close()
        assert server.requests[16] == 1

    run(main())


def test_write_register_is_one_fc6_request(sdm630: Profile) -> None:
    async def main() -> None:
        async with serve(sdm630) as server:
            transport = ModbusTcpTransport("127.0.0.1", server.port, timeout_s=1.0)
            await transport.write_register(1000, 0xF63C, unit_id=1)
            assert server.requests[6] == 1 and server.requests[16] == 0
            assert server.get_registers("holding", 1000, 1) == [0xF63C]
            with pytest.raises(TransportError):
                await transport.write_register(1000, -1, unit_id=1)
            transport.close()
        assert server.requests[6] == 1

    run(main())
