"""PV model: night, clipping, orientation, annual yield on the bundled weather, input errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pvlib
import pytest

from ems.pv_model import WEATHER_COLUMNS, pv_ac_kw, read_weather_csv

DATA = Path(__file__).resolve().parents[1] / "site_configs" / "data"

GUANGZHOU = {"latitude": 23.13, "longitude": 113.26, "altitude_m": 20.0}
PASADENA = {"latitude": 34.137, "longitude": -118.125, "altitude_m": 263.0}


@pytest.fixture(scope="module")
def guangzhou_weather() -> pd.DataFrame:
    return read_weather_csv(DATA / "guangdong_factory" / "weather.csv")


@pytest.fixture(scope="module")
def pasadena_weather() -> pd.DataFrame:
    return read_weather_csv(DATA / "caltech_campus" / "weather.csv")


def _constant_weather(start: str, hours: int, **values: float) -> pd.DataFrame:
    index = pd.date_range(start, periods=hours, freq="1h", tz="UTC")
    defaults = {
        "ghi_w_m2": 300.0,
        "dni_w_m2": 300.0,
        "dhi_w_m2": 300.0,
        "temp_air_c": 25.0,
        "wind_speed_m_s": 1.0,
    }
    defaults.update(values)
    return pd.DataFrame(defaults, index=index)


def test_read_weather_csv_gives_utc_index(tmp_path: Path) -> None:
    path = tmp_path / "w.csv"
    path.write_text(
        "timestamp_utc,ghi_w_m2,dni_w_m2,dhi_w_m2,temp_air_c,wind_speed_m_s\n"
        "2025-06-01T04:00:00Z,800,600,200,30.0,2.0\n"
        "2025-06-01T05:00:00Z,820,610,210,31.0,2.1\n"
    )
    weather = read_weather_csv(path)
    assert str(weather.index.tz) == "UTC"
    assert weather.index[0] == pd.Timestamp("2025-06-01T04:00:00Z")
    assert list(weather.columns) == list(WEATHER_COLUMNS)


def test_zero_when_sun_below_horizon_even_with_bad_irradiance() -> None:
    # Irradiance at night is impossible; the model must still give 0 when the sun is down.
    weather = _constant_weather("2025-03-20T00:00:00Z", 48)
    ac = pv_ac_kw(weather, tilt_deg=20.0, azimuth_deg=180.0, kwp=100.0, **GUANGZHOU)
    midpoints = weather.index + pd.Timedelta(minutes=30)
    elevation = pvlib.solarposition.get_solarposition(
        midpoints, GUANGZHOU["latitude"], GUANGZHOU["longitude"]
    )["apparent_elevation"].to_numpy()
    night = elevation < 0
    assert night.sum() >= 20 and (~night).sum() >= 20
    assert (ac.to_numpy()[night] == 0.0).all()
    assert (ac.to_numpy()[~night] > 0.0).any()


def test_zero_at_night_on_bundled_weather(guangzhou_weather: pd.DataFrame) -> None:
    ac = pv_ac_kw(guangzhou_weather, kwp=1000.0, tilt_deg=20.0, azimuth_deg=180.0, **GUANGZHOU)
    midpoints = guangzhou_weather.index + pd.Timedelta(minutes=30)
    elevation = pvlib.solarposition.get_solarposition(
        midpoints, GUANGZHOU["latitude"], GUANGZHOU["longitude"]
    )["apparent_elevation"].to_numpy()
    assert (ac.to_numpy()[elevation < 0] == 0.0).all()
    assert ac.min() >= 0.0


def test_never_above_kwp_and_clips_under_extreme_sun() -> None:
    # 1400 W/m2 on a freezing, calm day would give more DC than the inverter's AC rating.
    weather = _constant_weather(
        "2025-06-21T00:00:00Z",
        24,
        ghi_w_m2=1400.0,
        dni_w_m2=1100.0,
        dhi_w_m2=300.0,
        temp_air_c=-10.0,
        wind_speed_m_s=0.0,
    )
    ac = pv_ac_kw(weather, tilt_deg=20.0, azimuth_deg=180.0, kwp=50.0, **GUANGZHOU)
    assert ac.max() <= 50.0
    assert ac.max() == pytest.approx(50.0)  # the AC limit binds


def test_never_above_kwp_on_bundled_weather(
    guangzhou_weather: pd.DataFrame, pasadena_weather: pd.DataFrame
) -> None:
    for weather, site in ((guangzhou_weather, GUANGZHOU), (pasadena_weather, PASADENA)):
        ac = pv_ac_kw(weather, kwp=250.0, tilt_deg=20.0, azimuth_deg=180.0, **site)
        assert ac.max() <= 250.0
        assert ac.max() > 100.0


@pytest.mark.parametrize(
    ("site_dir", "site", "low", "high"),
    [
        # Guangzhou: ~1.28 MWh/m2 GHI; a 20 deg south array gives ~1000 kWh/kWp.
        ("guangdong_factory", GUANGZHOU, 950.0, 1300.0),
        # Pasadena: ~1.8 MWh/m2 GHI; ~1500 kWh/kWp.
        ("caltech_campus", PASADENA, 1350.0, 1800.0),
    ],
)
def test_annual_yield_per_kwp_is_plausible(
    site_dir: str, site: dict[str, float], low: float, high: float
) -> None:
    weather = read_weather_csv(DATA / site_dir / "weather.csv")
    ac = pv_ac_kw(weather, kwp=1.0, tilt_deg=20.0, azimuth_deg=180.0, **site)
    assert low <= ac.sum() <= high  # hourly kW means summed = kWh


def test_south_tilt_beats_north_tilt_at_guangzhou(guangzhou_weather: pd.DataFrame) -> None:
    south = pv_ac_kw(guangzhou_weather, kwp=1.0, tilt_deg=20.0, azimuth_deg=180.0, **GUANGZHOU)
    north = pv_ac_kw(guangzhou_weather, kwp=1.0, tilt_deg=20.0, azimuth_deg=0.0, **GUANGZHOU)
    assert south.sum() > 1.05 * north.sum()


def test_output_scales_with_kwp(guangzhou_weather: pd.DataFrame) -> None:
    week = guangzhou_weather.iloc[4000:4168]
    one = pv_ac_kw(week, kwp=1.0, tilt_deg=20.0, azimuth_deg=180.0, **GUANGZHOU)
    many = pv_ac_kw(week, kwp=500.0, tilt_deg=20.0, azimuth_deg=180.0, **GUANGZHOU)
    np.testing.assert_allclose(many.to_numpy(), 500.0 * one.to_numpy(), rtol=1e-9, atol=1e-9)


def test_losses_reduce_output(guangzhou_weather: pd.DataFrame) -> None:
    week = guangzhou_weather.iloc[4000:4168]
    low = pv_ac_kw(week, kwp=1.0, tilt_deg=20.0, azimuth_deg=180.0, **GUANGZHOU)
    high = pv_ac_kw(
        week, kwp=1.0, tilt_deg=20.0, azimuth_deg=180.0, system_loss_fraction=0.3, **GUANGZHOU
    )
    assert high.sum() < 0.85 * low.sum()


@pytest.mark.parametrize("column", WEATHER_COLUMNS)
def test_missing_column_raises_naming_it(column: str) -> None:
    weather = _constant_weather("2025-06-21T00:00:00Z", 3).drop(columns=[column])
    with pytest.raises(ValueError, match=column):
        pv_ac_kw(weather, kwp=1.0, tilt_deg=20.0, azimuth_deg=180.0, **GUANGZHOU)


def test_naive_index_is_rejected() -> None:
    weather = _constant_weather("2025-06-21T00:00:00Z", 3)
    weather.index = weather.index.tz_localize(None)
    with pytest.raises(ValueError, match="tz-aware"):
        pv_ac_kw(weather, kwp=1.0, tilt_deg=20.0, azimuth_deg=180.0, **GUANGZHOU)


def test_nan_weather_is_not_reported_as_zero() -> None:
    weather = _constant_weather("2025-06-21T02:00:00Z", 4)
    weather.iloc[1, weather.columns.get_loc("ghi_w_m2")] = np.nan
    ac = pv_ac_kw(weather, kwp=1.0, tilt_deg=20.0, azimuth_deg=180.0, **GUANGZHOU)
    assert np.isnan(ac.iloc[1])
    assert ac.drop(ac.index[1]).gt(0.0).all()


def test_site_inputs_compute_weather_pv_in_a_child_without_pvlib() -> None:
    """A process that has not imported pvlib (the site service) gets weather PV from a child
    process: pvlib and scipy stay out of it, and the numbers are exactly `pv_ac_kw`'s."""
    import pickle
    import subprocess
    import sys

    from ems.pv_model import pv_from_weather_file

    args = (str(DATA / "guangdong_factory" / "weather.csv"), 23.13, 113.26, 1000.0, 20.0, 180.0, 0.14)
    code = ("import pickle, sys\n"
            "from ems.inputs.site_inputs import _pv_hourly\n"
            "args = pickle.loads(sys.stdin.buffer.read())\n"
            "s = _pv_hourly(args[0], 0.0, *args[1:])\n"
            "sys.stdout.buffer.write(pickle.dumps((s, 'pvlib' in sys.modules, 'scipy' in sys.modules)))\n")
    out = subprocess.run([sys.executable, "-c", code], input=pickle.dumps(args), capture_output=True,
                         check=True, cwd=Path(__file__).resolve().parents[1]).stdout
    series, pvlib_loaded, scipy_loaded = pickle.loads(out)
    assert not pvlib_loaded and not scipy_loaded
    pd.testing.assert_series_equal(series, pv_from_weather_file(*args), check_exact=True)


def test_weather_pv_child_raises_the_error_of_the_file(tmp_path: Path) -> None:
    from ems.inputs.site_inputs import _pv_in_child

    bad = tmp_path / "weather.csv"
    bad.write_text("time,ghi_w_m2\n2025-01-01T00:00Z,0\n")
    with pytest.raises(ValueError, match="missing column 'timestamp_utc'"):
        _pv_in_child((str(bad), 23.13, 113.26, 1000.0, 20.0, 180.0, 0.14))
    with pytest.raises(FileNotFoundError):
        _pv_in_child((str(tmp_path / "absent.csv"), 23.13, 113.26, 1000.0, 20.0, 180.0, 0.14))
