"""Built-in time-of-use tables: expanded periods hour by hour against the source texts, holidays."""

from __future__ import annotations

import itertools
from datetime import date
from typing import Any

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from ems.config import LoadedSite
from ems.config.models import GridConfig, TouTariff
from ems.inputs.site_inputs import tou_periods, tou_prices

CARBON = {"file": "x.csv", "column": "g", "kind": "average"}


def grid(tariff: dict[str, Any]) -> GridConfig:
    return GridConfig.model_validate(
        {"import_limit_kw": 100.0, "export_limit_kw": 0.0, "tariff": tariff, "carbon": CARBON}
    )


def hours(tariff: TouTariff, day: str, tz: str = "Asia/Shanghai") -> list[str]:
    local = pd.date_range(day, periods=24, freq="1h", tz=tz)
    return list(tou_periods(tariff, local))


def test_guangdong_table_matches_the_bundled_sites_hand_written_rules(guangdong: LoadedSite) -> None:
    table = grid({"kind": "tou_table", "table": "guangdong_2021", "flat_price_per_kwh": 0.70}).tariff
    hand = guangdong.config.grid.tariff
    assert isinstance(table, TouTariff) and isinstance(hand, TouTariff)
    assert table.prices == pytest.approx(hand.prices)
    local = pd.date_range("2025-01-01", "2026-01-01", freq="15min", tz="Asia/Shanghai", inclusive="left")
    np.testing.assert_allclose(tou_prices(table, local), tou_prices(hand, local))
    assert table.source is not None and "粤发改价格〔2021〕331号" in table.source


def test_guangdong_july_day_by_hour() -> None:
    t = grid({"kind": "tou_table", "table": "guangdong_2021", "flat_price_per_kwh": 0.70}).tariff
    assert isinstance(t, TouTariff)
    v, f, p, c = "valley", "flat", "peak", "critical"
    assert hours(t, "2025-07-15") == [v] * 8 + [f] * 2 + [p, c] + [f] * 2 + [p, c, c, p, p] + [f] * 5
    assert t.prices["critical"] == pytest.approx(0.70 * 1.7 * 1.25)
    assert t.prices["valley"] == pytest.approx(0.266)


def test_zhejiang_has_two_valleys_and_needs_prices() -> None:
    prices = {"valley": 0.32, "flat": 0.68, "peak": 1.12, "critical": 1.35, "deep_valley": 0.20}
    t = grid({"kind": "tou_table", "table": "zhejiang_2024", "prices": prices,
              "holidays": ["2025-10-01", "2025-10-02"]}).tariff
    assert isinstance(t, TouTariff)
    v, f, p, c = "valley", "flat", "peak", "critical"
    # Spring/autumn (April): peak 8-11 and 13-17, valley 0-8 and 11-13, flat 17-24.
    assert hours(t, "2025-04-15") == [v] * 8 + [p] * 3 + [v] * 2 + [p] * 4 + [f] * 7
    # Summer (July): critical 9-11 and 15-17, peak 8-9 and 17-23, flat 13-15 and 23-24.
    assert hours(t, "2025-07-15") == [v] * 8 + [p, c, c, v, v, f, f, c, c] + [p] * 6 + [f]
    # Two valleys (0-8, 11-13), each followed by a peak: two charge/discharge cycles a day.
    day = hours(t, "2025-04-15")
    assert [b for a, b in itertools.pairwise(day) if a == v and b != v] == [p, p]
    expected = r"tariff\.prices\.critical = None: table zhejiang_2024 fixes no price or ratio"
    with pytest.raises(ValidationError, match=expected):
        grid({"kind": "tou_table", "table": "zhejiang_2024", "flat_price_per_kwh": 0.7})


def test_chinese_holiday_on_a_weekday_gets_the_deep_valley() -> None:
    prices = {"valley": 0.32, "flat": 0.68, "peak": 1.12, "critical": 1.35, "deep_valley": 0.20}
    t = grid({"kind": "tou_table", "table": "zhejiang_2024", "prices": prices,
              "holidays": ["2025-10-01"]}).tariff
    assert isinstance(t, TouTariff)
    assert date(2025, 10, 1).weekday() == 2  # National Day 2025 is a Wednesday
    holiday = hours(t, "2025-10-01")
    assert holiday[10:14] == ["deep_valley"] * 4 and holiday[9] == "peak" and holiday[14] == "peak"
    assert "deep_valley" not in hours(t, "2025-10-09")  # an ordinary Thursday
    local = pd.date_range("2025-10-01 10:00", periods=1, freq="1h", tz="Asia/Shanghai")
    assert tou_prices(t, local)[0] == pytest.approx(0.20)


def test_jiangsu_2025_peak_moves_to_the_afternoon() -> None:
    t = grid({"kind": "tou_table", "table": "jiangsu_2025", "flat_price_per_kwh": 0.6}).tariff
    assert isinstance(t, TouTariff)
    v, f, p = "valley", "flat", "peak"
    assert hours(t, "2025-07-15") == [v] * 6 + [f] * 5 + [v] * 2 + [f] + [p] * 8 + [f] * 2
    assert hours(t, "2025-04-15") == [f] * 2 + [v] * 4 + [f] * 4 + [v] * 4 + [f] + [p] * 7 + [f] * 2
    assert t.prices == pytest.approx({"flat": 0.6, "peak": 1.08, "valley": 0.21})


