"""The poller over real TCP: concurrency per device, staleness, exception answers, statistics."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from drivers.capabilities import MeterReading
from drivers.poller import STALE, Poller, PollTarget
from drivers.profiles import get_profile
from drivers.sim.register_server import RegisterServer
from tests.drivers.support import FakeClock, free_port, run

METER = get_profile("eastron_sdm630")
POWER = "total_active_power_net_w"


async def meter_server() -> RegisterServer:
    server = RegisterServer(METER, "127.0.0.1", 0, METER.unit_id)
    await server.start()
    server.set_point(POWER, 1500.0)
    return server


def target(name: str, server: RegisterServer, interval_s: float = 1.0,
           ttl_s: float | None = None) -> PollTarget:
    return PollTarget(name, METER, "127.0.0.1", server.port, server.unit_id, interval_s, ttl_s)


async def wait_until(condition: Callable[[], bool]) -> None:
    """Let the event loop run until ``condition`` holds (the test runner bounds the wait)."""
    while not condition():
        await asyncio.sleep(0.005)


def test_slow_and_silent_devices_do_not_hold_up_the_others() -> None:
    async def body() -> None:
        fast, slow, silent = await meter_server(), await meter_server(), await meter_server()
        slow.faults.delay_s = 0.5
        silent.faults.no_answer = True
        targets = [target("fast", fast, 0.01), target("slow", slow, 0.01), target("silent", silent, 0.01)]
        async with Poller(targets, timeout_s=5.0) as poller:
            await wait_until(lambda: poller.stats("fast").polls >= 20)
            fast_stats = poller.stats("fast")
            assert fast_stats.good_polls == fast_stats.polls
            assert fast.requests[4] >= 20  # SDM630 points are input registers (FC4)
            assert poller.stats("silent").polls == 0  # still waiting for its first answer
            assert silent.requests[4] >= 1
            assert poller.stats("slow").polls < fast_stats.polls
            p50, p99 = fast_stats.latency_p50_s, fast_stats.latency_p99_s
            assert p50 is not None and p99 is not None and p50 <= p99
            assert poller.latest("fast")[POWER].value == 1500.0
        for s in (fast, slow, silent):
            await s.stop()

    run(body())


def test_devices_behind_one_address_share_a_transport() -> None:
    async def body() -> None:
        server = await meter_server()
        poller = Poller([target("a", server), target("b", server)])
        assert poller.pool.get("127.0.0.1", server.port) is poller.pool.get("127.0.0.1", server.port)
        assert (await poller.poll_once("a"))[POWER].value == 1500.0
        assert (await poller.poll_once("b"))[POWER].value == 1500.0
        assert poller.pool.get("127.0.0.1", server.port).stats.connects == 1
        await poller.stop()
        await server.stop()

    run(body())


def test_lost_connection_goes_stale_after_the_ttl_and_recovers() -> None:
    async def body() -> None:
        clock = FakeClock()
        server = await meter_server()
        port = server.port
        poller = Poller([target("m", server, interval_s=1.0, ttl_s=3.0)], clock=clock, timeout_s=0.5)
        assert (await poller.poll_once("m"))[POWER].value == 1500.0
        good_at = poller.stats("m").last_good_read_at
        await server.stop()  # the link drops and nothing listens any more
        held = await poller.poll_once("m")
        assert held[POWER].value == 1500.0  # within the TTL the last good value holds
        assert poller.stats("m").errors == 1
        clock.advance(3.5)
        latest = poller.latest("m")
        assert latest[POWER].value is None and latest[POWER].missing_reason == STALE
        reading = poller.reading("m")
        assert isinstance(reading, MeterReading) and reading.power_net_kw.reason is not None
        assert STALE in reading.power_net_kw.reason
        assert poller.stats("m").last_good_read_at == good_at
        server = RegisterServer(METER, "127.0.0.1", port, METER.unit_id)
        await server.start()
        server.set_point(POWER, -250.0)
        clock.advance(30.0)  # past the transport's reconnect backoff
        back = await poller.poll_once("m")
        assert back[POWER].value == -250.0
        reading = poller.reading("m")
        assert isinstance(reading, MeterReading) and reading.power_net_kw.value == -0.25
        assert poller.stats("m").consecutive_errors == 0
        await poller.stop()
        await server.stop()

    run(body())


def test_exception_answer_is_missing_at_once_with_its_reason() -> None:
    async def body() -> None:
        clock = FakeClock()
        server = await meter_server()
        poller = Poller([target("m", server)], clock=clock)
        assert (await poller.poll_once("m"))[POWER].value == 1500.0
        server.faults.exception_code = 2
        result = await poller.poll_once("m")
        assert result[POWER].value is None
        assert "modbus exception 2 (illegal data address)" in (result[POWER].missing_reason or "")
        assert poller.stats("m").errors == 1
        server.faults.clear()
        assert (await poller.poll_once("m"))[POWER].value == 1500.0
        await poller.stop()
        await server.stop()

    run(body())


def test_unreachable_device_never_stops_the_loop() -> None:
    async def body() -> None:
        server = await meter_server()
        nobody = PollTarget("nobody", METER, "127.0.0.1", free_port(), 1, interval_s=0.01)
        async with Poller([nobody, target("m", server, 0.01)], timeout_s=0.5) as poller:
            await wait_until(lambda: poller.stats("nobody").polls >= 3 and poller.stats("m").polls >= 3)
            latest = poller.latest("nobody")[POWER]
            assert latest.value is None and "error:" in (latest.missing_reason or "")
            assert poller.stats("nobody").good_polls == 0
            assert poller.stats("nobody").last_error is not None
        await server.stop()

    run(body())
