"""Live signals configured per site: provider requests (against a local HTTP server that answers
in the providers' recorded shapes), the signal cache, prices with adders and taxes on plan steps,
persistence past the published data, and a failed fetch that keeps the last good data."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from typer.testing import CliRunner

from ems.cli.main import app
from ems.config import ConfigError, load_site
from ems.config.signal_sources import (
    ElectricityMapsCarbon,
    EntsoePrices,
    OctopusPrices,
    TibberPrices,
    UkCarbonIntensity,
)
from ems.signals.cache import SignalCache
from ems.signals.fetch import fetch_carbon, fetch_prices
from ems.signals.series import Signal
from ems.signals.site_signals import fill_by_persistence
from tests.http_provider import Provider, Request

FIXTURES = Path(__file__).parent / "fixtures" / "signals"
DATA = Path(__file__).resolve().parents[1] / "site_configs" / "data"
runner = CliRunner()


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def ok(body: bytes) -> Callable[[Request], tuple[int, bytes]]:
    return lambda req: (200, body)


NOW = datetime(2025, 10, 1, 10, 0, tzinfo=UTC)


# -- provider requests ---------------------------------------------------------------------------


def test_entsoe_request_names_the_zone_window_and_key_from_the_environment(
        provider: Provider, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_ENTSOE_KEY", "k-123")
    provider.routes["/api"] = ok(fixture("entsoe_a44_de_lu_2025-10-01.xml"))
    src = EntsoePrices(provider="entsoe", area="DE_LU", api_key_env="TEST_ENTSOE_KEY",
                       base_url=provider.url + "/api")
    signal = fetch_prices(src, "import_price", NOW)
    q = provider.requests[0]["query"]
    assert q == {"securityToken": "k-123", "documentType": "A44", "in_Domain": "10Y1001A1001A82H",
                 "out_Domain": "10Y1001A1001A82H", "periodStart": "202509300000",
                 "periodEnd": "202510030000"}
    assert signal.unit == "EUR/kWh" and signal.kind == "import_price"


def test_octopus_follows_next_pages(provider: Provider) -> None:
    base = provider.url + "/v1"
    page1 = fixture("octopus_agile_page1.json").replace(b"https://api.octopus.energy/v1", base.encode())
    provider.routes["/v1/"] = lambda req: (200, page1 if "page" not in req["query"]
                                           else fixture("octopus_agile_page2.json"))
    src = OctopusPrices(provider="octopus", product="AGILE-24-10-01",
                        tariff_code="E-1R-AGILE-24-10-01-C", base_url=base)
    signal = fetch_prices(src, "import_price", NOW)
    first, second = provider.requests
    assert first["path"] == ("/v1/products/AGILE-24-10-01/electricity-tariffs/E-1R-AGILE-24-10-01-C"
                             "/standard-unit-rates/")
    assert first["query"]["period_from"] == "2025-09-30T00:00Z" and second["query"]["page"] == "2"
    assert len(signal.values) == 8 and signal.unit == "GBP/kWh"


def test_tibber_is_a_graphql_post_with_a_bearer_token(provider: Provider,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIBBER_TOKEN", "tok")
    provider.routes["/gql"] = ok(fixture("tibber_priceinfo.json"))
    src = TibberPrices(provider="tibber", base_url=provider.url + "/gql")
    signal = fetch_prices(src, "import_price", NOW)
    req = provider.requests[0]
    assert req["headers"]["authorization"] == "Bearer tok"
    assert "priceInfo" in json.loads(req["body"])["query"]
    assert signal.unit == "SEK/kWh" and len(signal.values) == 24


def test_carbon_providers_ask_for_the_window_and_merge_history_with_forecast(
        provider: Provider, monkeypatch: pytest.MonkeyPatch) -> None:
    provider.routes["/uk/"] = ok(fixture("uk_intensity_fw24h.json"))
    uk = fetch_carbon(UkCarbonIntensity(provider="uk_carbon_intensity", base_url=provider.url + "/uk"), NOW)
    assert provider.requests[-1]["path"] == "/uk/intensity/2025-09-30T00:00Z/2025-10-03T00:00Z"
    assert uk.kind == "carbon_average"

    monkeypatch.setenv("ELECTRICITYMAPS_TOKEN", "em")
    provider.routes["/em/carbon-intensity/history"] = ok(fixture("electricitymaps_history.json"))
    provider.routes["/em/carbon-intensity/forecast"] = ok(fixture("electricitymaps_forecast.json"))
    em = fetch_carbon(ElectricityMapsCarbon(provider="electricitymaps", zone="DE",
                                            base_url=provider.url + "/em"), NOW)
    asked = provider.paths("/em/")
    assert [r["query"]["zone"] for r in asked] == ["DE", "DE"]
    assert all(r["headers"]["auth-token"] == "em" for r in asked)
    forecast = json.loads(fixture("electricitymaps_forecast.json"))["forecast"]
    history = json.loads(fixture("electricitymaps_history.json"))["history"]
    # the forecast wins where both give a value; history fills the rest
    for row in forecast:
        assert em.values[pd.Timestamp(row["datetime"])] == row["carbonIntensity"]
    earliest = min(history, key=lambda r: r["datetime"])
    assert em.values.index[0] == pd.Timestamp(earliest["datetime"])


# -- cache history and persistence ---------------------------------------------------------------


def _hourly(start: str, values: list[float]) -> Signal:
    index = pd.date_range(start, periods=len(values), freq="h", tz="UTC")
    return Signal(pd.Series(values, index=index, dtype=float), "EUR/kWh", "import_price", "test",
                  pd.Timedelta("1h"))


def test_cache_keeps_history_across_fetches_newest_wins(tmp_path: Path) -> None:
    cache = SignalCache(tmp_path)
    cache.refresh("import_price", lambda: _hourly("2025-06-01", [1.0] * 48))
    cache.refresh("import_price", lambda: _hourly("2025-06-02", [2.0] * 48))
    v = cache.load("import_price").values  # type: ignore[union-attr]
    assert v.index[0] == pd.Timestamp("2025-06-01", tz="UTC") and len(v) == 72
    assert v.iloc[0] == 1.0 and v.iloc[24] == 2.0 and v.iloc[-1] == 2.0


def test_persistence_fill_blends_day_and_week_before_and_never_gives_zeros() -> None:
    step = pd.Timedelta("1h")
    index = pd.date_range("2025-06-01", periods=24 * 9, freq="h", tz="UTC")
    values = pd.Series([float("nan")] * len(index), index=index)
    values.iloc[:24] = 10.0              # day 0 (a week before day 7)
    values.iloc[24 * 6:24 * 7] = 30.0   # day 6 (the day before day 7)
    filled, n = fill_by_persistence(values, step)
    assert filled.iloc[24] == 10.0       # days 1-5: only the day before exists → 10
    assert filled.iloc[24 * 5] == 10.0
    assert filled.iloc[24 * 7] == 20.0   # day 7: (yesterday 30 + last week 10) / 2
    assert filled.iloc[24 * 8] == 15.0   # day 8: (yesterday 20 + last week, day 1, 10) / 2
    assert not filled.isna().any() and (filled > 0).all()
    assert n == values.isna().sum()


# -- a site with live prices and two carbon signals, end to end through the CLI -------------------

SITE = """
[site]
name = "berlin_test"
timezone = "Europe/Berlin"
latitude = 52.5
longitude = 13.4
currency = "EUR"
state_dir = "{state}"

