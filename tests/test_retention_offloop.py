"""Reads and the retention purge run off the event loop the control jobs share, and the purge
deletes in short batches: a long read or delete never holds up dispatch."""

from __future__ import annotations

import asyncio
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import event

from ems.runtime.api import create_app
from ems.store import Store, TelemetryRow
from tests.test_api_guarantees import service_for
from tests.test_service import START


def statements(store: Store, word: str) -> list[tuple[str, threading.Thread]]:
    """Every statement starting with ``word`` the store runs from now on, with its thread."""
    seen: list[tuple[str, threading.Thread]] = []

    def note(_conn: Any, _cursor: Any, sql: str, *_args: Any) -> None:
        if sql.lstrip().upper().startswith(word):
            seen.append((sql, threading.current_thread()))

    event.listen(store.engine, "before_cursor_execute", note)
    return seen


def test_the_retention_purge_runs_in_a_worker_thread_in_batches(tmp_path: Path) -> None:
    service = service_for(tmp_path)
    old = START - timedelta(days=service.cfg.store.telemetry_retention_days + 1)
    service.store.add_telemetry([TelemetryRow(old + timedelta(seconds=i), "grid", "import_kw", 1.0)
                                 for i in range(12_000)])
    service.store.add_telemetry([TelemetryRow(START, "grid", "import_kw", 2.0)])
    deletes = statements(service.store, "DELETE")

    async def main() -> threading.Thread:
        await service.retention_job()
        return threading.current_thread()

    loop_thread = asyncio.run(main())
    # raw rows older than the raw window are folded into aggregates (deleted chunk by chunk),
    # and aggregates older than the retention deleted: all of it off the event loop
    assert [sql for sql, _ in deletes if "telemetry" in sql]
    assert all(thread is not loop_thread for _, thread in deletes)
    assert service.store.count("telemetry") == 1 and service.store.count("telemetry_15min") == 0


def test_the_store_purge_deletes_in_batches(tmp_path: Path) -> None:
    service = service_for(tmp_path)
    service.store.add_telemetry([TelemetryRow(START - timedelta(days=1, seconds=i), "grid", "import_kw", 1.0)
                                 for i in range(12_000)])
    deletes = statements(service.store, "DELETE")
    assert service.store.purge(telemetry_before=START, batch_rows=5_000) == {"telemetry": 12_000}
    assert len([sql for sql, _ in deletes if "telemetry" in sql]) == 3  # each its own transaction


def test_history_is_read_off_the_event_loop(tmp_path: Path) -> None:
    service = service_for(tmp_path)
    service.store.add_telemetry([TelemetryRow(START, "grid", "import_kw", 2.0)])
    service.store.raise_alarm(START, "bess", "device_offline", "critical", "bess does not answer")
    selects = statements(service.store, "SELECT")
    with TestClient(create_app(service), base_url="http://127.0.0.1") as client:
        assert client.get("/alarms").status_code == 200  # an async endpoint: on the loop
        window = {"from": START.isoformat(), "to": (START + timedelta(hours=1)).isoformat()}
        r = client.get("/history", params=window)
        assert r.status_code == 200 and len(r.json()["rows"]) == 1
    alarm_thread = next(t for sql, t in selects if "FROM alarms" in sql)
    history_thread = next(t for sql, t in selects if "FROM telemetry" in sql)
    assert history_thread is not alarm_thread
