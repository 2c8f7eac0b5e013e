"""Several unit ids behind one Modbus TCP gateway (one shared link), against a raw socket peer.

Each round asks every unit once, all side by side as the poller's per-device tasks do; the
injected clock moves by a fixed step between rounds, so backoffs are counted in rounds, not in
wall time. Outcomes are counts of good reads and of requests that reached the peer.
"""

from __future__ import annotations

import asyncio

from drivers.modbus.transport import ModbusTcpTransport, TransportError
from tests.drivers.raw_peers import GatewayPeer
from tests.drivers.support import FakeClock, run

UNITS = list(range(1, 9))
TIMEOUT_S = 0.3
"""Wall seconds per request: a loopback answer takes a few ms, a dead unit costs this much."""


async def one_round(transport: ModbusTcpTransport) -> dict[int, bool]:
    """Read 2 holding registers of every unit side by side; True where the right words came back."""

    async def read(unit: int) -> bool:
        try:
            words = await transport.read("holding", 100, 2, unit)
        except TransportError:
            return False
        assert words == [unit * 1000 + 100, unit * 1000 + 101]
        return True

    results = await asyncio.gather(*(read(u) for u in UNITS))
    return dict(zip(UNITS, results, strict=True))


def test_two_dead_units_do_not_hold_up_the_healthy_ones() -> None:
    async def main() -> None:
        clock = FakeClock()
        async with GatewayPeer(answering={1, 2, 3, 4, 5, 6}) as peer:
            transport = ModbusTcpTransport(
                "127.0.0.1", peer.port, timeout_s=TIMEOUT_S, backoff_max_s=10.0, clock=clock
            )
            rounds = 12
            good = dict.fromkeys(UNITS, 0)
            try:
                for _ in range(rounds):
                    for unit, ok in (await one_round(transport)).items():
                        good[unit] += ok
                    clock.advance(1.0)
                diagnostics = transport.diagnostics()
            finally:
                transport.close()
        assert all(good[u] == rounds for u in range(1, 7)), good
        assert good[7] == good[8] == 0
        # a dead unit is backed off (0.5, 1, 2, 4, 8 s): asked a few times, not every round
        assert peer.requests[7] <= 5 and peer.requests[8] <= 5, peer.requests
        assert transport.unit_state(7).backing_off and not transport.unit_state(1).backing_off
        assert transport.stats.connects == 1
        # visible state: per-unit counters and backoff, errors by kind
        units = diagnostics["units"]
        assert units[7]["answers"] == 0 and units[7]["timeouts"] == peer.requests[7]
        assert units[7]["skipped"] == rounds - peer.requests[7]
        assert units[7]["retry_in_s"] is not None and units[1]["retry_in_s"] is None
        assert units[1]["answers"] == rounds
        assert diagnostics["errors_by_kind"] == {
            "timeout": peer.requests[7] + peer.requests[8],
            "backoff": 2 * rounds - peer.requests[7] - peer.requests[8]}

    run(main())


def test_units_come_back_promptly_after_the_whole_bus_was_silent() -> None:
    async def main() -> None:
        clock = FakeClock()
        async with GatewayPeer(answering=set(UNITS)) as peer:
            transport = ModbusTcpTransport(
                "127.0.0.1", peer.port, timeout_s=TIMEOUT_S, backoff_max_s=10.0, clock=clock
            )
            try:
                assert all((await one_round(transport)).values())
                peer.silent = True
                for _ in range(4):  # 3.5 s of silence
                    assert not any((await one_round(transport)).values())
                    clock.advance(0.875)
                peer.silent = False
                first = await one_round(transport)
                clock.advance(0.875)
                second = await one_round(transport)
            finally:
                transport.close()
        assert any(first.values()), first
        assert all(second.values()), second
        # the link was never backed off beyond its first step
        assert transport.stats.connect_failures == 0

    run(main())
