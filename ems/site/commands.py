"""Setpoints in site units (kW) turned into the typed device setpoints the drivers write, and a
device's own limits on them. Shared by the Modbus site and the what-if's plant site."""

from __future__ import annotations

from typing import Any

from drivers.capabilities import (
    BatterySetpoint,
    ElectrolyserSetpoint,
    EvChargerSetpoint,
    PvLimitSetpoint,
    Setpoint,
)
from drivers.modbus.profile import Profile
from drivers.sim.device_profiles import ProfileUnavailable, profile_for_device
from ems.config.models import SiteConfig


def setpoint_for(section: str, asset: Any, value: float | None) -> Setpoint | None:
    """The device setpoint for an asset's planned power (kW): battery net (+ discharge),
    EV charging power → current per phase, electrolyser power → run + rate, PV limit kW → %."""
    if section == "battery":
        return BatterySetpoint(power_net_kw=float(value or 0.0))
    if section == "ev_charger":
        kw = max(0.0, float(value or 0.0))
        return EvChargerSetpoint(current_a=kw * 1000.0 / (asset.phases * asset.voltage_v))
    if section == "electrolyser":
        kw = max(0.0, float(value or 0.0))
        if kw <= 0.0:
            return ElectrolyserSetpoint(run=False)
        return ElectrolyserSetpoint(run=True, production_rate_pct=min(100.0, 100.0 * kw / asset.rated_kw))
    if section == "pv":
        limit = 100.0 if value is None else max(0.0, min(100.0, 100.0 * float(value) / asset.kwp))
        return PvLimitSetpoint(limit_pct=limit)
    return None


def device_min_rate_pct(profile: Profile) -> float | None:
    """The lowest production rate (%) an electrolyser device runs at, when its profile says."""
    command = profile.commands.get("production_rate_pct")
    return command.limits[0] if command is not None and command.limits is not None else None


def within_device_limits(profile: Profile, setpoint: Setpoint) -> Setpoint:
    """An electrolyser's production rate raised or lowered into the device's own range (e.g.
    Enapter runs at 60-100 %): the device cannot run outside it, whatever the config says."""
    if isinstance(setpoint, ElectrolyserSetpoint) and setpoint.production_rate_pct is not None:
        command = profile.commands.get("production_rate_pct")
        if command is not None and command.limits is not None:
            low, high = command.limits
            rate = min(max(setpoint.production_rate_pct, low), high)
            return ElectrolyserSetpoint(run=setpoint.run, production_rate_pct=rate)
    return setpoint


DEFAULT_ELECTROLYSER_PROFILE = "enapter_el"
"""Profile of an electrolyser without a ``device`` table."""


def electrolyser_minimums(cfg: SiteConfig) -> dict[str, float]:
    """Per electrolyser, the least its device runs at (kW) when its profile says (Enapter 60 %)."""
    out = {}
    for e in cfg.electrolyser:
        try:
            profile, _ = profile_for_device(e.device.profile if e.device else DEFAULT_ELECTROLYSER_PROFILE)
        except ProfileUnavailable:
            continue  # the device layer reports it when it sets the device up
        pct = device_min_rate_pct(profile)
        if pct is not None:
            out[e.name] = pct / 100.0 * e.rated_kw
    return out
