"""ems.accounting by hand: billing periods and their demand peaks, an interval's cost and
emissions, metered powers with missing readings, hydrogen produced, the KPI vocabulary; and
the service's integration (KpiMeter) against the what-if's (compute_kpis) over the same steps.

Site: guangdong_factory (Asia/Shanghai, UTC+8 all year; 15-minute steps; an average and a
marginal carbon signal, emissions accounted by the average one), with two demand charges:
10 per kW on the month's highest import at any hour, 20 per kW on the highest in 23:30–00:15.
"""

from __future__ import annotations

import dataclasses
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.capabilities import (
    BatteryReading,
    ElectrolyserReading,
    MeterReading,
    good,
    missing,
)
from ems.accounting import (
    KPI_ALIASES,
    KPI_NAMES,
    HydrogenCounter,
    MeteredPowers,
    StepSignals,
    billing_period,
    billing_periods,
    canonical_kpis,
    demand_charge,
    emissions_kg,
    energy_cost,
    kpi_name,
    metered_hydrogen,
    metered_powers,
    note_step_demand,
    period_demand_peaks,
    roll_billing,
    step_signals,
)
from ems.config import LoadedSite
from ems.config.models import DemandCharge, SiteConfig, TimeWindow
from ems.inputs.site_inputs import demand_window_column, demand_windows
from ems.planning.state import SiteState
from ems.runtime.kpis import KpiMeter
from ems.whatif.kpi import KPI_LABELS, compute_kpis

TZ = "Asia/Shanghai"
MIDNIGHT_AUG_1 = datetime(2025, 7, 31, 16, 0, tzinfo=UTC)  # 00:00 on 1 August in Shanghai
STEP = timedelta(minutes=15)


@pytest.fixture(scope="module")
def cfg(guangdong: LoadedSite) -> SiteConfig:
    return two_charges(guangdong.config)


def two_charges(cfg: SiteConfig) -> SiteConfig:
    charges = [DemandCharge(price_per_kw=10.0),
               DemandCharge(price_per_kw=20.0, windows=[TimeWindow(start="23:30", end="00:15")],
                            name="night")]
    return cfg.model_copy(update={"grid": cfg.grid.model_copy(update={"demand_charges": charges})})


def window_flags(cfg: SiteConfig, starts: pd.DatetimeIndex) -> list[list[bool]]:
    """Per step, each demand charge's flag, from the config's windows."""
    cols = demand_windows(cfg.grid.demand_charges, starts.tz_convert(TZ))
    return [list(flags) for flags in zip(*(map(bool, cols[demand_window_column(k)])
                                           for k in range(len(cfg.grid.demand_charges))), strict=True)]


# ---------------------------------------------------------------- billing periods


def test_the_billing_period_rolls_at_the_local_month_boundary() -> None:
    before = MIDNIGHT_AUG_1 - STEP  # 23:45 on 31 July in Shanghai, 15:45 UTC
    assert billing_period(before, TZ) == "2025-07"
    assert billing_period(MIDNIGHT_AUG_1, TZ) == "2025-08"
    assert billing_period(MIDNIGHT_AUG_1, "UTC") == "2025-07"
    index = pd.date_range(before, periods=3, freq="15min")
    assert billing_periods(index, TZ) == [billing_period(t, TZ) for t in index] == \
        ["2025-07", "2025-08", "2025-08"]

    state = SiteState(billing_period="2025-07", peak_import_kw=700.0, demand_peaks_kw={1: 500.0})
    assert roll_billing(state, before, TZ) is False
    assert (state.billing_period, state.peak_import_kw, state.demand_peaks_kw) == \
        ("2025-07", 700.0, {1: 500.0})
    assert roll_billing(state, MIDNIGHT_AUG_1, TZ) is True
    assert (state.billing_period, state.peak_import_kw, state.demand_peaks_kw) == ("2025-08", 0.0, {})
    assert roll_billing(state, MIDNIGHT_AUG_1 + STEP, TZ) is False
    assert roll_billing(SiteState(), before, TZ) is True  # a fresh state starts its period


