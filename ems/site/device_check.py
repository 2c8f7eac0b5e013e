"""Checks of a site's ``device`` tables against the device profiles, before anything connects:
the profile exists and is of the asset's kind, it reads what the controller needs and takes the
setpoint the controller writes, and no two devices share one Modbus address.

Each problem is one line naming the field and its value; every problem is listed.
"""

from __future__ import annotations

from collections.abc import Iterator

from drivers.capabilities import COMMAND_MAPPINGS, MAPPINGS
from drivers.modbus.profile import DeviceKind, Profile
from drivers.profiles import bundled_profiles
from drivers.sim.device_profiles import ProfileUnavailable, profile_for_device
from ems.config.models import SiteConfig
from ems.config.site_devices import SiteDevice, site_devices
from ems.control.safety import KEY_FIELDS

SECTION_KINDS: dict[str, DeviceKind] = {
    "grid": "meter",
    "load": "meter",
    "pv": "pv_inverter",
    "battery": "battery",
    "ev_charger": "ev_charger",
    "electrolyser": "electrolyser",
}
"""The device class each config section's device must be."""

REQUIRED_READINGS: dict[str, tuple[str, ...]] = {
    "grid": ("power_net_kw",),
    "load": ("power_net_kw",),
    **{section: KEY_FIELDS[kind] for section, kind in SECTION_KINDS.items() if kind in KEY_FIELDS},
}
"""Capability fields a section's device must provide: the grid meter's power (every dispatch
cycle holds the grid limits from it), a load meter's power, and the fields the safety guard needs
to trust a reading (:data:`ems.control.safety.KEY_FIELDS`)."""

REQUIRED_SETPOINTS: dict[str, tuple[str, ...]] = {
    "pv": ("limit_pct",),
    "battery": ("power_net_kw",),
    "ev_charger": ("current_a",),
    "electrolyser": ("run", "production_rate_pct"),
}
"""Setpoint fields the controller writes to a section's device every cycle."""


def device_field(cfg: SiteConfig, device: SiteDevice) -> str:
    """The config path of a device table, e.g. "ev_charger[2].device" or "grid.device"."""
    if device.section == "grid":
        return "grid.device"
    names = [a.name for a in getattr(cfg, device.section)]
    return f"{device.section}[{names.index(device.name)}].device"


def known_profiles() -> list[str]:
    """Names of every profile a device table may give (bundled and SunSpec)."""
    names = set(bundled_profiles())
    try:
        from drivers.sunspec import SUNSPEC_PROFILE_NAMES
    except ImportError:
        pass
    else:
        names |= set(SUNSPEC_PROFILE_NAMES)
    return sorted(names)


def device_problems(cfg: SiteConfig, simulate: bool = False) -> list[str]:
    """One line per problem with the site's device tables. ``simulate``: also what the device
    simulators need (`ems run --simulate`, `ems sim`): one port per device, since each simulated
    device is a server of its own."""
    devices = site_devices(cfg)
    problems: list[str] = []
    for device in devices:
        problems += _profile_problems(cfg, device)
    problems += list(_shared_addresses(cfg, devices, simulate))
    return problems


def _profile_problems(cfg: SiteConfig, device: SiteDevice) -> list[str]:
    where = f"{device_field(cfg, device)}.profile"
    name = device.device.profile
    try:
        profile, _ = profile_for_device(name)
    except ProfileUnavailable:
        return [f"{where} = {name!r}: no such profile (known: {', '.join(known_profiles())})"]
    kind = SECTION_KINDS[device.section]
    if profile.kind != kind:
        return [f"{where} = {name!r}: a {profile.kind} profile; {device.section} {device.name!r} "
                f"needs a {kind} profile"]
    problems = []
    missing = [f for f in REQUIRED_READINGS.get(device.section, ()) if f not in _readings(profile)]
    if missing:
        problems.append(f"{where} = {name!r}: does not read {', '.join(missing)}, which the "
                        f"controller needs of {device.section} {device.name!r}")
    commands = COMMAND_MAPPINGS.get(profile.name, {})
    unsettable = [f for f in REQUIRED_SETPOINTS.get(device.section, ()) if f not in commands]
    if unsettable:
        problems.append(f"{where} = {name!r}: has no command for {', '.join(unsettable)}, which "
                        f"the controller writes to {device.section} {device.name!r}")
    return problems


def _readings(profile: Profile) -> set[str]:
    return set(MAPPINGS.get(profile.name, {}))


def _shared_addresses(cfg: SiteConfig, devices: list[SiteDevice], simulate: bool) -> Iterator[str]:
    first: dict[tuple[str, int, int], SiteDevice] = {}
    first_port: dict[tuple[str, int], SiteDevice] = {}
    for device in devices:
        d = device.device
        host = d.host.lower()
        where = device_field(cfg, device)
        other = first.setdefault((host, d.port, d.unit_id), device)
        if other is not device:
            yield (f"{where}.unit_id = {d.unit_id}: {d.host}:{d.port} unit {d.unit_id} is already "
                   f"{other.name!r} ({device_field(cfg, other)}); two devices cannot share a Modbus "
                   "address")
            continue
        other = first_port.setdefault((host, d.port), device)
        if simulate and other is not device:
            yield (f"{where}.port = {d.port}: {d.host}:{d.port} is also {other.name!r} "
                   f"({device_field(cfg, other)}); a simulated device needs a port of its own")
