"""The safety guard: the last check between the controller's wanted setpoints and the device writes.

It is independent of the plan: it looks only at the wanted setpoints, the latest device readings,
the site config and the time it is given (UTC, injected; no wall clock). Every cycle it

1. puts a device whose reading is missing, stale or lacks its key field into its documented safe
   fallback (:data:`FALLBACKS`);
2. bounds each setpoint by the device's limits (ratings, SOC window, minimum loads), each rule a
   small function below that states its threshold and unit;
3. derates or stops a battery on the early-warning thresholds of its
   :class:`~ems.config.models.BatterySafety` (cell temperature, cell-voltage spread, state of
   health, BMS alarms), raising alarms edge-triggered, with hysteresis;
4. reports, per device, which limits bound the value (for the audit log).

Units and signs follow :class:`drivers.setpoints.Setpoints`: kW; ``battery_net_kw`` > 0 is
discharging, < 0 charging; ``ev_kw`` is charging power (< 0 only for V2G chargers);
``electrolyser_kw`` is stack power, 0 = standby (the unit then draws its ``standby_kw``);
``pv_limit_kw`` None = no limit.

Default battery thresholds (``BatterySafety``, LFP), and why:

- cell temperature: derate above 45 °C, stop above 55 °C, no charging below 0 °C, 3 °C hysteresis.
  LFP cell datasheets (e.g. 280 Ah prismatic cells for storage) allow charging only in 0–55 °C and
  discharging up to ~60 °C: 55 °C is the charge limit, and charging below 0 °C plates lithium.
  Calendar and cycle ageing speed up markedly above ~45 °C, so power (and heat) is halved there.
- cell-voltage spread (max − min cell): derate at 0.15 V, stop at 0.30 V, 0.02 V hysteresis. LFP's
  open-circuit curve is flat (~3.20–3.35 V across 10–90 % SOC), so a healthy, balanced pack stays
  within a few tens of mV; 150 mV means a weak or unbalanced cell, 300 mV a cell at its knee
  (near empty or full while the pack reading is not), where over/under-voltage follows quickly.
- state of health below 70 %: derate, 1 % hysteresis. 70 % is the usual end-of-life point in
  stationary-storage warranties; an aged pack has a higher resistance and heats more.
- derate fraction 0.5 of the charge/discharge rating; any BMS alarm stops the battery (the BMS
  knows more than the EMS does; it is cleared when the BMS stops reporting it).

Severities: "critical" for a stop caused by the device's condition (over-temperature stop, spread
stop, BMS alarm); "warning" for derating, for the cold-charge block (a normal winter condition),
for a missing or stale reading (the device is already in its safe state) and for a monitored value
that went missing.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from drivers.capabilities import (
    BatteryReading,
    CapabilityReading,
    ElectrolyserReading,
    EvChargerReading,
    Measured,
    PvInverterReading,
)
from drivers.setpoints import Setpoints
from ems.config.models import (
    BatteryConfig,
    ElectrolyserConfig,
    EvChargerConfig,
    PvConfig,
    SiteConfig,
)

Severity = Literal["warning", "critical"]
EventKind = Literal["raised", "cleared"]
Direction = Literal["charge", "discharge"]
EvFallback = Literal["min_current", "pause"]

DEFAULT_STALENESS_S = 10.0
"""A reading older than this (s) is stale: two missed polls at the slowest poll interval (5 s)."""

PV_MIN_LIMIT_FRACTION = 0.01
"""Lowest PV limit, fraction of kWp: 0 % puts some inverters into standby (OpenEMS clamps to 1 %)."""

FALLBACKS: dict[str, str] = {
    "battery": "idle (0 kW)",
    "ev_charger": "safe current (the charger's minimum power; 0 kW with ev_fallback='pause')",
    "electrolyser": "standby (0 kW stack power)",
    "pv_inverter": "limit released (None)",
}
"""The documented safe fallback of each device class (stale or missing readings, shutdown).

- battery idle: no energy moves, so neither the SOC window nor a thermal limit can be crossed.
- EV charger at its safe current, the minimum power of the charger (IEC 61851-1's 6 A minimum
  for the bundled chargers: 4.14 kW at 3 × 230 V): the smallest load that does not interrupt a
  session (some vehicles do not resume after a pause), and what chargers such as the Alfen NG9xx
  apply themselves after losing the EMS. A charger configured without a minimum gets 0 kW;
  ``ev_fallback="pause"`` gives 0 kW everywhere.
