"""The site's records: telemetry, plans, setpoint writes with their audit trail, alarms, KPIs and
the runtime state the service resumes from. SQLite (WAL) by default, PostgreSQL by URL.

Every write is its own committed transaction, so a row the service has reported is on disk even
if the process is killed right after.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import Engine, and_, create_engine, delete, event, func, insert, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from ems.store import schema as s


@dataclass(frozen=True)
class TelemetryRow:
    ts: datetime
    device: str
    point: str
    value: float | None
    missing_reason: str | None = None


@dataclass(frozen=True)
class SetpointWrite:
    """One setpoint written to a device, with why: the plan slot, the price and carbon behind it,
    the limits that bound it, and whether the device took it (read back)."""

    ts: datetime
    device: str
    command: str
    value: float | None
    mode: str
    ok: bool
    plan_id: int | None = None
    slot_start: datetime | None = None
    price_per_kwh: float | None = None
    carbon_g_per_kwh: float | None = None
    limits: Mapping[str, float] = field(default_factory=dict)
    readback: float | None = None
    error: str | None = None


MIN_ROW_ID, MAX_ROW_ID = 1, 2**63 - 1
"""Row ids the store can hold (SQLite and PostgreSQL integer keys are signed 64-bit)."""


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


class Store:
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine: Engine = create_engine(url)
        if self.engine.dialect.name == "sqlite":
            database = self.engine.url.database
            if database and database != ":memory:":
                Path(database).parent.mkdir(parents=True, exist_ok=True)
            event.listen(self.engine, "connect", _sqlite_pragmas)
        s.metadata.create_all(self.engine)
        for index in s.telemetry.indexes:  # indexes added since an older store was made
            index.create(self.engine, checkfirst=True)

    @classmethod
    def at_path(cls, path: Path) -> Store:
        path.parent.mkdir(parents=True, exist_ok=True)
        return cls(sqlite_url(path))

    def close(self) -> None:
        self.engine.dispose()

    # -- telemetry ---------------------------------------------------------------------------

    def add_telemetry(self, rows: Iterable[TelemetryRow]) -> int:
        values = [{"ts": r.ts, "device": r.device, "point": r.point, "value": r.value,
                   "missing_reason": r.missing_reason} for r in rows]
        if values:
            with self.engine.begin() as c:
                c.execute(insert(s.telemetry), values)
        return len(values)

    def telemetry(self, start: datetime, end: datetime, device: str | None = None) -> pd.DataFrame:
        q = select(s.telemetry.c.ts, s.telemetry.c.device, s.telemetry.c.point, s.telemetry.c.value,
                   s.telemetry.c.missing_reason).where(s.telemetry.c.ts >= start, s.telemetry.c.ts < end)
        if device is not None:
            q = q.where(s.telemetry.c.device == device)
        return self._frame(q.order_by(s.telemetry.c.ts, s.telemetry.c.id))

    def telemetry_page(self, start: datetime, end: datetime, device: str | None = None,
                       after: tuple[datetime, int] | None = None,
                       limit: int = 10_000) -> list[tuple[int, TelemetryRow]]:
        """At most ``limit`` telemetry rows in [start, end) as (row id, row), ordered by time then
        id, starting after the row ``after`` = (ts, id) (a page's last row: keyset paging, so a
        page costs the same however deep it is)."""
        t = s.telemetry.c
        q = select(t.id, t.ts, t.device, t.point, t.value, t.missing_reason).where(t.ts >= start, t.ts < end)
        if device is not None:
            q = q.where(t.device == device)
        if after is not None:
            q = q.where(or_(t.ts > after[0], and_(t.ts == after[0], t.id > after[1])))
        with self.engine.connect() as c:
            rows = c.execute(q.order_by(t.ts, t.id).limit(limit)).all()
        return [(int(r.id), TelemetryRow(r.ts, r.device, r.point, r.value, r.missing_reason)) for r in rows]

    # -- plans -------------------------------------------------------------------------------

    def add_plan(self, created_at: datetime, slot_start: datetime, step_minutes: int, status: str,
                 headline: str, body: Mapping[str, Any], total_cost: float | None = None,
                 emissions_kg: float | None = None, solve_s: float | None = None) -> int:
        with self.engine.begin() as c:
            result = c.execute(insert(s.plans).values(
                created_at=created_at, slot_start=slot_start, step_minutes=step_minutes, status=status,
                headline=headline, body=dict(body), total_cost=total_cost, emissions_kg=emissions_kg,
                solve_s=solve_s))
            key = result.inserted_primary_key
            assert key is not None
            return int(key[0])

    def latest_plan(self) -> dict[str, Any] | None:
        with self.engine.connect() as c:
            row = c.execute(select(s.plans).order_by(s.plans.c.id.desc()).limit(1)).mappings().first()
        return dict(row) if row else None

    def plans(self, start: datetime, end: datetime) -> pd.DataFrame:
        q = select(s.plans.c.id, s.plans.c.created_at, s.plans.c.slot_start, s.plans.c.status,
                   s.plans.c.total_cost, s.plans.c.emissions_kg, s.plans.c.solve_s, s.plans.c.headline)
        return self._frame(q.where(s.plans.c.created_at >= start, s.plans.c.created_at < end)
                           .order_by(s.plans.c.id))

    # -- setpoint writes (audit) -------------------------------------------------------------

    def add_setpoint(self, w: SetpointWrite) -> None:
        with self.engine.begin() as c:
            c.execute(insert(s.setpoint_writes).values(
                ts=w.ts, device=w.device, command=w.command, value=w.value, plan_id=w.plan_id,
                slot_start=w.slot_start, mode=w.mode, price_per_kwh=w.price_per_kwh,
                carbon_g_per_kwh=w.carbon_g_per_kwh, limits=dict(w.limits), ok=w.ok,
                readback=w.readback, error=w.error))

    def setpoints(self, start: datetime, end: datetime, device: str | None = None) -> pd.DataFrame:
        q = select(s.setpoint_writes).where(s.setpoint_writes.c.ts >= start, s.setpoint_writes.c.ts < end)
        if device is not None:
            q = q.where(s.setpoint_writes.c.device == device)
        return self._frame(q.order_by(s.setpoint_writes.c.id))

    # -- alarms ------------------------------------------------------------------------------

    def raise_alarm(self, at: datetime, device: str, code: str, severity: str, message: str) -> int | None:
        """Open an alarm; None when the same device and code is already open."""
        a = s.alarms.c
        with self.engine.begin() as c:
            open_id = c.execute(select(a.id).where(a.device == device, a.code == code,
                                                   a.cleared_at.is_(None))).scalar()
            if open_id is not None:
                return None
            result = c.execute(insert(s.alarms).values(raised_at=at, device=device, code=code,
                                                       severity=severity, message=message))
            key = result.inserted_primary_key
            assert key is not None
            return int(key[0])

    def clear_alarm(self, at: datetime, device: str, code: str) -> bool:
        a = s.alarms.c
        with self.engine.begin() as c:
            n = c.execute(update(s.alarms).where(a.device == device, a.code == code, a.cleared_at.is_(None))
                          .values(cleared_at=at)).rowcount
        return bool(n)

    def ack_alarm(self, alarm_id: int, at: datetime) -> bool:
        """Acknowledge an open alarm; False when there is no unacknowledged alarm ``alarm_id``
        (also for ids no row can have: outside a signed 64-bit integer)."""
        if not MIN_ROW_ID <= alarm_id <= MAX_ROW_ID:
            return False
        a = s.alarms.c
        with self.engine.begin() as c:
            n = c.execute(update(s.alarms).where(a.id == alarm_id, a.acked_at.is_(None))
                          .values(acked_at=at)).rowcount
        return bool(n)

    def alarms(self, open_only: bool = False) -> pd.DataFrame:
        q = select(s.alarms)
        if open_only:
            q = q.where(s.alarms.c.cleared_at.is_(None))
        return self._frame(q.order_by(s.alarms.c.id))

    # -- KPIs and runtime state --------------------------------------------------------------

    def set_kpis(self, period: str, values: Mapping[str, float]) -> None:
        rows = [{"period": period, "name": k, "value": float(v)} for k, v in values.items()]
        if not rows:
            return
        dialect_insert = pg_insert if self.engine.dialect.name == "postgresql" else sqlite_insert
        stmt = dialect_insert(s.kpis).values(rows)
        stmt = stmt.on_conflict_do_update(index_elements=["period", "name"],
                                          set_={"value": stmt.excluded.value})
        with self.engine.begin() as c:
            c.execute(stmt)

    def kpis(self, prefix: str = "") -> dict[str, dict[str, float]]:
        with self.engine.connect() as c:
            rows = c.execute(select(s.kpis).where(s.kpis.c.period.startswith(prefix))
                             .order_by(s.kpis.c.period)).all()
        out: dict[str, dict[str, float]] = {}
        for period, name, value in rows:
            out.setdefault(period, {})[name] = value
        return out

    def put_state(self, key: str, value: Any, at: datetime) -> None:
        dialect_insert = pg_insert if self.engine.dialect.name == "postgresql" else sqlite_insert
        stmt = dialect_insert(s.runtime_state).values(key=key, value=value, updated_at=at)
        stmt = stmt.on_conflict_do_update(index_elements=["key"],
                                          set_={"value": stmt.excluded.value,
                                                "updated_at": stmt.excluded.updated_at})
        with self.engine.begin() as c:
            c.execute(stmt)

    def get_state(self, key: str, default: Any = None) -> Any:
        with self.engine.connect() as c:
            value = c.execute(select(s.runtime_state.c.value).where(s.runtime_state.c.key == key)).scalar()
        return default if value is None else value

    # -- retention ---------------------------------------------------------------------------

    def purge(self, telemetry_before: datetime | None = None, plans_before: datetime | None = None,
              setpoints_before: datetime | None = None, batch_rows: int = 5_000) -> dict[str, int]:
        """Delete rows older than the given instants (retention); alarms and KPIs are kept.

        Rows go in batches of at most ``batch_rows``, each its own short transaction, so writers
        (the service's telemetry, plans, setpoints) wait for one batch at most, never for the
        whole purge."""
        out = {}
        for name, table, column, before in (
                ("telemetry", s.telemetry, s.telemetry.c.ts, telemetry_before),
                ("plans", s.plans, s.plans.c.created_at, plans_before),
                ("setpoint_writes", s.setpoint_writes, s.setpoint_writes.c.ts, setpoints_before)):
            if before is None:
                continue
            out[name] = 0
            while True:
                with self.engine.begin() as c:
                    ids = c.execute(select(table.c.id).where(column < before).order_by(table.c.id)
                                    .limit(batch_rows)).scalars().all()
                    if ids:
                        c.execute(delete(table).where(table.c.id.in_(ids)))
                out[name] += len(ids)
                if len(ids) < batch_rows:
                    break
        return out

    def count(self, table: str) -> int:
        with self.engine.connect() as c:
            return int(c.execute(select(func.count()).select_from(s.metadata.tables[table])).scalar() or 0)

    def _frame(self, query: Any) -> pd.DataFrame:
        with self.engine.connect() as c:
            result = c.execute(query)
            return pd.DataFrame(result.fetchall(), columns=list(result.keys()))


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")  # durable across a process kill in WAL mode
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()
