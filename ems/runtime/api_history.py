"""``GET /history``: telemetry in pages of bounded size over a bounded window.

A page holds at most ``limit`` rows (default 1,000, at most 10,000), oldest first. When more rows
follow, the answer carries ``next_cursor`` (opaque) and ``next`` (the URL of the next page: the
same query with ``cursor`` set); paging through returns every row once. Windows must lie between
2000 and 2100 and span at most 366 days; ``from`` and ``to`` need a UTC offset.
"""

from __future__ import annotations

import base64
import binascii
import math
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ems.runtime.api_guard import field_error
from ems.store import Store

HISTORY_LIMIT_DEFAULT = 1_000
HISTORY_LIMIT_MAX = 10_000
"""Most rows in one page of ``GET /history``."""
MAX_HISTORY_WINDOW = timedelta(days=366)
EARLIEST_UTC = datetime(2000, 1, 1, tzinfo=UTC)
LATEST_UTC = datetime(2100, 1, 1, tzinfo=UTC)


def bounded_instant(value: datetime) -> datetime:
    """``value`` in UTC; ValueError when it has no UTC offset or lies outside 2000..2100."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("needs a UTC offset, e.g. 2025-07-15T00:00:00Z")
    try:
        utc = value.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"must lie between {EARLIEST_UTC.year} and {LATEST_UTC.year}") from None
    if not EARLIEST_UTC <= utc <= LATEST_UTC:
        raise ValueError(f"must lie between {EARLIEST_UTC.year} and {LATEST_UTC.year}")
    return utc


def encode_cursor(ts: datetime, row_id: int) -> str:
    return base64.urlsafe_b64encode(f"{ts.astimezone(UTC).isoformat()}|{row_id}".encode()).decode()


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    """(ts, row id) of a page's last row; ValueError for anything :func:`encode_cursor` did not make."""
    try:
        ts_text, id_text = base64.urlsafe_b64decode(cursor.encode("ascii")).decode().split("|")
        ts, row_id = bounded_instant(datetime.fromisoformat(ts_text)), int(id_text)
    except (ValueError, UnicodeError, binascii.Error):
        raise ValueError("not a cursor this API gave") from None
    if not 0 <= row_id < 2**63:
        raise ValueError("not a cursor this API gave")
    return ts, row_id


def history_page(store: Store, url: str, start: datetime, end: datetime, device: str | None,
                 limit: int, cursor: str | None) -> dict[str, Any]:
    """One page of telemetry in [start, end): ``rows``, ``next_cursor`` and ``next`` (None on the
    last page). Raises RequestValidationError (422) naming the field for a bad window or cursor."""
    if end <= start:
        raise field_error(["query", "to"], end.isoformat(), f"must be after from ({start.isoformat()})")
    if end - start > MAX_HISTORY_WINDOW:
        raise field_error(["query", "to"], end.isoformat(),
                          f"more than {MAX_HISTORY_WINDOW.days} days after from ({start.isoformat()})")
    after = None
    if cursor is not None:
        try:
            after = decode_cursor(cursor)
        except ValueError as exc:
            raise field_error(["query", "cursor"], cursor, str(exc)) from None
    page = store.telemetry_page(start, end, device, after, limit + 1)
    more = len(page) > limit
    page = page[:limit]
    rows = [{"ts": r.ts.isoformat(), "device": r.device, "point": r.point,
             "value": r.value if r.value is not None and math.isfinite(r.value) else None,
             "missing_reason": r.missing_reason} for _, r in page]
    next_cursor = encode_cursor(page[-1][1].ts, page[-1][0]) if more else None
    return {"rows": rows, "next_cursor": next_cursor,
            "next": _with_query(url, cursor=next_cursor) if next_cursor else None}


AGGREGATES_OFFSET_MAX = 10_000_000


def aggregates_page(store: Store, url: str, start: datetime, end: datetime, device: str | None,
                    limit: int, offset: int) -> dict[str, Any]:
    """One page of 15-minute aggregates (:mod:`ems.store.rollup`) of buckets starting in
    [start, end): ``rows`` (bucket start, device, point, mean, min, max, counts of good and
    missing readings) and ``next`` (the URL of the next page, None on the last)."""
    from ems.store.rollup import aggregates

    if end <= start:
        raise field_error(["query", "to"], end.isoformat(), f"must be after from ({start.isoformat()})")
    if end - start > MAX_HISTORY_WINDOW:
        raise field_error(["query", "to"], end.isoformat(),
                          f"more than {MAX_HISTORY_WINDOW.days} days after from ({start.isoformat()})")
    frame = aggregates(store, start, end, device, limit=limit + 1, offset=offset)
    more = len(frame) > limit

    def number(v: Any) -> float | None:
        return float(v) if v is not None and v == v and math.isfinite(v) else None

    rows = [{"bucket_start": r.bucket_start.isoformat(), "device": r.device, "point": r.point,
             "mean": number(r.mean), "min": number(r.min), "max": number(r.max),
             "n_good": int(r.n_good), "n_missing": int(r.n_missing)}
            for r in frame.iloc[:limit].itertuples(index=False)]
    return {"rows": rows, "next": _with_query(url, offset=str(offset + limit)) if more else None}


def _with_query(url: str, **params: str) -> str:
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in params]
    return urlunsplit(parts._replace(query=urlencode(query + list(params.items()))))
