"""PV output from weather: pvlib PVWatts DC model, SAPM cell temperature, PVWatts inverter.

Units: irradiance W/m2, temperature degC, wind m/s, power kW. Time is UTC; each weather row
describes the interval that starts at its timestamp (irradiance is the interval mean).

Importing pvlib maps scipy (and h5py, requests) into the process: about 50-70 MB of RSS that a
long-running process keeps. `child_main` (also `python -m ems.pv_model`) computes
`pv_from_weather_file` in a short-lived process instead: `ems.inputs.site_inputs` runs it there
when pvlib is not loaded yet, so the site service never imports pvlib.
"""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pvlib

WEATHER_COLUMNS: tuple[str, ...] = (
    "ghi_w_m2",
    "dni_w_m2",
    "dhi_w_m2",
    "temp_air_c",
    "wind_speed_m_s",
)
"""Columns that `pv_ac_kw` needs in its weather frame."""

GAMMA_PDC_PER_C = -0.0037
"""PVWatts power temperature coefficient of crystalline-silicon modules (1/degC)."""

INVERTER_NOMINAL_EFFICIENCY = 0.96
"""PVWatts nominal inverter efficiency; the AC rating equals the array's kWp."""

GROUND_ALBEDO = 0.2

_CELL_TEMPERATURE_PARAMS = pvlib.temperature.TEMPERATURE_MODEL_PARAMETERS["sapm"][
    "open_rack_glass_polymer"
]


def read_weather_csv(path: str | Path) -> pd.DataFrame:
    """Read a weather CSV whose first column is `timestamp_utc` (ISO 8601, interval start).

    Returns the value columns indexed by a tz-aware UTC DatetimeIndex named `timestamp_utc`.
    Raises ValueError if the `timestamp_utc` column is missing or a timestamp does not parse.
    """
    frame = pd.read_csv(path)
    if "timestamp_utc" not in frame.columns:
        raise ValueError(f"{path}: missing column 'timestamp_utc'")
    try:
        stamps = pd.to_datetime(frame.pop("timestamp_utc"), utc=True, format="ISO8601")
    except (ValueError, TypeError) as exc:
        raise ValueError(
            f"{path}: column 'timestamp_utc' has an unparsable timestamp: {exc}"
        ) from exc
    frame.index = pd.DatetimeIndex(stamps, name="timestamp_utc")
    return frame


def _interval(index: pd.DatetimeIndex) -> pd.Timedelta:
    """Length of one weather interval: the median spacing of the index (1 h for one row)."""
    if len(index) < 2:
        return pd.Timedelta(hours=1)
    steps = np.diff(index.asi8)
    return pd.Timedelta(int(np.median(steps)), unit="ns")


