"""`ems device read SITE DEVICE`: poll one configured device once and print what it said."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ems.cli.common import fail, input_errors, load
from ems.cli.device_cmd import app

if TYPE_CHECKING:
    from drivers.capabilities import CapabilityReading
    from drivers.modbus.device import PollResult
    from ems.config.site_devices import SiteDevice


async def _poll(entry: SiteDevice,
                timeout_s: float) -> tuple[Any, PollResult, CapabilityReading | None, bool]:
    from drivers.poller import Poller, PollTarget
    from drivers.sim.device_profiles import profile_for_device

    # The outcome is reported in one line; pymodbus's own connection log would add others.
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    profile, _ = profile_for_device(entry.device.profile)
    profile = await _discovered(profile, entry, timeout_s)
    target = PollTarget(entry.name, profile, entry.device.host, entry.device.port, entry.device.unit_id)
    poller = Poller([target], timeout_s=timeout_s)
    try:
        result = await poller.poll_once(entry.name)
        answered = poller.stats(entry.name).last_good_read_at is not None
        reading = poller.reading(entry.name) if answered else None
    finally:
        await poller.stop()
    return profile, result, reading, answered


async def _discovered(profile: Any, entry: SiteDevice, timeout_s: float) -> Any:
    """A SunSpec profile resolved on the device's own model chain (addresses and scale factors
    as discovered); other profiles as they are."""
    from drivers.modbus.transport import ModbusTcpTransport, TransportError
    from drivers.sunspec import SUNSPEC_PROFILE_NAMES, SunSpecError, discover, get_spec, resolve

    if profile.name not in SUNSPEC_PROFILE_NAMES:
        return profile
    transport = ModbusTcpTransport(entry.device.host, entry.device.port, timeout_s=timeout_s)
    try:
        smap = await discover(transport, entry.device.unit_id)
        return resolve(get_spec(profile.name), smap)
    except (SunSpecError, TransportError) as exc:
        fail(f"device {entry.name!r}: SunSpec discovery: {exc}")
    finally:
        transport.close()


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, tuple):
        return ", ".join(map(str, value)) or "none"
    return str(value)


def _table(rows: Sequence[tuple[str, ...]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]


@app.command("read")
def read(
    site: Annotated[str, typer.Argument(help="Site name (site_configs/NAME.toml) or path to a TOML file.")],
    device: Annotated[str, typer.Argument(
        help="Asset name in the config, e.g. ev1, or grid for the grid meter.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print only a JSON document.")] = False,
    timeout: Annotated[float, typer.Option(min=0.05, help="Seconds to wait for each answer.")] = 2.0,
    sets: Annotated[list[str] | None, typer.Option(
        "--set", help="Override a config value, e.g. grid.device.port=1502.")] = None,
) -> None:
    """Poll DEVICE of SITE once: every point (value, unit, missing reason) and the capability reading."""
    from drivers.sim.device_profiles import ProfileUnavailable
    from ems.cli.sim_cmd import find_device

    with input_errors():
        loaded = load(site, sets)
        entry = find_device(loaded.config, device)
        where = f"{entry.device.host}:{entry.device.port} unit {entry.device.unit_id}"
        try:
            profile, result, reading, answered = asyncio.run(_poll(entry, timeout))
        except ProfileUnavailable as exc:
            fail(f"device {device!r}: {exc}")
        if not answered:
            reasons = {r.missing_reason for r in result.values() if r.missing_reason}
            reason = sorted(reasons)[0].removeprefix("error: ") if reasons else "no answer"
            fail(f"device {device!r} at {where} ({profile.name}) does not answer: {reason}")
    fields: dict[str, Any] = {}
    if reading is not None:
        for name in reading.UNITS:
            m = getattr(reading, name)
            fields[name] = {"value": _plain(m.value), "unit": m.unit, "quality": m.quality,
                            "reason": m.reason}
    if as_json:
        doc = {
            "device": device, "profile": profile.name, "address": where,
            "timestamp": result.timestamp.isoformat(),
            "points": {n: {"value": _plain(r.value), "unit": r.unit, "missing_reason": r.missing_reason}
                       for n, r in result.items()},
            "capability": fields if reading is not None else None,
        }
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
        return
    polled = result.timestamp.isoformat(timespec="seconds")
    lines = [f"{device}: {profile.name} at {where}, polled {polled}", ""]
    lines += _table([("point", "value", "unit", "missing")] + [
        (n, _fmt(r.value), r.unit or "", r.missing_reason or "") for n, r in result.items()])
    if reading is not None:
        lines += ["", f"capability ({profile.kind})"]
        lines += _table([("field", "value", "unit", "missing")] + [
            (n, _fmt(f["value"]), f["unit"] or "", f["reason"] or "") for n, f in fields.items()])
    sys.stdout.write("\n".join(lines) + "\n")