- electrolyser standby: the stack stops; the unit keeps its own ``standby_kw`` (heating, dryer).
- PV limit released: the guard cannot tell what a curtailment is still needed for; the
  inverter's own export limit and its revert settings (SunSpec ``RvrtTms``) are the protection.
"""

KEY_FIELDS: dict[str, tuple[str, ...]] = {
    "battery": ("soc_pct",),
    "ev_charger": ("state",),
    "electrolyser": ("state",),
    "pv_inverter": ("power_kw",),
}
"""Fields a device class must report (present and fresh) for the guard to trust its reading:
without SOC a battery's window cannot be held; the state tells a charger or an electrolyser is
alive (the Enapter profile has no power point); a PV inverter's output is its liveness."""

BATTERY_MONITORED = ("cell_temperature_max_c", "cell_temperature_min_c", "cell_voltage_spread_v",
                     "soh_pct", "alarms")
"""Battery fields behind the early-warning rules. A profile that does not provide one ("not
provided by …"), or a device that answers it with its "not implemented" sentinel, is simply not
checked on it; one that goes missing otherwise raises ``<field>_missing``."""

_READING_TYPES: dict[str, type[CapabilityReading]] = {
    "battery": BatteryReading,
    "ev_charger": EvChargerReading,
    "electrolyser": ElectrolyserReading,
    "pv_inverter": PvInverterReading,
}

_EPS = 1e-9


# ---------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class AlarmEvent:
    """An alarm starting (``raised``) or ending (``cleared``) at ``time`` (UTC); the message names
    the measured value and the threshold."""

    device: str
    code: str
    severity: Severity
    message: str
    event: EventKind
    time: datetime


@dataclass(frozen=True)
class Bound:
    """A limit that bound a device's setpoint: its name (a config field or an alarm code), the
    value it let through (kW; None = PV limit released) and a readable detail."""

    limit: str
    value_kw: float | None
    detail: str


@dataclass(frozen=True)
class GuardResult:
    """What the guard lets through this cycle.

    ``setpoints`` holds every device that was asked for a value, plus every device in fallback.
    ``bounds`` has an entry (maybe empty) per device in ``setpoints``. ``active`` lists the alarms
    active after this cycle (their ``raised`` events)."""

    setpoints: Setpoints
    events: list[AlarmEvent]
    bounds: dict[str, list[Bound]]
    fallback_devices: frozenset[str]
    active: tuple[AlarmEvent, ...] = ()

    @property
    def raised(self) -> list[AlarmEvent]:
        return [e for e in self.events if e.event == "raised"]

    @property
    def cleared(self) -> list[AlarmEvent]:
        return [e for e in self.events if e.event == "cleared"]

    @property
    def bound_by(self) -> dict[str, list[str]]:
        """Per device, the names of the limits that bound its value."""
        return {name: [b.limit for b in bs] for name, bs in self.bounds.items() if bs}


# ---------------------------------------------------------------------------------------------
# Rule building blocks


@dataclass(frozen=True)
class Limit:
    """An upper bound on battery power in one direction, kW (non-negative), named for the audit."""

    direction: Direction
    kw: float
    name: str
    detail: str


@dataclass(frozen=True)
class Check:
    """One alarm condition evaluated this cycle: whether it is active, its severity, a message
    with the measured value and the threshold, and the limits it imposes while active."""

    code: str
    active: bool
    severity: Severity
    message: str
    limits: tuple[Limit, ...] = ()


def _both(kw_charge: float, kw_discharge: float, name: str, detail: str) -> tuple[Limit, ...]:
    return (Limit("charge", kw_charge, name, detail), Limit("discharge", kw_discharge, name, detail))


def _derate(cfg: BatteryConfig, name: str, why: str) -> tuple[Limit, ...]:
    f = cfg.safety.derate_fraction
    return _both(f * cfg.max_charge_kw, f * cfg.max_discharge_kw, name,
                 f"{why}: derated to {f:g} × rating")


def _stop(name: str, why: str) -> tuple[Limit, ...]:
    return _both(0.0, 0.0, name, f"{why}: stopped")


def latch_above(value: float | None, threshold: float, hysteresis: float, was_active: bool,
                inclusive: bool = False) -> bool:
    """A high-side condition with hysteresis: starts when ``value`` > ``threshold`` (≥ when
    ``inclusive``), ends only when ``value`` < ``threshold − hysteresis``. A missing value keeps
    the previous state (an alarm never clears on missing data)."""
    if value is None:
        return was_active
    if was_active:
        return value >= threshold - hysteresis
    return value >= threshold if inclusive else value > threshold


