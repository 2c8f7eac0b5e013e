"""The site's records (SQLite by default, PostgreSQL by URL)."""

from ems.store.store import SetpointWrite, Store, TelemetryRow

__all__ = ["SetpointWrite", "Store", "TelemetryRow"]
