"""The bundled reference-site series and the two site configs that use them."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pvlib
import pytest

SITE_CONFIGS = Path(__file__).resolve().parents[1] / "site_configs"
DATA = SITE_CONFIGS / "data"

GUANGDONG = {
    "dir": "guangdong_factory",
    "first": "2024-12-31T16:00:00Z",
    "last": "2025-12-31T15:00:00Z",
    "rows": 8760,
    "lat": 23.13,
    "lon": 113.26,
    "tz": "Asia/Shanghai",
}
CALTECH = {
    "dir": "caltech_campus",
    "first": "2019-05-01T07:00:00Z",
    "last": "2020-05-01T06:00:00Z",
    "rows": 8784,
    "lat": 34.137,
    "lon": -118.125,
    "tz": "America/Los_Angeles",
}
SITES = (GUANGDONG, CALTECH)

HOURLY_FILES = [
    (
        GUANGDONG,
        "weather.csv",
        ["ghi_w_m2", "dni_w_m2", "dhi_w_m2", "temp_air_c", "wind_speed_m_s"],
    ),
    (GUANGDONG, "load_kw.csv", ["load_kw"]),
    (GUANGDONG, "carbon.csv", ["average_g_per_kwh", "marginal_g_per_kwh"]),
    (CALTECH, "weather.csv", ["ghi_w_m2", "dni_w_m2", "dhi_w_m2", "temp_air_c", "wind_speed_m_s"]),
    (CALTECH, "load_kw.csv", ["load_kw"]),
    (CALTECH, "carbon.csv", ["marginal_g_per_kwh"]),
]


def _read_hourly(site: dict[str, Any], name: str) -> pd.DataFrame:
    frame = pd.read_csv(DATA / site["dir"] / name, dtype={"timestamp_utc": str})
    assert frame.columns[0] == "timestamp_utc"
    assert frame["timestamp_utc"].str.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:00:00Z").all()
    frame.index = pd.DatetimeIndex(pd.to_datetime(frame.pop("timestamp_utc"), utc=True))
    return frame


@pytest.mark.parametrize(
    ("site", "name", "columns"),
    HOURLY_FILES,
    ids=[f"{s['dir']}/{n}" for s, n, _ in HOURLY_FILES],
)
def test_hourly_series_are_regular_complete_and_in_window(
    site: dict[str, Any], name: str, columns: list[str]
) -> None:
    frame = _read_hourly(site, name)
    assert list(frame.columns) == columns
    assert len(frame) == site["rows"]
    assert frame.index[0] == pd.Timestamp(site["first"])
    assert frame.index[-1] == pd.Timestamp(site["last"])
    steps = np.diff(frame.index.asi8)
    assert (steps == 3_600_000_000_000).all()
    assert not frame.isna().any().any()
    # The window is whole local days.
    local = frame.index.tz_convert(site["tz"])
    assert local[0].hour == 0 and local[-1].hour == 23


@pytest.mark.parametrize("site", SITES, ids=[s["dir"] for s in SITES])
def test_weather_is_physical(site: dict[str, Any]) -> None:
    weather = _read_hourly(site, "weather.csv")
    assert weather["ghi_w_m2"].between(0, 1300).all()
    assert weather["dni_w_m2"].between(0, 1100).all()
    assert weather["dhi_w_m2"].between(0, 700).all()
    assert (weather["dhi_w_m2"] <= weather["ghi_w_m2"] + 1).all()
    assert weather["temp_air_c"].between(-10, 45).all()
    assert weather["wind_speed_m_s"].between(0, 30).all()
    # Dark for the whole hour -> no irradiance; and it does get sunny.
    start = pvlib.solarposition.get_solarposition(weather.index, site["lat"], site["lon"])
    end = pvlib.solarposition.get_solarposition(
        weather.index + pd.Timedelta(hours=1), site["lat"], site["lon"]
    )
    dark = (start["elevation"].to_numpy() < -1) & (end["elevation"].to_numpy() < -1)
    assert (weather["ghi_w_m2"].to_numpy()[dark] == 0).all()
    assert weather["ghi_w_m2"].max() > 700


def test_guangdong_seasons_and_solar_resource() -> None:
    weather = _read_hourly(GUANGDONG, "weather.csv")
    local = weather.index.tz_convert(GUANGDONG["tz"])
    monthly_temp = weather["temp_air_c"].groupby(local.month).mean()
    assert 11 <= monthly_temp[1] <= 17
    assert 26 <= monthly_temp[7] <= 31
    annual_ghi_kwh_m2 = weather["ghi_w_m2"].sum() / 1000
    assert 1150 <= annual_ghi_kwh_m2 <= 1450


def test_guangdong_load_shape_and_energy() -> None:
    load = _read_hourly(GUANGDONG, "load_kw.csv")["load_kw"]
    assert (load > 0).all()
    assert 4.5e6 <= load.sum() <= 5.5e6
    local = load.index.tz_convert(GUANGDONG["tz"])
    day = pd.DatetimeIndex(local.tz_localize(None).normalize())
    weekday_day_shift = load[(local.dayofweek < 5) & (local.hour == 10) & (local.month == 3)]
    sundays = load[(local.dayofweek == 6) & (local.month == 3)]
    festival = load[(day >= "2025-01-29") & (day <= "2025-02-03")]
    assert weekday_day_shift.mean() > 700
    assert sundays.mean() < 350
    assert festival.mean() < 0.5 * sundays.mean()
    lunch = load[(local.dayofweek < 5) & (local.hour == 12) & (local.month == 3)]
    assert lunch.mean() < weekday_day_shift.mean() - 100


def test_guangdong_carbon_levels_and_shapes() -> None:
    carbon = _read_hourly(GUANGDONG, "carbon.csv")
    average, marginal = carbon["average_g_per_kwh"], carbon["marginal_g_per_kwh"]
    assert average.mean() == pytest.approx(500, abs=5)
    assert average.between(300, 800).all()
    assert marginal.between(750, 960).all()
    assert (marginal > average).all()
    local = carbon.index.tz_convert(GUANGDONG["tz"])
    wet = average[(local.month >= 5) & (local.month <= 10)].mean()
    dry = average[(local.month <= 3) | (local.month == 12)].mean()
    assert wet < dry - 30
    assert average[local.hour == 13].mean() < average[local.hour == 20].mean()


def test_caltech_load_and_moer() -> None:
    load = _read_hourly(CALTECH, "load_kw.csv")["load_kw"]
    assert (load > 0).all()
    assert load.mean() == pytest.approx(150, abs=1)
    local = load.index.tz_convert(CALTECH["tz"])
    assert (
        load[(local.dayofweek < 5) & (local.hour == 11)].mean()
        > 1.5 * load[(local.dayofweek < 5) & (local.hour == 3)].mean()
    )

    moer = _read_hourly(CALTECH, "carbon.csv")["marginal_g_per_kwh"]
    assert moer.between(0, 1500).all()
    assert 150 <= moer.mean() <= 400  # g/kWh, not kg/kWh or lb/MWh
    assert (moer == 0).any()  # curtailment hours are kept


@pytest.fixture(scope="module")
def sessions() -> pd.DataFrame:
    frame = pd.read_csv(DATA / "caltech_campus" / "ev_sessions.csv", dtype={"station_id": str})
    assert list(frame.columns) == [
        "session_id",
        "station_id",
        "arrival_utc",
        "departure_utc",
        "energy_kwh",
    ]
    for column in ("arrival_utc", "departure_utc"):
        assert frame[column].str.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ").all()
        frame[column] = pd.to_datetime(frame[column], utc=True)
    return frame


def test_caltech_sessions_are_valid_and_in_window(sessions: pd.DataFrame) -> None:
    assert len(sessions) >= 5000
    assert not sessions.isna().any().any()
    assert sessions["session_id"].is_unique
    assert (sessions["departure_utc"] > sessions["arrival_utc"]).all()
    assert (sessions["energy_kwh"] > 0).all()
    assert sessions["arrival_utc"].is_monotonic_increasing
    start = pd.Timestamp(CALTECH["first"])
    end = pd.Timestamp(CALTECH["last"]) + pd.Timedelta(hours=1)
    assert (sessions["arrival_utc"] >= start).all()
    assert (sessions["departure_utc"] <= end).all()
    hours = (sessions["departure_utc"] - sessions["arrival_utc"]).dt.total_seconds() / 3600
    assert (sessions["energy_kwh"] / hours <= 7.04).all()  # fits a 32 A x 220 V charger
    assert sessions["station_id"].nunique() == 54


def _config(name: str) -> dict[str, Any]:
    with (SITE_CONFIGS / f"{name}.toml").open("rb") as handle:
        return tomllib.load(handle)


@pytest.mark.parametrize("site", SITES, ids=[s["dir"] for s in SITES])
def test_config_references_existing_files_and_columns(site: dict[str, Any]) -> None:
    config = _config(site["dir"])
    carbon_tables = config["grid"]["carbon"]
    carbon_tables = carbon_tables if isinstance(carbon_tables, list) else [carbon_tables]
    references = [(c["file"], c["column"]) for c in carbon_tables]
    references += [(pv["weather_file"], "ghi_w_m2") for pv in config["pv"]]
    references += [(load["file"], load["column"]) for load in config["load"]]
    if config["ev_sessions"]["kind"] == "file":
        references.append((config["ev_sessions"]["file"], "energy_kwh"))
    for relative, column in references:
        path = SITE_CONFIGS / relative
        assert path.is_file(), relative
        assert column in pd.read_csv(path, nrows=1).columns, (relative, column)
    carbon = _read_hourly(site, "carbon.csv")
    local_dates = carbon.index.tz_convert(site["tz"]).date
    assert str(local_dates[0]) == config["site"]["data_start"]
    assert str(local_dates[-1]) == config["site"]["data_end"]
    assert config["site"]["timezone"] == site["tz"]


@pytest.mark.parametrize("site", SITES, ids=[s["dir"] for s in SITES])
def test_config_device_ports_are_distinct(site: dict[str, Any]) -> None:
    config = _config(site["dir"])
    ports = [config["grid"]["device"]["port"]]
    for kind in ("pv", "battery", "ev_charger", "electrolyser", "load"):
        ports += [asset["device"]["port"] for asset in config.get(kind, [])]
    assert len(ports) == len(set(ports))
    assert min(ports) >= 15020


def test_caltech_chargers_are_named_after_the_stations(sessions: pd.DataFrame) -> None:
    names = {charger["name"] for charger in _config("caltech_campus")["ev_charger"]}
    assert names == set(sessions["station_id"])


def _toml_price(tariff: dict[str, Any], local: pd.Timestamp) -> float:
    period = tariff["default_period"]
    minute = local.hour * 60 + local.minute
    for rule in tariff["rules"]:
        start_h, start_m = map(int, rule["start"].split(":"))
        end_h, end_m = map(int, rule["end"].split(":"))
        in_time = start_h * 60 + start_m <= minute < end_h * 60 + end_m
        in_month = local.month in rule.get("months", range(1, 13))
        days = rule.get("days", "all")
        in_days = days == "all" or (days == "weekdays") == (local.dayofweek < 5)
        if in_time and in_month and in_days:
            period = rule["period"]
    return float(tariff["prices"][period])


def _json_price(schedule: list[dict[str, Any]], local: pd.Timestamp) -> float:
    month_day = f"{local.month:02d}-{local.day:02d}"
    weekday = local.dayofweek < 5
    for block in schedule:
        start, end = block["effective_start"], block["effective_end"]
        in_season = start <= month_day <= end if start <= end else not end < month_day < start
        if in_season and (block["dow_mask"] == "WEEKDAYS") == weekday:
            index = int(np.searchsorted(block["times"], local.hour, side="right")) - 1
            return float(block["tariffs"][index])
    raise AssertionError(f"no tariff block for {local}")


def test_caltech_tou_table_matches_the_acnportal_json() -> None:
    tariff = _config("caltech_campus")["grid"]["tariff"]
    bundled = json.loads((DATA / "caltech_campus" / "sce_tou_ev_4.json").read_text())
    assert bundled["name"] == "SCE TOU-EV-4"
    hours = pd.date_range("2019-05-01", "2020-05-01", freq="1h", inclusive="left")
    for local in hours:
        assert _toml_price(tariff, local) == _json_price(bundled["schedule"], local), local
    demand = {block["demand_charge"] for block in bundled["schedule"]}
    assert demand == {_config("caltech_campus")["grid"]["demand_charge"]["price_per_kw"]}
