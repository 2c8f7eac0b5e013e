"""What `ems run` needs of a site before it starts its loops, checked in one place.

`ems run` and `ems config check` both call :func:`preflight` on the loaded site, so a config
that `ems config check` accepts does not stop `ems run` at start: the store URL parses and names
an installed database driver, the state directory can be made, every device table names a
profile of its kind that reads and writes what the controller needs on an address of its own,
and every data file reads over the site's data period. Every problem found is listed, one line
each, naming the field and its value (a password in a store URL is masked).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from ems.config.loader import ConfigError, LoadedSite


def preflight(site: LoadedSite, store_url: str | None = None, simulate: bool = False,
              data: bool = True) -> list[str]:
    """Check what `ems run` builds before its loops start; returns lines saying what was read.
    Raises ConfigError with one line per problem, each prefixed with the config file.

    ``store_url``: the `--store` option, which wins over the config. ``simulate``: also what the
    device simulators need. ``data``: also read every data file over data_start..data_end."""
    from ems.cli.common import CliError
    from ems.inputs.csv_series import SeriesFileError
    from ems.site.device_check import device_problems

    problems = store_problems(site, store_url)
    problems += device_problems(site.config, simulate)
    lines: list[str] = []
    if data:
        try:
            lines.append(check_data(site))
        except (SeriesFileError, CliError, OSError) as exc:
            text = " ".join(exc.lines) if isinstance(exc, CliError) else str(exc)
            problems.append(" ".join(text.split()))
    if problems:
        raise ConfigError([f"{site.path}: {p}" for p in problems])
    return lines


def mask_password(url: str) -> str:
    """``url`` with the password of its user part (``scheme://user:password@host``) masked."""
    return re.sub(r"(://[^/@:]*:)[^/@]*@", r"\1***@", url)


def store_problems(site: LoadedSite, store_url: str | None = None) -> list[str]:
    """Problems with the store `ems run` opens: ``store_url``, else ``$<store.url_env>``, else
    ``store.url``, else SQLite under the site's state directory."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    from ems.signals.site_signals import state_dir

    cfg = site.config.store
    env = os.environ.get(cfg.url_env)
    if store_url:
        where, chosen = "--store", store_url
    elif env:
        where, chosen = f"${cfg.url_env} (overrides store.url)", env
    elif cfg.url:
        where, chosen = "store.url", cfg.url
    else:
        directory = state_dir(site)
        problem = _unmakeable_dir(directory)
        field = "site.state_dir" if site.config.site.state_dir is not None else "site.name"
        value = site.config.site.state_dir or site.config.site.name
        return [f"{field} = {value!r}: the store's directory {directory} {problem}"] if problem else []
    shown = mask_password(chosen)
    example = "e.g. sqlite:///state/ems.sqlite or postgresql+psycopg://ems@db/ems"
    try:
        url = make_url(chosen)
    except ArgumentError:
        return [f"{where} = {shown!r}: not an SQLAlchemy URL ({example})"]
    try:
        url.get_dialect()
    except NoSuchModuleError:
        return [f"{where} = {shown!r}: no database driver {url.drivername!r} is installed ({example})"]
    except ImportError as exc:
        return [f"{where} = {shown!r}: the driver of {url.drivername!r} cannot be loaded: {exc}"]
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        problem = _unmakeable_dir(Path(url.database).parent)
        if problem:
            return [f"{where} = {shown!r}: the database's directory {problem}"]
    return []


def _unmakeable_dir(directory: Path) -> str | None:
    """Why ``directory`` cannot be used or made (None when it can)."""
    existing = directory
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"cannot be made: {existing} is not a directory"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"cannot be written: no write permission on {existing}"
    return None


def check_data(site: LoadedSite) -> str:
    """Read every series over the site's data period (raises SeriesFileError on bad data).

    Live tariff and carbon sources are left out: the service fetches them when it starts."""
    from datetime import timedelta

    import pandas as pd

    from ems.cli.common import data_period, fmt_num, local_midnight
    from ems.config.models import DynamicTariff
    from ems.inputs.site_inputs import build_inputs, carbon_series, tariff_prices
    from ems.signals.site_signals import live_signals

    cfg = site.config
    first, last = data_period(cfg)
    if first is None or last is None:
        return "data: not checked (site.data_start and site.data_end are not both set)"
    start = local_midnight(first, cfg.site.timezone)
    end = local_midnight(last + timedelta(days=1), cfg.site.timezone)
    live = bool(live_signals(site))
    inputs = build_inputs(site, start, end, signals=not live)
    if live:  # the file-based signals of a site that also has live ones
        steps = pd.DatetimeIndex(inputs.frame.index)
        g = cfg.grid
        for field, tariff in (("grid.tariff", g.tariff), ("grid.export_tariff", g.export_tariff)):
            if not isinstance(tariff, DynamicTariff):
                tariff_prices(tariff, site, steps, field)
        for i, cs in enumerate(g.carbon):
            if cs.file is not None:
                where = "grid.carbon" if len(g.carbon) == 1 else f"grid.carbon[{i}]"
                carbon_series(cs, site, steps, where, [])
    text = f"data: {first} to {last} read and checked: {fmt_num(len(inputs.frame))} steps"
    if cfg.ev_sessions is not None:
        text += f", {fmt_num(len(inputs.sessions))} EV sessions"
        if inputs.dropped_sessions:
            text += f" ({inputs.dropped_sessions} dropped: no free charger)"
    if live:
        text += "; live signals are fetched when the service starts"
    return text
