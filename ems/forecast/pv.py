"""PV forecast from the site geometry: clear sky (pvlib Ineichen) -> POA -> PVWatts AC (kW).

Two ways to bring the sky in:

- a cloud-cover forecast (fraction 0..1 per step): clear-sky GHI is scaled by the
  Kasten-Czeplak relation GHI = GHI_cs * (1 - 0.75 * c**3.4), split into DNI/DHI by Erbs;
- no cloud forecast: the clear-sky AC output is scaled by the performance ratio measured over
  the last days (measured PV energy / clear-sky energy, daylight steps only), clipped to
  [PR_MIN, PR_MAX].

Power is kW (mean over each step, non-negative), time is UTC; each index entry is the start of
its step. The AC model is `ems.pv_model.pv_ac_kw`, the one that turns weather into PV actuals.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pvlib

from ems.pv_model import _interval, pv_ac_kw

KASTEN_A = 0.75
KASTEN_B = 3.4
"""Kasten-Czeplak (1980): GHI / GHI_clear = 1 - A * c**B with c the cloud fraction (0..1)."""

PR_MIN, PR_MAX = 0.05, 1.2
"""Sane range of the measured performance ratio (measured / clear-sky energy)."""

DAYLIGHT_FRACTION = 0.05
"""A step counts as daylight for the ratio when clear-sky output exceeds this share of kWp."""

DEFAULT_TEMP_AIR_C = 20.0
DEFAULT_WIND_M_S = 1.0


@dataclass(frozen=True)
class PvArray:
    """Geometry of one PV array (see `ems.config.models.PvConfig`)."""

    name: str
    kwp: float
    tilt_deg: float
    azimuth_deg: float
    system_loss_fraction: float = 0.14


def kasten_czeplak(ghi_clear: np.ndarray, cloud_fraction: np.ndarray) -> np.ndarray:
    """GHI (W/m2) under cloud fraction c in [0, 1]: GHI_cs * (1 - 0.75 c^3.4).

    Raises ValueError naming the first value outside [0, 1] (NaN included)."""
    c = np.asarray(cloud_fraction, dtype=float)
    bad = ~((c >= 0.0) & (c <= 1.0))
    if bad.any():
        raise ValueError(f"cloud cover must be a fraction in [0, 1], got {c[bad.argmax()]!r} "
                         f"at position {int(bad.argmax())}")
    return np.asarray(ghi_clear, dtype=float) * (1.0 - KASTEN_A * c**KASTEN_B)


def sky_weather(index: pd.DatetimeIndex, latitude: float, longitude: float,
                cloud_fraction: pd.Series | None = None, altitude_m: float = 0.0,
                temp_air_c: float = DEFAULT_TEMP_AIR_C) -> pd.DataFrame:
    """Weather frame for `pv_ac_kw` on `index` (UTC step starts): clear-sky irradiance at each
    step's midpoint (Ineichen with the climatological Linke turbidity), or, with
    `cloud_fraction` (0..1, on `index`), the Kasten-Czeplak GHI split by Erbs into DNI/DHI."""
    midpoints = index + _interval(index) / 2
    location = pvlib.location.Location(latitude, longitude, tz="UTC", altitude=altitude_m)
    cs = location.get_clearsky(midpoints, model="ineichen")
    ghi = cs["ghi"].to_numpy(dtype=float)
    dni = cs["dni"].to_numpy(dtype=float)
    dhi = cs["dhi"].to_numpy(dtype=float)
    if cloud_fraction is not None:
        c = cloud_fraction.reindex(index).to_numpy(dtype=float)
        ghi = kasten_czeplak(ghi, c)
        zenith = location.get_solarposition(midpoints)["apparent_zenith"].to_numpy()
        parts = pvlib.irradiance.erbs(ghi, zenith, midpoints)
        dni = np.nan_to_num(np.asarray(parts["dni"], dtype=float))
        dhi = np.nan_to_num(np.asarray(parts["dhi"], dtype=float))
    return pd.DataFrame({
        "ghi_w_m2": ghi, "dni_w_m2": dni, "dhi_w_m2": dhi,
        "temp_air_c": np.full(len(index), temp_air_c),
        "wind_speed_m_s": np.full(len(index), DEFAULT_WIND_M_S),
    }, index=index)


def clear_sky_ac_kw(array: PvArray, latitude: float, longitude: float, index: pd.DatetimeIndex,
                    cloud_fraction: pd.Series | None = None,
                    resolution_minutes: int | None = 60) -> pd.Series:
    """AC output (kW, in [0, kwp]) of `array` under a clear sky, or under `cloud_fraction`.

    With `resolution_minutes` (default 60, the resolution of weather data and weather
    forecasts) the output is the mean of each such interval (irradiance at its midpoint),
    repeated on every step of `index` inside it; None computes each step of `index` itself."""
    if len(index) == 0:
        return pd.Series([], index=index, dtype=float, name=array.name)
    grid = index
    if resolution_minutes is not None:
        freq = f"{resolution_minutes}min"
        grid = pd.date_range(index[0].floor(freq), index[-1], freq=freq)
    weather = sky_weather(grid, latitude, longitude,
                          None if cloud_fraction is None
                          else cloud_fraction.reindex(grid, method="ffill").bfill(limit=1))
    ac = pv_ac_kw(weather, latitude, longitude, array.kwp, array.tilt_deg, array.azimuth_deg,
                  array.system_loss_fraction)
    if grid is not index:
        ac = ac.reindex(index, method="ffill")
    return ac.rename(array.name)


def performance_ratio(measured_kw: pd.Series, clear_kw: pd.Series, kwp: float,
                      default: float = 0.8) -> tuple[float, str]:
    """Measured / clear-sky energy over the daylight steps both series have (NaN measured steps
    are skipped), clipped to [PR_MIN, PR_MAX]. Returns (ratio, how it was found); `default`
    when there is no daylight step to measure on."""
    clear = clear_kw.reindex(measured_kw.index)
    ok = measured_kw.notna() & clear.notna() & (clear > DAYLIGHT_FRACTION * kwp)
    if not ok.any():
        return default, f"no measured daylight steps: default {default:g}"
    ratio = float(measured_kw[ok].sum() / clear[ok].sum())
    clipped = float(np.clip(ratio, PR_MIN, PR_MAX))
    how = f"measured {ratio:.3f} over {int(ok.sum())} daylight steps"
    if clipped != ratio:
        how += f", clipped to {clipped:g}"
    return clipped, how


def forecast_pv_kw(array: PvArray, latitude: float, longitude: float, index: pd.DatetimeIndex,
                   history_kw: pd.Series | None = None, cloud_fraction: pd.Series | None = None,
                   history_days: int = 2, clear_kw: pd.Series | None = None) -> pd.Series:
    """PV forecast (kW) on `index` (UTC step starts, the first one is the forecast origin).

    With `cloud_fraction`, the Kasten-Czeplak cloud model; otherwise clear-sky output times the
    performance ratio of the last `history_days` days of `history_kw` before the origin (only
    steps before the origin are read). `clear_kw` may carry precomputed clear-sky output
    covering both the history and `index` (a cache for rolling use)."""
    if cloud_fraction is not None:
        return clear_sky_ac_kw(array, latitude, longitude, index, cloud_fraction)
    origin = index[0]
    hist = pd.Series(dtype=float)
    if history_kw is not None:
        hist = history_kw[(history_kw.index < origin)
                          & (history_kw.index >= origin - pd.Timedelta(days=history_days))]
    if clear_kw is None:
        both = pd.DatetimeIndex(hist.index.append(index)) if len(hist) else index
        clear_kw = clear_sky_ac_kw(array, latitude, longitude, both)
    ratio, _ = performance_ratio(hist, clear_kw, array.kwp)
    return (clear_kw.reindex(index) * ratio).clip(0.0, array.kwp).rename(array.name)
