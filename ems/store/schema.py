"""The store's tables (SQLAlchemy Core): the same schema on SQLite and PostgreSQL.

Times are stored as UTC and read back timezone-aware (UTC) on both databases. Power kW,
energy kWh, money in the site currency.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
)
from sqlalchemy import DateTime as _DateTime


class DateTime(TypeDecorator[datetime]):
    """An aware UTC datetime in, an aware UTC datetime out (SQLite keeps no offset)."""

    impl = _DateTime
    cache_ok = True

    def __init__(self, timezone: bool = True) -> None:
        super().__init__(timezone=False)

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: the store takes aware UTC times")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


metadata = MetaData()

telemetry = Table(
    "telemetry", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("ts", DateTime(timezone=True), nullable=False),
    Column("device", String(64), nullable=False),
    Column("point", String(64), nullable=False),
    Column("value", Float, nullable=True),
    # None when the value is good; else why it is missing (a missing value is never stored as 0)
    Column("missing_reason", String(128), nullable=True),
    Index("ix_telemetry_device_ts", "device", "ts"),
    Index("ix_telemetry_ts_id", "ts", "id"),  # GET /history pages in (ts, id) order
)

plans = Table(
    "plans", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("slot_start", DateTime(timezone=True), nullable=False),
    Column("step_minutes", Integer, nullable=False),
    Column("status", String(32), nullable=False),
    Column("total_cost", Float, nullable=True),
    Column("emissions_kg", Float, nullable=True),
    Column("solve_s", Float, nullable=True),
    Column("headline", Text, nullable=False),
    # per-step targets the controller follows, with the prices and carbon behind them
    Column("body", JSON, nullable=False),
    Index("ix_plans_slot", "slot_start"),
)

setpoint_writes = Table(
    "setpoint_writes", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("ts", DateTime(timezone=True), nullable=False),
    Column("device", String(64), nullable=False),
    Column("command", String(64), nullable=False),
    Column("value", Float, nullable=True),
    Column("plan_id", Integer, nullable=True),
    Column("slot_start", DateTime(timezone=True), nullable=True),
    Column("mode", String(16), nullable=False),
    Column("price_per_kwh", Float, nullable=True),
    Column("carbon_g_per_kwh", Float, nullable=True),
    # the limits that bound this value (e.g. grid import limit, SOC floor) with their values
    Column("limits", JSON, nullable=False),
    Column("ok", Boolean, nullable=False),
    Column("readback", Float, nullable=True),
    Column("error", Text, nullable=True),
    Index("ix_setpoints_device_ts", "device", "ts"),
)

alarms = Table(
    "alarms", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("raised_at", DateTime(timezone=True), nullable=False),
    Column("cleared_at", DateTime(timezone=True), nullable=True),
    Column("acked_at", DateTime(timezone=True), nullable=True),
    Column("device", String(64), nullable=False),
    Column("code", String(64), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("message", Text, nullable=False),
    Index("ix_alarms_open", "device", "code", "cleared_at"),
)

kpis = Table(
    "kpis", metadata,
    # local day "YYYY-MM-DD" or month "YYYY-MM"
    Column("period", String(16), primary_key=True),
    Column("name", String(64), primary_key=True),
    Column("value", Float, nullable=False),
)

runtime_state = Table(
    "runtime_state", metadata,
    Column("key", String(64), primary_key=True),
    Column("value", JSON, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)
"""What the service resumes from after a restart: billing-period peak, EV sessions in progress,
electrolyser state, mode override."""

telemetry_15min = Table(
    "telemetry_15min", metadata,
    # raw telemetry older than store.raw_telemetry_days, as 15-minute aggregates per point
    Column("bucket_start", DateTime(timezone=True), nullable=False),
    Column("device", String(64), nullable=False),
    Column("point", String(64), nullable=False),
    Column("mean", Float, nullable=True),
    Column("min", Float, nullable=True),
    Column("max", Float, nullable=True),
    Column("n_good", Integer, nullable=False),
    Column("n_missing", Integer, nullable=False),
    Index("ix_telemetry_15min_device_ts", "device", "bucket_start"),
)