def latch_below(value: float | None, threshold: float, hysteresis: float, was_active: bool) -> bool:
    """A low-side condition with hysteresis: starts when ``value`` < ``threshold``, ends only
    when ``value`` > ``threshold + hysteresis``; a missing value keeps the previous state."""
    if value is None:
        return was_active
    if was_active:
        return value <= threshold + hysteresis
    return value < threshold


def _number(m: Measured[float]) -> float | None:
    """The value of a good, finite measurement, else None."""
    if not m.ok or m.value is None or not math.isfinite(m.value):
        return None
    return float(m.value)


def reading_problem(reading: CapabilityReading | None, kind: str, now: datetime,
                    staleness_s: float) -> str | None:
    """Why a device's reading cannot be trusted, or None when it can.

    Untrusted: no reading, a reading of the wrong device class, a key field (:data:`KEY_FIELDS`)
    missing or not finite, or its timestamp more than ``staleness_s`` seconds before ``now``
    (or as far after it: a clock that disagrees that much is not trusted either)."""
    if reading is None:
        return "no reading"
    expected = _READING_TYPES[kind]
    if not isinstance(reading, expected):
        return f"got a {type(reading).__name__}, expected a {expected.__name__}"
    for name in KEY_FIELDS[kind]:
        m: Measured[object] = getattr(reading, name)
        if not m.ok:
            return f"{name} missing ({m.reason})"
        if isinstance(m.value, float) and not math.isfinite(m.value):
            return f"{name} not finite ({m.value})"
        age_s = (now - m.timestamp).total_seconds()
        if age_s > staleness_s:
            return f"{name} is {age_s:.1f} s old (staleness limit {staleness_s:g} s)"
        if age_s < -staleness_s:
            return f"{name} is stamped {-age_s:.1f} s in the future (limit {staleness_s:g} s)"
    return None


# ---------------------------------------------------------------------------------------------
# Battery rules


def battery_rating_limits(cfg: BatteryConfig) -> list[Limit]:
    """Charge ≤ ``max_charge_kw``, discharge ≤ ``max_discharge_kw`` (kW)."""
    return [Limit("charge", cfg.max_charge_kw, "max_charge_kw", f"rating {cfg.max_charge_kw:g} kW"),
            Limit("discharge", cfg.max_discharge_kw, "max_discharge_kw",
                  f"rating {cfg.max_discharge_kw:g} kW")]


def battery_soc_limits(cfg: BatteryConfig, soc_pct: float,
                       reserve_fraction: float | None = None) -> list[Limit]:
    """No discharge at or below the SOC floor (``soc_min_fraction`` × 100 %, or a higher
    ``reserve_fraction`` set by the operator), no charge at or above the ceiling
    (``soc_max_fraction`` × 100 %), from the measured SOC in %."""
    floor = max(cfg.soc_min_fraction, reserve_fraction or 0.0)
    reserved = floor > cfg.soc_min_fraction
    floor_pct = 100 * floor
    ceiling_pct = 100 * cfg.soc_max_fraction
    out: list[Limit] = []
    if soc_pct <= floor_pct + _EPS:
        out.append(Limit("discharge", 0.0, "reserve" if reserved else "soc_min_fraction",
                         f"SOC {soc_pct:g} % at or below the {'reserve' if reserved else 'floor'} "
                         f"{floor_pct:g} %"))
    if soc_pct >= ceiling_pct - _EPS:
        out.append(Limit("charge", 0.0, "soc_max_fraction",
                         f"SOC {soc_pct:g} % at or above the ceiling {ceiling_pct:g} %"))
    return out


