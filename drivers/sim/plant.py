"""Physics of a site's assets, stepped in time. No optimisation, no configuration files.

Powers kW (average over the step), energy kWh, hydrogen kg. Setpoints are requests: each
asset applies what its physics allows and reports what it actually did.
"""

from __future__ import annotations

from dataclasses import dataclass

from drivers.setpoints import Setpoints


@dataclass
class BatteryModel:
    """Battery with one-way efficiencies; its BMS holds SOC within [soc_min_kwh, soc_max_kwh]."""

    name: str
    capacity_kwh: float
    max_charge_kw: float
    max_discharge_kw: float
    charge_efficiency: float
    discharge_efficiency: float
    soc_kwh: float
    soc_min_kwh: float = 0.0
    soc_max_kwh: float | None = None
    throughput_kwh: float = 0.0
    temperature_c: float = 25.0
    ambient_c: float = 25.0

    def discharge_room_kw(self, dt_h: float) -> float:
        """Most it can discharge over the next step (kW)."""
        room = max(0.0, (self.soc_kwh - self.soc_min_kwh) * self.discharge_efficiency / dt_h)
        return min(self.max_discharge_kw, room)

    def charge_room_kw(self, dt_h: float) -> float:
        """Most it can charge over the next step (kW)."""
        soc_max = self.capacity_kwh if self.soc_max_kwh is None else self.soc_max_kwh
        room = max(0.0, (soc_max - self.soc_kwh) / self.charge_efficiency / dt_h)
        return min(self.max_charge_kw, room)

    def apply(self, net_kw: float, dt_h: float) -> float:
        """Request `net_kw` (> 0 discharge, < 0 charge); returns the power actually delivered."""
        if net_kw >= 0:
            p = min(net_kw, self.discharge_room_kw(dt_h))
            self.soc_kwh -= p * dt_h / self.discharge_efficiency
        else:
            p = -min(-net_kw, self.charge_room_kw(dt_h))
            self.soc_kwh -= p * dt_h * self.charge_efficiency
        self.throughput_kwh += abs(p) * dt_h
        # First-order thermal model: losses heat the pack, 1 h time constant to ambient.
        rated = max(self.max_charge_kw, self.max_discharge_kw)
        heat_rise_c = 12.0 * (abs(p) / rated) ** 2 if rated > 0 else 0.0
        alpha = min(1.0, dt_h / 1.0)
        self.temperature_c += alpha * (self.ambient_c + heat_rise_c - self.temperature_c)
        return p


@dataclass
class Vehicle:
    """A plugged-in vehicle: the energy it wants (kWh) and, when given, the most its on-board
    charger takes (kW at the charger)."""

    session_id: str
    needed_kwh: float
    delivered_kwh: float = 0.0
    max_kw: float | None = None

    def limit_kw(self, charger_max_kw: float) -> float:
        return charger_max_kw if self.max_kw is None else min(charger_max_kw, self.max_kw)


@dataclass
class EvChargerModel:
    """AC charger: 0 or a power within [min_kw, max_kw]; the vehicle stops when it has its energy."""

    name: str
    max_kw: float
    min_kw: float = 0.0
    efficiency: float = 0.92
    vehicle: Vehicle | None = None
    presence: float = 1.0
    """Fraction of the coming step the vehicle is plugged in (step-average powers scale with it)."""

    def wanted_kw(self, dt_h: float) -> float:
        """Most the vehicle can take over the next step (kW at the charger, step average)."""
        v = self.vehicle
        if v is None:
            return 0.0
        left = max(0.0, (v.needed_kwh - v.delivered_kwh) / self.efficiency / dt_h)
        return min(v.limit_kw(self.max_kw) * self.presence, left)

    def apply(self, request_kw: float, dt_h: float) -> float:
        v = self.vehicle
        if v is None or request_kw <= 0:
            return 0.0
        left_kw = max(0.0, (v.needed_kwh - v.delivered_kwh) / self.efficiency / dt_h)
        p = min(request_kw, v.limit_kw(self.max_kw) * self.presence, left_kw)
        if p < self.min_kw * self.presence - 1e-9 and left_kw >= self.min_kw * self.presence:
            p = 0.0  # below the minimum current the charger pauses (a vehicle topping off may take less)
        v.delivered_kwh += p * dt_h * self.efficiency
        return p


