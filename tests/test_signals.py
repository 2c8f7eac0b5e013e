"""Signal adapters on recorded fixtures with the real response shapes (no network)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pandas as pd
import pytest

from ems.signals import http
from ems.signals.cache import SignalCache
from ems.signals.carbon import (
    LBS_PER_MWH_TO_G_PER_KWH,
    parse_electricity_maps,
    parse_entsoe_generation,
    parse_uk_intensity,
    parse_uk_regional,
    parse_watttime,
    persistence_forecast,
)
from ems.signals.prices import parse_entsoe_a44, parse_nordpool, parse_octopus, parse_tibber
from ems.signals.series import Signal, SignalError, resample_to_step

FIX = Path(__file__).parent / "fixtures" / "signals"


def text(name: str) -> str:
    return (FIX / name).read_text()


def ts(s: str) -> pd.Timestamp:
    return pd.Timestamp(s).tz_convert("UTC") if pd.Timestamp(s).tzinfo else pd.Timestamp(s, tz="UTC")


# -- prices ----------------------------------------------------------------------------------------


def test_entsoe_a44_15min_forward_fills_a03_gaps_and_converts_to_per_kwh() -> None:
    s = parse_entsoe_a44(text("entsoe_a44_de_lu_2025-10-01.xml"))
    assert s.unit == "EUR/kWh" and s.kind == "import_price" and s.resolution == pd.Timedelta("15min")
    v = s.values
    # Day starts at local midnight CEST = 22:00 UTC; 95.12 EUR/MWh = 0.09512 EUR/kWh.
    assert v.index[0] == ts("2025-09-30T22:00Z") and v.iloc[0] == pytest.approx(0.09512)
    # Position 3 is omitted (A03: same as position 2), so it repeats 91.50.
    assert v[ts("2025-09-30T22:30Z")] == pytest.approx(0.0915)
    # Positions 10 and 11 omitted after 9 (75.10); 12 is 74.00; the period ends at 01:00Z.
    assert v[ts("2025-10-01T00:15Z")] == v[ts("2025-10-01T00:30Z")] == pytest.approx(0.0751)
    assert v.index[-1] == ts("2025-10-01T00:45Z") and len(v) == 12


def test_entsoe_a44_60min_series_and_resampling_to_plan_steps() -> None:
    hourly = parse_entsoe_a44(text("entsoe_a44_de_lu_2025-10-01.xml"), step="60min")
    assert list(hourly.values.round(6)) == [0.09, 0.081, 0.076]
    quarter = parse_entsoe_a44(text("entsoe_a44_de_lu_2025-10-01.xml"))
    # 15-min → 60-min plan step: the mean of the four quarter-hours.
    h = resample_to_step(quarter, pd.Timedelta("60min"))
    assert h.iloc[0] == pytest.approx((0.09512 + 0.0915 + 0.0915 + 0.088) / 4)
    assert len(h) == 3
    # 60-min → 15-min plan step: each hour's price on its four quarters, through the last hour.
    q = resample_to_step(hourly, pd.Timedelta("15min"))
    assert len(q) == 12 and list(q.iloc[4:8]) == [0.081] * 4


def test_entsoe_a44_spring_forward_day_has_23_hours() -> None:
    s = parse_entsoe_a44(text("entsoe_a44_de_lu_2025-03-30_dst.xml"))
    assert len(s.values) == 23
    assert s.values.index[0] == ts("2025-03-29T23:00Z") and s.values.index[-1] == ts("2025-03-30T21:00Z")
    local = s.values.index.tz_convert("Europe/Berlin")
    assert local[0].hour == 0 and 2 not in set(local.hour)


def test_entsoe_a44_rejects_other_units_and_reports_no_data() -> None:
    with pytest.raises(SignalError, match=r"price_Measure_Unit.name: expected MWH, got \['KWH'\]"):
        parse_entsoe_a44(text("entsoe_a44_mwh_in_gbp.xml"))
    with pytest.raises(SignalError, match=r"no data .*reason code 999.*No matching data"):
        parse_entsoe_a44(text("entsoe_acknowledgement.xml"))
    with pytest.raises(SignalError, match="not a Publication_MarketDocument"):
        parse_entsoe_a44("<html>502 Bad Gateway</html>")


def test_nordpool_fall_back_day_has_25_hours_per_area() -> None:
    s = parse_nordpool(text("nordpool_dayahead_2024-10-27_ee_fi.json"), "EE")
    assert len(s.values) == 25 and s.resolution == pd.Timedelta("1h") and s.unit == "EUR/kWh"
    assert s.values.iloc[0] == pytest.approx(0.040) and s.values.iloc[-1] == pytest.approx(0.100)
    assert s.values.index[0] == ts("2024-10-26T22:00Z")
    local = s.values.index.tz_convert("Europe/Tallinn")
    assert (local.hour == 3).sum() == 2  # the repeated hour
    fi = parse_nordpool(text("nordpool_dayahead_2024-10-27_ee_fi.json"), "FI")
    assert fi.values.iloc[3] == pytest.approx(0.013)
    with pytest.raises(SignalError, match="deliveryAreas: no area 'SE3'"):
        parse_nordpool(text("nordpool_dayahead_2024-10-27_ee_fi.json"), "SE3")
    with pytest.raises(SignalError, match="currency: expected SEK, got 'EUR'"):
        parse_nordpool(text("nordpool_dayahead_2024-10-27_ee_fi.json"), "EE", currency="SEK")


def test_octopus_pages_newest_first_are_merged_in_time_order_in_gbp() -> None:
    s = parse_octopus([text("octopus_agile_page1.json"), text("octopus_agile_page2.json")])
    v = s.values
    assert s.unit == "GBP/kWh" and len(v) == 8 and v.index.is_monotonic_increasing
    assert v.index[0] == ts("2025-08-17T00:00Z") and v.index[-1] == ts("2025-08-17T03:30Z")
    # First half-hour of page 2: 12.0 p exc VAT → 12.6 p inc VAT → 0.126 GBP/kWh.
    assert v.iloc[0] == pytest.approx(0.126)
    exc = parse_octopus([text("octopus_agile_page1.json"), text("octopus_agile_page2.json")], vat=False)
    assert exc.values.iloc[0] == pytest.approx(0.12)
    with pytest.raises(SignalError, match=r"results\[0\].value_inc_vat: not a number, got 'n/a'"):
        parse_octopus([{"results": [{"valid_from": "2025-08-17T00:00Z", "value_inc_vat": "n/a"}]}])


def test_tibber_local_starts_become_utc() -> None:
    s = parse_tibber(text("tibber_priceinfo.json"))
    assert s.unit == "SEK/kWh" and len(s.values) == 24
    assert s.values.index[0] == ts("2025-06-09T22:00Z")
    assert s.values.iloc[0] == pytest.approx(0.30 + 0.30 * 0.25 + 0.1)
    with pytest.raises(SignalError, match="priceInfo: missing"):
        parse_tibber({"data": {"viewer": {"homes": []}}})


def test_adders_apply_to_prices_only() -> None:
    s = parse_nordpool(text("nordpool_dayahead_2024-10-27_ee_fi.json"), "EE").with_adder(0.05)
    assert s.values.iloc[0] == pytest.approx(0.09)
    with pytest.raises(SignalError, match="only prices take adders"):
        parse_watttime(text("watttime_forecast.json")).with_adder(1.0)


# -- carbon ----------------------------------------------------------------------------------------


def test_uk_national_forecast_and_actual() -> None:
    f = parse_uk_intensity(text("uk_intensity_fw24h.json"))
    assert f.kind == "carbon_average" and f.unit == "gCO2/kWh" and len(f.values) == 6
    assert f.values.index[0] == ts("2020-05-24T20:30Z") and f.values.iloc[0] == 146.0
    a = parse_uk_intensity(text("uk_intensity_fw24h.json"), use="actual")
    assert list(a.values) == [149.0, 143.0]  # future slots have actual = null


def test_uk_regional_picks_the_region() -> None:
    s = parse_uk_regional(text("uk_regional_fw24h.json"), 13)
    assert list(s.values) == [210.0, 205.0, 200.0]
    with pytest.raises(SignalError, match="no regionid 99"):
        parse_uk_regional(text("uk_regional_fw24h.json"), 99)


def test_electricity_maps_latest_forecast_history() -> None:
    latest = parse_electricity_maps(text("electricitymaps_latest.json"))
    assert list(latest.values) == [322.0] and latest.resolution == pd.Timedelta("1h")
    forecast = parse_electricity_maps(text("electricitymaps_forecast.json"))
    assert forecast.values.iloc[-1] == 300 - 8 * 5 and forecast.values.index[0] == ts("2025-03-01T10:00Z")
    history = parse_electricity_maps(text("electricitymaps_history.json"))
    assert len(history.values) == 24 and history.kind == "carbon_average"


def test_watttime_moer_is_marginal_in_g_per_kwh_and_units_are_checked() -> None:
    s = parse_watttime(text("watttime_forecast.json"))
    assert s.kind == "carbon_marginal" and s.resolution == pd.Timedelta("5min")
    assert s.values.iloc[0] == pytest.approx(870.2 * 0.45359237)
    assert s.values.iloc[3] == pytest.approx(453.59237)  # 1000 lbs/MWh
    assert pytest.approx(453.59237 / 1000) == LBS_PER_MWH_TO_G_PER_KWH
    with pytest.raises(SignalError, match=r"meta\.units: expected lbs_co2_per_mwh, got 'kg_co2_per_mwh'"):
        parse_watttime(text("watttime_wrong_units.json"))


def test_entsoe_generation_mix_weighted_by_emission_factors() -> None:
    s = parse_entsoe_generation(text("entsoe_a75_de_lu_2025-03-01.xml"))
    # 10:00: gas 10 GW × 490 + hard coal 5 GW × 820 + wind 15 GW × 11, over 30 GW; pumping ignored.
    assert s.values.iloc[0] == pytest.approx((10000 * 490 + 5000 * 820 + 15000 * 11) / 30000)
    assert s.values.index[0] == ts("2025-03-01T10:00Z") and len(s.values) == 4


@pytest.mark.parametrize(
    "parser, payload, message",
    [
        (parse_uk_intensity, "{not json", "not valid JSON"),
        (parse_uk_intensity, '{"data": []}', "data: empty"),
        (parse_uk_intensity, '{"data": [{"from": "2020-05-24T20:30Z", "intensity": {"forecast": "x"}}]}',
         r"data\[0\].intensity.forecast: not a number, got 'x'"),
        (parse_electricity_maps, '{"zone": "DE"}', "expected one of forecast, history or carbonIntensity"),
        (parse_watttime, '{"data": [], "meta": {"signal_type": "health_damage", "units": "x"}}',
         "meta.signal_type: expected co2_moer"),
        (parse_uk_intensity, '{"data": [{"from": "yesterday", "intensity": {"forecast": 1}}]}',
         "data\\[\\].from: bad timestamp"),
    ],
)
def test_malformed_payloads_raise_a_clear_signal_error(parser, payload, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SignalError, match=message):
        parser(payload)


def test_persistence_blends_yesterday_and_last_week() -> None:
    index = pd.date_range("2025-03-01", periods=8 * 24, freq="1h", tz="UTC")
    values = pd.Series([float(t.day * 100 + t.hour) for t in index], index=index)
    history = Signal(values, "gCO2/kWh", "carbon_marginal", "csv", pd.Timedelta("1h"))
    start = pd.Timestamp("2025-03-09T00:00Z")
    f = persistence_forecast(history, start, 24)
    # 2025-03-09 05:00 ← 0.5 × (8th 05:00 = 805) + 0.5 × (2nd 05:00 = 205)
    assert f.values[ts("2025-03-09T05:00Z")] == pytest.approx(505.0)
    assert f.kind == "carbon_marginal" and f.source == "csv+persistence"
    # 2025-03-10: yesterday (9th) is not in the history, last week (3rd) is.
    g = persistence_forecast(history, pd.Timestamp("2025-03-10T00:00Z"), 2)
    assert list(g.values) == [300.0, 301.0]
    with pytest.raises(SignalError, match="no history a day or a week before 2025-03-20"):
        persistence_forecast(history, pd.Timestamp("2025-03-20T00:00Z"), 1)


# -- cache and fetching ----------------------------------------------------------------------------


def test_failed_fetch_keeps_last_good_data_marked_stale(tmp_path: Path) -> None:
    clock = lambda: datetime(2025, 8, 17, 12, tzinfo=UTC)  # noqa: E731
    cache = SignalCache(tmp_path, clock)
    good = cache.refresh("agile", lambda: parse_octopus([text("octopus_agile_page1.json")]))
    assert not good.stale and good.fetched_at == clock()

    def broken() -> Signal:
        return parse_octopus(["<html>gateway timeout</html>"])

    stale = cache.refresh("agile", broken)
    assert stale.stale and "not valid JSON" in (stale.message or "")
    pd.testing.assert_series_equal(stale.values, good.values, check_freq=False)
    assert SignalCache(tmp_path).load("agile") is not None  # on disk, not in memory
    with pytest.raises(SignalError, match="carbon: fetch failed and no earlier data"):
        cache.refresh("carbon", broken)


class _Handler(BaseHTTPRequestHandler):
    calls: ClassVar[list[str]] = []
    fail_first: ClassVar[int] = 0

    def do_GET(self) -> None:
        _Handler.calls.append(self.path)
        if _Handler.fail_first > 0:
            _Handler.fail_first -= 1
            self.send_response(503)
            self.end_headers()
            return
        if self.path.startswith("/missing"):
            self.send_response(404)
            self.end_headers()
            return
        body = json.dumps({"auth": self.headers.get("auth-token")}).encode()
        self.send_response(200)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def server() -> Iterator[str]:
    _Handler.calls = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_http_get_retries_server_errors_with_backoff(server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    waits: list[float] = []
    _Handler.fail_first = 2
    monkeypatch.setenv("EM_TOKEN", "secret")
    body = http.get(f"{server}/v3/carbon-intensity/latest", {"auth-token": http.api_key("EM_TOKEN")},
                    timeout_s=2.0, retries=3, backoff_s=1.0, sleep=waits.append)
    assert json.loads(body) == {"auth": "secret"}
    assert waits == [1.0, 2.0] and len(_Handler.calls) == 3


def test_http_get_fails_fast_on_client_errors_and_after_retries(server: str) -> None:
    waits: list[float] = []
    with pytest.raises(SignalError, match="HTTP 404"):
        http.get(f"{server}/missing", timeout_s=2.0, sleep=waits.append)
    assert waits == []
    _Handler.fail_first = 10
    with pytest.raises(SignalError, match="failed after 3 attempts: HTTP 503"):
        http.get(
            f"{server}/x", timeout_s=2.0, retries=2, backoff_s=4.0, max_backoff_s=5.0, sleep=waits.append
        )
    assert waits == [4.0, 5.0]
    _Handler.fail_first = 0


def test_api_key_missing_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WATTTIME_TOKEN", raising=False)
    with pytest.raises(SignalError, match="WATTTIME_TOKEN is not set"):
        http.api_key("WATTTIME_TOKEN")