def temperature_checks(cfg: BatteryConfig, reading: BatteryReading, active: frozenset[str]) -> list[Check]:
    """Cell temperatures (°C) against ``BatterySafety``: highest cell above ``derate_above_c``
    → derate (warning "over_temperature"); above ``stop_above_c`` → stop (critical
    "over_temperature_stop"); lowest cell below ``no_charge_below_c`` → no charging (warning
    "under_temperature_charge"). Each ends ``temperature_hysteresis_c`` back inside."""
    s = cfg.safety
    h = s.temperature_hysteresis_c
    t_max = _number(reading.cell_temperature_max_c)
    t_min = _number(reading.cell_temperature_min_c)
    shown_max = "missing" if t_max is None else f"{t_max:g} °C"
    shown_min = "missing" if t_min is None else f"{t_min:g} °C"
    derate = latch_above(t_max, s.derate_above_c, h, "over_temperature" in active)
    stop = latch_above(t_max, s.stop_above_c, h, "over_temperature_stop" in active)
    cold = latch_below(t_min, s.no_charge_below_c, h, "under_temperature_charge" in active)
    return [
        Check("over_temperature", derate, "warning",
              f"highest cell temperature {shown_max}; derate above {s.derate_above_c:g} °C, "
              f"clears below {s.derate_above_c - h:g} °C",
              _derate(cfg, "over_temperature", f"cell temperature above {s.derate_above_c:g} °C")),
        Check("over_temperature_stop", stop, "critical",
              f"highest cell temperature {shown_max}; stop above {s.stop_above_c:g} °C, "
              f"clears below {s.stop_above_c - h:g} °C",
              _stop("over_temperature_stop", f"cell temperature above {s.stop_above_c:g} °C")),
        Check("under_temperature_charge", cold, "warning",
              f"lowest cell temperature {shown_min}; no charging below {s.no_charge_below_c:g} °C, "
              f"clears above {s.no_charge_below_c + h:g} °C",
              (Limit("charge", 0.0, "under_temperature_charge",
                     f"cell temperature below {s.no_charge_below_c:g} °C: no charging"),)),
    ]


def spread_checks(cfg: BatteryConfig, reading: BatteryReading, active: frozenset[str]) -> list[Check]:
    """Cell-voltage spread (V, max − min cell) at or above ``spread_derate_v`` → derate (warning
    "cell_voltage_spread"); at or above ``spread_stop_v`` → stop (critical
    "cell_voltage_spread_stop"). Each ends below its threshold minus ``spread_hysteresis_v``."""
    s = cfg.safety
    h = s.spread_hysteresis_v
    v = _number(reading.cell_voltage_spread_v)
    shown = "missing" if v is None else f"{v:.3f} V"
    derate = latch_above(v, s.spread_derate_v, h, "cell_voltage_spread" in active, inclusive=True)
    stop = latch_above(v, s.spread_stop_v, h, "cell_voltage_spread_stop" in active, inclusive=True)
    return [
        Check("cell_voltage_spread", derate, "warning",
              f"cell-voltage spread {shown}; derate at {s.spread_derate_v:.3f} V, "
              f"clears below {s.spread_derate_v - h:.3f} V",
              _derate(cfg, "cell_voltage_spread", f"cell-voltage spread ≥ {s.spread_derate_v:.3f} V")),
        Check("cell_voltage_spread_stop", stop, "critical",
              f"cell-voltage spread {shown}; stop at {s.spread_stop_v:.3f} V, "
              f"clears below {s.spread_stop_v - h:.3f} V",
              _stop("cell_voltage_spread_stop", f"cell-voltage spread ≥ {s.spread_stop_v:.3f} V")),
    ]


def soh_checks(cfg: BatteryConfig, reading: BatteryReading, active: frozenset[str]) -> list[Check]:
    """State of health (%) below ``soh_derate_below_pct`` → derate (warning "low_soh"); ends
    above the threshold plus ``soh_hysteresis_pct``."""
    s = cfg.safety
    v = _number(reading.soh_pct)
    shown = "missing" if v is None else f"{v:g} %"
    low = latch_below(v, s.soh_derate_below_pct, s.soh_hysteresis_pct, "low_soh" in active)
    return [Check("low_soh", low, "warning",
                  f"state of health {shown}; derate below {s.soh_derate_below_pct:g} %, "
                  f"clears above {s.soh_derate_below_pct + s.soh_hysteresis_pct:g} %",
                  _derate(cfg, "low_soh", f"state of health below {s.soh_derate_below_pct:g} %"))]


