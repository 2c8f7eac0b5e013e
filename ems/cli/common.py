"""Shared pieces of the command line: error reporting, site loading, time and number formats.

Heavy modules (pandas, pydantic models, the optimiser) are imported inside functions so that
`ems --help` stays quick.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any, NoReturn

import typer

if TYPE_CHECKING:
    from rich.console import Console

    from ems.config.loader import LoadedSite
    from ems.config.models import SiteConfig

EXIT_INPUT = 2
"""Exit code for bad input: config, options, data files."""


class CliError(Exception):
    """Bad input found by the command line itself; `lines` are printed one per line."""

    def __init__(self, *lines: str) -> None:
        super().__init__("\n".join(lines))
        self.lines = list(lines)


def fail(*lines: str) -> NoReturn:
    raise CliError(*lines)


def _print_err(lines: list[str]) -> None:
    for line in lines:
        # plain writes: rich would wrap long lines, and a message must stay on one line
        sys.stderr.write(f"error: {line}\n" if not line.startswith("error:") else f"{line}\n")
    sys.stderr.flush()


@contextmanager
def input_errors() -> Iterator[None]:
    """Turn expected input errors into one line each on stderr and exit code 2."""
    from ems.config.loader import ConfigError
    from ems.inputs.csv_series import SeriesFileError

    try:
        yield
    except CliError as exc:
        _print_err(exc.lines)
        raise typer.Exit(EXIT_INPUT) from None
    except ConfigError as exc:
        _print_err([line for line in exc.lines] or [str(exc)])
        raise typer.Exit(EXIT_INPUT) from None
    except SeriesFileError as exc:
        _print_err([" ".join(str(exc).split())])
        raise typer.Exit(EXIT_INPUT) from None
    except OSError as exc:
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        _print_err([f"{where}{exc.strerror or exc}"])
        raise typer.Exit(EXIT_INPUT) from None


def load(site: str, sets: list[str] | None) -> LoadedSite:
    from ems.config import load_site

    for item in sets or []:
        check_set_key(item)
    return load_site(site, list(sets or []))


def _models(annotation: Any) -> list[Any]:
    """The pydantic models an annotation can hold (through Optional, unions, lists, Annotated)."""
    from typing import Annotated, Union, get_args, get_origin

    from pydantic import BaseModel

    origin = get_origin(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    if origin is Annotated:
        return _models(get_args(annotation)[0])
    if origin in (Union, list) or str(origin) == "<class 'types.UnionType'>":
        return [m for arg in get_args(annotation) for m in _models(arg)]
    return []


def check_set_key(item: str) -> None:
    """Fail with one line when a --set key names no field of the site config.

    Parts that are not fields are taken as asset names (battery.bess.capacity_kwh) where a
    list of tables allows it; values inside free-form tables (tariff prices) are not checked.
    """
    import re

    from ems.config.models import SiteConfig

    if "=" not in item:
        fail(f"--set {item!r}: expected KEY=VALUE, e.g. battery.capacity_kwh=4000")
    key = item.split("=", 1)[0].strip()
    models: list[Any] = [SiteConfig]
    in_list = False
    path = ""
    parts = key.split(".")
    for i, part in enumerate(parts):
        name = re.sub(r"\[\d+\]$", "", part)
        fields = {f: info for m in models for f, info in m.model_fields.items()}
        if name in fields:
            info = fields[name]
            path = f"{path}.{name}" if path else name
            models = _models(info.annotation)
            in_list = "list[" in str(info.annotation)
            if not models:
                return  # a value or a free-form table: the loader checks the rest
            continue
        if in_list and "[" not in part and i < len(parts) - 1:
            in_list = False  # an asset name, e.g. battery.bess
            continue
        known = ", ".join(sorted(fields))
        where = f"{path} has no field" if path else "the config has no section or field"
        fail(f"--set {item!r}: {where} {name!r} (known: {known})")


def out_console() -> Console:
    """Console for results on stdout; wide when not a terminal (tables go to files)."""
    from rich.console import Console

    console = Console(highlight=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console = Console(highlight=False, width=200)
    return console


def err_console() -> Console:
    from rich.console import Console

    return Console(stderr=True, highlight=False)


# ---------------------------------------------------------------- the site's data period


def _config_date(cfg: SiteConfig, field: str) -> date | None:
    text = getattr(cfg.site, field)
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        fail(f"site.{field} = {text!r}: not a date (expected YYYY-MM-DD)")


def data_period(cfg: SiteConfig) -> tuple[date | None, date | None]:
    """The site's data_start and data_end (inclusive local days), when the config gives them."""
    return _config_date(cfg, "data_start"), _config_date(cfg, "data_end")


