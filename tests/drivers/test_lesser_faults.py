"""Lesser device faults against independent peers: a connection the peer closes is reported as
closed (not as a timeout), a command's scale factor is read again before each write, and a SunSpec
value is read in the same request as its scale factor."""

from __future__ import annotations

import pytest

from drivers.modbus.profile import plan_reads
from drivers.modbus.safe_write import SafeWriter
from drivers.modbus.transport import ModbusTcpTransport, TransportError
from drivers.sunspec import discover, get_spec, resolve, standard_profile
from tests.drivers.raw_peers import GatewayPeer
from tests.drivers.support import FakeClock, pymodbustcp_server, run
from tests.drivers.test_plausibility import sunspec_bank


def test_connection_closed_by_the_peer_is_reported_as_closed_not_timeout() -> None:
    async def main() -> None:
        async with GatewayPeer(answering={1}) as peer:
            transport = ModbusTcpTransport("127.0.0.1", peer.port, timeout_s=0.5)
            try:
                assert await transport.read("holding", 100, 2, 1) == [1100, 1101]
                peer.close_on_request = True
                with pytest.raises(TransportError) as info:
                    await transport.read("holding", 100, 2, 1)
            finally:
                transport.close()
        assert info.value.kind == "closed"
        assert "connection closed by 127.0.0.1" in info.value.reason
        assert "timeout" not in info.value.reason
        assert not transport.unit_state(1).backing_off  # the unit did not fail, the link did

    run(main())


async def _no_wait(_: float) -> None:
    return None


def test_command_scale_factor_is_read_again_before_each_write() -> None:
    name = "sunspec_inverter"

    async def main() -> None:
        bank = sunspec_bank(name, {"power_limit_pct": 1000})  # every scale factor it touches: -1
        with pymodbustcp_server(bank) as server:
            transport = ModbusTcpTransport("127.0.0.1", server.port, timeout_s=1.0)
            try:
                profile = resolve(get_spec(name), await discover(transport, 1))
                command = profile.commands["power_limit_pct"]
                assert command.scale == pytest.approx(0.1) and command.scale_factor_address is not None
                bank.set_holding_registers(command.scale_factor_address, [0xFFFE])  # now -2
                writer = SafeWriter(profile, transport, 1, clock=FakeClock(), sleep=_no_wait)
                outcome = await writer.write("power_limit_pct", 50.0)
                raw = bank.get_holding_registers(command.address, 1)
            finally:
                transport.close()
        assert outcome.written and outcome.error is None, outcome
        assert raw == [5000]  # 50 % at 10^-2, not 500 (5 %)
        assert outcome.readback == "readback_ok" and outcome.readback_value == pytest.approx(50.0)

    run(main())


def test_unreadable_command_scale_factor_refuses_the_write() -> None:
    name = "sunspec_inverter"

    async def main() -> None:
        bank = sunspec_bank(name, {"power_limit_pct": 1000})
        with pymodbustcp_server(bank) as server:
            transport = ModbusTcpTransport("127.0.0.1", server.port, timeout_s=1.0)
            try:
                profile = resolve(get_spec(name), await discover(transport, 1))
                command = profile.commands["power_limit_pct"]
                assert command.scale_factor_address is not None
                bank.set_holding_registers(command.scale_factor_address, [0x8000])  # "not implemented"
                writer = SafeWriter(profile, transport, 1, clock=FakeClock(), sleep=_no_wait)
                outcome = await writer.write("power_limit_pct", 50.0)
                raw = bank.get_holding_registers(command.address, 1)
            finally:
                transport.close()
        assert not outcome.written
        assert "scale factor at" in str(outcome.error) and "not implemented" in str(outcome.error)
        assert raw == [1000]  # untouched

    run(main())


@pytest.mark.parametrize("name", ["sunspec_battery", "sunspec_inverter", "sunspec_meter"])
def test_each_sunspec_value_is_read_with_its_scale_factor(name: str) -> None:
    profile = standard_profile(name)
    block_of = {point: i for i, block in enumerate(plan_reads(profile)) for point in block.points}
    for point, p in profile.points.items():
        if p.scale_factor_point is not None:
            assert block_of[point] == block_of[p.scale_factor_point], (point, p.scale_factor_point)