def bms_alarm_checks(cfg: BatteryConfig, reading: BatteryReading, active: frozenset[str]) -> list[Check]:
    """Each alarm the BMS reports is its own alarm "bms_alarm:<name>": critical and a stop when
    ``stop_on_bms_alarm`` (the default), else a warning. It ends when the BMS no longer reports
    it; while the alarm list is missing, active ones stay active."""
    m = reading.alarms
    stop = cfg.safety.stop_on_bms_alarm
    if not m.ok or m.value is None:
        return [Check(code, True, "critical" if stop else "warning",
                      f"alarm list missing ({m.reason}); {code} kept active",
                      _stop(code, f"BMS alarm {code.removeprefix('bms_alarm:')!r} (latched)") if stop else ())
                for code in sorted(active) if code.startswith("bms_alarm:")]
    reported = set(m.value)
    checks = [Check(f"bms_alarm:{name}", True, "critical" if stop else "warning",
                    f"BMS reports alarm {name!r}" + ("; any BMS alarm stops the battery" if stop else ""),
                    _stop(f"bms_alarm:{name}", f"BMS alarm {name!r}") if stop else ())
              for name in sorted(reported)]
    for code in sorted(active):
        if code.startswith("bms_alarm:") and code.removeprefix("bms_alarm:") not in reported:
            checks.append(Check(code, False, "critical" if stop else "warning",
                                f"BMS no longer reports alarm {code.removeprefix('bms_alarm:')!r}"))
    return checks


def missing_field_checks(reading: BatteryReading) -> list[Check]:
    """A monitored field (:data:`BATTERY_MONITORED`) the profile provides but the device did not
    deliver raises the warning "<field>_missing"; the checks on it keep their last state."""
    checks = []
    for name in BATTERY_MONITORED:
        m: Measured[object] = getattr(reading, name)
        reason = m.reason or ""
        # a point the device answers with its "not implemented" sentinel is not provided either
        unsupported = reason.startswith("not provided by") or "not implemented" in reason
        absent = (not m.ok and not unsupported) or (
            isinstance(m.value, float) and not math.isfinite(m.value))
        checks.append(Check(f"{name}_missing", absent, "warning",
                            f"{name} missing ({reason or m.value}): its checks keep their last state"
                            if absent else f"{name} delivered again"))
    return checks


def battery_checks(cfg: BatteryConfig, reading: BatteryReading, active: frozenset[str]) -> list[Check]:
    """All early-warning rules of one battery; ``active`` holds its alarm codes active so far."""
    return (temperature_checks(cfg, reading, active) + spread_checks(cfg, reading, active)
            + soh_checks(cfg, reading, active) + bms_alarm_checks(cfg, reading, active)
            + missing_field_checks(reading))


def apply_battery_limits(wanted_net_kw: float, limits: Iterable[Limit]) -> tuple[float, list[Bound]]:
    """Clamp a wanted net power (kW, > 0 discharge) to the tightest limit in its direction; the
    bounds are every limit at that tightest value (empty when the value passes unchanged)."""
    if wanted_net_kw == 0:
        return 0.0, []
    direction: Direction = "discharge" if wanted_net_kw > 0 else "charge"
    mine = [lim for lim in limits if lim.direction == direction]
    if not mine:
        return wanted_net_kw, []
    cap = min(lim.kw for lim in mine)
    if abs(wanted_net_kw) <= cap + _EPS:
        return wanted_net_kw, []
    value = math.copysign(cap, wanted_net_kw) if cap > 0 else 0.0
    return value, [Bound(lim.name, value, lim.detail) for lim in mine if lim.kw <= cap + _EPS]


# ---------------------------------------------------------------------------------------------
# EV charger, electrolyser and PV rules


def ev_safe_kw(cfg: EvChargerConfig, mode: EvFallback = "min_current") -> float:
    """The charger's safe power, kW (see :data:`FALLBACKS`): its minimum power, or 0 with
    ``mode="pause"``."""
    return cfg.min_power_kw if mode == "min_current" else 0.0


def clamp_ev(wanted_kw: float, cfg: EvChargerConfig) -> tuple[float, list[Bound]]:
    """EV charging power (kW) is 0 or within [min, max] power of the charger. A request between
    0 and the minimum pauses (0 kW): the guard never adds load that was not asked for. A negative
    request (discharge) is allowed only on a V2G charger, down to −``max_discharge_kw``."""
    hi = cfg.max_power_kw
    lo = cfg.min_power_kw
    max_name = "max_kw" if cfg.max_kw is not None else "max_current_a"
    min_name = "min_kw" if cfg.min_kw is not None else "min_current_a"
    if wanted_kw < 0:
        if not cfg.v2g:
            return 0.0, [Bound("v2g", 0.0, "charger is not V2G: no discharge")]
        if -wanted_kw > cfg.max_discharge_kw + _EPS:
            value = -cfg.max_discharge_kw
            return value, [Bound("max_discharge_kw", value, f"V2G rating {cfg.max_discharge_kw:g} kW")]
        return wanted_kw, []
    if wanted_kw > hi + _EPS:
        return hi, [Bound(max_name, hi, f"charger maximum {hi:.2f} kW")]
    if 0 < wanted_kw < lo - _EPS:
        return 0.0, [Bound(min_name, 0.0, f"{wanted_kw:g} kW is below the charger minimum {lo:.2f} kW: "
                                          "paused")]
    return wanted_kw, []


