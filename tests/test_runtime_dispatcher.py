"""What the service's dispatcher reads from devices, by hand: an electrolyser's electrical input
when the device has no power point (Enapter): H2 flow × kWh per kg while producing."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from drivers.capabilities import ElectrolyserReading, Measured
from ems.config.models import ElectrolyserConfig
from ems.runtime.dispatcher import electrolyser_input_kw

NOW = datetime(2026, 1, 15, 4, 0, tzinfo=UTC)
PEM = ElectrolyserConfig(name="pem", rated_kw=250, kwh_per_kg=55.0, standby_kw=1.5, tank="t")


def ok(value: Any) -> Measured[Any]:
    return Measured(value, None, NOW)


def gone() -> Measured[Any]:
    return Measured(None, None, NOW, "missing", "not provided by enapter_el")


def reading(state: str | None, flow: float | None, power: float | None = None) -> ElectrolyserReading:
    return ElectrolyserReading(state=ok(state) if state else gone(),
                               power_kw=ok(power) if power is not None else gone(),
                               production_rate_pct=ok(80.0),
                               h2_flow_kg_per_h=ok(flow) if flow is not None else gone(),
                               h2_total_kg=ok(10.0), tank_pressure_bar=gone(), tank_level_pct=gone())


def test_a_power_reading_is_used_as_it_is() -> None:
    assert electrolyser_input_kw(PEM, reading("steady", 2.0, power=120.0)) == 120.0


def test_without_a_power_point_the_flow_times_the_specific_energy() -> None:
    assert electrolyser_input_kw(PEM, reading("steady", 2.0)) == pytest.approx(110.0)


def test_idle_standby_and_halted_draw_their_standby_or_nothing() -> None:
    assert electrolyser_input_kw(PEM, reading("idle", None)) == 1.5
    assert electrolyser_input_kw(PEM, reading("standby", None)) == 1.5
    assert electrolyser_input_kw(PEM, reading("halted", None)) == 0.0


def test_nothing_known_is_none_never_zero() -> None:
    assert electrolyser_input_kw(PEM, reading(None, None)) is None
    assert electrolyser_input_kw(PEM, reading("steady", None)) is None
    assert electrolyser_input_kw(PEM, None) is None