[planning]
horizon_hours = 24
step_minutes = 60
replan_every_minutes = 60

[grid]
import_limit_kw = 1000.0
export_limit_kw = 0.0

[grid.tariff]
kind = "dynamic"
adder_per_kwh = 0.05
tax_fraction = 0.19
source = {{ provider = "nordpool", area = "FI", base_url = "{url}/nordpool" }}

[[grid.carbon]]
kind = "average"
file = "{data}/guangdong_factory/carbon.csv"
column = "average_g_per_kwh"

[[grid.carbon]]
kind = "marginal"
source = {{ provider = "watttime", region = "CAISO_NORTH", base_url = "{url}/watttime" }}

[[battery]]
name = "bess"
capacity_kwh = 200.0
max_charge_kw = 100.0
max_discharge_kw = 100.0

[[load]]
name = "building"
file = "{data}/guangdong_factory/load_kw.csv"
"""


def nordpool_day(req: Request) -> tuple[int, bytes]:
    """One CET delivery day in the recorded shape, FI at 100 + UTC hour EUR/MWh; 2025-06-03 is not
    published yet (empty reply)."""
    day = req["query"]["date"]
    if day >= "2025-06-03":
        return 204, b""
    doc = json.loads(fixture("nordpool_dayahead_2024-10-27_ee_fi.json"))
    start = pd.Timestamp(day, tz="Europe/Oslo").tz_convert("UTC")
    hours = pd.date_range(start, start + pd.Timedelta(days=1), freq="h", inclusive="left")
    doc["deliveryDateCET"] = day
    doc["multiAreaEntries"] = [
        {"deliveryStart": t.strftime("%Y-%m-%dT%H:%M:%SZ"),
         "deliveryEnd": (t + pd.Timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
         "entryPerArea": {"EE": 1.0, "FI": 100.0 + t.hour}} for t in hours]
    return 200, json.dumps(doc).encode()


def watttime_forecast(req: Request) -> tuple[int, bytes]:
    """48 h of 5-min MOER from 2025-06-01 00:00 UTC: 1000 lbs/MWh, 2000 from 12:00 to 24:00 UTC."""
    doc = json.loads(fixture("watttime_forecast.json"))
    points = pd.date_range("2025-06-01", periods=576, freq="5min", tz="UTC")
    doc["data"] = [{"point_time": t.isoformat(), "value": 2000.0 if t.hour >= 12 else 1000.0}
                   for t in points]
    return 200, json.dumps(doc).encode()


@pytest.fixture()
def live_site(provider: Provider, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("WATTTIME_TOKEN", "wt")
    provider.routes["/nordpool"] = nordpool_day
    provider.routes["/watttime/forecast"] = watttime_forecast
    path = tmp_path / "berlin_test.toml"
    path.write_text(SITE.format(state=tmp_path / "state", url=provider.url, data=DATA))
    return path


def _show(site: Path, *days: str) -> dict[str, dict[str, Any]]:
    result = runner.invoke(app, ["signals", "show", str(site), "--from", days[0], "--to", days[-1], "--json"])
    assert result.exit_code == 0, result.output
    return {r["timestamp_local"][:16]: r for r in json.loads(result.stdout)}


def test_fetch_records_prices_and_carbon_then_show_and_plan_use_them(live_site: Path,
                                                                    provider: Provider) -> None:
    fetched = runner.invoke(app, ["signals", "fetch", str(live_site), "--at", "2025-06-02T12:00", "--json"])
    assert fetched.exit_code == 0, fetched.output
    records = {r["signal"]: r for r in json.loads(fetched.stdout)}
    assert records["import_price"]["status"] == "fetched" and records["import_price"]["unit"] == "EUR/kWh"
    assert records["carbon_marginal"]["status"] == "fetched" and records["carbon_marginal"]["points"] == 576
    # one Nord Pool request per CET day from yesterday to tomorrow; WattTime with its token
    assert [r["query"]["date"] for r in provider.paths("/nordpool")] == ["2025-06-01", "2025-06-02",
                                                                         "2025-06-03"]
    assert {r["query"]["deliveryArea"] for r in provider.paths("/nordpool")} == {"FI"}
    wt = provider.paths("/watttime")[0]
    assert wt["headers"]["authorization"] == "Bearer wt" and wt["query"]["region"] == "CAISO_NORTH"

    rows = _show(live_site, "2025-06-02", "2025-06-03")
    ten = rows["2025-06-02T10:00"]  # 08:00 UTC: 108 EUR/MWh
    assert ten["import_price_per_kwh"] == pytest.approx((0.108 + 0.05) * 1.19)
    assert ten["carbon_marginal_g_per_kwh"] == pytest.approx(1000 * 0.45359237, rel=1e-4)
    assert rows["2025-06-02T15:00"]["carbon_marginal_g_per_kwh"] == pytest.approx(2000 * 0.45359237, rel=1e-4)
    assert ten["carbon_average_g_per_kwh"] > 0
    # 2025-06-03 is not published: each hour repeats the day before (no week-old data yet)
    for hour in range(24):
        day2 = rows[f"2025-06-03T{hour:02d}:00"]["import_price_per_kwh"]
        assert day2 == pytest.approx(rows[f"2025-06-02T{hour:02d}:00"]["import_price_per_kwh"])

    plan = runner.invoke(app, ["plan", str(live_site), "--at", "2025-06-02T00:00", "--json"])
    assert plan.exit_code == 0, plan.output
    doc = json.loads(plan.stdout)
    assert doc["carbon_kind"] == "marginal"  # marginal is configured, so plans weigh it
    by_kind = doc["emissions_kg_by_kind"]
    assert set(by_kind) == {"average", "marginal"}
    assert by_kind["marginal"] == pytest.approx(doc["emissions_kg"], rel=1e-6)


def test_a_malformed_reply_keeps_the_last_good_prices_and_says_stale(live_site: Path,
                                                                     provider: Provider) -> None:
    args = ["signals", "fetch", str(live_site), "--at", "2025-06-02T12:00", "--json"]
    assert runner.invoke(app, args).exit_code == 0
    before = _show(live_site, "2025-06-02")
    provider.routes["/nordpool"] = lambda req: (200, b'{"deliveryAreas": ["FI"], "multiAreaEntries": "x"}')
    failed = runner.invoke(app, args)
    assert failed.exit_code == 1
    records = {r["signal"]: r for r in json.loads(failed.stdout)}
    price = records["import_price"]
    assert price["status"] == "stale" and price["points"] == 48
    assert "nordpool" in price["message"] and "multiAreaEntries" in price["message"]
    assert records["carbon_marginal"]["status"] == "fetched"
    assert _show(live_site, "2025-06-02") == before  # the planner still sees the last good prices


def test_no_recorded_data_names_the_signal_and_the_command(live_site: Path) -> None:
    result = runner.invoke(app, ["signals", "show", str(live_site), "--from", "2025-06-02"])
    assert result.exit_code == 2
    assert "grid.carbon[1]: no carbon_marginal data recorded yet" in result.output
    assert "ems signals fetch berlin_test" in result.output


def test_live_signal_config_errors_name_the_field(live_site: Path) -> None:
    text = live_site.read_text()
    lines = text.splitlines()
    watttime = next(ln for ln in lines if ln.startswith('source = { provider = "watttime"'))
    average_file = f'file = "{DATA}/guangdong_factory/carbon.csv"\ncolumn = "marginal_g_per_kwh"'
    only_average = text[:text.rindex("[[grid.carbon]]")] + text[text.index("[[battery]]"):]
    cases = [
        (text.replace('provider = "nordpool", area = "FI"', 'provider = "octopus", product = "A", '
                      'tariff_code = "B"'),
         "grid.tariff.exchange_rate", "octopus prices are in GBP but site.currency is EUR"),
        (text.replace('kind = "marginal"\n' + watttime, 'kind = "average"\n' + average_file),
         "grid.carbon", "got kinds ['average', 'average']"),
        (text.replace(watttime, 'source = { provider = "uk_carbon_intensity" }'),
         "grid.carbon[1].kind = 'marginal'", "uk_carbon_intensity gives average intensity"),
        (only_average.replace("replan_every_minutes = 60",
                              'replan_every_minutes = 60\ncarbon_signal = "marginal"'),
         "planning.carbon_signal = 'marginal'", "no marginal signal in grid.carbon (have ['average'])"),
    ]
    for i, (bad, field, message) in enumerate(cases):
        path = live_site.with_name(f"bad{i}.toml")
        path.write_text(bad)
        with pytest.raises(ConfigError) as info:
            load_site(path)
        text_of = "\n".join(info.value.lines)
        assert field in text_of and message in text_of, text_of