@dataclass
class TankModel:
    name: str
    capacity_kg: float
    level_kg: float

    def room_kg(self) -> float:
        return max(0.0, self.capacity_kg - self.level_kg)


@dataclass
class ElectrolyserModel:
    """On: stack power within [min_load_kw, rated_kw]; off: standby draw. Production goes to its
    tank; when the tank is full, production (and power) is cut back."""

    name: str
    rated_kw: float
    min_load_kw: float
    kwh_per_kg: float
    standby_kw: float
    tank: TankModel
    on: bool = False
    steps_in_state: int = 1_000_000
    starts: int = 0

    def apply(self, request_kw: float, dt_h: float) -> tuple[float, float]:
        """Returns (electric kW drawn, kg produced)."""
        want_on = request_kw >= self.min_load_kw - 1e-9 and request_kw > 0
        room_kw = self.tank.room_kg() * self.kwh_per_kg / dt_h
        stack = min(request_kw, self.rated_kw, room_kw) if want_on else 0.0
        if want_on and stack < self.min_load_kw - 1e-9:
            stack = 0.0
        now_on = stack > 0
        if now_on and not self.on:
            self.starts += 1
        self.steps_in_state = self.steps_in_state + 1 if now_on == self.on else 1
        self.on = now_on
        kg = stack * dt_h / self.kwh_per_kg
        self.tank.level_kg = min(self.tank.capacity_kg, self.tank.level_kg + kg)
        return (stack if now_on else self.standby_kw), kg


@dataclass
class StepResult:
    """What happened in one step. grid_import_kw/grid_export_kw are the meter (>= 0)."""

    grid_import_kw: float
    grid_export_kw: float
    pv_kw: dict[str, float]
    pv_curtailed_kw: dict[str, float]
    load_kw: dict[str, float]
    battery_net_kw: dict[str, float]
    ev_kw: dict[str, float]
    electrolyser_kw: dict[str, float]
    hydrogen_kg: dict[str, float]
    offtake_served_kg: dict[str, float]
    offtake_unmet_kg: dict[str, float]


@dataclass
class Plant:
    """All assets of a site behind one meter."""

    batteries: dict[str, BatteryModel]
    chargers: dict[str, EvChargerModel]
    electrolysers: dict[str, ElectrolyserModel]
    tanks: dict[str, TankModel]
    offtake_tank: dict[str, str]

    def step(self, dt_h: float, pv_available_kw: dict[str, float], load_kw: dict[str, float],
             offtake_kg: dict[str, float], sp: Setpoints) -> StepResult:
        pv = {}
        curtailed = {}
        for name, avail in pv_available_kw.items():
            limit = sp.pv_limit_kw.get(name)
            pv[name] = avail if limit is None else max(0.0, min(avail, limit))
            curtailed[name] = avail - pv[name]
        bat = {n: b.apply(sp.battery_net_kw.get(n, 0.0), dt_h) for n, b in self.batteries.items()}
        ev = {n: c.apply(sp.ev_kw.get(n, 0.0), dt_h) for n, c in self.chargers.items()}
        elec, h2 = {}, {}
        for n, e in self.electrolysers.items():
            elec[n], h2[n] = e.apply(sp.electrolyser_kw.get(n, 0.0), dt_h)
        served, unmet = {}, {}
        for n, kg in offtake_kg.items():
            tank = self.tanks[self.offtake_tank[n]]
            served[n] = min(kg, tank.level_kg)
            unmet[n] = kg - served[n]
            tank.level_kg -= served[n]
        net = (sum(load_kw.values()) + sum(ev.values()) + sum(elec.values())
               - sum(pv.values()) - sum(bat.values()))
        return StepResult(
            grid_import_kw=max(0.0, net), grid_export_kw=max(0.0, -net), pv_kw=pv,
            pv_curtailed_kw=curtailed, load_kw=dict(load_kw), battery_net_kw=bat, ev_kw=ev,
            electrolyser_kw=elec, hydrogen_kg=h2, offtake_served_kg=served, offtake_unmet_kg=unmet,
        )
