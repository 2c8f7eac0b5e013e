"""What a newcomer meets first: the demo starts on any calendar day, the startup line says where
the API listens, a simulated run's log lines carry the site time, and a van that plugs in is
planned with the config's session (its need and departure), not a generic default."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ems.cli.run_cmd import api_address
from ems.cli.sim_cmd import SIMULATION_LEAD, SIMULATION_MARGIN, default_start, simulator_for_site
from ems.config import load_site
from ems.inputs.site_inputs import data_limit_utc, data_start_utc
from ems.runtime.logs import configure_logging, show_site_time
from ems.runtime.sessions import SessionTracker, expected_from_config

SITES = Path(__file__).resolve().parents[1] / "site_configs"


@pytest.mark.parametrize("now", [
    datetime(2026, 12, 28, 9, 15, tzinfo=UTC),  # in the last week of the data's year
    datetime(2026, 12, 31, 23, 59, tzinfo=UTC),
    datetime(2027, 1, 1, 0, 30, tzinfo=UTC),
    datetime(2026, 7, 15, 10, 0, tzinfo=UTC),
    datetime(2028, 2, 29, 12, 0, tzinfo=UTC),
])
def test_the_demo_start_leaves_a_simulated_run_enough_data_on_any_day(now: datetime) -> None:
    site = load_site("guangdong_factory")
    start = default_start(site, now)
    first, limit = data_start_utc(site), data_limit_utc(site)
    assert first is not None and limit is not None
    assert first <= start - SIMULATION_LEAD and start + SIMULATION_MARGIN <= limit
    assert start.time() == now.time()  # the same time of day
    simulator_for_site(site, lambda: 0.0, start)  # builds its week of sessions without an error


def test_the_startup_line_says_where_the_api_listens() -> None:
    assert api_address("127.0.0.1", 8080) == "API on http://127.0.0.1:8080/ (OpenAPI at /docs)"
    assert api_address("::1", 8080).startswith("API on http://[::1]:8080/")
    assert api_address("127.0.0.1", 0) == "no API (--api-port 0)"


def test_a_simulated_run_logs_the_site_time_next_to_the_wall_time(capsys: pytest.CaptureFixture[str]) -> None:
    site_now = datetime(2025, 7, 15, 18, 30, tzinfo=UTC)
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        configure_logging("text", True)
        show_site_time(lambda: site_now)
        logging.getLogger("ems.test").info("hello")
        logging.getLogger("apscheduler.scheduler").warning(
            'Execution of job "dispatch" skipped: maximum number of running instances reached (1)')
        configure_logging("json", True)
        show_site_time(lambda: site_now)
        logging.getLogger("ems.test").info("hello")
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
    err = capsys.readouterr().err
    assert "maximum number of running instances" not in err  # counted by the service, not logged
    text, json_line = err.strip().splitlines()[-2:]
    assert "[site 2025-07-15T18:30:00+00:00] INFO ems.test: hello" in text
    assert '"site_time": "2025-07-15T18:30:00+00:00"' in json_line


def test_a_van_plugged_in_is_planned_with_the_configs_session() -> None:
    cfg = load_site("guangdong_factory").config  # weekdays 18:30 -> 07:00, 45 kWh
    tracker = SessionTracker(20.0, 8.0, expected_from_config(cfg))
    tuesday_evening = datetime(2025, 7, 15, 10, 41, tzinfo=UTC)  # 18:41 in Guangdong
    assert tracker.observe("fleet_1", True, 0.0, tuesday_evening) == "plugged"
    s = tracker.active["fleet_1"]
    assert (s.energy_kwh, s.departure_utc, s.source) == (
        45.0, datetime(2025, 7, 15, 23, 0, tzinfo=UTC), "config")  # 07:00 local next day
    # a van the schedule does not know (Sunday noon) gets the service's defaults
    sunday_noon = datetime(2025, 7, 13, 4, 0, tzinfo=UTC)
    assert tracker.observe("fleet_2", True, 0.0, sunday_noon) == "plugged"
    other = tracker.active["fleet_2"]
    assert (other.energy_kwh, other.departure_utc, other.source) == (
        20.0, sunday_noon + timedelta(hours=8), "default")
