"""Capability mappings of the SunSpec profiles (merged into :mod:`drivers.capabilities`).

``drivers.capabilities`` calls :func:`mappings` and :func:`command_mappings` while it builds its
tables, so this module imports it only inside functions.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from drivers.sunspec.models import model_def

if TYPE_CHECKING:
    from drivers.capabilities import CommandSource, FieldSource

REVERT_S = 60
"""Revert timeout (s) written with every SunSpec setpoint; equal to the commands' watchdog_s."""


class EnumText:
    """A SunSpec enum16 code as lower-case text (``MPPT`` → ``"mppt"``), and back."""

    def __init__(self, symbols: Mapping[str, int]) -> None:
        self.text = {code: name.lower().replace("_", " ") for name, code in symbols.items()}
        self.code = {text: code for code, text in self.text.items()}

    def __call__(self, raw: float | str) -> str:
        from drivers.capabilities import Unavailable

        if isinstance(raw, str) or int(raw) != raw or int(raw) not in self.text:
            raise Unavailable(f"unknown state code {raw!r}")
        return self.text[int(raw)]

    def inverse(self, text: str) -> float:
        if text not in self.code:
            raise ValueError(f"unknown state {text!r}; known: {', '.join(self.code)}")
        return float(self.code[text])


class BitNames:
    """A SunSpec bitfield32 as the tuple of the names of its set bits (lower case), and back."""

    def __init__(self, symbols: Mapping[str, int]) -> None:
        self.name = {bit: name.lower() for name, bit in symbols.items()}
        self.bit = {name: bit for bit, name in self.name.items()}

    def __call__(self, raw: float | str) -> tuple[str, ...]:
        from drivers.capabilities import Unavailable

        if isinstance(raw, str) or int(raw) != raw or raw < 0:
            raise Unavailable(f"not a bit field: {raw!r}")
        value = int(raw)
        return tuple(self.name.get(b, f"bit {b}") for b in range(32) if value >> b & 1)

    def inverse(self, names: tuple[str, ...]) -> float:
        unknown = [n for n in names if n not in self.bit]
        if unknown:
            raise ValueError(f"unknown alarm(s) {unknown!r}")
        return float(sum(1 << self.bit[n] for n in set(names)))


def _symbols(model_id: int, point: str) -> Mapping[str, int]:
    return model_def(model_id).point(point).symbols or {}


INVERTER_STATE = EnumText(_symbols(103, "St"))
BATTERY_STATE = EnumText(_symbols(802, "State"))
BATTERY_ALARMS = BitNames(_symbols(802, "Evt1"))


def mappings() -> dict[str, dict[str, FieldSource]]:
    """Per SunSpec profile: capability field -> the point that feeds it."""
    from drivers.capabilities import W_TO_KW, WH_TO_KWH, FieldSource

    def w(point: str, note: str) -> FieldSource:
        return FieldSource(point, "W", W_TO_KW, None, note)

    def as_is(point: str, unit: str) -> FieldSource:
        return FieldSource(point, unit)

    return {
        "sunspec_inverter": {
            "state": FieldSource(
                "operating_state", None, None, INVERTER_STATE, "103 St code → text (off, mppt, throttled …)",
                INVERTER_STATE.inverse,
            ),
            "power_kw": w("ac_power_w", "W → kW"),
            "energy_kwh": FieldSource("energy_wh", "Wh", WH_TO_KWH, None, "Wh → kWh (lifetime)"),
            "power_limit_pct": FieldSource(
                "power_limit_pct", "%", note="123 WMaxLimPct as read (in force when WMaxLim_Ena = 1)"
            ),
        },
        "sunspec_battery": {
            "state": FieldSource(
                "battery_state", None, None, BATTERY_STATE, "802 State code → text (connected, standby …)",
                BATTERY_STATE.inverse,
            ),
            "power_net_kw": w("ac_power_w", "W → kW; 701 W: + = discharge (generation), − = charge"),
            "soc_pct": as_is("soc_pct", "%"),
            "soh_pct": as_is("soh_pct", "%"),
            "cell_voltage_spread_v": FieldSource(
                "cell_voltage_max_v", "V", note="802 CellVMax − CellVMin", minus_point="cell_voltage_min_v"
            ),
            "alarms": FieldSource(
                "battery_events", None, None, BATTERY_ALARMS, "802 Evt1 bits → alarm names",
                BATTERY_ALARMS.inverse,
            ),
        },
        "sunspec_meter": {
            "power_net_kw": w("power_w", "W → kW; + = import, − = export"),
            "power_l1_net_kw": w("power_l1_w", "W → kW; + = import"),
            "power_l2_net_kw": w("power_l2_w", "W → kW; + = import"),
            "power_l3_net_kw": w("power_l3_w", "W → kW; + = import"),
            "voltage_l1_v": as_is("voltage_l1_v", "V"),
            "voltage_l2_v": as_is("voltage_l2_v", "V"),
            "voltage_l3_v": as_is("voltage_l3_v", "V"),
            "current_l1_a": as_is("current_l1_a", "A"),
            "current_l2_a": as_is("current_l2_a", "A"),
            "current_l3_a": as_is("current_l3_a", "A"),
            "import_energy_kwh": FieldSource("import_energy_wh", "Wh", WH_TO_KWH, None, "Wh → kWh"),
            "export_energy_kwh": FieldSource("export_energy_wh", "Wh", WH_TO_KWH, None, "Wh → kWh"),
            "frequency_hz": as_is("frequency_hz", "Hz"),
        },
    }


def command_mappings() -> dict[str, dict[str, CommandSource | tuple[CommandSource, ...]]]:
    """Per SunSpec profile: setpoint field -> commands in write order (timeout, mode, value, enable)."""
    from drivers.capabilities import CommandSource

    return {
        "sunspec_inverter": {
            "limit_pct": (
                CommandSource("power_limit_timeout_s", constant=REVERT_S, note="123 WMaxLimPct_RvrtTms"),
                CommandSource("power_limit_pct", note="% of WMax; SafeWriter never_zero"),
                CommandSource("power_limit_enable", constant=1, note="123 WMaxLim_Ena"),
            ),
        },
        "sunspec_battery": {
            "power_net_kw": (
                CommandSource("power_setpoint_timeout_s", constant=REVERT_S, note="704 WSetRvrtTms"),
                CommandSource("power_setpoint_mode", constant=1, note="704 WSetMod = watts"),
                CommandSource("power_setpoint_w", factor=1000.0, note="kW → W; + = discharge"),
                CommandSource("power_setpoint_enable", constant=1, note="704 WSetEna"),
            ),
        },
    }
