"""What the API and the metrics read of the running service: its status and the site's powers,
as plain values (they never reach into the service's parts)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from drivers.capabilities import BatteryReading, CapabilityReading
from ems.accounting import metered_powers
from ems.config.models import SiteConfig
from ems.control.observe import value


@dataclass(frozen=True)
class ServiceStatus:
    mode: str = "fallback"
    mode_reason: str = "no plan yet"
    override: str | None = None
    plan_id: int | None = None
    plan_slot: datetime | None = None
    plan_status: str | None = None
    plans_done: int = 0
    plans_failed: int = 0
    plans_skipped: int = 0
    last_plan_failed: str | None = None
    dispatch_cycles: int = 0
    writes_failed: int = 0
    devices_online: dict[str, bool] = field(default_factory=dict)
    last_solve_s: float | None = None


@dataclass(frozen=True)
class SiteView:
    """Measured powers (kW; None: not reported): grid > 0 import, battery > 0 discharge; and
    battery SOC (0..1)."""

    grid_net_kw: float | None
    battery_net_kw: dict[str, float | None]
    ev_kw: dict[str, float | None]
    electrolyser_kw: dict[str, float | None]
    pv_kw: dict[str, float | None]
    battery_soc_fraction: dict[str, float | None]


def site_view(cfg: SiteConfig, readings: Mapping[str, CapabilityReading | None]) -> SiteView:
    p = metered_powers(cfg, readings)
    soc: dict[str, float | None] = {}
    for b in cfg.battery:
        r = readings.get(b.name)
        pct = value(r.soc_pct) if isinstance(r, BatteryReading) else None
        soc[b.name] = None if pct is None else pct / 100.0
    return SiteView(p.grid_net_kw, dict(p.battery_net_kw), dict(p.ev_kw), dict(p.electrolyser_kw),
                    dict(p.pv_kw), soc)