def test_each_demand_charge_keeps_its_own_peak_within_its_window(cfg: SiteConfig) -> None:
    # 23:15, 23:30, 23:45 on 31 July, then 00:00, 00:15, 00:30 on 1 August (local)
    starts = pd.date_range(MIDNIGHT_AUG_1 - 3 * STEP, periods=6, freq="15min")
    flags = window_flags(cfg, starts)
    assert [f[1] for f in flags] == [False, True, True, True, False, False]  # 23:30–00:15
    assert all(f[0] for f in flags)  # the flat charge counts every step
    imports = [500.0, 400.0, 300.0, 200.0, 600.0, 100.0]

    state = SiteState()
    for t, kw, counted in zip(starts[:3], imports, flags, strict=False):
        note_step_demand(state, t.to_pydatetime(), kw, counted, TZ)
    assert state.billing_period == "2025-07"
    assert (state.demand_peak_kw(0), state.demand_peak_kw(1)) == (500.0, 400.0)
    assert demand_charge(cfg.grid.demand_charges, [500.0, 400.0]) == 10 * 500 + 20 * 400
    for t, kw, counted in zip(starts[3:], imports[3:], flags[3:], strict=True):
        note_step_demand(state, t.to_pydatetime(), kw, counted, TZ)
    assert state.billing_period == "2025-08"  # rolled at local midnight: July's peaks are gone
    assert (state.demand_peak_kw(0), state.demand_peak_kw(1)) == (600.0, 200.0)

    peaks = period_demand_peaks(billing_periods(starts, TZ), imports, flags, 2)
    assert peaks == {"2025-07": [500.0, 400.0], "2025-08": [600.0, 200.0]}
    # July 10 x 500 + 20 x 400 = 13,000; August 10 x 600 + 20 x 200 = 10,000
    steps = step_frame(cfg, starts, [(kw, 0.5, 0.2, 600.0, 900.0) for kw in imports], flags)
    assert compute_kpis(steps, cfg, 0.0, 0.0, 0.0, 0)["demand_charge"] == pytest.approx(23_000.0)
    meter = KpiMeter(cfg)
    for t, kw, counted in zip(starts, imports, flags, strict=True):
        meter.note_step_import(t.to_pydatetime(), kw, counted)
    assert meter.values["2025-07"]["demand_charge"] == pytest.approx(13_000.0)
    assert meter.values["2025-08"]["demand_charge"] == pytest.approx(10_000.0)
    assert meter.values["2025-08"]["demand_peak_1_kw"] == 200.0


def test_without_a_demand_charge_the_plain_peak_is_kept() -> None:
    state = SiteState()
    note_step_demand(state, MIDNIGHT_AUG_1, 450.0, [], TZ)
    note_step_demand(state, MIDNIGHT_AUG_1 + STEP, 300.0, [], TZ)
    assert (state.billing_period, state.peak_import_kw, state.demand_peaks_kw) == ("2025-08", 450.0, {})
    # with charges, a step outside every window raises nothing
    note_step_demand(state, MIDNIGHT_AUG_1 + 2 * STEP, 900.0, [False, False], TZ)
    assert state.peak_import_kw == 450.0


# ---------------------------------------------------------------- cost and emissions


def test_cost_and_emissions_of_a_few_intervals_by_hand(cfg: SiteConfig) -> None:
    # 1000 kW for 15 min at 0.5 -> 250 kWh, 125; 400 kW exported for 30 min at 0.2 -> 200 kWh, -40
    assert energy_cost(1000.0, 0.0, 0.5, 0.2, 0.25) == pytest.approx(125.0)
    assert energy_cost(0.0, 400.0, 0.5, 0.2, 0.5) == pytest.approx(-40.0)
    assert emissions_kg(1000.0, 600.0, 0.25) == pytest.approx(150.0)  # 250 kWh x 600 g
    assert emissions_kg(0.0, 600.0, 0.5) == 0.0
    series = energy_cost(pd.Series([1000.0, 0.0]), pd.Series([0.0, 400.0]), pd.Series([0.5, 0.5]),
                         pd.Series([0.2, 0.2]), 0.25)
    assert series.tolist() == pytest.approx([125.0, -20.0])

    signals = StepSignals(0.5, 0.2, carbon_g_per_kwh=600.0, carbon_marginal_g_per_kwh=900.0)
    meter = KpiMeter(cfg, max_gap_s=3600.0)
    meter.add(MIDNIGHT_AUG_1, MeteredPowers(grid_net_kw=0.0), signals)
    meter.add(MIDNIGHT_AUG_1 + timedelta(minutes=15), MeteredPowers(grid_net_kw=1000.0), signals)
    meter.add(MIDNIGHT_AUG_1 + timedelta(minutes=45), MeteredPowers(grid_net_kw=-400.0), signals)
    day = meter.values["2025-08-01"]
    assert day["grid_import_kwh"] == pytest.approx(250.0)
    assert day["grid_export_kwh"] == pytest.approx(200.0)
    assert day["energy_cost"] == pytest.approx(125.0 - 40.0)
    assert day["emissions_kg"] == pytest.approx(150.0)
    assert day["emissions_marginal_kg"] == pytest.approx(225.0)  # 250 kWh x 900 g


