"""Every bundled profile, served by RegisterServer and driven over real TCP on 127.0.0.1.

Points: a value inside each point's valid_range is put in the server's register image, then
polled through ProfileDevice. Commands: a value inside the limits is encoded and written in one
request (FC6 for ``encoding = "write_single"``, FC16 otherwise), then read back from the server's
image; a value outside the limits is refused before anything is sent.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from drivers.modbus.codec import decode, is_integer_type, raw_range
from drivers.modbus.device import ProfileDevice
from drivers.modbus.profile import Command, Point, Profile, encode_command, load_profile
from drivers.modbus.transport import ModbusTcpTransport
from drivers.profiles import PROFILES_DIR
from drivers.sim.register_server import RegisterServer
from tests.drivers.support import run

PROFILE_FILES = sorted(PROFILES_DIR.glob("*.toml"))

NOT_GENERIC: dict[tuple[str, str], str] = {
    ("enapter_el", "heartbeat_timeout"): (
        "transactional: written inside the 4000=1 / 4001=1 configuration transaction, covered by "
        "test_safe_write.py::test_transactional_command_runs_begin_write_commit_over_tcp"
    ),
}
"""Commands the generic path (encode_command + one write request) cannot write, with the reason."""


def skip_reason(profile: Profile, name: str) -> str | None:
    return NOT_GENERIC.get((profile.name, name))


def command_params() -> list[Any]:
    params = []
    for path in PROFILE_FILES:
        profile = load_profile(path)
        for name in profile.commands:
            reason = skip_reason(profile, name)
            marks = [pytest.mark.skip(reason=reason)] if reason else []
            params.append(pytest.param(path, name, id=f"{path.stem}-{name}", marks=marks))
    return params


def inside(rng: tuple[float, float] | None, dtype: str, scale: float | None, fallback: float) -> float:
    """A value inside ``rng`` (or ``fallback``), on the register grid for integer types."""
    lo, hi = rng if rng is not None else (fallback, fallback)
    # A point off the ends: 0.3 of the way up, so it is neither a bound nor a round midpoint.
    value = lo + 0.3 * (hi - lo)
    if not is_integer_type(dtype):  # type: ignore[arg-type]
        return value
    step = 1.0 if scale is None else scale
    raw_lo, raw_hi = raw_range(dtype)  # type: ignore[arg-type]
    raw = min(max(round(value / step), raw_lo), raw_hi)
    snapped = raw * step
    if not lo <= snapped <= hi:
        raw = math.ceil(lo / step)
        snapped = raw * step
    return int(snapped) if scale is None else snapped


def point_value(profile: Profile, name: str) -> float | str:
    p: Point = profile.points[name]
    if p.type == "string":
        return "C2"[: 2 * (p.count or 1)]
    if name in {q.scale_factor_point for q in profile.points.values()}:
        return 0  # a SunSpec scale factor of 10**0 keeps the dependent points in engineering units
    value = inside(p.valid_range, p.type, p.scale, fallback=7)
    spec = profile.point_spec(name)
    if spec.sentinel is not None and is_integer_type(p.type):
        raw = round(value / (p.scale or 1.0))
        assert raw != spec.sentinel, f"{name}: chosen value hits the sentinel"
    return value


def command_value(command: Command) -> float:
    return inside(command.limits, command.type, command.scale, fallback=7)


def assert_same(name: str, got: object, want: float | str) -> None:
    if isinstance(want, str):
        assert got == want, (name, got, want)
    else:
        assert isinstance(got, int | float), (name, got)
        assert math.isclose(got, want, rel_tol=1e-6, abs_tol=1e-9), (name, got, want)


@pytest.mark.parametrize("path", PROFILE_FILES, ids=lambda p: p.stem)
def test_every_point_polls_over_tcp(path: Path) -> None:
    profile = load_profile(path)
    assert profile.points, f"{path.name} has no points"
    values = {name: point_value(profile, name) for name in profile.points}

    async def main() -> None:
        async with RegisterServer(profile, unit_id=profile.unit_id) as server:
            for name, value in values.items():
                server.set_point(name, value)
            transport = ModbusTcpTransport("127.0.0.1", server.port, timeout_s=1.0)
            device = ProfileDevice(profile, transport)
            try:
                result = await device.poll()
            finally:
                transport.close()
        assert set(result) == set(profile.points)
        for name, want in values.items():
            reading = result[name]
            assert reading.missing_reason is None, (name, reading)
            assert reading.unit == profile.points[name].unit
            assert_same(name, reading.value, want)
        reads = server.requests[3] + server.requests[4]
        assert reads == len(device.blocks)
        assert transport.stats.errors == 0

    run(main())


@pytest.mark.parametrize(("path", "name"), command_params())
def test_command_writes_in_one_request_and_refuses_out_of_limits(path: Path, name: str) -> None:
    profile = load_profile(path)
    command = profile.commands[name]
    single = command.encoding == "write_single"
    function_code = 6 if single else 16
    value = command_value(command)
    if command.limits is not None:
        lo, hi = command.limits
        assert lo <= value <= hi
        above = hi + max(1.0, hi - lo)
        below = lo - max(1.0, hi - lo)
    else:
        above = below = math.nan  # not a finite number: refused as well

    async def send(transport: ModbusTcpTransport, v: float) -> None:
        registers = encode_command(profile, name, v)
        if single:
            assert len(registers) == 1
            await transport.write_register(command.address, registers[0], profile.unit_id)
        else:
            await transport.write_registers(command.address, registers, profile.unit_id)

    async def main() -> None:
        async with RegisterServer(profile, unit_id=profile.unit_id) as server:
            transport = ModbusTcpTransport("127.0.0.1", server.port, timeout_s=1.0)
            try:
                await send(transport, value)
                assert server.requests[function_code] == 1
                assert sum(server.requests.values()) == 1
                registers = server.get_registers("holding", command.address, command.width)
                assert registers == encode_command(profile, name, value)
                assert_same(name, decode(registers, profile.command_spec(name)), value)

                for bad in (above, below):
                    with pytest.raises(ValueError, match=r"outside limits|not a finite number"):
                        await send(transport, bad)
                assert sum(server.requests.values()) == 1
                assert server.get_registers("holding", command.address, command.width) == registers
            finally:
                transport.close()
        assert transport.stats.errors == 0

    run(main())


def test_every_command_is_exercised_or_skipped_with_a_reason() -> None:
    names = {(load_profile(p).name, n) for p in PROFILE_FILES for n in load_profile(p).commands}
    assert set(NOT_GENERIC) <= names, "a NOT_GENERIC entry names a command that no longer exists"
    assert len(command_params()) == len(names)
