"""What the API guarantees whatever it is sent: a 422 naming the field and the value for a bad
request and never a 500, the token's minimum length, reads behind the token on request, the
Host check of a local-only binding, and a paged history.

The app is the real one (`create_app`) on a real service object with a real SQLite store; the
service is not started (no devices, no solves): the plans it would ask for are recorded."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ems.config.loader import ConfigError
from ems.runtime.api import create_app
from ems.runtime.service import SiteService
from ems.store import Store, TelemetryRow
from tests.test_service import START, site

TOKEN = "a-token-of-24-characters"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def service_for(tmp_path: Path, *sets: str) -> SiteService:
    from ems.runtime.clock import SteppedClock

    service = SiteService(site(tmp_path, *sets), Store.at_path(tmp_path / "ems.sqlite"),
                          SteppedClock(START, 60.0))
    planned: list[str] = []
    service.request_plan = planned.append  # type: ignore[method-assign]
    return service


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SiteService, TestClient]]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EMS_API_TOKEN", TOKEN)
        service = service_for(tmp_path_factory.mktemp("api"))
        service.store.raise_alarm(START, "bess", "device_offline", "critical", "bess does not answer")
        with TestClient(create_app(service), base_url="http://127.0.0.1:8080",
                        raise_server_exceptions=False) as client:
            yield service, client
        service.store.close()


# -- bad values: 422 naming the field and the value ---------------------------------------------


@pytest.mark.parametrize("raw", ["1.0", "0.95", "1", "true", "NaN", "Infinity", "-Infinity", '"0.5"',
                                 "-0.1", "null", "1e400"])
def test_a_bad_reserve_is_a_422_naming_the_field_and_the_value(
        api: tuple[SiteService, TestClient], raw: str) -> None:
    service, client = api
    r = client.put("/battery/bess/reserve", content=f'{{"soc_min_fraction": {raw}}}',
                   headers={**AUTH, "Content-Type": "application/json"})
    assert r.status_code == 422, (raw, r.status_code, r.text)
    detail = r.json()["detail"][0]
    assert detail["loc"][-1] == "soc_min_fraction"
    value = json.loads(raw)
    shown = detail["input"]
    assert shown == value or shown == repr(value) or (isinstance(value, float) and math.isinf(value)), shown
    assert service.reserves.get("bess") is None


def test_a_reserve_below_the_ceiling_is_taken(api: tuple[SiteService, TestClient]) -> None:
    service, client = api
    r = client.put("/battery/bess/reserve", json={"soc_min_fraction": 0.5}, headers=AUTH)
    assert r.status_code == 200 and service.reserves["bess"] == 0.5
    service.reserves.clear()


@pytest.mark.parametrize("alarm_id", ["1180591620717411303424", "9223372036854775808", "0", "-1", "x"])
def test_an_alarm_id_out_of_range_is_refused_not_a_server_error(
        api: tuple[SiteService, TestClient], alarm_id: str) -> None:
    _, client = api
    r = client.post(f"/alarms/{alarm_id}/ack", headers=AUTH)
    assert r.status_code in (404, 422), r.text
    assert r.status_code == 404 or "alarm_id" in r.text


def test_an_alarm_id_at_the_top_of_the_range_is_not_found(api: tuple[SiteService, TestClient]) -> None:
    _, client = api
    assert client.post(f"/alarms/{2**63 - 1}/ack", headers=AUTH).status_code == 404


@pytest.mark.parametrize(("start", "end", "field"), [
    ("0001-01-01T00:00:00+14:00", "2025-07-16T00:00:00Z", "from"),
    ("2025-07-15T00:00:00Z", "9999-12-31T23:59:59-14:00", "to"),
    ("1900-01-01T00:00:00Z", "2025-07-16T00:00:00Z", "from"),
    ("2025-07-15T00:00:00", "2025-07-16T00:00:00Z", "from"),  # no offset
    ("2020-01-01T00:00:00Z", "2025-07-16T00:00:00Z", "to"),  # longer than 366 days
    ("2025-07-16T00:00:00Z", "2025-07-15T00:00:00Z", "to"),  # ends before it starts
])
def test_a_history_window_out_of_range_is_a_422_naming_the_field(
        api: tuple[SiteService, TestClient], start: str, end: str, field: str) -> None:
    _, client = api
    r = client.get("/history", params={"from": start, "to": end})
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"] == ["query", field], r.text


def test_a_departure_with_an_absurd_date_or_no_offset_is_a_422(api: tuple[SiteService, TestClient]) -> None:
    _, client = api
    for departure in ("0001-01-01T00:00:00+14:00", "2025-07-16T07:00:00"):
        r = client.put("/ev/fleet_1/session", json={"departure_utc": departure}, headers=AUTH)
        assert r.status_code == 422 and r.json()["detail"][0]["loc"][-1] == "departure_utc", r.text
    r = client.put("/ev/fleet_1/session", content='{"energy_kwh": NaN}',
                   headers={**AUTH, "Content-Type": "application/json"})
    assert r.status_code == 422 and r.json()["detail"][0]["input"] == "nan", r.text


# -- no input gives a 500 ----------------------------------------------------------------------

ROUTES = [("GET", "/status"), ("GET", "/plan"), ("GET", "/history"), ("GET", "/alarms"),
          ("GET", "/kpis"), ("GET", "/metrics"), ("PUT", "/ev/{}/session"), ("PUT", "/mode"),
          ("PUT", "/battery/{}/reserve"), ("POST", "/alarms/{}/ack")]

scalars = (st.none() | st.booleans() | st.integers(min_value=-2**80, max_value=2**80)
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=30)
           | st.sampled_from(["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00",
                              "2025-07-15T10:00:00Z", "auto", "pause", "bess", "fleet_1"]))
bodies = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.sampled_from(["soc_min_fraction", "mode", "energy_kwh",
                                                         "departure_utc", "x"]) | st.text(max_size=8),
                                        inner, max_size=4), max_leaves=10)
query_values = st.one_of(st.text(max_size=40), st.sampled_from([
    "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "2025-07-15T00:00:00Z",
    "2025-07-16T00:00:00Z", "1180591620717411303424", "NaN", "-1", "true", "bess"]))
queries = st.dictionaries(st.sampled_from(["from", "to", "device", "limit", "cursor", "open_only",
                                           "period", "x"]), query_values, max_size=5)
path_parts = st.one_of(st.text(min_size=1, max_size=30).filter(lambda t: t not in (".", "..")),
                       st.integers(min_value=-2**80, max_value=2**80).map(str),
                       st.sampled_from(["bess", "fleet_1", "1", "NaN"]))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(route=st.sampled_from(ROUTES), part=path_parts, body=bodies, query=queries,
       authorised=st.booleans())
def test_no_request_gives_a_server_error(api: tuple[SiteService, TestClient], route: tuple[str, str],
                                         part: str, body: Any, query: dict[str, str],
                                         authorised: bool) -> None:
    service, client = api
    method, template = route
    path = template.format(quote(part, safe=""))
    content = json.dumps(body, allow_nan=True)
    r = client.request(method, path, params=query, content=content if method != "GET" else None,
                       headers={**(AUTH if authorised else {}), "Content-Type": "application/json"})
    assert r.status_code < 500, (method, path, query, content, r.status_code, r.text)
    service.reserves.clear()


# -- the token and the host ----------------------------------------------------------------------


def test_a_short_token_is_a_config_error_naming_the_field(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMS_API_TOKEN", "s3cret")
    service = service_for(tmp_path)
    with pytest.raises(ConfigError) as err:
        create_app(service)
    assert "service.api_token_env" in str(err.value.lines) and "16" in str(err.value.lines)


def test_reads_can_need_the_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMS_API_TOKEN", TOKEN)
    service = service_for(tmp_path, "service.api_read_token_required=true")
    client = TestClient(create_app(service), base_url="http://localhost:8080")
    window = {"from": "2025-07-15T00:00:00Z", "to": "2025-07-16T00:00:00Z"}
    for path in ("/status", "/alarms", "/kpis", "/metrics", "/plan", "/history"):
        params = window if path == "/history" else None
        assert client.get(path, params=params).status_code == 401, path
        wrong = client.get(path, params=params, headers={"Authorization": "Bearer " + "x" * 24})
        assert wrong.status_code == 401, path
        assert client.get(path, params=params, headers=AUTH).status_code in (200, 404), path
    monkeypatch.delenv("EMS_API_TOKEN")
    with pytest.raises(ConfigError, match="api_read_token_required"):
        create_app(service)


def test_reads_are_open_by_default(api: tuple[SiteService, TestClient]) -> None:
    _, client = api
    assert client.get("/alarms").status_code == 200


@pytest.mark.parametrize(("host", "code"), [
    ("127.0.0.1:8080", 200), ("localhost", 200), ("LOCALHOST:1", 200), ("[::1]:8080", 200),
    ("evil.example:8080", 400), ("127.0.0.1.evil.example", 400), ("", 400), ("[::2]", 400),
])
def test_a_local_only_api_answers_only_local_host_names(api: tuple[SiteService, TestClient],
                                                         host: str, code: int) -> None:
    _, client = api
    assert client.get("/alarms", headers={"Host": host}).status_code == code


def test_an_api_bound_to_every_address_does_not_check_the_host(tmp_path: Path) -> None:
    service = service_for(tmp_path, 'service.api_host="0.0.0.0"')
    client = TestClient(create_app(service), base_url="http://ems.example:8080")
    assert client.get("/alarms").status_code == 200


# -- history in pages ----------------------------------------------------------------------------


def test_history_pages_hold_at_most_the_limit_and_return_every_row_once(
        api: tuple[SiteService, TestClient]) -> None:
    service, client = api
    t0 = datetime(2025, 7, 10, tzinfo=UTC)
    # 2,501 rows, many sharing a timestamp (a page boundary inside one instant)
    rows = [TelemetryRow(t0 + timedelta(seconds=60 * (i // 7)), f"dev{i % 7}", "p_kw", float(i))
            for i in range(2501)]
    service.store.add_telemetry(rows)
    window = {"from": "2025-07-10T00:00:00Z", "to": "2025-07-11T00:00:00Z", "limit": "1000"}
    r = client.get("/history", params=window)
    assert r.status_code == 200
    seen: list[float] = []
    pages = 0
    while True:
        page = r.json()
        pages += 1
        assert len(page["rows"]) <= 1000
        seen.extend(row["value"] for row in page["rows"])
        if page["next"] is None:
            assert page["next_cursor"] is None
            break
        r = client.get(page["next"])
        assert r.status_code == 200
    assert pages == 3
    assert sorted(seen) == [float(i) for i in range(2501)]  # every row, once
    assert client.get("/history", params={**window, "limit": "10001"}).status_code == 422
    bad = client.get("/history", params={**window, "cursor": "not-a-cursor"})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["query", "cursor"]


def test_config_check_and_run_refuse_a_short_token(monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from ems.cli.main import app

    monkeypatch.setenv("EMS_API_TOKEN", "short")
    for args in (["config", "check", "guangdong_factory", "--no-data"],
                 ["run", "guangdong_factory", "--simulate", "--duration", "1"]):
        res = CliRunner().invoke(app, args)
        assert res.exit_code == 2, (args, res.output)
        assert "service.api_token_env" in res.output and "16" in res.output, res.output


def test_a_store_made_before_the_history_index_gets_it(tmp_path: Path) -> None:
    from sqlalchemy import inspect, text

    store = Store.at_path(tmp_path / "old.sqlite")
    with store.engine.begin() as c:
        c.execute(text("DROP INDEX ix_telemetry_ts_id"))
    store.close()
    store = Store.at_path(tmp_path / "old.sqlite")
    assert "ix_telemetry_ts_id" in {i["name"] for i in inspect(store.engine).get_indexes("telemetry")}
    store.close()


def test_a_non_ascii_token_is_a_401_not_a_server_error(api: tuple[SiteService, TestClient]) -> None:
    _, client = api
    r = client.put("/mode", json={"mode": "pause"}, headers={"Authorization": b"Bearer \xe9t\xe9-token-long"})
    assert r.status_code == 401, r.text


def test_history_older_than_the_raw_window_is_served_as_15_minute_aggregates(
        api: tuple[SiteService, TestClient]) -> None:
    from ems.store.rollup import fold_telemetry

    service, client = api
    t0 = datetime(2025, 6, 1, tzinfo=UTC)
    service.store.add_telemetry([TelemetryRow(t0 + timedelta(minutes=m), "grid", "power_net_kw", float(m))
                                 for m in range(60)])
    assert fold_telemetry(service.store, t0 + timedelta(hours=1)) == 60
    window = {"from": "2025-06-01T00:00:00Z", "to": "2025-06-02T00:00:00Z", "limit": "3"}
    first = client.get("/history/15min", params=window)
    assert first.status_code == 200
    rows = first.json()["rows"]
    assert [r["mean"] for r in rows] == [7.0, 22.0, 37.0]  # minutes 0..14, 15..29, 30..44
    assert rows[0] == {"bucket_start": "2025-06-01T00:00:00+00:00", "device": "grid",
                       "point": "power_net_kw", "mean": 7.0, "min": 0.0, "max": 14.0,
                       "n_good": 15, "n_missing": 0}
    second = client.get(first.json()["next"]).json()
    assert [r["mean"] for r in second["rows"]] == [52.0] and second["next"] is None
    assert client.get("/history/15min", params={**window, "offset": "-1"}).status_code == 422
