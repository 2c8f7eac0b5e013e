"""Forecasts: PV (clear sky, cloud model, performance ratio), load profile and correction, EV
sessions, imported CSV forecasts, and accuracy on held-back months of the bundled data."""

from __future__ import annotations

import math
import pickle
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest

from ems.config import LoadedSite
from ems.forecast.accuracy import backtest, month_bounds
from ems.forecast.ev import fit_ev_model
from ems.forecast.imported import imported_on_steps, read_imported_forecast
from ems.forecast.load import fit_profile, forecast_load_kw
from ems.forecast.pv import (
    PR_MAX,
    PvArray,
    clear_sky_ac_kw,
    forecast_pv_kw,
    kasten_czeplak,
    performance_ratio,
)
from ems.forecast.site import SiteForecaster, measured_history
from ems.inputs.csv_series import SeriesFileError
from ems.inputs.site_inputs import EvSessionEvent, build_inputs

PASADENA = (34.137, -118.125)
ARRAY = PvArray("roof", kwp=100.0, tilt_deg=20.0, azimuth_deg=180.0, system_loss_fraction=0.14)


def steps(start: str, days: float, minutes: int = 15) -> pd.DatetimeIndex:
    return pd.date_range(pd.Timestamp(start, tz="UTC"), periods=int(days * 24 * 60 / minutes),
                         freq=f"{minutes}min")


# ---------------------------------------------------------------- PV


def test_clear_sky_pv_is_zero_at_night_and_within_the_array_rating() -> None:
    idx = steps("2019-06-20T00:00", 2)
    ac = clear_sky_ac_kw(ARRAY, *PASADENA, idx)
    local_hour = idx.tz_convert("America/Los_Angeles").hour
    night = (local_hour >= 22) | (local_hour < 4)  # sun well below the horizon in Pasadena
    assert (ac[night] == 0).all()
    assert (ac >= 0).all() and (ac <= ARRAY.kwp).all()
    # midsummer noon, clear sky, 20 deg south: POA near 1000 W/m2 -> roughly kWp x (1 - 14 %) x 96 %
    noon = ac[(local_hour == 12)].max()
    assert 0.65 * ARRAY.kwp < noon < 0.95 * ARRAY.kwp


def test_kasten_czeplak_by_hand_and_bad_cloud_value_named() -> None:
    ghi = np.array([800.0, 800.0, 800.0])
    out = kasten_czeplak(ghi, np.array([0.0, 0.5, 1.0]))
    assert out[0] == pytest.approx(800.0)
    assert out[1] == pytest.approx(800.0 * (1 - 0.75 * 0.5**3.4))  # 0.9290 x 800
    assert out[2] == pytest.approx(200.0)
    with pytest.raises(ValueError, match=r"1\.5"):
        kasten_czeplak(ghi, np.array([0.0, 1.5, 0.0]))


def test_overcast_forecast_is_below_clear_sky_in_daylight() -> None:
    idx = steps("2019-06-20T13:00", 1, 60)
    clear = forecast_pv_kw(ARRAY, *PASADENA, idx, cloud_fraction=pd.Series(0.0, index=idx))
    cloudy = forecast_pv_kw(ARRAY, *PASADENA, idx, cloud_fraction=pd.Series(1.0, index=idx))
    day = clear > 5
    assert day.sum() >= 8
    assert (cloudy[day] < 0.6 * clear[day]).all()
    assert (cloudy >= 0).all()