def ev_fault_check(reading: EvChargerReading) -> Check:
    """A charger in IEC 61851 state E or F (error) is a warning "charger_fault" and gets 0 kW."""
    state = reading.state.value if reading.state.ok else None
    fault = state in ("E", "F")
    return Check("charger_fault", fault, "warning", f"charger state {state}; E/F is an error state")


def clamp_electrolyser(wanted_kw: float, cfg: ElectrolyserConfig) -> tuple[float, list[Bound]]:
    """Electrolyser stack power (kW) is 0 (standby) or within [``min_load_fraction`` ×
    ``rated_kw``, ``rated_kw``]. A request above 0 but below the minimum load becomes standby;
    a negative one too."""
    min_load = cfg.min_load_fraction * cfg.rated_kw
    if wanted_kw < 0:
        return 0.0, [Bound("standby", 0.0, f"negative request {wanted_kw:g} kW: standby")]
    if wanted_kw == 0:
        return 0.0, []
    if wanted_kw < min_load - _EPS:
        return 0.0, [Bound("min_load_fraction", 0.0,
                           f"{wanted_kw:g} kW is below the minimum load {min_load:g} kW "
                           f"({cfg.min_load_fraction:g} × {cfg.rated_kw:g} kW): standby")]
    if wanted_kw > cfg.rated_kw + _EPS:
        return cfg.rated_kw, [Bound("rated_kw", cfg.rated_kw, f"rating {cfg.rated_kw:g} kW")]
    return wanted_kw, []


def clamp_pv(wanted_kw: float | None, cfg: PvConfig) -> tuple[float | None, list[Bound]]:
    """A PV limit (kW) is None (no limit) or at least :data:`PV_MIN_LIMIT_FRACTION` × ``kwp``."""
    if wanted_kw is None:
        return None, []
    floor = PV_MIN_LIMIT_FRACTION * cfg.kwp
    if wanted_kw < floor - _EPS:
        return floor, [Bound("pv_min_limit", floor,
                             f"limit {wanted_kw:g} kW raised to {PV_MIN_LIMIT_FRACTION:.0%} of "
                             f"{cfg.kwp:g} kWp (0 % puts inverters in standby)")]
    return wanted_kw, []


def safe_state(config: SiteConfig, ev_fallback: EvFallback = "min_current") -> Setpoints:
    """Every device in its safe state (:data:`FALLBACKS`), for shutdown and pause: batteries idle,
    EV chargers at their safe current, electrolysers in standby, PV limits released."""
    sp = Setpoints()
    sp.battery_net_kw.update({b.name: 0.0 for b in config.battery})
    sp.ev_kw.update({c.name: ev_safe_kw(c, ev_fallback) for c in config.ev_charger})
    sp.electrolyser_kw.update({e.name: 0.0 for e in config.electrolyser})
    sp.pv_limit_kw.update({p.name: None for p in config.pv})
    return sp


# ---------------------------------------------------------------------------------------------
# The guard


@dataclass
class _Cycle:
    """What one cycle collects."""

    setpoints: Setpoints = field(default_factory=Setpoints)
    bounds: dict[str, list[Bound]] = field(default_factory=dict)
    fallback: set[str] = field(default_factory=set)
    checks: dict[str, list[Check]] = field(default_factory=dict)


