"""Months of running in a bounded store: raw telemetry folds into 15-minute aggregates that keep
every reading counted, and old plans keep their figures but not their per-step series."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ems.store import Store, TelemetryRow
from ems.store.rollup import aggregates, fold_telemetry, purge_aggregates, thin_plans

T0 = datetime(2025, 7, 1, tzinfo=UTC)


def _rows(days: int) -> list[TelemetryRow]:
    """A reading a minute: grid power = minute of the day (kW), missing at every 10th minute."""
    rows = []
    for k in range(days * 24 * 60):
        ts = T0 + timedelta(minutes=k)
        minute = k % (24 * 60)
        missing = k % 10 == 0
        rows.append(TelemetryRow(ts, "grid", "power_net_kw", None if missing else float(minute),
                                 "timeout" if missing else None))
    return rows


def test_raw_telemetry_folds_into_15_minute_aggregates_without_losing_a_reading(tmp_path: Path) -> None:
    store = Store.at_path(tmp_path / "ems.sqlite")
    store.add_telemetry(_rows(3))
    total = store.count("telemetry")
    cutoff = T0 + timedelta(days=2, minutes=7)  # folded up to the bucket that holds it
    folded = fold_telemetry(store, cutoff)
    assert folded == 2 * 24 * 60 and store.count("telemetry") == total - folded
    agg = aggregates(store, T0, T0 + timedelta(days=3))
    assert len(agg) == 2 * 24 * 4
    assert int((agg["n_good"] + agg["n_missing"]).sum()) == folded
    # the bucket 00:15-00:30 of day 1: minutes 15..29, minute 20 missing
    first = agg[agg["bucket_start"] == T0 + timedelta(minutes=15)].iloc[0]
    good = [m for m in range(15, 30) if m != 20]
    assert first["mean"] == pytest.approx(sum(good) / len(good))
    assert (first["min"], first["max"], first["n_good"], first["n_missing"]) == (15.0, 29.0, 14, 1)
    # the raw rows left start where the aggregates end; folding again changes nothing
    assert store.telemetry(T0, T0 + timedelta(days=2), "grid").empty
    assert len(store.telemetry(T0 + timedelta(days=2), T0 + timedelta(days=3), "grid")) == 24 * 60
    assert fold_telemetry(store, cutoff) == 0 and len(aggregates(store, T0, cutoff)) == len(agg)
    assert purge_aggregates(store, T0 + timedelta(days=1)) == 24 * 4
    store.close()


def test_a_fold_stopped_after_one_chunk_goes_on_where_it_stopped(tmp_path: Path) -> None:
    store = Store.at_path(tmp_path / "ems.sqlite")
    store.add_telemetry(_rows(2))
    cutoff = T0 + timedelta(days=2)
    first = fold_telemetry(store, cutoff, max_chunks=1)
    rest = fold_telemetry(store, cutoff)
    assert 0 < first < first + rest == 2 * 24 * 60
    assert len(aggregates(store, T0, cutoff)) == 2 * 24 * 4  # no bucket twice
    store.close()


def test_old_plans_keep_their_figures_and_relaxed_limits_but_not_their_series(tmp_path: Path) -> None:
    store = Store.at_path(tmp_path / "ems.sqlite")
    body = {"instants_utc": ["2025-07-01T00:00:00+00:00"], "series": {"grid.import_kw": [5.0]},
            "costs": {"import": 10.0}, "penalty_cost": 3.0,
            "slacks": [{"limit": "import_limit", "asset": "grid", "amount": 2.0}]}
    old = store.add_plan(T0, T0, 15, "optimal", "old plan", body, 10.0, 1.0, 0.1)
    new = store.add_plan(T0 + timedelta(days=8), T0 + timedelta(days=8), 15, "optimal", "new plan", body,
                         10.0, 1.0, 0.1)
    assert thin_plans(store, T0 + timedelta(days=1)) == 1
    assert thin_plans(store, T0 + timedelta(days=1)) == 0
    latest = store.latest_plan()
    assert latest is not None and latest["id"] == new and latest["body"] == body
    plans = store.plans(T0 - timedelta(days=1), T0 + timedelta(days=9))
    assert list(plans["id"]) == [old, new] and list(plans["total_cost"]) == [10.0, 10.0]
    with store.engine.connect() as c:
        from sqlalchemy import select

        from ems.store import schema
        kept = c.execute(select(schema.plans.c.body).where(schema.plans.c.id == old)).scalar()
    assert kept == {"costs": {"import": 10.0}, "penalty_cost": 3.0, "slacks": body["slacks"], "thinned": True}
    store.close()
