"""Months of running in a bounded store: raw telemetry is kept for ``store.raw_telemetry_days``,
then folded into 15-minute aggregates (mean, min, max, counts of good and missing readings per
point) kept for ``store.telemetry_retention_days``; a plan keeps its per-step body for
``store.plan_body_days``, then only its headline figures, costs and relaxed limits.

Each call works through bounded chunks, each in its own transaction (raw rows are deleted in the
transaction that writes their aggregates), so it can run beside the service and be stopped at
any point without losing or double-counting a reading.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pandas as pd
from sqlalchemy import delete, insert, select, update

from ems.store import schema as s
from ems.store.store import Store

BUCKET = timedelta(minutes=15)
CHUNK = timedelta(hours=6)
"""Raw telemetry folded per transaction (a few thousand rows on a typical site)."""
PLAN_SUMMARY_KEYS = ("costs", "penalty_cost", "slacks")
"""What a plan's body keeps once its per-step series are dropped."""


def floor_to_bucket(t: datetime) -> datetime:
    seconds = int(BUCKET.total_seconds())
    return datetime.fromtimestamp(int(t.timestamp()) // seconds * seconds, tz=t.tzinfo)


def fold_telemetry(store: Store, before: datetime, max_chunks: int | None = None) -> int:
    """Fold raw telemetry older than ``before`` (floored to a bucket) into 15-minute aggregates;
    returns the raw rows folded. At most ``max_chunks`` chunks (None: all)."""
    end = floor_to_bucket(before)
    folded = 0
    chunks = 0
    while max_chunks is None or chunks < max_chunks:
        with store.engine.begin() as c:
            first = c.execute(select(s.telemetry.c.ts).where(s.telemetry.c.ts < end)
                              .order_by(s.telemetry.c.ts).limit(1)).scalar()
            if first is None:
                break
            lo = floor_to_bucket(first)
            hi = min(end, lo + CHUNK)
            rows = c.execute(select(s.telemetry.c.ts, s.telemetry.c.device, s.telemetry.c.point,
                                    s.telemetry.c.value)
                             .where(s.telemetry.c.ts >= lo, s.telemetry.c.ts < hi)).all()
            aggregates = _aggregate(pd.DataFrame(rows, columns=["ts", "device", "point", "value"]))
            if aggregates:
                c.execute(insert(s.telemetry_15min), aggregates)
            c.execute(delete(s.telemetry).where(s.telemetry.c.ts >= lo, s.telemetry.c.ts < hi))
        folded += len(rows)
        chunks += 1
    return folded


def _aggregate(frame: pd.DataFrame) -> list[dict[str, object]]:
    if frame.empty:
        return []
    seconds = int(BUCKET.total_seconds())
    epoch = pd.to_datetime(frame["ts"], utc=True).astype("int64") // 10**9
    frame = frame.assign(bucket=(epoch // seconds) * seconds)
    grouped = frame.groupby(["bucket", "device", "point"])["value"]
    stats = grouped.agg(["mean", "min", "max", "count", "size"]).reset_index()
    out: list[dict[str, object]] = []
    for r in stats.itertuples(index=False):
        good = int(r.count)
        out.append({"bucket_start": pd.Timestamp(int(r.bucket), unit="s", tz="UTC").to_pydatetime(),
                    "device": r.device, "point": r.point,
                    "mean": float(r.mean) if good else None, "min": float(r.min) if good else None,
                    "max": float(r.max) if good else None, "n_good": good, "n_missing": int(r.size) - good})
    return out


def thin_plans(store: Store, before: datetime) -> int:
    """Drop the per-step series of plans created before ``before``, keeping their headline
    figures (columns) and :data:`PLAN_SUMMARY_KEYS` of the body; returns the plans thinned."""
    thinned = 0
    with store.engine.begin() as c:
        rows = c.execute(select(s.plans.c.id, s.plans.c.body).where(s.plans.c.created_at < before)).all()
        for plan_id, body in rows:
            if not isinstance(body, dict) or "series" not in body:
                continue
            kept = {k: body[k] for k in PLAN_SUMMARY_KEYS if k in body}
            c.execute(update(s.plans).where(s.plans.c.id == plan_id).values(body={**kept, "thinned": True}))
            thinned += 1
    return thinned


def purge_aggregates(store: Store, before: datetime) -> int:
    """Delete 15-minute aggregates of buckets that start before ``before``."""
    with store.engine.begin() as c:
        return int(c.execute(delete(s.telemetry_15min)
                             .where(s.telemetry_15min.c.bucket_start < before)).rowcount or 0)


def aggregates(store: Store, start: datetime, end: datetime, device: str | None = None,
               limit: int | None = None, offset: int = 0) -> pd.DataFrame:
    """15-minute aggregates of buckets starting in [start, end), oldest first (``limit`` rows
    from ``offset``; None: all)."""
    t = s.telemetry_15min
    q = select(t.c.bucket_start, t.c.device, t.c.point, t.c.mean, t.c.min, t.c.max, t.c.n_good,
               t.c.n_missing).where(t.c.bucket_start >= start, t.c.bucket_start < end)
    if device is not None:
        q = q.where(t.c.device == device)
    q = q.order_by(t.c.bucket_start, t.c.device, t.c.point).offset(offset)
    if limit is not None:
        q = q.limit(limit)
    with store.engine.connect() as c:
        result = c.execute(q)
        return pd.DataFrame(result.fetchall(), columns=list(result.keys()))