def test_sce_table_is_the_caltech_tariff(caltech: LoadedSite) -> None:
    t = grid({"kind": "tou_table", "table": "sce_tou_ev_4_2019"}).tariff
    hand = caltech.config.grid.tariff
    assert isinstance(t, TouTariff) and isinstance(hand, TouTariff)
    local = pd.date_range("2019-01-01", "2020-01-01", freq="1h", tz="America/Los_Angeles", inclusive="left")
    np.testing.assert_allclose(tou_prices(t, local), tou_prices(hand, local))


@pytest.mark.parametrize(
    "tariff, message",
    [
        ({"kind": "tou_table", "table": "atlantis"}, "unknown table 'atlantis'; known: guangdong_2021"),
        ({"kind": "tou_table", "table": "guangdong_2021"}, "flat_price_per_kwh = None: a number is needed"),
        ({"kind": "tou_table", "table": "guangdong_2021", "flat_price_per_kwh": 0.7, "prices": {"x": 1}},
         "table guangdong_2021 has no period 'x'"),
        ({"kind": "tou_table", "table": "guangdong_2021", "price": 1}, "tariff.price = 1: unknown field"),
    ],
)
def test_bad_table_tariffs_name_the_field(tariff: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        grid(tariff)


def test_shanghai_2022_two_part_periods_by_season() -> None:
    t = grid({"kind": "tou_table", "table": "shanghai_2022", "flat_price_per_kwh": 0.60,
              "holidays": ["2025-10-01"]}).tariff
    assert isinstance(t, TouTariff)
    assert t.source is not None and "沪发改价管〔2022〕50号" in t.source and "〔2024〕28号" in t.source
    f = "flat"
    v, p, c = "summer_winter_valley", "summer_winter_peak", "critical"
    # Tuesday 15 July: valley 22-6, peak 8-15 and 18-21 with critical 12-14, flat 6-8, 15-18, 21-22.
    assert hours(t, "2025-07-15") == ([v] * 6 + [f] * 2 + [p] * 4 + [c] * 2 + [p] + [f] * 3 + [p] * 3 + [f]
                                      + [v] * 2)
    # September is summer but has no critical peak.
    assert hours(t, "2025-09-16")[12:14] == [p, p]
    # Wednesday 15 January: peak 8-11 and 18-21, critical 19-21.
    assert hours(t, "2025-01-15") == [v] * 6 + [f] * 2 + [p] * 3 + [f] * 7 + [p, c, c] + [f] + [v] * 2
    # Tuesday 15 April: other-month peak and valley, no critical.
    ov, op = "valley", "peak"
    assert hours(t, "2025-04-15") == [ov] * 6 + [f] * 2 + [op] * 3 + [f] * 7 + [op] * 3 + [f] + [ov] * 2
    # Saturday 19 April: deep valley 0-6 and 22-24 on a Feb-Jun rest day; Saturday 19 July: none.
    assert date(2025, 4, 19).weekday() == 5
    sat = hours(t, "2025-04-19")
    assert sat[:6] == ["deep_valley"] * 6 and sat[22:] == ["deep_valley"] * 2 and sat[8] == op
    assert "deep_valley" not in hours(t, "2025-07-19")
    assert hours(t, "2025-10-01")[:6] == ["deep_valley"] * 6  # National Day (a Wednesday)
    flat = 0.60
    assert t.prices == pytest.approx({
        "flat": flat, "summer_winter_peak": 1.8 * flat, "summer_winter_valley": 0.4 * flat,
        "critical": 1.8 * 1.25 * flat, "peak": 1.6 * flat, "valley": 0.5 * flat, "deep_valley": 0.2 * flat})
    local = pd.date_range("2025-07-15 12:00", periods=1, freq="1h", tz="Asia/Shanghai")
    assert tou_prices(t, local)[0] == pytest.approx(2.25 * flat)


def test_shandong_2025_periods_by_month() -> None:
    t = grid({"kind": "tou_table", "table": "shandong_2025", "flat_price_per_kwh": 0.50}).tariff
    assert isinstance(t, TouTariff)
    assert t.source is not None and "鲁发改价格〔2023〕914号" in t.source
    f, v, d, p, c = "flat", "valley", "deep_valley", "peak", "critical"
    # January: valley 2-6 and 10-15 (deep 11-14), peak 7-9 and 16-21 (critical 16-19).
    assert hours(t, "2025-01-15") == ([f] * 2 + [v] * 4 + [f] + [p] * 2 + [f] + [v] + [d] * 3 + [v] + [f]
                                      + [c] * 3 + [p] * 2 + [f] * 3)
    # April: valley 10-15 (deep 11-14), peak 17-22 (critical 17-20).
    assert hours(t, "2025-04-15") == [f] * 10 + [v] + [d] * 3 + [v] + [f] * 2 + [c] * 3 + [p] * 2 + [f] * 2
    # June: valley 7-12, peak 16-23 (critical 17-22), no deep valley.
    assert hours(t, "2025-06-15") == [f] * 7 + [v] * 5 + [f] * 4 + [p] + [c] * 5 + [p] + [f]
    # July: valley 1-6, peak 16-23 (critical 17-22).
    assert hours(t, "2025-07-15") == [f] + [v] * 5 + [f] * 10 + [p] + [c] * 5 + [p] + [f]
    # October: valley 10-15 (deep 11-14), peak 16-21 (critical 17-19).
    assert hours(t, "2025-10-15") == [f] * 10 + [v] + [d] * 3 + [v] + [f] + [p] + [c] * 2 + [p] * 2 + [f] * 3
    assert t.prices == pytest.approx({"flat": 0.5, "peak": 0.85, "valley": 0.15, "critical": 1.0,
                                      "deep_valley": 0.05})
