"""Capability interfaces: what the controller sees of a device, one reading type per device class.

A profile describes registers; a capability reading describes the device in site units (kW, kWh,
A, V, %, kg of hydrogen). The mapping from one to the other is data too: :data:`MAPPINGS` says,
per bundled profile, which point feeds which capability field and how its unit is converted.
:func:`to_capability` applies it to a poll.

Every field is a :class:`Measured`. A value is never made up: a point the device did not deliver
stays missing with its reason, and a field no point feeds is missing with the reason
``"not provided by <profile>"``.

Setpoints go the other way: :func:`to_commands` turns a typed setpoint into the profile's
command values, refusing (never clamping) a value outside the command's limits.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, ClassVar, Generic, Literal, TypeVar

from drivers.modbus.profile import DeviceKind, Profile, Reading

T = TypeVar("T")

Quality = Literal["good", "missing"]

_ZERO = timedelta(0)


@dataclass(frozen=True)
class Measured(Generic[T]):
    """One capability value: ``value`` is None exactly when ``quality`` is "missing" and ``reason``
    says why. ``timestamp`` is the (timezone-aware, UTC) time of the poll it came from."""

    value: T | None
    unit: str | None
    timestamp: datetime
    quality: Quality = "good"
    reason: str | None = None

    def __post_init__(self) -> None:
        if (self.value is None) != (self.quality == "missing"):
            raise ValueError(f"Measured: quality {self.quality!r} does not match value {self.value!r}")
        if (self.reason is None) != (self.quality == "good"):
            raise ValueError(f"Measured: quality {self.quality!r} does not match reason {self.reason!r}")
        if self.timestamp.tzinfo is None or self.timestamp.utcoffset() != _ZERO:
            raise ValueError(f"Measured: timestamp must be UTC, got {self.timestamp.isoformat()}")

    @property
    def ok(self) -> bool:
        return self.quality == "good"


def good(value: T, unit: str | None, timestamp: datetime) -> Measured[T]:
    return Measured(value, unit, timestamp)


def missing(unit: str | None, timestamp: datetime, reason: str) -> Measured[Any]:
    return Measured(None, unit, timestamp, "missing", reason)


# ---------------------------------------------------------------------------------------------
# Readings, one per device class


@dataclass(frozen=True)
class MeterReading:
    """A grid or sub-meter.

    ``power_net_kw`` is signed: positive = import (power flowing from the grid into the site, the
    meter's forward direction), negative = export. Per-phase powers follow the same sign.
    """

    power_net_kw: Measured[float]
    power_l1_net_kw: Measured[float]
    power_l2_net_kw: Measured[float]
    power_l3_net_kw: Measured[float]
    voltage_l1_v: Measured[float]
    voltage_l2_v: Measured[float]
    voltage_l3_v: Measured[float]
    current_l1_a: Measured[float]
    current_l2_a: Measured[float]
    current_l3_a: Measured[float]
    import_energy_kwh: Measured[float]
    export_energy_kwh: Measured[float]
    frequency_hz: Measured[float]

    UNITS: ClassVar[Mapping[str, str | None]] = {
        "power_net_kw": "kW",
        "power_l1_net_kw": "kW",
        "power_l2_net_kw": "kW",
        "power_l3_net_kw": "kW",
        "voltage_l1_v": "V",
        "voltage_l2_v": "V",
        "voltage_l3_v": "V",
        "current_l1_a": "A",
        "current_l2_a": "A",
        "current_l3_a": "A",
        "import_energy_kwh": "kWh",
        "export_energy_kwh": "kWh",
        "frequency_hz": "Hz",
    }


@dataclass(frozen=True)
class PvInverterReading:
    """A PV inverter. ``power_kw`` is AC output, non-negative; ``energy_kwh`` the lifetime yield;
    ``power_limit_pct`` the active-power limit in force, % of rated power."""

    state: Measured[str]
    power_kw: Measured[float]
    energy_kwh: Measured[float]
    power_limit_pct: Measured[float]

    UNITS: ClassVar[Mapping[str, str | None]] = {
        "state": None,
        "power_kw": "kW",
        "energy_kwh": "kWh",
        "power_limit_pct": "%",
    }


@dataclass(frozen=True)
class BatteryReading:
    """A battery system.

    ``power_net_kw`` is signed: positive = discharging (power flowing from the battery into the
    site), negative = charging. ``cell_voltage_spread_v`` is the highest minus the lowest cell
    voltage. ``alarms`` holds the names of the active alarms; an empty tuple means none.
    """

    state: Measured[str]
    power_net_kw: Measured[float]
    soc_pct: Measured[float]
    soh_pct: Measured[float]
    cell_temperature_min_c: Measured[float]
    cell_temperature_max_c: Measured[float]
    cell_voltage_spread_v: Measured[float]
    alarms: Measured[tuple[str, ...]]

    UNITS: ClassVar[Mapping[str, str | None]] = {
        "state": None,
        "power_net_kw": "kW",
        "soc_pct": "%",
        "soh_pct": "%",
        "cell_temperature_min_c": "°C",
        "cell_temperature_max_c": "°C",
        "cell_voltage_spread_v": "V",
        "alarms": None,
    }


EV_STATES = ("A", "B1", "B2", "C1", "C2", "D1", "D2", "E", "F")
"""IEC 61851-1 mode 3 states: A no vehicle, B connected, C/D charging (D with ventilation),
E/F error (1 = no PWM, 2 = PWM offered)."""


@dataclass(frozen=True)
class EvChargerReading:
    """An EV charger (one socket).

    ``state`` is the IEC 61851-1 state (see :data:`EV_STATES`); ``power_kw`` the power delivered
    to the vehicle, non-negative; ``applied_current_a`` the current limit the charger applies.
    ``session_energy_kwh`` counts the current session, ``total_energy_kwh`` is the meter total:
    a charger reports one or the other (or both).
    """

    state: Measured[str]
    plugged: Measured[bool]
    power_kw: Measured[float]
    applied_current_a: Measured[float]
    session_energy_kwh: Measured[float]
    total_energy_kwh: Measured[float]

    UNITS: ClassVar[Mapping[str, str | None]] = {
        "state": None,
        "plugged": None,
        "power_kw": "kW",
        "applied_current_a": "A",
        "session_energy_kwh": "kWh",
        "total_energy_kwh": "kWh",
    }


@dataclass(frozen=True)
class ElectrolyserReading:
    """An electrolyser. ``power_kw`` is electrical input, non-negative; ``production_rate_pct``
    the production-rate setpoint in force; hydrogen is in kg (flow kg/h, total kg)."""

    state: Measured[str]
    power_kw: Measured[float]
    production_rate_pct: Measured[float]
    h2_flow_kg_per_h: Measured[float]
    h2_total_kg: Measured[float]
    tank_pressure_bar: Measured[float]
    tank_level_pct: Measured[float]

    UNITS: ClassVar[Mapping[str, str | None]] = {
        "state": None,
        "power_kw": "kW",
        "production_rate_pct": "%",
        "h2_flow_kg_per_h": "kg/h",
        "h2_total_kg": "kg",
        "tank_pressure_bar": "bar",
        "tank_level_pct": "%",
    }


CapabilityReading = MeterReading | PvInverterReading | BatteryReading | EvChargerReading | ElectrolyserReading

READING_TYPES: dict[DeviceKind, type[CapabilityReading]] = {
    "meter": MeterReading,
    "pv_inverter": PvInverterReading,
    "battery": BatteryReading,
    "ev_charger": EvChargerReading,
    "electrolyser": ElectrolyserReading,
}


def field_units(kind: DeviceKind) -> dict[str, str | None]:
    """Capability fields of a device class, in order, with their units."""
    return dict(_field_units(kind))


@functools.cache
def _field_units(kind: DeviceKind) -> tuple[tuple[str, str | None], ...]:
    cls = READING_TYPES[kind]
    return tuple((f.name, cls.UNITS[f.name]) for f in dataclasses.fields(cls))


# ---------------------------------------------------------------------------------------------
# Mapping: profile points -> capability fields

W_TO_KW = 0.001
WH_TO_KWH = 0.001

H2_KG_PER_NL = 0.08988e-3
"""Hydrogen density at normal conditions (0 °C, 101.325 kPa): 0.08988 kg/m³, so kg per normal litre."""


class Unavailable(Exception):
    """A converter cannot give a value; the message is the missing reason."""


Converter = Callable[[float | str], object]
Inverse = Callable[[Any], float | str]


@dataclass(frozen=True)
class FieldSource:
    """One capability field fed by one point.

    ``point_unit`` is the unit the profile declares for the point (checked by
    :func:`check_mapping`). A numeric source is multiplied by ``factor``; a ``convert`` function
    replaces that for values that need decoding (states, bit fields) and raises
    :class:`Unavailable` when the raw value has no meaning. ``note`` describes the conversion.

    ``inverse`` turns a capability value back into the point's value (simulators publish site
    state through it). A factor source is inverted by dividing; a converted field without an
    inverse is derived from another field's point and is not published on its own.
    """

    point: str
    point_unit: str | None
    factor: float | None = 1.0
    convert: Converter | None = None
    note: str = ""
    inverse: Inverse | None = None
    minus_point: str | None = None
    """When set, the field is (point − minus_point) × factor, e.g. a cell-voltage spread from the
    highest and lowest cell voltage; missing when either is missing. Not published by inverse."""

    def describe(self) -> str:
        if self.note:
            return self.note
        if self.factor == 1.0:
            return "as read"
        return f"× {self.factor:g}"


def _scaled(point: str, point_unit: str, factor: float, note: str) -> FieldSource:
    return FieldSource(point, point_unit, factor, None, note)


def _as_is(point: str, point_unit: str | None) -> FieldSource:
    return FieldSource(point, point_unit)


def _abb_state(raw: float | str) -> str:
    if isinstance(raw, str):
        raise Unavailable(f"expected a number, got {raw!r}")
    code = (int(raw) >> 8) & 0x7F
    states = {0: "A", 1: "B1", 2: "B2", 3: "C1", 4: "C2"}
    if code not in states:
        raise Unavailable(f"state code {code} has no IEC 61851 equivalent")
    return states[code]


def _abb_state_raw(state: str) -> float:
    codes = {"A": 0, "B1": 1, "B2": 2, "C1": 3, "C2": 4}
    return float(codes[state] << 8)


def _abb_plugged_raw(plugged: bool) -> float:
    return float(0x101 if plugged else 0)


def _abb_plugged(raw: float | str) -> bool:
    if isinstance(raw, str):
        raise Unavailable(f"expected a number, got {raw!r}")
    return bool(int(raw) & 0x100)


def _alfen_state(raw: float | str) -> str:
    text = str(raw).strip("\x00 ").upper()
    if text not in EV_STATES:
        raise Unavailable(f"unknown mode 3 state {text!r}")
    return text


def _alfen_plugged(raw: float | str) -> bool:
    state = _alfen_state(raw)
    if state in ("E", "F"):
        raise Unavailable(f"state {state} (error): plug state unknown")
    return state != "A"


ENAPTER_SYSTEM_STATES = {
    0: "not initialised",
    1: "in operation",
    2: "error",
    3: "fatal error",
    4: "expert mode",
}


def _enapter_state(raw: float | str) -> str:
    if isinstance(raw, str) or int(raw) not in ENAPTER_SYSTEM_STATES:
        raise Unavailable(f"unknown system state {raw!r}")
    return ENAPTER_SYSTEM_STATES[int(raw)]


def _enapter_state_raw(state: str) -> float:
    return float({v: k for k, v in ENAPTER_SYSTEM_STATES.items()}[state])


ENAPTER_ELECTROLYSER_STATES = {0: "halted", 2: "idle", 3: "steady", 4: "standby"}
"""Enapter input register 1200 (electrolyser state machine)."""


def _enapter_el_state(raw: float | str) -> str:
    if isinstance(raw, str) or int(raw) not in ENAPTER_ELECTROLYSER_STATES:
        raise Unavailable(f"unknown electrolyser state {raw!r}")
    return ENAPTER_ELECTROLYSER_STATES[int(raw)]


def _enapter_el_state_raw(state: str) -> float:
    return float({v: k for k, v in ENAPTER_ELECTROLYSER_STATES.items()}[state])


VICTRON_BATTERY_STATES = {0: "idle", 1: "charging", 2: "discharging"}


def _victron_battery_state(raw: float | str) -> str:
    if isinstance(raw, str) or int(raw) not in VICTRON_BATTERY_STATES:
        raise Unavailable(f"unknown battery state {raw!r}")
    return VICTRON_BATTERY_STATES[int(raw)]


def _victron_battery_state_raw(state: str) -> float:
    return float({v: k for k, v in VICTRON_BATTERY_STATES.items()}[state])


def _charx_state(raw: float | str) -> str:
    text = str(raw).strip("\x00 ").upper()
    if text in EV_STATES:
        return text
    if text[:1] in ("B", "C", "D"):
        raise Unavailable(f"state letter {text[:1]!r} without the PWM digit has no single IEC 61851 state")
    raise Unavailable(f"unknown IEC 61851 state {text!r}")


def _charx_plugged(raw: float | str) -> bool:
    letter = str(raw).strip("\x00 ").upper()[:1]
    if letter == "A":
        return False
    if letter in ("B", "C", "D"):
        return True
    raise Unavailable(f"state {letter or raw!r}: plug state unknown")


METER_POINT_FIELDS: dict[str, FieldSource] = {
    "power_net_kw": _scaled(
        "total_active_power_net_w", "W", W_TO_KW, "W → kW; sign kept: + = import, − = export"
    ),
    "power_l1_net_kw": _scaled("active_power_l1_w", "W", W_TO_KW, "W → kW; + = import"),
    "power_l2_net_kw": _scaled("active_power_l2_w", "W", W_TO_KW, "W → kW; + = import"),
    "power_l3_net_kw": _scaled("active_power_l3_w", "W", W_TO_KW, "W → kW; + = import"),
    "voltage_l1_v": _as_is("voltage_l1_v", "V"),
    "voltage_l2_v": _as_is("voltage_l2_v", "V"),
    "voltage_l3_v": _as_is("voltage_l3_v", "V"),
    "current_l1_a": _as_is("current_l1_a", "A"),
    "current_l2_a": _as_is("current_l2_a", "A"),
    "current_l3_a": _as_is("current_l3_a", "A"),
    "import_energy_kwh": _as_is("import_energy_kwh", "kWh"),
    "export_energy_kwh": _as_is("export_energy_kwh", "kWh"),
    "frequency_hz": _as_is("frequency_hz", "Hz"),
}
"""Meter fields for profiles that name their points the same way (SDM630, EM24)."""

MAPPINGS: dict[str, dict[str, FieldSource]] = {
    # -- vendor profiles (drivers/profiles/*.toml) --
    "eastron_sdm630": METER_POINT_FIELDS,
    "alfen_ng9xx": {
        "state": FieldSource("mode3_state", None, None, _alfen_state, "mode 3 state string", str),
        "plugged": FieldSource("mode3_state", None, None, _alfen_plugged, "state B, C or D; unknown in E/F"),
        "power_kw": _scaled("active_power_w", "W", W_TO_KW, "W → kW"),
        "applied_current_a": _as_is("applied_max_current_a", "A"),
        "total_energy_kwh": _scaled("energy_delivered_wh", "Wh", WH_TO_KWH, "Wh → kWh (meter total)"),
    },
    "abb_terra_ac": {
        "state": FieldSource(
            "charging_state_raw", None, None, _abb_state, "bits 8..14: 0 A, 1 B1, 2 B2, 3 C1, 4 C2",
            _abb_state_raw,
        ),
        "plugged": FieldSource(
            "socket_lock_state", None, None, _abb_plugged, "bit 0x100 (cable at EV)", _abb_plugged_raw
        ),
        "power_kw": _scaled("active_power_w", "W", W_TO_KW, "W → kW"),
        "applied_current_a": FieldSource(
            "applied_current_limit_a", "A", note="as read (the profile's scale 0.001 turns mA into A)"
        ),
        "session_energy_kwh": _scaled("session_energy_wh", "Wh", WH_TO_KWH, "Wh → kWh (session)"),
    },
    "enapter_el": {
        "state": FieldSource(
            "electrolyser_state", None, None, _enapter_el_state,
            "1200: 0 halted, 2 idle, 3 steady, 4 standby", _enapter_el_state_raw,
        ),
        "production_rate_pct": _as_is("production_rate_pct", "%"),
        "h2_flow_kg_per_h": _scaled(
            "h2_flow_nl_per_h", "NL/h", H2_KG_PER_NL, f"NL/h → kg/h (× {H2_KG_PER_NL:g} kg/NL)"
        ),
        "h2_total_kg": _scaled("h2_total_nl", "NL", H2_KG_PER_NL, f"NL → kg (× {H2_KG_PER_NL:g} kg/NL)"),
    },
    "carlo_gavazzi_em24": METER_POINT_FIELDS,
    "victron_gx": {
        "state": FieldSource(
            "battery_state", None, None, _victron_battery_state, "0 idle, 1 charging, 2 discharging",
            _victron_battery_state_raw,
        ),
        "power_net_kw": _scaled(
            "battery_power_w", "W", -W_TO_KW, "W → kW, sign flipped: the GX counts charging positive"
        ),
        "soc_pct": _as_is("soc_pct", "%"),
    },
    "victron_vebus": {
        "soc_pct": _as_is("vebus_soc_pct", "%"),
    },
    "phoenix_charx": {
        "state": FieldSource(
            "status", None, None, _charx_state, "IEC 61851 state; a bare B/C/D letter is missing", str
        ),
        "plugged": FieldSource("status", None, None, _charx_plugged, "letter B, C or D; unknown in E/F"),
        "power_kw": _scaled("active_power_w", "W", W_TO_KW, "W → kW (the profile's scale turns mW into W)"),
        "total_energy_kwh": _scaled("total_energy_wh", "Wh", WH_TO_KWH, "Wh → kWh (meter total)"),
    },
    # -- end of vendor profiles --
    # -- SunSpec profiles (drivers/sunspec) --
    # Defined in drivers/sunspec/capability_map.py (its converters need the SunSpec model tables).
    **__import__("drivers.sunspec.capability_map", fromlist=["mappings"]).mappings(),
    # -- end of SunSpec profiles --
}
"""Per profile name: capability field -> the point that feeds it."""


def check_mapping(profile: Profile) -> list[str]:
    """Problems with the mapping for ``profile`` (empty when it is consistent with the profile)."""
    mapping = MAPPINGS.get(profile.name)
    if mapping is None:
        return [f"{profile.name}: no capability mapping"]
    units = field_units(profile.kind)
    problems: list[str] = []
    for name, src in mapping.items():
        where = f"{profile.name}: {name}"
        if name not in units:
            problems.append(f"{where}: not a {profile.kind} capability field")
        point = profile.points.get(src.point)
        if point is None:
            problems.append(f"{where}: no such point {src.point!r}")
        elif point.unit != src.point_unit:
            problems.append(
                f"{where}: point {src.point} unit is {point.unit!r}, mapping expects {src.point_unit!r}"
            )
        if (src.factor is None) == (src.convert is None):
            problems.append(f"{where}: give exactly one of factor and convert")
        if src.minus_point is not None:
            other = profile.points.get(src.minus_point)
            if other is None:
                problems.append(f"{where}: no such point {src.minus_point!r}")
            elif other.unit != src.point_unit:
                problems.append(
                    f"{where}: point {src.minus_point} unit is {other.unit!r}, expected {src.point_unit!r}"
                )
        if src.factor == 0:
            problems.append(f"{where}: factor must be non-zero")
    for name, entry in COMMAND_MAPPINGS.get(profile.name, {}).items():
        for csrc in command_sources(entry):
            if csrc.command not in profile.commands:
                problems.append(f"{profile.name}: setpoint {name}: no such command {csrc.command!r}")
    return problems


def _convert(src: FieldSource, reading: Reading) -> object:
    """Converted value of a present reading; raises Unavailable."""
    assert reading.value is not None
    if src.convert is not None:
        return src.convert(reading.value)
    if isinstance(reading.value, str):
        raise Unavailable(f"expected a number, got {reading.value!r}")
    value = float(reading.value) * (1.0 if src.factor is None else src.factor)
    if not math.isfinite(value):
        raise Unavailable(f"not finite ({value})")
    return value


def from_capability(profile: Profile, values: Mapping[str, Any]) -> dict[str, float | str]:
    """Point values that make ``to_capability`` report ``values`` (capability field -> value).

    The inverse of the read mapping, used by the simulators to publish site state in a device's
    own registers. Fields that are None, not mapped, or derived (a converter without an inverse)
    are skipped.
    """
    mapping = MAPPINGS[profile.name]
    points: dict[str, float | str] = {}
    for name, value in values.items():
        src = mapping.get(name)
        if src is None or value is None or src.minus_point is not None:
            continue
        if src.convert is not None:
            if src.inverse is not None:
                points[src.point] = src.inverse(value)
        else:
            factor = 1.0 if src.factor is None else src.factor
            points[src.point] = float(value) / factor
    return points


_CHECKED: dict[int, tuple[Profile, list[str]]] = {}
"""Profile id -> (the profile, its mapping problems): each profile is checked once."""


def to_capability(
    profile: Profile, poll_result: Mapping[str, Reading], timestamp: datetime | None = None
) -> CapabilityReading:
    """The capability reading (type by ``profile.kind``) of one poll of a device with ``profile``.

    ``poll_result`` is a :class:`drivers.modbus.device.PollResult`; its ``timestamp`` stamps every
    field unless ``timestamp`` is given (for a plain mapping it must be).
    """
    checked = _CHECKED.get(id(profile))
    if checked is None or checked[0] is not profile:
        checked = _CHECKED[id(profile)] = (profile, check_mapping(profile))
    problems = checked[1]
    if problems:
        raise ValueError("\n".join(problems))
    ts = timestamp if timestamp is not None else getattr(poll_result, "timestamp", None)
    if not isinstance(ts, datetime):
        raise ValueError(f"{profile.name}: poll result has no timestamp, got {ts!r}")
    mapping = MAPPINGS[profile.name]
    values: dict[str, Measured[Any]] = {}
    for name, unit in _field_units(profile.kind):
        src = mapping.get(name)
        if src is None:
            values[name] = missing(unit, ts, f"not provided by {profile.name}")
            continue
        reading = poll_result.get(src.point)
        if src.minus_point is not None and reading is not None and reading.value is not None:
            other = poll_result.get(src.minus_point)
            if other is None or other.value is None or isinstance(other.value, str):
                why = "not polled" if other is None else (other.missing_reason or "missing")
                values[name] = missing(unit, ts, f"{src.minus_point}: {why}")
                continue
            reading = Reading(float(reading.value) - float(other.value), reading.unit, None)
        if reading is None:
            values[name] = missing(unit, ts, f"{src.point}: not polled")
        elif reading.value is None:
            values[name] = missing(unit, ts, f"{src.point}: {reading.missing_reason or 'missing'}")
        else:
            try:
                values[name] = good(_convert(src, reading), unit, ts)
            except Unavailable as exc:
                values[name] = missing(unit, ts, f"{src.point}: {exc}")
    return READING_TYPES[profile.kind](**values)


# ---------------------------------------------------------------------------------------------
# Setpoints -> commands


@dataclass(frozen=True)
class EvChargerSetpoint:
    """Charging current limit per phase, A. 0 pauses charging."""

    current_a: float


@dataclass(frozen=True)
class ElectrolyserSetpoint:
    """Run or stop; ``production_rate_pct`` (when given) is written before the start command."""

    run: bool
    production_rate_pct: float | None = None


@dataclass(frozen=True)
class BatterySetpoint:
    """Battery power, kW: positive = discharge (into the site), negative = charge."""

    power_net_kw: float


@dataclass(frozen=True)
class PvLimitSetpoint:
    """Active-power limit of a PV inverter, % of its rated power (100 = no curtailment)."""

    limit_pct: float


Setpoint = EvChargerSetpoint | ElectrolyserSetpoint | BatterySetpoint | PvLimitSetpoint


@dataclass(frozen=True)
class CommandSource:
    """One setpoint field carried by one command: command value = field value × ``factor``
    (a unit conversion, or −1 where the device counts the other direction).

    With ``constant`` set, the command is written with that value whenever the field is given
    (an enable flag or a control mode that must accompany the value); it is written before the
    commands that follow it in the mapping.
    """

    command: str
    factor: float = 1.0
    note: str = ""
    constant: float | None = None


def command_sources(entry: CommandSource | tuple[CommandSource, ...]) -> tuple[CommandSource, ...]:
    """The commands behind one setpoint field, in write order."""
    return entry if isinstance(entry, tuple) else (entry,)


COMMAND_MAPPINGS: dict[str, dict[str, CommandSource | tuple[CommandSource, ...]]] = {
    # -- vendor profiles (drivers/profiles/*.toml) --
    "alfen_ng9xx": {"current_a": CommandSource("max_current_a")},
    "abb_terra_ac": {"current_a": CommandSource("current_limit_a")},
    "enapter_el": {
        "production_rate_pct": CommandSource("production_rate_pct"),
        "run": CommandSource("start_stop"),
    },
    "victron_vebus": {
        "power_net_kw": (
            CommandSource("disable_charge", constant=0.0, note="charging allowed"),
            CommandSource("disable_feed_in", constant=0.0, note="feed-in allowed"),
            CommandSource("ess_setpoint_l1_w", -1000.0 / 3, "kW → W, a third per phase, + = charge"),
            CommandSource("ess_setpoint_l2_w", -1000.0 / 3, "kW → W, a third per phase, + = charge"),
            CommandSource("ess_setpoint_l3_w", -1000.0 / 3, "kW → W, a third per phase, + = charge"),
        ),
    },
    "phoenix_charx": {
        "current_a": (
            CommandSource("enable", constant=1.0, note="charging enabled"),
            CommandSource("max_current_a"),
        ),
    },
    # -- end of vendor profiles --
    # -- SunSpec profiles (drivers/sunspec) --
    **__import__("drivers.sunspec.capability_map", fromlist=["command_mappings"]).command_mappings(),
    # -- end of SunSpec profiles --
}
"""Per profile name: setpoint field -> the command (or commands, in write order) that carry it."""

_SETPOINT_KINDS: dict[type[Any], DeviceKind] = {
    EvChargerSetpoint: "ev_charger",
    ElectrolyserSetpoint: "electrolyser",
    BatterySetpoint: "battery",
    PvLimitSetpoint: "pv_inverter",
}


def to_commands(profile: Profile, setpoint: Setpoint) -> dict[str, float]:
    """Command values, by command name in write order, for ``setpoint`` on ``profile``.

    A value outside a command's limits raises ValueError naming the field and the value.
    """
    kind = _SETPOINT_KINDS[type(setpoint)]
    if profile.kind != kind:
        raise ValueError(f"{profile.name}: a {type(setpoint).__name__} needs a {kind}, got {profile.kind}")
    mapping = COMMAND_MAPPINGS.get(profile.name)
    if mapping is None:
        raise ValueError(f"{profile.name}: no setpoint mapping")
    commands: dict[str, float] = {}
    for name, entry in mapping.items():
        raw = getattr(setpoint, name)
        if raw is None:
            continue
        for source in command_sources(entry):
            command_name = source.command
            if source.constant is not None:
                value = source.constant
            elif isinstance(raw, bool):
                value = 1.0 if raw else 0.0
            else:
                value = float(raw) * source.factor
            command = profile.commands[command_name]
            where = f"{profile.name}: {type(setpoint).__name__}.{name}"
            if not math.isfinite(value):
                raise ValueError(f"{where}: must be finite, got {raw!r}")
            if command.limits is not None:
                lo, hi = command.limits
                if not lo <= value <= hi:
                    raise ValueError(f"{where}: outside {command_name} limits [{lo:g}, {hi:g}], got {raw!r}")
            commands[command_name] = value
    return commands


def from_commands(profile: Profile, command_values: Mapping[str, float]) -> dict[str, float]:
    """Setpoint fields (name -> value) carried by ``command_values`` (command name -> value):
    the inverse of :func:`to_commands`, used by simulators to see what a device was told."""
    fields: dict[str, float] = {}
    for name, entry in COMMAND_MAPPINGS.get(profile.name, {}).items():
        for source in command_sources(entry):
            if source.constant is None and source.command in command_values:
                fields[name] = command_values[source.command] / source.factor
    return fields
