"""Per-step site inputs: local-time tariffs on UTC steps (with DST), EV sessions, hydrogen
offtake, and series files that are wrong or too short."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest

from ems.config import LoadedSite, load_site
from ems.config.models import TouTariff
from ems.inputs import build_inputs
from ems.inputs.csv_series import SeriesFileError
from ems.inputs.site_inputs import tou_periods
from ems.whatif.simulate import period_utc

GD_PRICE = {"valley": 0.266, "flat": 0.700, "peak": 1.190, "critical": 1.4875}
SCE_PRICE = {
    "summer_on_peak": 0.26668, "summer_mid_peak": 0.0925, "summer_off_peak": 0.05623,
    "winter_on_peak": 0.0869, "winter_mid_peak": 0.07492, "winter_off_peak": 0.06087,
}


def utc(*args: int) -> pd.Timestamp:
    return pd.Timestamp(datetime(*args, tzinfo=UTC))  # type: ignore[misc]


def day_frame(site: LoadedSite, day: date, days: int = 1) -> pd.DataFrame:
    start, end = period_utc(site, day, days)
    return build_inputs(site, start, end).frame


def periods(site: LoadedSite, frame: pd.DataFrame) -> pd.Series:
    tariff = site.config.grid.tariff
    assert isinstance(tariff, TouTariff)
    local = frame.index.tz_convert(site.config.site.timezone)
    return pd.Series(tou_periods(tariff, local), index=frame.index)


# --- Guangdong: Asia/Shanghai, UTC+8, no DST ---------------------------------------------


def test_guangdong_summer_day_prices_on_utc_steps(guangdong: LoadedSite) -> None:
    f = day_frame(guangdong, date(2025, 7, 15))
    assert len(f) == 96
    assert f.index[0] == utc(2025, 7, 14, 16)  # local midnight
    price = f["import_price_per_kwh"]
    expect = {
        utc(2025, 7, 14, 19): "valley",     # 03:00 local
        utc(2025, 7, 14, 23, 45): "valley",  # 07:45 local
        utc(2025, 7, 15, 0): "flat",        # 08:00 local
        utc(2025, 7, 15, 2): "peak",        # 10:00 local
        utc(2025, 7, 15, 2, 45): "peak",    # 10:45 local
        utc(2025, 7, 15, 3): "critical",    # 11:00 local
        utc(2025, 7, 15, 3, 45): "critical",  # 11:45 local
        utc(2025, 7, 15, 4): "flat",        # 12:00 local
        utc(2025, 7, 15, 6, 45): "peak",    # 14:45 local
        utc(2025, 7, 15, 7): "critical",    # 15:00 local
        utc(2025, 7, 15, 8, 45): "critical",  # 16:45 local
        utc(2025, 7, 15, 9): "peak",        # 17:00 local
        utc(2025, 7, 15, 10, 45): "peak",   # 18:45 local
        utc(2025, 7, 15, 11): "flat",       # 19:00 local
        utc(2025, 7, 15, 12): "flat",       # 20:00 local
        utc(2025, 7, 15, 15, 45): "flat",   # 23:45 local
    }
    for at, period in expect.items():
        assert price[at] == GD_PRICE[period], (at, period, price[at])
    # the critical hour is exactly UTC 03:00-04:00 (and 07:00-09:00)
    critical = price[price == GD_PRICE["critical"]].index
    assert list(critical.hour) == [3] * 4 + [7] * 4 + [8] * 4
    # step counts per period: valley 8 h, peak 4 h left after critical, critical 3 h
    counts = periods(guangdong, f).value_counts().to_dict()
    assert counts == {"valley": 32, "flat": 36, "peak": 16, "critical": 12}


def test_guangdong_winter_has_no_critical_peak(guangdong: LoadedSite) -> None:
    f = day_frame(guangdong, date(2025, 1, 15))
    price = f["import_price_per_kwh"]
    assert price[utc(2025, 1, 15, 3)] == GD_PRICE["peak"]  # 11:00 local, January
    assert price[utc(2025, 1, 15, 7, 30)] == GD_PRICE["peak"]  # 15:30 local
    assert (price != GD_PRICE["critical"]).all()
    assert periods(guangdong, f).value_counts().to_dict() == {"valley": 32, "flat": 36, "peak": 28}


def test_guangdong_fixed_export_and_limits(guangdong: LoadedSite) -> None:
    f = day_frame(guangdong, date(2025, 7, 15))
    assert (f["export_price_per_kwh"] == 0.453).all()
    assert (f["import_limit_kw"] == 2500.0).all()
    assert (f["export_limit_kw"] == 0.0).all()
    assert f["demand_window"].all()
    assert (f["carbon_g_per_kwh"] > 0).all()
    # hourly series repeat on the quarter-hour grid
    load = f["load:factory_kw"].to_numpy().reshape(24, 4)
    assert (load == load[:, :1]).all()


def test_hydrogen_offtake_kg_per_step(guangdong: LoadedSite) -> None:
    # forklifts: 08:00-20:00 local at 3 kg/h -> 0.75 kg per 15-minute step
    f = day_frame(guangdong, date(2025, 7, 15))
    kg = f["h2:forklifts_kg"]
    assert kg[utc(2025, 7, 14, 23, 45)] == 0.0   # 07:45 local
    assert kg[utc(2025, 7, 15, 0)] == pytest.approx(0.75)    # 08:00 local
    assert kg[utc(2025, 7, 15, 11, 45)] == pytest.approx(0.75)  # 19:45 local
    assert kg[utc(2025, 7, 15, 12)] == 0.0   # 20:00 local
    assert (kg > 0).sum() == 48
    assert kg.sum() == pytest.approx(36.0)


def test_hydrogen_offtake_scales_with_step_length() -> None:
    site = load_site("guangdong_factory",
                     ["planning.step_minutes=60", "planning.replan_every_minutes=60"])
    f = day_frame(site, date(2025, 7, 15))
    assert len(f) == 24
    assert f["h2:forklifts_kg"].max() == pytest.approx(3.0)
    assert f["h2:forklifts_kg"].sum() == pytest.approx(36.0)


# --- Caltech: America/Los_Angeles, PDT (UTC-7) / PST (UTC-8) -----------------------------


def test_caltech_summer_weekday_on_peak_in_pdt(caltech: LoadedSite) -> None:
    f = day_frame(caltech, date(2019, 7, 16))  # Tuesday
    assert f.index[0] == utc(2019, 7, 16, 7)
    p = periods(caltech, f)
    assert p[utc(2019, 7, 16, 14, 45)] == "summer_off_peak"  # 07:45 PDT
    assert p[utc(2019, 7, 16, 15)] == "summer_mid_peak"      # 08:00 PDT
    assert p[utc(2019, 7, 16, 18, 45)] == "summer_mid_peak"  # 11:45 PDT
    assert p[utc(2019, 7, 16, 19)] == "summer_on_peak"       # 12:00 PDT
    assert p[utc(2019, 7, 17, 0, 45)] == "summer_on_peak"    # 17:45 PDT
    assert p[utc(2019, 7, 17, 1)] == "summer_mid_peak"       # 18:00 PDT
    assert p[utc(2019, 7, 17, 6)] == "summer_off_peak"       # 23:00 PDT
    on = f.index[p == "summer_on_peak"]
    assert len(on) == 24 and on[0] == utc(2019, 7, 16, 19) and on[-1] == utc(2019, 7, 17, 0, 45)
    assert f["import_price_per_kwh"][utc(2019, 7, 16, 19)] == SCE_PRICE["summer_on_peak"]


def test_caltech_summer_weekend_is_off_peak(caltech: LoadedSite) -> None:
    f = day_frame(caltech, date(2019, 7, 20))  # Saturday
    assert set(periods(caltech, f)) == {"summer_off_peak"}
    assert (f["import_price_per_kwh"] == SCE_PRICE["summer_off_peak"]).all()


def test_caltech_winter_weekday_on_peak_in_pst(caltech: LoadedSite) -> None:
    f = day_frame(caltech, date(2020, 1, 15))  # Wednesday
    assert f.index[0] == utc(2020, 1, 15, 8)
    p = periods(caltech, f)
    assert p[utc(2020, 1, 15, 19, 45)] == "winter_mid_peak"  # 11:45 PST
    assert p[utc(2020, 1, 15, 20)] == "winter_on_peak"       # 12:00 PST
    assert p[utc(2020, 1, 16, 1, 45)] == "winter_on_peak"    # 17:45 PST
    assert p[utc(2020, 1, 16, 2)] == "winter_mid_peak"       # 18:00 PST
    assert p[utc(2020, 1, 16, 7)] == "winter_off_peak"       # 23:00 PST
    assert (p == "winter_on_peak").sum() == 24
    assert f["import_price_per_kwh"][utc(2020, 1, 15, 20)] == SCE_PRICE["winter_on_peak"]


@pytest.mark.parametrize(("day", "steps", "first_utc"), [
    (date(2019, 11, 3), 100, utc(2019, 11, 3, 7)),   # PDT -> PST: a 25-hour day
    (date(2020, 3, 8), 92, utc(2020, 3, 8, 8)),      # PST -> PDT: a 23-hour day
    (date(2019, 11, 4), 96, utc(2019, 11, 4, 8)),
])
def test_dst_days_have_local_length(caltech: LoadedSite, day: date, steps: int,
                                    first_utc: pd.Timestamp) -> None:
    start, end = period_utc(caltech, day, 1)
    assert pd.Timestamp(start) == first_utc
    f = build_inputs(caltech, start, end).frame
    assert len(f) == steps
    local = f.index.tz_convert("America/Los_Angeles")
    assert (local.date == day).all()


def test_on_peak_follows_local_clock_across_dst(caltech: LoadedSite) -> None:
    # Friday 2019-11-01 (PDT) to Monday 2019-11-04 (PST): on-peak starts at 12:00 local
    # both days, i.e. 19:00 UTC before the change and 20:00 UTC after.
    f = day_frame(caltech, date(2019, 11, 1), days=4)
    assert len(f) == 4 * 96 + 4
    p = periods(caltech, f)
    on = f.index[p == "winter_on_peak"]
    assert len(on) == 2 * 24
    assert on[0] == utc(2019, 11, 1, 19) and on[23] == utc(2019, 11, 2, 0, 45)
    assert on[24] == utc(2019, 11, 4, 20) and on[47] == utc(2019, 11, 5, 1, 45)
    # the weekend, DST day included, is all off-peak
    weekend = f.index.tz_convert("America/Los_Angeles").dayofweek >= 5
    assert set(p[weekend]) == {"winter_off_peak"}
    assert weekend.sum() == 96 + 100


@pytest.mark.parametrize(("day", "steps_in_window"), [
    (date(2019, 11, 3), 12),  # 01:00-03:00 local spans three real hours (01:00 repeats)
    (date(2020, 3, 8), 4),    # 02:00-03:00 local does not exist
])
def test_tou_window_on_dst_day_counts_local_clock(day: date, steps_in_window: int) -> None:
    rule = '[{ period = "summer_on_peak", start = "01:00", end = "03:00" }]'
    site = load_site("caltech_campus", [f"grid.tariff.rules={rule}"])
    f = day_frame(site, day)
    on = f["import_price_per_kwh"] == SCE_PRICE["summer_on_peak"]
    assert on.sum() == steps_in_window
    local = f.index[on].tz_convert("America/Los_Angeles")
    assert set(local.hour) <= {1, 2}


# --- EV sessions -------------------------------------------------------------------------


def test_daily_sessions_weekdays_in_utc(guangdong: LoadedSite) -> None:
    # Monday 2025-07-14 .. Sunday 2025-07-20 local
    start, end = period_utc(guangdong, date(2025, 7, 14), 7)
    inputs = build_inputs(guangdong, start, end)
    sessions = inputs.sessions
    assert len(sessions) == 5 * 6
    tz = ZoneInfo("Asia/Shanghai")
    arrival_days = sorted({s.arrival_utc.astimezone(tz).date() for s in sessions})
    assert arrival_days == [date(2025, 7, 14) + timedelta(days=i) for i in range(5)]
    tue = [s for s in sessions if s.arrival_utc.astimezone(tz).date() == date(2025, 7, 15)]
    assert sorted(s.charger for s in tue) == [f"fleet_{i}" for i in range(1, 7)]
    for s in tue:
        assert s.arrival_utc == datetime(2025, 7, 15, 10, 30, tzinfo=UTC)   # 18:30 local
        assert s.departure_utc == datetime(2025, 7, 15, 23, 0, tzinfo=UTC)  # 07:00 next day
        assert s.energy_kwh == 45.0
    # Friday's vans leave on Saturday morning
    fri = [s for s in sessions if s.arrival_utc.astimezone(tz).date() == date(2025, 7, 18)]
    assert {s.departure_utc for s in fri} == {datetime(2025, 7, 18, 23, 0, tzinfo=UTC)}
    assert len({s.session_id for s in sessions}) == len(sessions)


def test_daily_session_overnight_across_dst() -> None:
    # The same schedule in Los Angeles, every day: the night of the autumn change is an hour
    # longer in real time (18:30 PDT -> 07:00 PST).
    site = load_site("guangdong_factory", ["site.timezone=America/Los_Angeles",
                                           'ev_sessions.schedule[0].days="all"'])
    start, end = period_utc(site, date(2025, 11, 1), 2)
    sessions = [s for s in build_inputs(site, start, end).sessions if s.charger == "fleet_1"]
    by_day = {s.arrival_utc.astimezone(ZoneInfo("America/Los_Angeles")).date(): s for s in sessions}
    sat = by_day[date(2025, 11, 1)]
    assert sat.arrival_utc == datetime(2025, 11, 2, 1, 30, tzinfo=UTC)
    assert sat.departure_utc == datetime(2025, 11, 2, 15, 0, tzinfo=UTC)
    assert sat.departure_utc - sat.arrival_utc == timedelta(hours=13, minutes=30)
    sun = by_day[date(2025, 11, 2)]
    assert sun.arrival_utc == datetime(2025, 11, 3, 2, 30, tzinfo=UTC)
    assert sun.departure_utc - sun.arrival_utc == timedelta(hours=12, minutes=30)


def test_sessions_overlapping_the_period_are_kept(guangdong: LoadedSite) -> None:
    # A period starting at local midnight Wednesday includes Tuesday evening's vans
    start, end = period_utc(guangdong, date(2025, 7, 16), 1)
    sessions = build_inputs(guangdong, start, end).sessions
    arrivals = sorted({s.arrival_utc for s in sessions})
    assert arrivals == [datetime(2025, 7, 15, 10, 30, tzinfo=UTC),
                        datetime(2025, 7, 16, 10, 30, tzinfo=UTC)]


def test_recorded_sessions_from_file(caltech: LoadedSite) -> None:
    start, end = period_utc(caltech, date(2019, 5, 1), 1)
    inputs = build_inputs(caltech, start, end)
    first = next(s for s in inputs.sessions if s.session_id.startswith("2_39_131_30_2019-05-01"))
    assert first.charger == "CA-305"
    assert first.arrival_utc == datetime(2019, 5, 1, 8, 18, 45, tzinfo=UTC)
    assert first.departure_utc == datetime(2019, 5, 1, 22, 52, 36, tzinfo=UTC)
    assert first.energy_kwh == pytest.approx(44.069)
    assert all(s.departure_utc > start and s.arrival_utc < end for s in inputs.sessions)
    names = {c.name for c in caltech.config.ev_charger}
    assert {s.charger for s in inputs.sessions} <= names


# --- series files: errors that name file, column and value --------------------------------


def _csv(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _load_from(path: Path, column: str = "load_kw") -> LoadedSite:
    return load_site("guangdong_factory", [f'load.factory.file="{path}"',
                                           f'load.factory.column="{column}"'])


def _hours(n: int, start: str = "2025-07-14T16:00:00Z") -> list[str]:
    t0 = pd.Timestamp(start)
    return [(t0 + pd.Timedelta(hours=h)).strftime("%Y-%m-%dT%H:%M:%SZ") for h in range(n)]


def test_series_with_nan_names_file_column_and_time(tmp_path: Path) -> None:
    rows = [f"{t},{500 + i}" for i, t in enumerate(_hours(24))]
    rows[5] = rows[5].split(",")[0] + ","
    path = _csv(tmp_path, "load_nan.csv", "timestamp_utc,load_kw\n" + "\n".join(rows) + "\n")
    site = _load_from(path)
    start, end = period_utc(site, date(2025, 7, 15), 1)
    with pytest.raises(SeriesFileError) as info:
        build_inputs(site, start, end)
    msg = str(info.value)
    assert str(path) in msg
    assert "'load_kw'" in msg
    assert "2025-07-14T21:00:00" in msg
    assert "nan" in msg


def test_series_with_text_value(tmp_path: Path) -> None:
    rows = [f"{t},{500 + i}" for i, t in enumerate(_hours(24))]
    rows[7] = rows[7].split(",")[0] + ",n/a kW"
    path = _csv(tmp_path, "load_text.csv", "timestamp_utc,load_kw\n" + "\n".join(rows) + "\n")
    site = _load_from(path)
    start, end = period_utc(site, date(2025, 7, 15), 1)
    with pytest.raises(SeriesFileError) as info:
        build_inputs(site, start, end)
    msg = str(info.value)
    assert str(path) in msg and "'load_kw'" in msg and "'n/a kW'" in msg


def test_series_with_bad_timestamp(tmp_path: Path) -> None:
    hours = _hours(24)
    hours[3] = "2025-07-14T25:00:00Z"
    rows = [f"{t},500" for t in hours]
    path = _csv(tmp_path, "load_badts.csv", "timestamp_utc,load_kw\n" + "\n".join(rows) + "\n")
    site = _load_from(path)
    start, end = period_utc(site, date(2025, 7, 15), 1)
    with pytest.raises(SeriesFileError) as info:
        build_inputs(site, start, end)
    msg = str(info.value)
    assert str(path) in msg and "timestamp_utc" in msg and "2025-07-14T25:00:00Z" in msg


def test_series_with_missing_column(tmp_path: Path) -> None:
    rows = [f"{t},500" for t in _hours(24)]
    path = _csv(tmp_path, "load_col.csv", "timestamp_utc,power_kw\n" + "\n".join(rows) + "\n")
    site = _load_from(path)
    start, end = period_utc(site, date(2025, 7, 15), 1)
    with pytest.raises(SeriesFileError) as info:
        build_inputs(site, start, end)
    msg = str(info.value)
    assert str(path) in msg and "'load_kw'" in msg and "power_kw" in msg


def test_series_column_from_config_is_used(tmp_path: Path) -> None:
    rows = [f"{t},{100 + i}" for i, t in enumerate(_hours(24))]
    path = _csv(tmp_path, "load_ok.csv", "timestamp_utc,kw\n" + "\n".join(rows) + "\n")
    site = _load_from(path, column="kw")
    start, end = period_utc(site, date(2025, 7, 15), 1)
    load = build_inputs(site, start, end).frame["load:factory_kw"]
    assert load.iloc[0] == 100.0 and load.iloc[4] == 101.0 and load.iloc[-1] == 123.0


def test_short_series_is_an_error_not_zeros(tmp_path: Path) -> None:
    rows = [f"{t},500" for t in _hours(20)]  # stops 4 h before the local day ends
    path = _csv(tmp_path, "load_short.csv", "timestamp_utc,load_kw\n" + "\n".join(rows) + "\n")
    site = _load_from(path)
    start, end = period_utc(site, date(2025, 7, 15), 1)
    with pytest.raises(SeriesFileError) as info:
        build_inputs(site, start, end)
    assert str(path) in str(info.value)


def test_outside_the_data_range_is_an_error(guangdong: LoadedSite) -> None:
    # the bundled series cover 2024-12-31T16:00Z (local 2025-01-01) to 2025-12-31T16:00Z
    first, last_end = utc(2024, 12, 31, 16), utc(2025, 12, 31, 16)
    assert len(build_inputs(guangdong, first, first + pd.Timedelta(hours=1)).frame) == 4
    assert len(build_inputs(guangdong, last_end - pd.Timedelta(hours=1), last_end).frame) == 4
    step = pd.Timedelta(minutes=15)
    for start, end in [(first - step, first + pd.Timedelta(hours=1)),
                       (last_end - pd.Timedelta(hours=1), last_end + step),
                       (utc(2026, 1, 1), utc(2026, 1, 2))]:
        with pytest.raises(SeriesFileError) as info:
            build_inputs(guangdong, start, end)
        assert "was asked for" in str(info.value)


def test_window_outside_inputs_is_an_error(guangdong: LoadedSite) -> None:
    start, end = period_utc(guangdong, date(2025, 7, 15), 1)
    inputs = build_inputs(guangdong, start, end)
    assert len(inputs.window(pd.Timestamp(start), 96)) == 96
    with pytest.raises(SeriesFileError):
        inputs.window(pd.Timestamp(start), 97)
    with pytest.raises(SeriesFileError):
        inputs.window(pd.Timestamp(start) - pd.Timedelta(minutes=15), 4)


def test_pv_is_zero_at_night_and_positive_at_noon(guangdong: LoadedSite) -> None:
    f = day_frame(guangdong, date(2025, 7, 15))
    pv = f["pv:roof_pv_kw"]
    assert pv[utc(2025, 7, 14, 18)] == 0.0   # 02:00 local
    assert pv[utc(2025, 7, 15, 4)] > 100.0   # 12:00 local, July
    assert np.all(pv <= 1000.0) and np.all(pv >= 0.0)


def test_inputs_past_the_data_repeat_the_week_before() -> None:
    from datetime import UTC, datetime, timedelta

    from ems.config import load_site
    from ems.inputs.site_inputs import build_inputs, data_limit_utc, extend_by_persistence

    site = load_site("guangdong_factory")
    limit = data_limit_utc(site)
    assert limit == datetime(2025, 12, 31, 16, tzinfo=UTC)  # 2026-01-01 00:00 Asia/Shanghai
    history = limit - timedelta(days=8)
    keep = limit - timedelta(days=1)
    base = build_inputs(site, history, limit)
    out = extend_by_persistence(base, limit + timedelta(days=2), keep_from_utc=keep)
    assert out.frame.index[0] == keep
    assert len(out.frame) == 3 * 96
    assert list(out.frame.dtypes) == list(base.frame.dtypes)
    week = timedelta(days=7)
    last = limit + timedelta(days=2) - timedelta(minutes=15)
    for t in (limit, limit + timedelta(hours=11, minutes=15), last):
        source = t - week
        while source >= limit:  # beyond a week past the data, the repeat repeats itself
            source -= week
        for col in ("import_price_per_kwh", "carbon_g_per_kwh", "pv:roof_pv_kw", "load:factory_kw"):
            assert out.frame.at[t, col] == base.frame.at[source, col], (t, col)
    assert any("persistence" in n for n in out.notes)
