"""The running site's daily and monthly KPIs, by hand on the guangdong_factory assets.

Site timezone Asia/Shanghai (UTC+8); demand charge 32 CNY/kW on the monthly peak, no windows
(every step counts); electrolyser "pem" 53 kWh/kg by default.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ems.accounting import MeteredPowers
from ems.config import load_site
from ems.config.models import SiteConfig
from ems.runtime.kpis import KpiMeter, StepSignals

T0 = datetime(2025, 7, 15, 15, 0, tzinfo=UTC)  # 23:00 local on the 15th
SIGNALS = StepSignals(import_price_per_kwh=0.5, export_price_per_kwh=0.2, carbon_g_per_kwh=600.0,
                      carbon_marginal_g_per_kwh=900.0)


@pytest.fixture(scope="module")
def cfg() -> SiteConfig:
    return load_site("guangdong_factory").config


def measured(grid_kw: float | None, ev_kw: float = 0.0, pem_kw: float | None = 0.0,
             battery_kw: float = 0.0, pv_kw: float = 0.0) -> MeteredPowers:
    return MeteredPowers(grid_net_kw=grid_kw, battery_net_kw={"bess": battery_kw},
                         ev_kw={"fleet_1": ev_kw, "fleet_2": None}, electrolyser_kw={"pem": pem_kw},
                         pv_kw={"roof_pv": pv_kw})


def test_an_interval_is_counted_at_the_power_measured_at_its_end(cfg: SiteConfig) -> None:
    kpi = KpiMeter(cfg)
    kpi.add(T0, measured(0.0), SIGNALS)  # first call: nothing to integrate yet
    kpi.add(T0 + timedelta(seconds=36), measured(1000.0, ev_kw=50.0, pem_kw=106.0, battery_kw=-200.0,
                                                 pv_kw=300.0), SIGNALS)
    day = kpi.values["2025-07-15"]
    # 36 s = 0.01 h: 1000 kW -> 10 kWh at 0.5 -> 5.0; 600 g/kWh -> 6 kg; 900 -> 9 kg
    assert day["grid_import_kwh"] == pytest.approx(10.0)
    assert day["grid_export_kwh"] == 0.0
    assert day["energy_cost"] == pytest.approx(5.0)
    assert day["emissions_kg"] == pytest.approx(6.0)
    assert day["emissions_marginal_kg"] == pytest.approx(9.0)
    assert day["ev_energy_kwh"] == pytest.approx(0.5)  # the charger with no reading adds nothing
    assert day["battery_charge_kwh"] == pytest.approx(2.0)
    assert day["pv_kwh"] == pytest.approx(3.0)
    assert day["hydrogen_kg"] == pytest.approx(1.06 / 53.0)  # power over kWh per kg
    assert kpi.values["2025-07"] == day  # the month holds the same interval


def test_export_earns_the_export_price_and_a_missing_meter_counts_nothing(cfg: SiteConfig) -> None:
    kpi = KpiMeter(cfg)
    kpi.add(T0, measured(0.0), SIGNALS)
    kpi.add(T0 + timedelta(seconds=36), measured(-500.0), SIGNALS)
    kpi.add(T0 + timedelta(seconds=72), measured(None), SIGNALS)
    day = kpi.values["2025-07-15"]
    assert day["grid_export_kwh"] == pytest.approx(5.0)
    assert day["energy_cost"] == pytest.approx(-1.0)  # 5 kWh x 0.2 earned
    assert day["emissions_kg"] == 0.0
    assert day["unmeasured_h"] == pytest.approx(0.01)
    assert day["measured_h"] == pytest.approx(0.01)


def test_a_gap_longer_than_the_limit_is_not_integrated(cfg: SiteConfig) -> None:
    kpi = KpiMeter(cfg, max_gap_s=60.0)
    kpi.add(T0, measured(100.0), SIGNALS)
    kpi.add(T0 + timedelta(hours=2), measured(100.0), SIGNALS)  # the service was stopped
    assert kpi.values.get("2025-07-15", {}).get("grid_import_kwh", 0.0) == 0.0


def test_days_and_months_are_local(cfg: SiteConfig) -> None:
    kpi = KpiMeter(cfg)
    midnight_local = datetime(2025, 7, 31, 16, 0, tzinfo=UTC)  # 00:00 on Aug 1st in Shanghai
    kpi.add(midnight_local - timedelta(seconds=36), measured(0.0), SIGNALS)
    kpi.add(midnight_local, measured(100.0), SIGNALS)  # the interval ending at midnight
    kpi.add(midnight_local + timedelta(seconds=36), measured(200.0), SIGNALS)
    # is booked to the day it began in
    assert kpi.values["2025-07-31"]["grid_import_kwh"] == pytest.approx(1.0)
    assert kpi.values["2025-08-01"]["grid_import_kwh"] == pytest.approx(2.0)
    assert kpi.values["2025-08"]["grid_import_kwh"] == pytest.approx(2.0)
    assert kpi.values["2025-07"]["grid_import_kwh"] == pytest.approx(1.0)


def test_the_monthly_demand_charge_is_the_price_times_the_highest_step_average(cfg: SiteConfig) -> None:
    kpi = KpiMeter(cfg)
    kpi.add(T0, measured(0.0), SIGNALS)
    kpi.add(T0 + timedelta(seconds=36), measured(1000.0), SIGNALS)
    kpi.note_step_import(T0, 800.0, [True])
    kpi.note_step_import(T0 + timedelta(minutes=15), 650.0, [True])
    month = kpi.values["2025-07"]
    assert month["peak_import_kw"] == 800.0
    assert month["demand_charge"] == pytest.approx(800.0 * 32.0)
    assert month["total_cost"] == pytest.approx(5.0 + 800.0 * 32.0)
    assert kpi.values["2025-07-15"]["peak_import_kw"] == 800.0
    assert "demand_charge" not in kpi.values["2025-07-15"]  # a monthly figure only


def test_a_step_outside_the_charge_window_does_not_set_its_peak(cfg: SiteConfig) -> None:
    kpi = KpiMeter(cfg)
    kpi.note_step_import(T0, 900.0, [False])
    kpi.note_step_import(T0 + timedelta(minutes=15), 400.0, [True])
    month = kpi.values["2025-07"]
    assert month["peak_import_kw"] == 900.0
    assert month["demand_charge"] == pytest.approx(400.0 * 32.0)


def test_hydrogen_comes_from_the_device_counter_when_it_has_one(cfg: SiteConfig) -> None:
    kpi = KpiMeter(cfg)
    kpi.add(T0, measured(0.0, pem_kw=250.0), SIGNALS, h2_total_kg={"pem": 100.0})
    kpi.add(T0 + timedelta(seconds=36), measured(0.0, pem_kw=250.0), SIGNALS, h2_total_kg={"pem": 100.05})
    assert kpi.values["2025-07-15"]["hydrogen_kg"] == pytest.approx(0.05)
    # a counter that goes back (device reset) adds nothing rather than a negative amount
    kpi.add(T0 + timedelta(seconds=72), measured(0.0, pem_kw=250.0), SIGNALS, h2_total_kg={"pem": 1.0})
    assert kpi.values["2025-07-15"]["hydrogen_kg"] == pytest.approx(0.05)
    # no counter: the flow meter
    kpi.add(T0 + timedelta(seconds=108), measured(0.0, pem_kw=250.0), SIGNALS,
            h2_total_kg={"pem": None}, h2_flow_kg_per_h={"pem": 4.0})
    assert kpi.values["2025-07-15"]["hydrogen_kg"] == pytest.approx(0.05 + 0.04)


def test_changed_rows_include_the_day_that_just_ended(cfg: SiteConfig) -> None:
    kpi = KpiMeter(cfg)
    midnight_local = datetime(2025, 7, 31, 16, 0, tzinfo=UTC)
    kpi.add(midnight_local - timedelta(seconds=36), measured(0.0), SIGNALS)
    assert kpi.changed() == {}
    kpi.add(midnight_local + timedelta(seconds=1), measured(100.0), SIGNALS)
    assert set(kpi.changed()) == {"2025-07-31", "2025-07"}  # booked to the day it began in
    kpi.add(midnight_local + timedelta(seconds=37), measured(100.0), SIGNALS)
    assert set(kpi.changed()) == {"2025-08-01", "2025-08"}
    assert kpi.changed() == {}