def test_performance_ratio_recovers_a_known_scale() -> None:
    history_idx = steps("2019-06-13T07:00", 7)
    clear = clear_sky_ac_kw(ARRAY, *PASADENA, history_idx)
    history = 0.7 * clear
    future = steps("2019-06-20T07:00", 2)
    fc = forecast_pv_kw(ARRAY, *PASADENA, future, history_kw=history)
    expected = 0.7 * clear_sky_ac_kw(ARRAY, *PASADENA, future)
    np.testing.assert_allclose(fc.to_numpy(), expected.to_numpy(), atol=1e-6)
    ratio, how = performance_ratio(5.0 * clear, clear, ARRAY.kwp)
    assert ratio == PR_MAX and "clipped" in how
    nan_day = history.copy()
    nan_day[: len(nan_day) // 2] = np.nan  # missing measurements are skipped, not zeros
    assert performance_ratio(nan_day, clear, ARRAY.kwp)[0] == pytest.approx(0.7)


# ---------------------------------------------------------------- load


def weekly(index: pd.DatetimeIndex, tz: str) -> np.ndarray:
    """A load that depends only on the local weekday and time of day (kW)."""
    local = index.tz_convert(tz)
    weekday, hour, minute = (np.asarray(x) for x in (local.weekday, local.hour, local.minute))
    return 100.0 + 10.0 * weekday + 2.0 * hour + minute / 15


def test_load_profile_reproduces_a_weekly_pattern_across_dst() -> None:
    tz = "Europe/Berlin"  # DST ends on 2019-10-27: the forecast week crosses it
    hist_idx = steps("2019-09-01T00:00", 7 * 7)
    history = pd.Series(weekly(hist_idx, tz), index=hist_idx)
    origin = pd.Timestamp("2019-10-21T22:00", tz="UTC")  # local midnight, Tuesday
    profile = fit_profile(history, tz, origin, weeks=6)
    future = pd.date_range(origin, periods=7 * 96, freq="15min")
    fc = forecast_load_kw(profile, future, history[history.index < origin])
    np.testing.assert_allclose(fc.to_numpy(), weekly(future, tz), atol=1e-9)


def test_load_correction_moves_early_hours_to_recent_level_and_decays() -> None:
    tz = "UTC"
    hist_idx = steps("2024-01-01T00:00", 7 * 6)
    history = pd.Series(weekly(hist_idx, tz), index=hist_idx)
    origin = hist_idx[-1] + pd.Timedelta(minutes=15)
    shifted = history.copy()
    shifted[shifted.index >= origin - pd.Timedelta(hours=3)] += 50.0  # the site runs 50 kW higher now
    profile = fit_profile(shifted, tz, origin - pd.Timedelta(hours=3), weeks=6)
    future = pd.date_range(origin, periods=96, freq="15min")
    fc = forecast_load_kw(profile, future, shifted, correction_hours=3.0, decay_hours=4.0)
    extra = fc.to_numpy() - weekly(future, tz)
    assert extra[0] == pytest.approx(50.0)
    assert extra[16] == pytest.approx(50.0 * math.exp(-1.0))  # 4 h ahead
    assert abs(extra[-1]) < 0.5  # a day ahead the profile is back
    assert np.all(np.diff(extra) < 0)


# ---------------------------------------------------------------- EV


def test_ev_forecast_returns_a_regular_session_exactly() -> None:
    tz = "America/Los_Angeles"
    zone = ZoneInfo(tz)
    history = []
    day = datetime(2019, 9, 2).date()  # a Monday
    while day < datetime(2019, 10, 28).date():
        if day.weekday() < 5:
            a = datetime(day.year, day.month, day.day, 8, 0, tzinfo=zone).astimezone(UTC)
            d = datetime(day.year, day.month, day.day, 17, 0, tzinfo=zone).astimezone(UTC)
            history.append(EvSessionEvent(f"x{day}", "X", a, d, 20.0))
        day += timedelta(days=1)
    origin = datetime(2019, 10, 28, tzinfo=zone).astimezone(UTC)  # Monday midnight
    model = fit_ev_model(history, tz, origin, weeks=8)
    fc = model.sessions(origin, origin + timedelta(days=7))
    assert len(fc) == 5
    for k, s in enumerate(fc):
        arrive, depart = s.arrival_utc.astimezone(zone), s.departure_utc.astimezone(zone)
        assert s.charger == "X" and s.energy_kwh == 20.0
        assert (arrive.weekday(), arrive.hour, arrive.minute) == (k, 8, 0)
        assert (depart.hour, depart.minute) == (17, 0)


def test_ev_forecast_treats_a_gap_in_the_records_as_missing() -> None:
    tz = "UTC"
    history = []
    start = datetime(2024, 1, 1, tzinfo=UTC)  # Monday
    for k in range(56):
        day = start + timedelta(days=k)
        if 14 <= k < 42:  # four weeks without records
            continue
        arrive, depart = day + timedelta(hours=9), day + timedelta(hours=12)
        history.append(EvSessionEvent(f"s{k}", "A", arrive, depart, 10.0))
    model = fit_ev_model(history, tz, start + timedelta(days=56), weeks=8)
    assert model.per_day == (1, 1, 1, 1, 1, 1, 1)


def test_ev_forecast_counts_match_a_held_back_caltech_month(caltech: LoadedSite) -> None:
    report = backtest(caltech, "2019-10")
    ev = report.ev
    assert ev is not None and ev.days == 31
    # stated tolerance: each weekday's mean sessions per day within 25 % (or 3 sessions)
    for actual, forecast in zip(ev.per_weekday_actual, ev.per_weekday_forecast, strict=True):
        assert abs(forecast - actual) <= max(3.0, 0.25 * actual), (ev.per_weekday_actual,
                                                                     ev.per_weekday_forecast)
    assert abs(ev.energy_kwh.bias) < 0.3 * ev.mean_energy_actual_kwh


# ---------------------------------------------------------------- imported


def test_imported_forecast_reads_and_names_bad_values(tmp_path: Path) -> None:
    good = tmp_path / "pv_forecast.csv"
    good.write_text("timestamp_utc,pv_kw\n2025-01-01T00:00:00Z,0\n2025-01-01T01:00:00Z,12.5\n")
    s = read_imported_forecast(good, "pv_kw")
    assert s.tolist() == [0.0, 12.5]
    on_steps = imported_on_steps(s, steps("2025-01-01T00:00", 2 / 24), "pv forecast")
    assert on_steps.tolist() == [0.0] * 4 + [12.5] * 4
    with pytest.raises(SeriesFileError, match="pv forecast"):
        imported_on_steps(s, steps("2025-01-01T00:00", 1), "pv forecast")

    bad = tmp_path / "bad.csv"
    bad.write_text("timestamp_utc,pv_kw\n2025-01-01T00:00:00Z,0\n2025-01-01T01:00:00Z,abc\n")
    with pytest.raises(SeriesFileError) as exc:
        read_imported_forecast(bad, "pv_kw")
    msg = str(exc.value)
    assert "bad.csv" in msg and "'pv_kw'" in msg and "'abc'" in msg and "2025-01-01T01:00:00" in msg

    negative = tmp_path / "negative.csv"
    negative.write_text("timestamp_utc,load_kw\n2025-01-01T00:00:00Z,-3\n")
    with pytest.raises(SeriesFileError, match=r"'load_kw' at .* = -3: outside"):
        read_imported_forecast(negative, "load_kw")
    with pytest.raises(SeriesFileError, match="missing column 'cloud'"):
        read_imported_forecast(good, "cloud")


# ---------------------------------------------------------------- accuracy


@pytest.mark.parametrize(("site_name", "month"), [("guangdong_factory", "2025-06"),
                                                  ("caltech_campus", "2019-10")])
def test_accuracy_on_a_held_back_month(site_name: str, month: str, request: pytest.FixtureRequest) -> None:
    site: LoadedSite = request.getfixturevalue("guangdong" if site_name.startswith("g") else "caltech")
    report = backtest(site, month)
    start, end = month_bounds(site, month)
    actual = build_inputs(site, start, end).frame
    # 24 h horizons from every local midnight tile a month without a DST change exactly
    assert len(report.origins) == len(actual) // 96
    for s in report.series:
        for m in [s.total, s.baseline_total, *s.per_hour]:
            assert math.isfinite(m.mae) and math.isfinite(m.bias) and m.mae >= abs(m.bias)
        assert len(s.per_hour) == 24
        assert s.mean_actual_kw == pytest.approx(actual[s.column].mean())
        # sign convention: bias = mean(forecast - actual)
        assert s.total.bias == pytest.approx(s.mean_forecast_kw - s.mean_actual_kw)
        if s.column.startswith("pv:"):
            assert s.total.mae < s.mean_actual_kw  # better than forecasting zero
            night = [h for h in s.per_hour if h.mae == 0]
            assert night, "some lead hours are always night"
        else:
            assert s.total.mae < 0.5 * s.baseline_total.mae  # the weekly profile beats yesterday


def test_site_forecaster_reads_only_the_past_and_pickles(guangdong: LoadedSite) -> None:
    start = datetime(2025, 3, 1, tzinfo=ZoneInfo("Asia/Shanghai")).astimezone(UTC)
    actuals, sessions = measured_history(guangdong, start - timedelta(days=50), start + timedelta(days=2))
    forecaster = SiteForecaster(guangdong, actuals, sessions)
    idx = pd.DatetimeIndex(actuals.index[(actuals.index >= start)][:96])
    before = forecaster.forecast(idx)
    future = actuals.index >= start
    tampered = actuals.copy()
    tampered.loc[future] = tampered.loc[future] * 3.0  # the future must not matter
    again = SiteForecaster(guangdong, tampered, sessions).forecast(idx)
    pd.testing.assert_frame_equal(before, again)
    clone = pickle.loads(pickle.dumps(forecaster))
    pd.testing.assert_frame_equal(clone.forecast(idx), before)
