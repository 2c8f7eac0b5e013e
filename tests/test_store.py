"""The store on a real SQLite file and a real PostgreSQL server: the same schema and behaviour on
both, aware UTC times back, missing values kept as missing, upserts, alarms that do not repeat,
retention, and rows committed before a `kill -9` still there after it."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ems.store import SetpointWrite, Store, TelemetryRow

T0 = datetime(2025, 7, 15, 2, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        st = Store.at_path(tmp_path / "ems.sqlite")
    else:
        st = Store(request.getfixturevalue("pg_url"))
        from ems.store.schema import metadata

        metadata.drop_all(st.engine)  # one server for the session: start each test empty
        metadata.create_all(st.engine)
    yield st
    st.close()


def test_telemetry_round_trip_keeps_utc_and_missing_values(store: Store) -> None:
    store.add_telemetry([TelemetryRow(T0, "bess", "soc_fraction", 0.5),
                         TelemetryRow(T0, "bess", "power_kw", None, "stale: no reply for 12 s"),
                         TelemetryRow(T0 + timedelta(minutes=1), "grid", "import_kw", 812.5)])
    frame = store.telemetry(T0, T0 + timedelta(minutes=1))
    assert list(frame["point"]) == ["soc_fraction", "power_kw"]
    assert frame["ts"].iloc[0] == T0 and str(frame["ts"].dt.tz) == "UTC"
    missing = frame[frame["point"] == "power_kw"].iloc[0]
    assert missing["value"] != missing["value"] and missing["missing_reason"].startswith("stale")  # NaN
    assert len(store.telemetry(T0, T0 + timedelta(hours=1), device="grid")) == 1
    with pytest.raises(Exception, match="naive datetime"):
        store.add_telemetry([TelemetryRow(datetime(2025, 7, 15), "bess", "soc_fraction", 0.5)])


def test_plans_and_setpoint_audit_trail(store: Store) -> None:
    pid = store.add_plan(T0, T0, 15, "optimal", "cost 812 CNY", {"import_kw": [1.0, 2.0]}, 812.0, 55.0, 0.4)
    store.add_setpoint(SetpointWrite(T0, "bess", "battery_net_kw", -250.0, "auto", True, pid, T0,
                                     0.266, 540.0, {"import_limit_kw": 2500.0, "soc_max_kwh": 1900.0},
                                     readback=-250.0))
    store.add_setpoint(SetpointWrite(T0, "ev1", "ev_current_a", 16.0, "fallback", False,
                                     error="no reply"))
    latest = store.latest_plan()
    assert latest is not None and latest["id"] == pid and latest["body"] == {"import_kw": [1.0, 2.0]}
    writes = store.setpoints(T0, T0 + timedelta(seconds=1))
    first = writes.iloc[0]
    assert first["plan_id"] == pid and first["limits"]["import_limit_kw"] == 2500.0
    assert first["price_per_kwh"] == 0.266 and bool(first["ok"]) and first["readback"] == -250.0
    assert not bool(writes.iloc[1]["ok"]) and writes.iloc[1]["error"] == "no reply"


def test_alarms_open_once_clear_and_ack(store: Store) -> None:
    first = store.raise_alarm(T0, "bess", "over_temperature", "critical", "pack 58 °C")
    assert first is not None
    later = T0 + timedelta(seconds=5)
    assert store.raise_alarm(later, "bess", "over_temperature", "critical", "59 °C") is None
    assert store.ack_alarm(first, T0 + timedelta(minutes=1)) and not store.ack_alarm(first, T0)
    assert store.clear_alarm(T0 + timedelta(minutes=2), "bess", "over_temperature")
    again = store.raise_alarm(T0 + timedelta(minutes=3), "bess", "over_temperature", "critical", "58 °C")
    assert again is not None and again != first
    assert len(store.alarms()) == 2 and len(store.alarms(open_only=True)) == 1


def test_kpis_and_runtime_state_are_upserts(store: Store) -> None:
    store.set_kpis("2025-07-15", {"total_cost": 100.0, "emissions_kg": 50.0})
    store.set_kpis("2025-07-15", {"total_cost": 120.0})
    store.set_kpis("2025-07", {"demand_charge": 32000.0})
    assert store.kpis("2025-07-15") == {"2025-07-15": {"total_cost": 120.0, "emissions_kg": 50.0}}
    assert set(store.kpis("2025-07")) == {"2025-07", "2025-07-15"}
    store.put_state("billing_peak", {"period": "2025-07", "kw": 940.0}, T0)
    store.put_state("billing_peak", {"period": "2025-07", "kw": 1010.0}, T0 + timedelta(hours=1))
    assert store.get_state("billing_peak") == {"period": "2025-07", "kw": 1010.0}
    assert store.get_state("absent", default={}) == {}


def test_retention_purges_only_older_rows(store: Store) -> None:
    store.add_telemetry([TelemetryRow(T0 + timedelta(days=d), "grid", "import_kw", float(d))
                         for d in range(10)])
    removed = store.purge(telemetry_before=T0 + timedelta(days=7))
    assert removed == {"telemetry": 7}
    assert store.count("telemetry") == 3


WRITER = """
import sys
from datetime import UTC, datetime, timedelta
from ems.store import Store, TelemetryRow
store = Store(sys.argv[1])
t0 = datetime(2025, 7, 15, tzinfo=UTC)
for i in range(100000):
    store.add_telemetry([TelemetryRow(t0 + timedelta(seconds=i), "grid", "import_kw", float(i))])
    print(i + 1, flush=True)
"""


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_rows_committed_before_kill_9_are_there_after(backend: str, tmp_path: Path,
                                                      request: pytest.FixtureRequest) -> None:
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'ems.sqlite'}"
    else:
        url = request.getfixturevalue("pg_url")
        from ems.store.schema import metadata

        st = Store(url)
        metadata.drop_all(st.engine)
        st.close()
    child = subprocess.Popen([sys.executable, "-c", WRITER, url], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    reported = 0
    for line in child.stdout:
        reported = int(line)
        if reported >= 200:
            break
    child.send_signal(signal.SIGKILL)
    child.wait()
    store = Store(url)
    try:
        assert store.count("telemetry") >= reported  # every row reported as committed survived
    finally:
        store.close()
