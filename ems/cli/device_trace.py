"""`ems device trace SITE DEVICE`: poll one configured device for a while and print every request
and reply with its timing."""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import TYPE_CHECKING, Annotated, TextIO

import typer

from ems.cli.common import fail, input_errors, load
from ems.cli.device_cmd import app

if TYPE_CHECKING:
    from drivers.modbus.transport import TraceEvent
    from ems.config.site_devices import SiteDevice

SHOWN_REGISTERS = 8
"""Registers of a reply printed in full; the rest are counted."""


def trace_line(event: TraceEvent, t0_s: float) -> str:
    """One request and its outcome: offset from the start and duration in ms, the request, then
    the reply's registers (hex) or the error."""
    head = f"+{event.started_s - t0_s:8.3f} s  {1000 * event.duration_s:8.1f} ms  {event.what}"
    if event.error is not None:
        return f"{head}  -> {event.kind}: {event.error}"
    if event.registers is None:
        return f"{head}  -> ok"
    words = " ".join(f"{r:04X}" for r in event.registers[:SHOWN_REGISTERS])
    more = len(event.registers) - SHOWN_REGISTERS
    tail = f" … (+{more})" if more > 0 else ""
    return f"{head}  -> {len(event.registers)} registers: {words}{tail}"


async def _trace(entry: SiteDevice, seconds: float, interval_s: float, timeout_s: float, out: TextIO) -> int:
    from drivers.poller import Poller, PollTarget
    from drivers.sim.device_profiles import profile_for_device
    from ems.cli.device_read import _discovered

    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    profile, _ = profile_for_device(entry.device.profile)
    profile = await _discovered(profile, entry, timeout_s)
    target = PollTarget(entry.name, profile, entry.device.host, entry.device.port, entry.device.unit_id,
                        interval_s=interval_s)
    poller = Poller([target], timeout_s=timeout_s)
    transport = poller.pool.get(entry.device.host, entry.device.port)
    t0 = transport.clock()
    count = 0

    def show(event: TraceEvent) -> None:
        nonlocal count
        count += 1
        out.write(trace_line(event, t0) + "\n")
        out.flush()

    transport.trace = show
    poller.start()
    try:
        await asyncio.sleep(seconds)
    finally:
        await poller.stop()
    return count


@app.command("trace")
def trace(
    site: Annotated[str, typer.Argument(help="Site name (site_configs/NAME.toml) or path to a TOML file.")],
    device: Annotated[str, typer.Argument(
        help="Asset name in the config, e.g. ev1, or grid for the grid meter.")],
    seconds: Annotated[float, typer.Option(min=0.0, help="How long to poll, seconds.")] = 10.0,
    interval: Annotated[float, typer.Option(min=0.05, help="Seconds between polls.")] = 1.0,
    timeout: Annotated[float, typer.Option(min=0.05, help="Seconds to wait for each answer.")] = 2.0,
    sets: Annotated[list[str] | None, typer.Option(
        "--set", help="Override a config value, e.g. grid.device.port=1502.")] = None,
) -> None:
    """Poll DEVICE of SITE for --seconds and print each request and its reply (or error) with timing."""
    from drivers.sim.device_profiles import ProfileUnavailable
    from ems.cli.sim_cmd import find_device

    with input_errors():
        loaded = load(site, sets)
        entry = find_device(loaded.config, device)
        where = f"{entry.device.host}:{entry.device.port} unit {entry.device.unit_id}"
        sys.stdout.write(f"{device}: {entry.device.profile} at {where}; "
                         f"every {interval:g} s for {seconds:g} s\n")
        try:
            count = asyncio.run(_trace(entry, seconds, interval, timeout, sys.stdout))
        except ProfileUnavailable as exc:
            fail(f"device {device!r}: {exc}")
    sys.stdout.write(f"{count} requests\n")