def test_the_step_signals_use_the_accounting_carbon_signal(cfg: SiteConfig) -> None:
    row = {"import_price_per_kwh": 0.5, "export_price_per_kwh": 0.2, "carbon_g_per_kwh": 700.0,
           "carbon_average_g_per_kwh": 600.0, "carbon_marginal_g_per_kwh": 900.0}
    # a frame row (Series) or a mapping: the average signal, and the marginal one too
    assert step_signals(cfg, pd.Series(row)) == step_signals(cfg, row) == StepSignals(0.5, 0.2, 600.0, 900.0)
    assert step_signals(cfg, {**row, "carbon_average_g_per_kwh": math.nan}) == \
        StepSignals(0.5, 0.2, None, 900.0)
    assert step_signals(cfg, {**row, "import_price_per_kwh": math.nan}) is None
    assert step_signals(cfg, None) is None


# ---------------------------------------------------------------- metered powers


T = datetime(2025, 7, 15, 2, 0, tzinfo=UTC)


def reading(cls: type[Any], **values: Any) -> Any:
    """A reading of ``cls`` with the given good values, every other field missing."""
    return cls(**{f.name: good(values[f.name], cls.UNITS[f.name], T) if f.name in values
                  else missing(cls.UNITS[f.name], T, "not read") for f in dataclasses.fields(cls)})


def test_a_missing_meter_reading_counts_nothing_and_adds_unmeasured_time(cfg: SiteConfig) -> None:
    readings = {"bess": reading(BatteryReading, power_net_kw=-200.0),
                "pem": reading(ElectrolyserReading, state="steady", h2_flow_kg_per_h=2.0, h2_total_kg=10.0),
                "grid": reading(MeterReading)}  # the meter answered without its power
    powers = metered_powers(cfg, readings)
    assert powers.grid_net_kw is None
    assert powers.battery_net_kw == {"bess": -200.0}
    assert powers.ev_kw == {c.name: None for c in cfg.ev_charger}  # no reading: None, not 0
    assert powers.pv_kw == {"roof_pv": None}
    assert powers.electrolyser_kw == {"pem": pytest.approx(2.0 * 53.0)}  # flow x kWh per kg
    assert metered_powers(cfg, {}).grid_net_kw is None  # no meter at all
    assert metered_powers(cfg, {"grid": reading(MeterReading, power_net_kw=math.nan)}).grid_net_kw is None
    assert metered_powers(cfg, {"grid": reading(MeterReading, power_net_kw=-50.0)}).grid_net_kw == -50.0
    assert metered_hydrogen(cfg, readings) == ({"pem": 10.0}, {"pem": 2.0})

    meter = KpiMeter(cfg)
    signals = StepSignals(0.5, 0.2, 600.0, 900.0)
    meter.add(T, powers, signals)
    meter.add(T + timedelta(seconds=36), powers, signals)  # 0.01 h
    day = meter.values["2025-07-15"]
    assert day["unmeasured_h"] == pytest.approx(0.01)
    for name in ("grid_import_kwh", "grid_export_kwh", "energy_cost", "emissions_kg", "measured_h"):
        assert name not in day, name
    assert day["battery_charge_kwh"] == pytest.approx(2.0)  # what was measured still counts
    assert day["ev_energy_kwh"] == 0.0
    assert day["hydrogen_kg"] == pytest.approx(0.02)  # 2 kg/h for 0.01 h (no counter change yet)


def test_hydrogen_counter_prefers_the_device_total_then_its_flow_then_its_power() -> None:
    counter = HydrogenCounter({"pem": 50.0})
    assert counter.interval_kg(0.0, {"pem": 100.0}, {"pem": 10.0}) == {}  # not counted: baseline only
    assert counter.interval_kg(0.5, {"pem": 100.0}, {"pem": 10.5}) == {"pem": pytest.approx(0.5)}
    assert counter.interval_kg(0.5, {"pem": 100.0}, {"pem": 1.0}) == {"pem": 0.0}  # reset: nothing
    assert counter.interval_kg(0.5, {"pem": 100.0}, {"pem": 1.2}) == {"pem": pytest.approx(0.2)}
    assert counter.interval_kg(0.5, {"pem": 100.0}, {"pem": None}, {"pem": 2.0}) == {"pem": 1.0}
    assert counter.interval_kg(0.5, {"pem": 100.0}) == {"pem": 1.0}  # 50 kWh / 50 kWh per kg
    assert counter.interval_kg(0.5, {"pem": None}, {}, {"pem": math.nan}) == {}  # nothing known


