"""`ems export SITE --from DAY --to DAY --format csv|parquet`: the service's records for a window."""

from __future__ import annotations

import sys
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from ems.cli.common import fail, input_errors, load, local_midnight, parse_day


class ExportFormat(StrEnum):
    csv = "csv"
    parquet = "parquet"


def export(
    site: Annotated[str, typer.Argument(help="Site name (site_configs/NAME.toml) or path to a TOML file.")],
    from_day: Annotated[str, typer.Option("--from", help="First local day, YYYY-MM-DD.")],
    to_day: Annotated[str | None, typer.Option("--to", help="Last local day (inclusive).")] = None,
    fmt: Annotated[ExportFormat, typer.Option("--format", help="File format.")] = ExportFormat.csv,
    out: Annotated[Path, typer.Option(help="Directory for the files.")] = Path("export"),
    store_url: Annotated[str | None, typer.Option("--store", help="SQLAlchemy URL of the store.")] = None,
    sets: Annotated[list[str] | None, typer.Option("--set", help="Override a config value.")] = None,
) -> None:
    """Write telemetry, setpoint writes (audit), plans and alarms of the window, one file each."""
    from ems.cli.run_cmd import open_store

    with input_errors():
        loaded = load(site, sets)
        first = parse_day(from_day, "--from")
        last = parse_day(to_day, "--to") if to_day else first
        if last < first:
            fail(f"--to {last} is before --from {first}")
        tz = loaded.config.site.timezone
        start, end = local_midnight(first, tz), local_midnight(last + timedelta(days=1), tz)
        store = open_store(loaded, store_url)
        try:
            frames = {"telemetry": store.telemetry(start, end), "setpoints": store.setpoints(start, end),
                      "plans": store.plans(start, end), "alarms": store.alarms()}
        finally:
            store.close()
        out.mkdir(parents=True, exist_ok=True)
        for name, frame in frames.items():
            if name == "alarms" and not frame.empty:
                frame = frame[(frame["raised_at"] >= start) & (frame["raised_at"] < end)]
            for column in frame.columns:
                if str(frame[column].dtype).startswith("datetime64"):
                    frame[column] = frame[column].map(lambda t: t.isoformat() if t == t else None)
                elif frame[column].map(lambda v: isinstance(v, dict | list)).any():
                    frame[column] = frame[column].map(lambda v: None if v is None else str(v))
            path = out / f"{name}.{fmt.value}"
            if fmt is ExportFormat.csv:
                frame.to_csv(path, index=False)
            else:
                frame.to_parquet(path, index=False)
            sys.stdout.write(f"{path}: {len(frame)} rows\n")
