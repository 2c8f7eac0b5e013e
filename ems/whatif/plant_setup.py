"""A plant model of a site, built from its config (the same physics the device simulators use)."""

from __future__ import annotations

from drivers.sim.plant import BatteryModel, ElectrolyserModel, EvChargerModel, Plant, TankModel
from ems.config.models import SiteConfig


def plant_from_config(cfg: SiteConfig) -> Plant:
    tanks = {t.name: TankModel(t.name, t.capacity_kg, t.initial_kg) for t in cfg.hydrogen_tank}
    return Plant(
        batteries={
            b.name: BatteryModel(
                name=b.name, capacity_kwh=b.capacity_kwh, max_charge_kw=b.max_charge_kw,
                max_discharge_kw=b.max_discharge_kw, charge_efficiency=b.charge_efficiency,
                discharge_efficiency=b.discharge_efficiency,
                soc_kwh=b.initial_soc_fraction * b.capacity_kwh,
                soc_min_kwh=b.soc_min_fraction * b.capacity_kwh,
                soc_max_kwh=b.soc_max_fraction * b.capacity_kwh,
            )
            for b in cfg.battery
        },
        chargers={c.name: EvChargerModel(c.name, c.max_power_kw, c.min_power_kw, c.efficiency)
                  for c in cfg.ev_charger},
        electrolysers={
            e.name: ElectrolyserModel(
                name=e.name, rated_kw=e.rated_kw, min_load_kw=e.min_load_fraction * e.rated_kw,
                kwh_per_kg=e.kwh_per_kg, standby_kw=e.standby_kw, tank=tanks[e.tank],
            )
            for e in cfg.electrolyser
        },
        tanks=tanks,
        offtake_tank={o.name: o.tank for o in cfg.hydrogen_offtake},
    )