# ---------------------------------------------------------------- one vocabulary


def test_both_sides_use_the_one_kpi_vocabulary(cfg: SiteConfig) -> None:
    for name in KPI_LABELS:
        assert kpi_name(name) in KPI_NAMES, name
    assert canonical_kpis({"ev_delivered_kwh": 1.0, "hydrogen_produced_kg": 2.0, "energy_cost": 3.0}) == \
        {"ev_energy_kwh": 1.0, "hydrogen_kg": 2.0, "energy_cost": 3.0}
    assert set(KPI_ALIASES.values()) <= set(KPI_NAMES)
    meter = KpiMeter(cfg)
    full = MeteredPowers(1.0, {"roof_pv": 1.0}, {"bess": 1.0}, {"fleet_1": 1.0}, {"pem": 1.0})
    meter.add(T, full, StepSignals(0.5, 0.2, 600.0, 900.0))
    meter.add(T + timedelta(seconds=2), full, StepSignals(0.5, 0.2, 600.0, 900.0))
    meter.add(T + timedelta(seconds=4), MeteredPowers(), None)
    meter.note_step_import(T, 1.0, [True, True])
    for row in meter.values.values():
        for name in row:
            assert kpi_name(name) == name
    with pytest.raises(KeyError):
        kpi_name("ev_kwh")


# ---------------------------------------------------------------- service = what-if


def step_frame(cfg: SiteConfig, starts: pd.DatetimeIndex, steps: list[tuple[float, ...]],
               flags: list[list[bool]]) -> pd.DataFrame:
    """A what-if step record: per step (grid net kW, import price, export price, average and
    marginal intensity) and each demand charge's window flag."""
    net = [s[0] for s in steps]
    frame = pd.DataFrame({
        "import_kw": [max(0.0, g) for g in net], "export_kw": [max(0.0, -g) for g in net],
        "import_price_per_kwh": [s[1] for s in steps], "export_price_per_kwh": [s[2] for s in steps],
        "carbon_g_per_kwh": [s[3] for s in steps], "carbon_average_g_per_kwh": [s[3] for s in steps],
        "carbon_marginal_g_per_kwh": [s[4] for s in steps], "import_limit_kw": 1e9,
        "pv_kw": 0.0, "pv_curtailed_kw": 0.0, "hydrogen_kg": 0.0, "hydrogen_unmet_kg": 0.0,
    }, index=starts)
    for k in range(len(cfg.grid.demand_charges)):
        frame[demand_window_column(k)] = [f[k] for f in flags]
    return frame


step_values = st.tuples(st.floats(-500.0, 1500.0), st.floats(0.0, 2.0), st.floats(0.0, 1.0),
                        st.floats(0.0, 1000.0), st.floats(0.0, 1000.0))


@settings(max_examples=60, deadline=None)
@given(steps=st.lists(step_values, min_size=1, max_size=8), first=st.integers(-10, 4),
       cycles=st.sampled_from([1, 3, 5]))
def test_the_service_and_the_what_if_account_the_same_steps_alike(
        guangdong: LoadedSite, steps: list[tuple[float, ...]], first: int, cycles: int) -> None:
    cfg = two_charges(guangdong.config)
    starts = pd.date_range(MIDNIGHT_AUG_1 + first * STEP, periods=len(steps), freq="15min")
    flags = window_flags(cfg, starts)
    frame = step_frame(cfg, starts, steps, flags)
    whatif = compute_kpis(frame, cfg, 0.0, 0.0, 0.0, 0)

    # the service: each step's constant power metered over `cycles` dispatch intervals
    meter = KpiMeter(cfg, max_gap_s=3600.0)
    meter.add(starts[0].to_pydatetime(), MeteredPowers(grid_net_kw=steps[0][0]), None)
    for k, t in enumerate(starts):
        signals = step_signals(cfg, frame.iloc[k])
        powers = MeteredPowers(grid_net_kw=steps[k][0])
        for j in range(1, cycles + 1):
            meter.add((t + j * STEP / cycles).to_pydatetime(), powers, signals)
        meter.note_step_import(t.to_pydatetime(), float(frame["import_kw"].iloc[k]), flags[k])
    months = [row for period, row in meter.values.items() if len(period) == len("YYYY-MM")]
    for name in ("energy_cost", "demand_charge", "total_cost", "emissions_kg", "emissions_marginal_kg",
                 "grid_import_kwh", "grid_export_kwh", "peak_import_kw"):
        service = (max if name == "peak_import_kw" else sum)(row.get(name, 0.0) for row in months)
        assert service == pytest.approx(whatif[name], rel=1e-9, abs=1e-6), name
