"""SafeWriter: guarded setpoint writes, over real TCP against RegisterServer and with a fake transport."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pytest

from drivers.modbus.codec import decode, encode
from drivers.modbus.profile import Profile, load_profile, parse_profile
from drivers.modbus.safe_write import DAY_S, SafeWriter, WriteOutcome
from drivers.modbus.transport import ModbusTcpTransport, Table, TransportError
from drivers.profiles import PROFILES_DIR
from drivers.sim.register_server import RegisterServer
from tests.drivers.support import FakeClock, free_port, run

FC16 = 16
ALFEN_MAX_CURRENT = 1210



class FakeTransport:
    """Records writes; reads return what was last written unless ``read_override`` is set."""

    def __init__(self) -> None:
        self.writes: list[tuple[int, list[int], int]] = []
        self.reads: list[tuple[Table, int, int, int]] = []
        self.registers: dict[int, int] = {}
        self.fail_with: TransportError | None = None
        self.single_writes: list[tuple[int, int, int]] = []

    async def write_registers(self, address: int, values: Sequence[int], unit_id: int) -> None:
        if self.fail_with is not None:
            raise self.fail_with
        self.writes.append((address, list(values), unit_id))
        for i, v in enumerate(values):
            self.registers[address + i] = v

    async def write_register(self, address: int, value: int, unit_id: int) -> None:
        self.single_writes.append((address, value, unit_id))
        await self.write_registers(address, [value], unit_id)

    async def read(self, table: Table, address: int, count: int, unit_id: int) -> list[int]:
        self.reads.append((table, address, count, unit_id))
        return [self.registers.get(address + i, 0) for i in range(count)]



@pytest.fixture(scope="module")
def alfen() -> Profile:
    return load_profile(PROFILES_DIR / "alfen_ng9xx.toml")


@pytest.fixture(scope="module")
def enapter() -> Profile:
    return load_profile(PROFILES_DIR / "enapter_el.toml")


def pv_profile() -> Profile:
    return parse_profile(
        {
            "name": "pv_test",
            "vendor": "test",
            "model": "test",
            "kind": "pv_inverter",
            "commands": {
                "limit_pct": {"address": 40, "type": "uint16", "scale": 0.1, "limits": [0.0, 100.0]},
                "power_w": {"address": 50, "type": "int32", "limits": [-5000.0, 5000.0]},
            },
        }
    )


def alfen_value(server: RegisterServer, profile: Profile) -> float | str | object:
    regs = server.get_registers("holding", ALFEN_MAX_CURRENT, 2)
    return decode(regs, profile.command_spec("max_current_a"))



# -- clamping ---------------------------------------------------------------------------------------


def test_clamps_to_command_limits_over_tcp(alfen: Profile) -> None:
    async def main() -> None:
        async with RegisterServer(alfen, unit_id=1) as server:
            transport = ModbusTcpTransport("127.0.0.1", server.port, timeout_s=1.0)
            writer = SafeWriter(alfen, transport, unit_id=1, clock=FakeClock())
            try:
                outcome = await writer.write("max_current_a", 40.0)
            finally:
                transport.close()
            assert outcome.written and outcome.error is None
            assert outcome.value == 32.0
            assert outcome.clamped_from == 40.0
            assert outcome.readback == "readback_ok"
            assert alfen_value(server, alfen) == 32.0
            assert server.requests[FC16] == 1  # float32: both registers in one FC16

    run(main())


def test_clamps_to_intersection_with_config_limits() -> None:
    transport = FakeTransport()
    writer = SafeWriter(pv_profile(), transport, unit_id=1, clock=FakeClock())

    async def main() -> None:
        high = await writer.write("power_w", 4000.0, config_min=-3000.0, config_max=2500.0)
        assert (high.value, high.clamped_from) == (2500.0, 4000.0)
        low = await writer.write("power_w", -4000.0, config_min=-3000.0, config_max=2500.0)
        assert (low.value, low.clamped_from) == (-3000.0, -4000.0)
        # Config limits wider than the command's: the command's win.
        wide = await writer.write("power_w", -9000.0, config_min=-8000.0)
        assert (wide.value, wide.clamped_from) == (-5000.0, -9000.0)
        inside = await writer.write("power_w", 100.0, config_min=-3000.0, config_max=2500.0)
        assert (inside.value, inside.clamped_from) == (100.0, None)

    run(main())
    spec = pv_profile().command_spec("power_w")
    assert [decode(regs, spec) for _, regs, _ in transport.writes] == [2500, -3000, -5000, 100]


def test_config_limits_outside_command_limits_are_an_error() -> None:
    transport = FakeTransport()
    writer = SafeWriter(pv_profile(), transport, unit_id=1, clock=FakeClock())

    async def main() -> None:
        outcome = await writer.write("power_w", 100.0, config_min=6000.0)
        assert not outcome.written and outcome.error is not None

    run(main())
    assert transport.writes == []


def test_never_zero_raises_zero_to_smallest_step() -> None:
    transport = FakeTransport()
    writer = SafeWriter(pv_profile(), transport, unit_id=1, clock=FakeClock(), never_zero={"limit_pct"})

    async def main() -> None:
        zero = await writer.write("limit_pct", 0.0)
        assert zero.written and zero.value == pytest.approx(0.1) and zero.clamped_from == 0.0
        # 0.02 rounds to raw 0, which the device would also read as 0 %.
        tiny = await writer.write("limit_pct", 0.02)
        assert tiny.value == pytest.approx(0.1) and tiny.clamped_from == 0.02
        negative = await writer.write("limit_pct", -5.0)
        assert negative.value == pytest.approx(0.1) and negative.clamped_from == -5.0

    run(main())
    assert transport.writes[0] == (40, [1], 1)


def test_zero_is_written_when_not_in_never_zero() -> None:
    transport = FakeTransport()
    writer = SafeWriter(pv_profile(), transport, unit_id=1, clock=FakeClock())

    async def main() -> None:
        outcome = await writer.write("limit_pct", 0.0)
        assert outcome.written and outcome.value == 0.0 and outcome.clamped_from is None

    run(main())
    assert transport.writes == [(40, [0], 1)]


# -- deadband and rate limit ------------------------------------------------------------------------


def test_deadband_skips_small_changes() -> None:
    transport = FakeTransport()
    writer = SafeWriter(pv_profile(), transport, unit_id=1, clock=FakeClock(), deadband={"power_w": 50.0})

    async def main() -> None:
        assert (await writer.write("power_w", 1000.0)).written
        small = await writer.write("power_w", 1040.0)
        assert small.skipped_deadband and not small.written
        assert (await writer.write("power_w", 1051.0)).written

    run(main())
    assert len(transport.writes) == 2


def test_unchanged_value_is_skipped_with_default_deadband() -> None:
    transport = FakeTransport()
    writer = SafeWriter(pv_profile(), transport, unit_id=1, clock=FakeClock())

    async def main() -> None:
        assert (await writer.write("power_w", 1000.0)).written
        assert (await writer.write("power_w", 1000.0)).skipped_deadband
        assert (await writer.write("power_w", 1001.0)).written

    run(main())
    assert len(transport.writes) == 2


def test_rate_limit_skips_until_interval_elapsed() -> None:
    clock = FakeClock()
    transport = FakeTransport()
    writer = SafeWriter(pv_profile(), transport, unit_id=1, clock=clock, min_interval_s={"power_w": 5.0})

    async def main() -> None:
        assert (await writer.write("power_w", 1000.0)).written
        clock.advance(4.9)
        early = await writer.write("power_w", 2000.0)
        assert early.skipped_rate_limit and not early.written
        clock.advance(0.1)
        assert (await writer.write("power_w", 2000.0)).written

    run(main())
    assert len(transport.writes) == 2


# -- keep-alive -------------------------------------------------------------------------------------


def test_keepalive_due_after_keepalive_s_and_rewritten_over_tcp(alfen: Profile) -> None:
    clock = FakeClock()

    async def main() -> None:
        async with RegisterServer(alfen, unit_id=1) as server:
            transport = ModbusTcpTransport("127.0.0.1", server.port, timeout_s=1.0)
            writer = SafeWriter(alfen, transport, unit_id=1, clock=clock)
            try:
                assert writer.due_keepalives() == []
                assert (await writer.write("max_current_a", 10.0)).written
                assert server.requests[FC16] == 1
                clock.advance(24.9)
                assert writer.due_keepalives() == []
                assert await writer.keepalive() == []
                # An unchanged value is not re-sent before the keep-alive is due ...
                assert (await writer.write("max_current_a", 10.0)).skipped_deadband
                clock.advance(0.1)
                assert writer.due_keepalives() == ["max_current_a"]
                outcomes = await writer.keepalive()
            finally:
                transport.close()
            assert [(o.command, o.written, o.keepalive, o.value) for o in outcomes] == [
                ("max_current_a", True, True, 10.0)
            ]
            assert server.requests[FC16] == 2
            assert alfen_value(server, alfen) == 10.0
            assert writer.due_keepalives() == []

    run(main())


def test_keepalive_period_can_be_shortened_but_not_lengthened(alfen: Profile) -> None:
    transport = FakeTransport()
    shorter = SafeWriter(alfen, transport, unit_id=1, keepalive_s={"max_current_a": 10.0})
    longer = SafeWriter(alfen, transport, unit_id=1, keepalive_s={"max_current_a": 100.0})
    assert shorter.keepalive_period("max_current_a") == 10.0
    assert longer.keepalive_period("max_current_a") == 25.0


def test_keepalive_overrides_rate_limit() -> None:
    clock = FakeClock()
    transport = FakeTransport()
    writer = SafeWriter(
        pv_profile(),
        transport,
        unit_id=1,
        clock=clock,
        min_interval_s={"power_w": 60.0},
        keepalive_s={"power_w": 10.0},
    )

    async def main() -> None:
        assert (await writer.write("power_w", 1000.0)).written
        clock.advance(10.0)
        outcomes = await writer.keepalive()
        assert [o.written for o in outcomes] == [True]

    run(main())
    assert len(transport.writes) == 2


# -- read-back --------------------------------------------------------------------------------------


def test_readback_mismatch_raises_alarm_without_second_write_over_tcp(alfen: Profile) -> None:
    clock = FakeClock()
    delays: list[float] = []

    async def main() -> None:
        async with RegisterServer(alfen, unit_id=1) as server:
            spec = alfen.command_spec("max_current_a")

            async def device_ignores_write(delay: float) -> None:
                delays.append(delay)
                server.set_registers("holding", ALFEN_MAX_CURRENT, encode(6.0, spec))

            transport = ModbusTcpTransport("127.0.0.1", server.port, timeout_s=1.0)
            writer = SafeWriter(alfen, transport, unit_id=1, clock=clock, sleep=device_ignores_write)
            try:
                outcome = await writer.write("max_current_a", 16.0)
            finally:
                transport.close()
            assert outcome.written
            assert outcome.readback == "readback_mismatch"
            assert outcome.readback_value == 6.0
            assert server.requests[FC16] == 1
            assert server.requests[3] == 1
            assert [(a.command, a.wanted, a.got, a.time) for a in writer.alarms] == [
                ("max_current_a", 16.0, 6.0, clock.t)
            ]

    run(main())
    assert delays == [0.0]  # the profile's processing_delay_s


def test_readback_waits_processing_delay_and_mismatch_is_rewritten_next_time() -> None:
    profile = parse_profile(
        {
            "name": "rb",
            "vendor": "t",
            "model": "t",
            "kind": "battery",
            "commands": {
                "setpoint_w": {
                    "address": 10,
                    "type": "int16",
                    "limits": [-3000, 3000],
                    "readback": True,
                    "processing_delay_s": 2.5,
                }
            },
        }
    )
    transport = FakeTransport()
    delays: list[float] = []

    async def ignore(delay: float) -> None:
        delays.append(delay)
        transport.registers[10] = 0

    writer = SafeWriter(profile, transport, unit_id=3, clock=FakeClock(), sleep=ignore)

    async def main() -> None:
        first = await writer.write("setpoint_w", 1500.0)
        assert first.readback == "readback_mismatch" and first.readback_value == 0.0
        assert len(transport.writes) == 1
        # The device did not take the value, so the same value is not skipped by the deadband.
        second = await writer.write("setpoint_w", 1500.0)
        assert second.written

    run(main())
    assert delays == [2.5, 2.5]
    assert len(writer.alarms) == 2
    assert transport.reads == [("holding", 10, 1, 3)] * 2


def test_readback_ok_with_fake_transport() -> None:
    transport = FakeTransport()
    profile = parse_profile(
        {
            "name": "rb",
            "vendor": "t",
            "model": "t",
            "kind": "battery",
            "commands": {"sp": {"address": 10, "type": "float32", "readback": True}},
        }
    )
    writer = SafeWriter(profile, transport, unit_id=1, clock=FakeClock())

    async def main() -> None:
        outcome = await writer.write("sp", 0.1)
        assert outcome.readback == "readback_ok"
        assert outcome.readback_value == pytest.approx(0.1, rel=1e-6)

    run(main())
    assert writer.alarms == []


# -- flash budget -----------------------------------------------------------------------------------


def test_flash_budget_refuses_then_allows_after_24h_over_tcp(enapter: Profile) -> None:
    clock = FakeClock()
    budget = enapter.commands["heartbeat_timeout"].write_budget_per_day
    assert budget == 4

    async def main() -> None:
        async with RegisterServer(enapter, unit_id=1) as server:
            transport = ModbusTcpTransport("127.0.0.1", server.port, timeout_s=1.0)
            writer = SafeWriter(enapter, transport, unit_id=1, clock=clock)
            try:
                outcomes: list[WriteOutcome] = []
                for i in range(budget):
                    outcomes.append(await writer.write("heartbeat_timeout", 10 + i))
                    clock.advance(3600.0)
                assert all(o.written for o in outcomes)
                refused = await writer.write("heartbeat_timeout", 99)
                refused_again = await writer.write("heartbeat_timeout", 98)
                assert refused.refused_budget and not refused.written
                assert refused_again.refused_budget
                assert server.requests[FC16] == budget
                assert len(writer.alarms) == 1 and writer.alarms[0].command == "heartbeat_timeout"
                # The first write leaves the rolling 24 h window: one more is allowed.
                clock.t = 1000.0 + DAY_S - 1.0
                assert (await writer.write("heartbeat_timeout", 97)).refused_budget
                clock.t = 1000.0 + DAY_S
                allowed = await writer.write("heartbeat_timeout", 97)
                assert allowed.written
                assert (await writer.write("heartbeat_timeout", 96)).refused_budget
            finally:
                transport.close()
            assert server.requests[FC16] == budget + 1
            assert server.get_registers("holding", 4600, 2) == [0, 97]
            assert len(writer.alarms) == 2  # one alarm per refusal period

    run(main())


def test_flash_backed_command_cannot_be_kept_alive(enapter: Profile) -> None:
    with pytest.raises(ValueError, match="flash-backed"):
        SafeWriter(enapter, FakeTransport(), unit_id=1, keepalive_s={"heartbeat_timeout": 10.0})


# -- errors -----------------------------------------------------------------------------------------


def test_exception_response_is_an_error_outcome_over_tcp(alfen: Profile) -> None:
    async def main() -> None:
        async with RegisterServer(alfen, unit_id=1) as server:
            server.faults.exception_code = 4
            transport = ModbusTcpTransport("127.0.0.1", server.port, timeout_s=1.0)
            writer = SafeWriter(alfen, transport, unit_id=1, clock=FakeClock())
            try:
                outcome = await writer.write("max_current_a", 16.0)
                assert not outcome.written
                assert outcome.error is not None and "exception 4" in outcome.error
                assert writer.alarms == []
                # Not in sync, so the same value goes out again once the device answers.
                server.faults.clear()
                again = await writer.write("max_current_a", 16.0)
                assert again.written and again.readback == "readback_ok"
            finally:
                transport.close()

    run(main())


def test_connection_refused_is_an_error_outcome() -> None:
    profile = load_profile(PROFILES_DIR / "alfen_ng9xx.toml")

    async def main() -> None:
        transport = ModbusTcpTransport("127.0.0.1", free_port(), timeout_s=0.5)
        writer = SafeWriter(profile, transport, unit_id=1, clock=FakeClock())
        try:
            outcome = await writer.write("max_current_a", 16.0)
        finally:
            transport.close()
        assert not outcome.written and outcome.error is not None and "cannot connect" in outcome.error

    run(main())


def test_bad_values_and_unknown_commands_do_not_raise() -> None:
    transport = FakeTransport()
    writer = SafeWriter(pv_profile(), transport, unit_id=1, clock=FakeClock())

    async def main() -> None:
        assert (await writer.write("nope", 1.0)).error is not None
        assert (await writer.write("power_w", math.nan)).error is not None
        transport.fail_with = TransportError("write holding 50+2 unit 1: timeout")
        failed = await writer.write("power_w", 10.0)
        assert failed.error == "write holding 50+2 unit 1: timeout" and not failed.written

    run(main())
    assert transport.writes == []


def test_write_single_command_goes_out_as_fc6_over_tcp() -> None:
    profile = parse_profile(
        {
            "name": "fc6_test",
            "vendor": "test",
            "model": "test",
            "kind": "battery",
            "commands": {
                "setpoint_w": {"address": 2700, "type": "int16", "encoding": "write_single",
                               "limits": [-3000.0, 3000.0]},
            },
        }
    )

    async def main() -> None:
        async with RegisterServer(profile, unit_id=1) as server:
            transport = ModbusTcpTransport("127.0.0.1", server.port, timeout_s=1.0)
            writer = SafeWriter(profile, transport, unit_id=1, clock=FakeClock())
            try:
                outcome = await writer.write("setpoint_w", -2500.0)
            finally:
                transport.close()
            assert outcome.written and outcome.error is None
            assert server.requests[6] == 1 and server.requests[FC16] == 0
            assert server.get_registers("holding", 2700, 1) == [0xF63C]  # -2500 as int16

    run(main())


class RecordingTransport:
    """A real TCP transport that also records the order of requests."""

    def __init__(self, inner: ModbusTcpTransport) -> None:
        self.inner = inner
        self.log: list[tuple[str, int, list[int]]] = []

    async def write_registers(self, address: int, values: Sequence[int], unit_id: int) -> None:
        self.log.append(("fc16", address, list(values)))
        await self.inner.write_registers(address, values, unit_id)

    async def write_register(self, address: int, value: int, unit_id: int) -> None:
        self.log.append(("fc6", address, [value]))
        await self.inner.write_register(address, value, unit_id)

    async def read(self, table: Table, address: int, count: int, unit_id: int) -> list[int]:
        self.log.append((f"read {table}", address, [count]))
        return await self.inner.read(table, address, count, unit_id)


def test_transactional_command_runs_begin_write_commit_over_tcp(enapter: Profile) -> None:
    async def main() -> None:
        async with RegisterServer(enapter, unit_id=1) as server:
            server.set_registers("input", 4002, [0])
            transport = RecordingTransport(ModbusTcpTransport("127.0.0.1", server.port, timeout_s=1.0))
            writer = SafeWriter(enapter, transport, unit_id=1, clock=FakeClock())
            try:
                outcome = await writer.write("heartbeat_timeout", 70_000)
            finally:
                transport.inner.close()
            assert outcome.written and outcome.error is None and outcome.readback == "readback_ok"
            # 70000 = 0x0001_1170, high word first.
            assert transport.log[:4] == [
                ("fc6", 4000, [1]),
                ("fc16", 4600, [0x0001, 0x1170]),
                ("fc6", 4001, [1]),
                ("read input", 4002, [1]),
            ]
            assert server.get_registers("holding", 4600, 2) == [0x0001, 0x1170]
            assert server.get_registers("holding", 4000, 2) == [1, 1]

    run(main())


def test_transaction_result_outside_success_values_raises_alarm() -> None:
    profile = parse_profile(
        {
            "name": "tx_test",
            "vendor": "t",
            "model": "t",
            "kind": "electrolyser",
            "transaction": {"begin_address": 10, "commit_address": 11, "result_address": 12,
                            "success_values": [0]},
            "commands": {"timeout_s": {"address": 20, "type": "uint16", "transactional": True}},
        }
    )

    async def main() -> None:
        async with RegisterServer(profile, unit_id=1) as server:
            server.set_registers("input", 12, [3])  # the device refused the configuration
            transport = ModbusTcpTransport("127.0.0.1", server.port, timeout_s=1.0)
            writer = SafeWriter(profile, transport, unit_id=1, clock=FakeClock())
            try:
                outcome = await writer.write("timeout_s", 30)
            finally:
                transport.close()
            assert not outcome.written
            assert outcome.error == "configuration transaction result 3 (success: [0])"
            assert len(writer.alarms) == 1 and writer.alarms[0].command == "timeout_s"

    run(main())
