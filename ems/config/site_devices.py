"""The devices of a site config: every asset with a ``device`` table, in config order."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ems.config.models import Device, SiteConfig


@dataclass(frozen=True)
class SiteDevice:
    """A configured device: its asset name ("grid" for the grid meter), the asset's config
    section and where the device is."""

    name: str
    section: str
    device: Device
    asset: Any


def site_devices(cfg: SiteConfig) -> list[SiteDevice]:
    """Every asset of the site that has a ``device`` table, in config order (grid first)."""
    out: list[SiteDevice] = []
    if cfg.grid.device is not None:
        out.append(SiteDevice("grid", "grid", cfg.grid.device, cfg.grid))
    groups: list[tuple[str, list[Any]]] = [
        ("pv", list(cfg.pv)), ("battery", list(cfg.battery)), ("ev_charger", list(cfg.ev_charger)),
        ("electrolyser", list(cfg.electrolyser)), ("load", list(cfg.load)),
    ]
    for section, assets in groups:
        out += [SiteDevice(a.name, section, a.device, a) for a in assets if a.device is not None]
    return out