def local_midnight(day: date, tz: str) -> datetime:
    from zoneinfo import ZoneInfo

    return datetime(day.year, day.month, day.day, tzinfo=ZoneInfo(tz))


def describe_data(cfg: SiteConfig) -> str:
    first, last = data_period(cfg)
    return f"{cfg.site.name} has data {first or '?'} to {last or '?'} ({cfg.site.timezone})"


def check_window(cfg: SiteConfig, start: datetime, end: datetime, what: str,
                 hint: str = "", horizon: bool = True) -> None:
    """Fail with one line unless [start, end) lies inside data_start..data_end (local days)."""
    first, last = data_period(cfg)
    tz = cfg.site.timezone
    if first is not None and start < local_midnight(first, tz):
        fail(f"{what} starts before the site's data: {describe_data(cfg)}")
    if last is not None and end > local_midnight(last + timedelta(days=1), tz):
        need = end.astimezone(local_midnight(last, tz).tzinfo)
        including = (f" (including the {cfg.planning.horizon_hours:g} h planning horizon)"
                     if horizon else "")
        fail(f"{what} needs data until {need:%Y-%m-%d %H:%M}{including}, but {describe_data(cfg)}"
             + (f"; {hint}" if hint else ""))


def parse_day(text: str, option: str) -> date:
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        fail(f"{option} {text!r}: not a date (expected YYYY-MM-DD, e.g. 2025-07-14)")


def parse_local_time(text: str, tz: str, option: str = "--at") -> datetime:
    """An ISO time: local wall time in `tz`, or with an offset/Z. Returns an aware UTC datetime."""
    import pandas as pd

    example = "e.g. 2025-07-15T10:00, or 2025-07-15T02:00Z with an offset"
    try:
        ts = pd.Timestamp(text.strip())
    except (ValueError, TypeError):
        fail(f"{option} {text!r}: not an ISO time ({example})")
    if pd.isna(ts):
        fail(f"{option} {text!r}: not an ISO time ({example})")
    if ts.tzinfo is None:
        try:
            ts = ts.tz_localize(tz, ambiguous="raise", nonexistent="raise")
        except Exception as exc:  # pandas' AmbiguousTimeError / NonExistentTimeError
            if "ambiguous" not in f"{type(exc).__name__} {exc}".lower():
                fail(f"{option} {text!r} does not exist in {tz} (clocks jump forward then); "
                     "choose a time outside the gap")
            first, second = (ts.tz_localize(tz, ambiguous=dst).isoformat() for dst in (True, False))
            fail(f"{option} {text!r} happens twice in {tz} (clocks go back then); "
                 f"give the offset: {first} or {second}")
    utc: datetime = ts.tz_convert("UTC").to_pydatetime()
    return utc


def parse_minutes(text: str, option: str) -> int:
    """'1h', '30min', '15m', '90' (minutes) -> minutes."""
    import re

    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(h|hr|hours?|m|min|mins|minutes?)?\s*", text.lower())
    if not m:
        fail(f"{option} {text!r}: expected a duration such as 1h, 30min or 15min")
    value = float(m.group(1)) * (60 if (m.group(2) or "min").startswith("h") else 1)
    if value <= 0 or value != int(value):
        fail(f"{option} {text!r}: expected a whole, positive number of minutes")
    return int(value)


# ---------------------------------------------------------------- numbers


def fmt_num(x: float | None, decimals: int | None = None) -> str:
    """Thousands separators; decimals chosen by size unless given."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    if decimals is None:
        ax = abs(x)
        decimals = 0 if ax >= 100 or ax == 0 else 1 if ax >= 1 else 2
    text = f"{x:,.{decimals}f}"
    return "0" if text.lstrip("-").strip("0.,") == "" else text


def fmt_money(x: float) -> str:
    return fmt_num(x, 0 if abs(x) >= 1000 else 2)


def jsonable(value: Any) -> Any:
    """Plain JSON values: numpy scalars to Python, NaN/inf to None, containers recursively."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if hasattr(value, "item") and not isinstance(value, int | float):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, int):
        return value
    return str(value)