class SafetyGuard:
    """Bounds wanted setpoints every cycle and keeps which alarms are active.

    ``staleness_s``: a reading whose key field is older than this (s) is stale. ``ev_fallback``:
    "min_current" (default) or "pause" (see :data:`FALLBACKS`). The devices checked every cycle
    are the configured ones that have a ``device`` (the service reads and writes those), plus any
    configured device named in the wanted setpoints or the readings."""

    def __init__(self, config: SiteConfig, staleness_s: float = DEFAULT_STALENESS_S,
                 ev_fallback: EvFallback = "min_current") -> None:
        if not staleness_s > 0:
            raise ValueError(f"staleness_s must be > 0, got {staleness_s!r}")
        self.config = config
        self.staleness_s = staleness_s
        self.ev_fallback: EvFallback = ev_fallback
        self._batteries = {b.name: b for b in config.battery}
        self._chargers = {c.name: c for c in config.ev_charger}
        self._electrolysers = {e.name: e for e in config.electrolyser}
        self._pv = {p.name: p for p in config.pv}
        self._active: dict[tuple[str, str], AlarmEvent] = {}
        self.reserves: dict[str, float] = {}
        """Battery -> SOC floor (fraction) set by the operator; holds when above the config's."""

    @property
    def active_alarms(self) -> tuple[AlarmEvent, ...]:
        """The alarms active now (their ``raised`` events), by device and code."""
        return tuple(self._active[k] for k in sorted(self._active))

    def _active_codes(self, device: str) -> frozenset[str]:
        return frozenset(code for dev, code in self._active if dev == device)

    @staticmethod
    def _watched(assets: Mapping[str, BatteryConfig | EvChargerConfig | ElectrolyserConfig | PvConfig],
                 wanted: Mapping[str, object], readings: Mapping[str, object]) -> list[str]:
        return [n for n, c in assets.items() if c.device is not None or n in wanted or n in readings]

    def check(self, wanted: Setpoints, readings: Mapping[str, CapabilityReading | None],
              now: datetime) -> GuardResult:
        """One cycle: ``wanted`` setpoints, the latest reading per device name (None or absent =
        no reading), ``now`` timezone-aware UTC."""
        if now.tzinfo is None or now.utcoffset() != timedelta(0):
            raise ValueError(f"now must be timezone-aware UTC, got {now.isoformat()}")
        cyc = _Cycle()
        for name in self._watched(self._batteries, wanted.battery_net_kw, readings):
            self._battery(name, wanted, readings.get(name), now, cyc)
        for name in self._watched(self._chargers, wanted.ev_kw, readings):
            self._charger(name, wanted, readings.get(name), now, cyc)
        for name in self._watched(self._electrolysers, wanted.electrolyser_kw, readings):
            self._electrolyser(name, wanted, readings.get(name), now, cyc)
        for name in self._watched(self._pv, wanted.pv_limit_kw, readings):
            self._pv_inverter(name, wanted, readings.get(name), now, cyc)
        self._unknown(wanted, cyc)
        events = self._edges(cyc.checks, now)
        return GuardResult(cyc.setpoints, events, cyc.bounds, frozenset(cyc.fallback), self.active_alarms)

    # -- per device class --

    def _fallback(self, name: str, kind: str, problem: str | None, cyc: _Cycle) -> bool:
        """Record the stale/missing check; True when the device goes to its fallback."""
        cyc.checks.setdefault(name, []).append(Check(
            "reading_unavailable", problem is not None, "warning",
            f"{kind} {name}: {problem}; fallback {FALLBACKS[kind]}" if problem is not None
            else f"{kind} {name}: fresh reading again"))
        if problem is not None:
            cyc.fallback.add(name)
        return problem is not None

    def _battery(self, name: str, wanted: Setpoints, reading: CapabilityReading | None, now: datetime,
                 cyc: _Cycle) -> None:
        cfg = self._batteries[name]
        problem = reading_problem(reading, "battery", now, self.staleness_s)
        if self._fallback(name, "battery", problem, cyc):
            cyc.setpoints.battery_net_kw[name] = 0.0
            cyc.bounds[name] = [Bound("fallback", 0.0, f"{problem}: idle")]
            return
        assert isinstance(reading, BatteryReading)
        checks = battery_checks(cfg, reading, self._active_codes(name))
        cyc.checks[name].extend(checks)
        if name not in wanted.battery_net_kw:
            return
        soc = _number(reading.soc_pct)
        assert soc is not None
        limits = battery_rating_limits(cfg) + battery_soc_limits(cfg, soc, self.reserves.get(name))
        # Active alarms limit the battery, also those kept active because their value is missing.
        limits += [lim for c in checks if c.active for lim in c.limits]
        value, bounds = _finite_or(wanted.battery_net_kw[name], 0.0)
        if not bounds:
            value, bounds = apply_battery_limits(value, limits)
        cyc.setpoints.battery_net_kw[name] = value
        cyc.bounds[name] = bounds

    def _charger(self, name: str, wanted: Setpoints, reading: CapabilityReading | None, now: datetime,
                 cyc: _Cycle) -> None:
        cfg = self._chargers[name]
        problem = reading_problem(reading, "ev_charger", now, self.staleness_s)
        if self._fallback(name, "ev_charger", problem, cyc):
            safe = ev_safe_kw(cfg, self.ev_fallback)
            cyc.setpoints.ev_kw[name] = safe
            cyc.bounds[name] = [Bound("fallback", safe, f"{problem}: safe current {safe:.2f} kW")]
            return
        assert isinstance(reading, EvChargerReading)
        fault = ev_fault_check(reading)
        cyc.checks[name].append(fault)
        if name not in wanted.ev_kw:
            return
        value, bounds = _finite_or(wanted.ev_kw[name], 0.0)
        if not bounds:
            value, bounds = clamp_ev(value, cfg)
        if fault.active and value != 0:
            value, bounds = 0.0, [Bound("charger_fault", 0.0, fault.message)]
        cyc.setpoints.ev_kw[name] = value
        cyc.bounds[name] = bounds

    def _electrolyser(self, name: str, wanted: Setpoints, reading: CapabilityReading | None, now: datetime,
                      cyc: _Cycle) -> None:
        cfg = self._electrolysers[name]
        problem = reading_problem(reading, "electrolyser", now, self.staleness_s)
        if self._fallback(name, "electrolyser", problem, cyc):
            cyc.setpoints.electrolyser_kw[name] = 0.0
            cyc.bounds[name] = [Bound("fallback", 0.0, f"{problem}: standby")]
            return
        if name not in wanted.electrolyser_kw:
            return
        value, bounds = _finite_or(wanted.electrolyser_kw[name], 0.0)
        if not bounds:
            value, bounds = clamp_electrolyser(value, cfg)
        cyc.setpoints.electrolyser_kw[name] = value
        cyc.bounds[name] = bounds

    def _pv_inverter(self, name: str, wanted: Setpoints, reading: CapabilityReading | None, now: datetime,
                     cyc: _Cycle) -> None:
        cfg = self._pv[name]
        problem = reading_problem(reading, "pv_inverter", now, self.staleness_s)
        if self._fallback(name, "pv_inverter", problem, cyc):
            cyc.setpoints.pv_limit_kw[name] = None
            cyc.bounds[name] = [Bound("fallback", None, f"{problem}: limit released")]
            return
        if name not in wanted.pv_limit_kw:
            return
        raw = wanted.pv_limit_kw[name]
        limit: float | None
        if raw is not None and not math.isfinite(raw):
            limit, bounds = None, [Bound("invalid_setpoint", None, f"wanted {raw!r} is not finite: released")]
        else:
            limit, bounds = clamp_pv(raw, cfg)
        cyc.setpoints.pv_limit_kw[name] = limit
        cyc.bounds[name] = bounds

    def _unknown(self, wanted: Setpoints, cyc: _Cycle) -> None:
        """Setpoints for names the config does not have are dropped (recorded in ``bounds``)."""
        for asked, known in ((wanted.battery_net_kw, self._batteries), (wanted.ev_kw, self._chargers),
                             (wanted.electrolyser_kw, self._electrolysers), (wanted.pv_limit_kw, self._pv)):
            for name in asked:
                if name not in known:
                    cyc.bounds[name] = [Bound("not_configured", None, f"no such device {name!r}: dropped")]

    def _edges(self, checks: Mapping[str, list[Check]], now: datetime) -> list[AlarmEvent]:
        """Raise alarms that start, clear those that end; unchanged ones give no event."""
        events: list[AlarmEvent] = []
        for device, device_checks in checks.items():
            for c in device_checks:
                key = (device, c.code)
                if c.active and key not in self._active:
                    event = AlarmEvent(device, c.code, c.severity, c.message, "raised", now)
                    self._active[key] = event
                    events.append(event)
                elif not c.active and key in self._active:
                    del self._active[key]
                    events.append(AlarmEvent(device, c.code, c.severity, c.message, "cleared", now))
        return events


def _finite_or(value: float, fallback: float) -> tuple[float, list[Bound]]:
    """``value`` if finite, else ``fallback`` with an "invalid_setpoint" bound."""
    if math.isfinite(value):
        return value, []
    return fallback, [Bound("invalid_setpoint", fallback, f"wanted {value!r} is not finite")]
