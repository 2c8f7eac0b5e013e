"""Limits on the wanted setpoints, in order: first what each device can do (rating, SOC room
above the floor or reserve, charger and electrolyser ranges), then the grid's import and export
limits, predicted from the meter with those already-feasible values.

Signs: battery net kW > 0 discharging; EV and electrolyser kW >= 0; grid net kW > 0 importing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ems.config.models import SiteConfig
from ems.control.observe import Observed
from ems.control.safety import PV_MIN_LIMIT_FRACTION
from ems.control.targets import Wanted, grid_change_kw

_EPS = 1e-6


@dataclass(frozen=True)
class BatteryRoom:
    """How far a battery can go this cycle (kW, non-negative each way)."""

    discharge_kw: float
    charge_kw: float


def battery_room(cfg: SiteConfig, obs: Observed, floors: Mapping[str, float],
                 period_h: float) -> dict[str, BatteryRoom]:
    """Per battery: its rating, less what would take it below its floor (``floors``: SOC
    fraction, the config's or a reserve) or above its ceiling within one control period. No SOC
    reading: no room either way (the guard idles it)."""
    out = {}
    for b in cfg.battery:
        soc = obs.battery_soc_fraction.get(b.name)
        if soc is None:
            out[b.name] = BatteryRoom(0.0, 0.0)
            continue
        floor = floors.get(b.name, b.soc_min_fraction)
        above = max(0.0, soc - floor) * b.capacity_kwh * b.discharge_efficiency / period_h
        below = max(0.0, b.soc_max_fraction - soc) * b.capacity_kwh / b.charge_efficiency / period_h
        out[b.name] = BatteryRoom(min(b.max_discharge_kw, above), min(b.max_charge_kw, below))
    return out


def within_devices(w: Wanted, cfg: SiteConfig, obs: Observed, room: Mapping[str, BatteryRoom],
                   electrolyser_min_kw: Mapping[str, float]) -> None:
    """Bring every wanted value within what its device can do now, in place: batteries within
    their room, EVs 0 without a plugged vehicle and 0 or within the charger's range, electrolysers
    0 or within [minimum load (the device's own, when higher), rating], PV limits at least
    :data:`~ems.control.safety.PV_MIN_LIMIT_FRACTION` of kWp."""
    for b in cfg.battery:
        if b.name not in w.battery_net_kw:
            continue
        r = room[b.name]
        kw = w.battery_net_kw[b.name]
        if kw > r.discharge_kw + _EPS:
            w.battery_net_kw[b.name] = r.discharge_kw
            w.bind(b.name, "SOC floor" if r.discharge_kw < b.max_discharge_kw else "max_discharge_kw")
        elif -kw > r.charge_kw + _EPS:
            w.battery_net_kw[b.name] = -r.charge_kw
            w.bind(b.name, "SOC ceiling" if r.charge_kw < b.max_charge_kw else "max_charge_kw")
    for c in cfg.ev_charger:
        if c.name not in w.ev_kw:
            continue
        kw = w.ev_kw[c.name]
        if kw > 0 and not obs.plugged.get(c.name):
            w.ev_kw[c.name] = 0.0
            w.bind(c.name, "no vehicle plugged in")
        elif kw > c.max_power_kw + _EPS:
            w.ev_kw[c.name] = c.max_power_kw
            w.bind(c.name, "charger maximum")
        elif 0 < kw < c.min_power_kw - _EPS:
            w.ev_kw[c.name] = 0.0
            w.bind(c.name, "below the charger minimum: paused")
        elif kw < 0 and not c.v2g:
            w.ev_kw[c.name] = 0.0
    for e in cfg.electrolyser:
        if e.name not in w.electrolyser_kw:
            continue
        kw = w.electrolyser_kw[e.name]
        low = max(e.min_load_fraction * e.rated_kw, electrolyser_min_kw.get(e.name, 0.0))
        if kw > e.rated_kw + _EPS:
            w.electrolyser_kw[e.name] = e.rated_kw
            w.bind(e.name, "rated_kw")
        elif 0 < kw < low - _EPS:
            # a device that cannot run below its own minimum (Enapter: 60 %) draws that much
            w.electrolyser_kw[e.name] = low
            w.bind(e.name, f"minimum load {low:g} kW")
        elif kw < 0:
            w.electrolyser_kw[e.name] = 0.0
    for p in cfg.pv:
        limit = w.pv_limit_kw.get(p.name)
        if limit is not None and limit < PV_MIN_LIMIT_FRACTION * p.kwp:
            w.pv_limit_kw[p.name] = PV_MIN_LIMIT_FRACTION * p.kwp


def hold_grid_limits(w: Wanted, cfg: SiteConfig, obs: Observed, room: Mapping[str, BatteryRoom],
                     import_limit_kw: float, export_limit_kw: float,
                     electrolyser_min_kw: Mapping[str, float]) -> None:
    """Correct ``w`` (already within the devices' limits) in place so the predicted grid exchange
    stays within the limits: over the import limit, batteries discharge more (within their room),
    then EV chargers, then electrolysers share the cut in proportion to their power (one cut
    below its minimum stops); over the export limit, batteries charge more (within their room),
    then PV is curtailed. Without a meter reading nothing may add import."""
    if obs.grid_net_kw is None:
        _add_no_import(w, obs)
        return
    delta = grid_change_kw(w, obs)
    if delta is None:
        # an asset's present power is unknown: the assets whose power is known are held where
        # they are, so the change is no larger than what the meter already shows
        _add_no_import(w, obs)
        return
    predicted = obs.grid_net_kw + delta
    over = predicted - import_limit_kw
    if over > _EPS:
        why = f"grid import limit {import_limit_kw:g} kW"
        for b in cfg.battery:
            if b.name not in w.battery_net_kw:
                continue
            take = min(room[b.name].discharge_kw - w.battery_net_kw[b.name], over)
            if take > _EPS:
                w.battery_net_kw[b.name] += take
                w.bind(b.name, why)
                over -= take
        minimum = {c.name: c.min_power_kw for c in cfg.ev_charger}
        minimum.update({e.name: max(e.min_load_fraction * e.rated_kw, electrolyser_min_kw.get(e.name, 0.0))
                        for e in cfg.electrolyser})
        for group in (w.ev_kw, w.electrolyser_kw):
            total = sum(kw for kw in group.values() if kw > 0)
            if over <= _EPS or total <= 0:
                continue
            share = min(total, over) / total
            for n, kw in group.items():
                if kw > 0:
                    after = kw - share * kw
                    group[n] = 0.0 if after < minimum.get(n, 0.0) - _EPS else after
                    w.bind(n, why)
                    over -= kw - group[n]
    # export: a vehicle offered more may take none of it
    low = grid_change_kw(w, obs, ev_takes_more=False)
    under = -(obs.grid_net_kw + (low if low is not None else delta)) - export_limit_kw
    if under > _EPS:
        why = f"grid export limit {export_limit_kw:g} kW"
        for b in cfg.battery:
            if b.name not in w.battery_net_kw:
                continue
            take = min(room[b.name].charge_kw + w.battery_net_kw[b.name], under)
            if take > _EPS:
                w.battery_net_kw[b.name] -= take
                w.bind(b.name, why)
                under -= take
        for p in cfg.pv:
            if under <= _EPS:
                break
            output = obs.pv_kw.get(p.name)
            current = w.pv_limit_kw.get(p.name)
            base = output if output is not None else 0.0
            if current is not None:
                base = min(base, current)
            cut = min(base, under) if output is not None else under
            w.pv_limit_kw[p.name] = max(PV_MIN_LIMIT_FRACTION * p.kwp, base - cut)
            w.bind(p.name, why)
            under -= cut


def _add_no_import(w: Wanted, obs: Observed) -> None:
    """Without a meter reading (or an asset's power) the limits cannot be checked: nothing may add
    import. Batteries charge no more (discharge no less) than they do now, EVs and electrolysers
    draw no more; an asset whose power is unknown is idled (battery) or stopped."""
    why = "no grid meter reading" if obs.grid_net_kw is None else "an asset's power is not reported"
    for name, kw in w.battery_net_kw.items():
        now = obs.battery_now_kw.get(name)
        floor = now if now is not None else 0.0
        if kw < floor:
            w.battery_net_kw[name] = floor
            w.bind(name, why)
    for group, now_kw in ((w.ev_kw, obs.ev_now_kw), (w.electrolyser_kw, obs.electrolyser_now_kw)):
        for name, kw in group.items():
            now = now_kw.get(name)
            ceiling = now if now is not None else 0.0
            if kw > ceiling:
                group[name] = ceiling
                w.bind(name, why)