def pv_ac_kw(
    weather: pd.DataFrame,
    latitude: float,
    longitude: float,
    kwp: float,
    tilt_deg: float,
    azimuth_deg: float,
    system_loss_fraction: float = 0.14,
    altitude_m: float = 0.0,
) -> pd.Series:
    """AC output in kW (mean over each weather interval) of a fixed PV array.

    `weather` is indexed by a tz-aware DatetimeIndex of interval starts and has the
    `WEATHER_COLUMNS` (W/m2, degC, m/s). The solar position is taken at each interval's
    midpoint; an interval whose midpoint has the sun at or below the horizon gives 0.
    `kwp` is the DC nameplate (kW at 1000 W/m2, 25 degC cell); `azimuth_deg` follows pvlib
    (180 = south, 90 = east); `system_loss_fraction` covers soiling, wiring, mismatch and
    availability (PVWatts' 14 % default) and applies to DC power. The inverter's AC rating
    equals `kwp`, so the result lies in [0, kwp]. A NaN weather value gives NaN in daylight.
    Raises ValueError naming a missing column or a bad parameter.
    """
    for column in WEATHER_COLUMNS:
        if column not in weather.columns:
            raise ValueError(f"weather is missing column '{column}'")
    if not isinstance(weather.index, pd.DatetimeIndex) or weather.index.tz is None:
        raise ValueError("weather index must be a tz-aware DatetimeIndex (UTC interval starts)")
    if not kwp > 0:
        raise ValueError(f"kwp must be positive, got {kwp}")
    if not 0.0 <= system_loss_fraction < 1.0:
        raise ValueError(f"system_loss_fraction must be in [0, 1), got {system_loss_fraction}")

    index = weather.index.tz_convert("UTC")
    if len(index) == 0:
        return pd.Series([], index=weather.index, dtype=float, name="pv_ac_kw")
    midpoints = index + _interval(index) / 2

    ghi = weather["ghi_w_m2"].to_numpy(dtype=float)
    dni = weather["dni_w_m2"].to_numpy(dtype=float)
    dhi = weather["dhi_w_m2"].to_numpy(dtype=float)
    temp_air = weather["temp_air_c"].to_numpy(dtype=float)
    wind = weather["wind_speed_m_s"].to_numpy(dtype=float)

    solpos = pvlib.solarposition.get_solarposition(
        midpoints, latitude, longitude, altitude=altitude_m
    )
    zenith = solpos["apparent_zenith"].to_numpy()
    sun_azimuth = solpos["azimuth"].to_numpy()
    dni_extra = pvlib.irradiance.get_extra_radiation(midpoints).to_numpy()

    poa = pvlib.irradiance.get_total_irradiance(
        tilt_deg,
        azimuth_deg,
        zenith,
        sun_azimuth,
        dni,
        ghi,
        dhi,
        dni_extra=dni_extra,
        albedo=GROUND_ALBEDO,
        model="haydavies",
    )
    aoi = pvlib.irradiance.aoi(tilt_deg, azimuth_deg, zenith, sun_azimuth)
    iam = pvlib.iam.physical(aoi)
    poa_direct = np.asarray(poa["poa_direct"], dtype=float)
    poa_diffuse = np.asarray(poa["poa_diffuse"], dtype=float)
    poa_global = np.asarray(poa["poa_global"], dtype=float)
    effective = np.maximum(poa_direct * iam + poa_diffuse, 0.0)

    temp_cell = pvlib.temperature.sapm_cell(poa_global, temp_air, wind, **_CELL_TEMPERATURE_PARAMS)
    dc_kw = pvlib.pvsystem.pvwatts_dc(effective, temp_cell, kwp, GAMMA_PDC_PER_C)
    dc_kw = np.asarray(dc_kw, dtype=float) * (1.0 - system_loss_fraction)
    ac_kw = pvlib.inverter.pvwatts(
        dc_kw, kwp / INVERTER_NOMINAL_EFFICIENCY, eta_inv_nom=INVERTER_NOMINAL_EFFICIENCY
    )
    ac = np.clip(np.asarray(ac_kw, dtype=float), 0.0, kwp)
    ac = np.where(zenith >= 90.0, 0.0, ac)
    return pd.Series(ac, index=weather.index, name="pv_ac_kw")


def pv_from_weather_file(
    path: str | Path,
    latitude: float,
    longitude: float,
    kwp: float,
    tilt_deg: float,
    azimuth_deg: float,
    system_loss_fraction: float = 0.14,
) -> pd.Series:
    """`pv_ac_kw` of the weather in the CSV at `path` (see `read_weather_csv`)."""
    weather = read_weather_csv(Path(path))
    return pv_ac_kw(weather, latitude, longitude, kwp, tilt_deg, azimuth_deg,
                    system_loss_fraction=system_loss_fraction)


def child_main() -> None:
    """Child side of `ems.inputs.site_inputs`: reads the pickled arguments of
    `pv_from_weather_file` from stdin and writes ``("ok", series)`` or ``("error", exception)``
    pickled to stdout."""
    args = pickle.load(sys.stdin.buffer)
    try:
        result: tuple[str, object] = ("ok", pv_from_weather_file(*args))
    except Exception as exc:  # the parent raises it
        result = ("error", exc)
    sys.stdout.buffer.write(pickle.dumps(result))
    sys.stdout.buffer.flush()


if __name__ == "__main__":
    child_main()
