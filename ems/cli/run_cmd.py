"""`ems run SITE [--simulate] [--speed N]`: the site service.

With ``--simulate`` the site's device simulators are started on loopback first and the service
controls them over Modbus, on a site clock running ``--speed`` times real time. Without it the
clock is real time and the devices are the real ones in the config. SIGTERM or Ctrl-C (or the end
of ``--duration``) leaves every device in its safe state before the service exits.

`run_service(..., stepped=True)` (the service tests) runs a simulated site on a stepped clock
instead: site time moves only once the service has nothing left to do at the present instant
(:mod:`ems.runtime.scheduling`), so the run does not depend on the machine's speed.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import io
import logging
import math
import os
import signal
import sys
from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ems.cli.common import fail, input_errors, load
from ems.redact import redact

if TYPE_CHECKING:
    from ems.config.loader import LoadedSite
    from ems.runtime.scheduling import SteppedScheduler
    from ems.runtime.service import SiteService
    from ems.store import Store


def open_store(site: LoadedSite, url: str | None = None) -> Store:
    """The site's store: ``url``, else the config's (``store.url_env`` wins over ``store.url``),
    else SQLite at <state_dir>/ems.sqlite."""
    from sqlalchemy.exc import ArgumentError, SQLAlchemyError

    from ems.signals.site_signals import state_dir
    from ems.store import Store

    cfg = site.config.store
    chosen = url or os.environ.get(cfg.url_env) or cfg.url
    try:
        if chosen:
            return Store(chosen)
        return Store.at_path(state_dir(site) / "ems.sqlite")
    except (SQLAlchemyError, ArgumentError, OSError) as exc:
        where = redact(chosen) if chosen else state_dir(site) / "ems.sqlite"
        fail(redact(f"store {where}: cannot open: {str(exc).splitlines()[0]}"))


async def start_api(service: SiteService, host: str, port: int) -> tuple[Any, asyncio.Task[None]]:
    """Serve the API on the running loop (uvicorn; the service owns the signal handlers)."""
    import uvicorn

    from ems.runtime.api import create_app

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    server = Server(uvicorn.Config(create_app(service), host=host, port=port, log_level="warning",
                                   log_config=None, lifespan="off", timeout_graceful_shutdown=3))
    task = asyncio.create_task(server.serve())
    while not server.started and not task.done():
        await asyncio.sleep(0.01)
    if task.done():
        task.result()  # raises why it could not start (e.g. the port is in use)
    return server, task


async def run_service(site: LoadedSite, store: Store, simulate: bool, speed: float,
                      start_utc: datetime | None, duration_s: float | None,
                      on_started: object = None, api_port: int | None = None,
                      stop: asyncio.Event | None = None, stepped: bool = False) -> SiteService:
    """Run until SIGTERM/SIGINT, ``stop`` or ``duration_s`` wall seconds (site seconds when
    stepped); returns the stopped service. ``on_started(service, simulator)`` is called once the service runs.

    ``stepped`` (with ``simulate``): a :class:`~ems.runtime.clock.SteppedClock` and a
    :class:`~ems.runtime.scheduling.SteppedScheduler` (``service.scheduler``) that also steps the
    simulator; ``speed`` is nominal (the wall run whose job timetable is reproduced). Site time
    moves only through ``service.scheduler.advance``/``until``: called by ``on_started``'s
    scenario when there is one, else here until ``stop`` or ``duration_s`` site seconds.
    """
    from ems.cli.sim_cmd import simulator_for_site
    from ems.runtime.clock import Clock, SiteClock, SteppedClock
    from ems.runtime.scheduling import SteppedScheduler
    from ems.runtime.service import SiteService

    if stepped and not simulate:
        raise ValueError("stepped: needs simulate (real devices run on real time)")
    clock: Clock
    stepper: SteppedScheduler | None = None
    if stepped:
        clock = SteppedClock(start_utc, speed)
        stepper = SteppedScheduler(clock)
    else:
        clock = SiteClock(start_utc, speed)
    if simulate:
        from zoneinfo import ZoneInfo

        from ems.runtime.logs import show_site_time

        zone = ZoneInfo(site.config.site.timezone)
        show_site_time(lambda: clock.now().astimezone(zone))
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    sim = None
    sim_task = None
    if simulate:
        sim = simulator_for_site(site, clock.sim_seconds, clock.start_utc)
        await sim.start()
        if stepper is not None:
            stepper.on_instant = sim.step  # the plant moves with the stepped clock
        else:
            sim_task = asyncio.create_task(sim.run(0.1, stop))
    service = SiteService(site, store, clock, scheduler=stepper)
    api = None
    driver = None
    try:
        await service.start()
        # what the start made (modules, site, models) lives as long as the process: out of the
        # collector's reach, a full collection no longer holds every thread (the control jobs
        # included) for 0.1-0.2 s while a worker thread makes many objects (e.g. GET /history)
        gc.collect()
        gc.freeze()
        if api_port is not None:
            api = await start_api(service, site.config.service.api_host, api_port)
        if callable(on_started):
            on_started(service, sim)
        if stepper is not None:
            if not callable(on_started):
                driver = asyncio.create_task(_drive(stepper, stop, duration_s))
        elif duration_s is not None:
            loop.call_later(duration_s, stop.set)
        await stop.wait()
    finally:
        stop.set()
        if driver is not None:
            await driver
        if api is not None:
            api[0].should_exit = True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(api[1], 10.0)
        await service.stop()
        if sim is not None:
            if sim_task is not None:
                await sim_task
            if isinstance(clock, SteppedClock):
                clock.advance(1.0)
            sim.step()  # the plant sees the safe-state writes
            await sim.stop()
    return service


async def _drive(scheduler: SteppedScheduler, stop: asyncio.Event, duration_s: float | None) -> None:
    """Move stepped site time until ``stop`` is set or ``duration_s`` site seconds have passed."""
    await scheduler.until(stop.is_set, math.inf if duration_s is None else duration_s)
    stop.set()


def _log_to_own_stderr() -> None:
    """Point the log handlers that write to stderr at a duplicate of its file descriptor: while
    HiGHS runs, Pyomo redirects this process's descriptors 1 and 2 (from the solve's worker
    thread), which would swallow whatever the service logs meanwhile."""
    try:
        fd = os.dup(sys.stderr.fileno())
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return  # no real stderr (e.g. a test runner's capture): nothing to protect
    stream = open(fd, "w", buffering=1, encoding=sys.stderr.encoding or "utf-8",  # noqa: SIM115
                  errors="backslashreplace")
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler) and handler.stream is sys.stderr:
            handler.setStream(stream)


def api_address(host: str, port: int) -> str:
    """Where the API listens, as the startup line says it."""
    if not port:
        return "no API (--api-port 0)"
    shown = f"[{host}]" if ":" in host else host
    return f"API on http://{shown}:{port}/ (OpenAPI at /docs)"


def run(
    site: Annotated[str, typer.Argument(help="Site name (site_configs/NAME.toml) or path to a TOML file.")],
    simulate: Annotated[bool, typer.Option(
        "--simulate", help="Start the site's device simulators on loopback and control them.")] = False,
    speed: Annotated[float, typer.Option(help="Site clock speed (with --simulate), x real time.")] = 1.0,
    start: Annotated[str | None, typer.Option(
        help="Simulated start, ISO date-time (with --simulate; default: now moved into the "
             "data year).")] = None,
    duration: Annotated[float | None, typer.Option(
        min=0.0, help="Stop after this many wall seconds (default: until SIGTERM or Ctrl-C).")] = None,
    store_url: Annotated[str | None, typer.Option(
        "--store", help="SQLAlchemy URL of the store (default: the config's, else SQLite in "
                        "state/).")] = None,
    api_port: Annotated[int | None, typer.Option(
        "--api-port", help="Serve the API on this port (default: service.api_port; 0 = none).")] = None,
    verbose: Annotated[bool, typer.Option(
        "--verbose/--quiet", help="Log every plan and mode change.")] = True,
    log_format: Annotated[str, typer.Option(
        "--log-format", help="text, or json: one JSON object per line.")] = "text",
    sets: Annotated[list[str] | None, typer.Option(
        "--set", help="Override a config value, e.g. service.dispatch_every_s=1.")] = None,
) -> None:
    """Run the controller for SITE: poll devices, re-plan every slot, dispatch safely, keep records."""
    from ems.cli.preflight import preflight
    from ems.cli.sim_cmd import parse_start
    from ems.runtime.logs import configure_logging

    with input_errors():
        loaded = load(site, sets)
        if speed <= 0:
            fail(f"--speed must be > 0, got {speed:g}")
        if not simulate and (speed != 1.0 or start is not None):
            fail("--speed and --start need --simulate: real devices run on real time")
        port = loaded.config.service.api_port if api_port is None else api_port
        if port:
            from ems.runtime.api_guard import api_token

            api_token(loaded.config.service)  # a short token is refused before any device is touched
        if log_format not in ("text", "json"):
            fail(f"--log-format must be text or json, got {log_format!r}")
        # what `ems config check` checks: a config it accepts does not stop the service here
        preflight(loaded, store_url, simulate=simulate)
        start_utc = parse_start(start, loaded) if simulate else None
        configure_logging("json" if log_format == "json" else "text", verbose)
        _log_to_own_stderr()
        store = open_store(loaded, store_url)
        devices = f"simulated site at {speed:g}x" if simulate else "real devices"
        sys.stdout.write(f"{loaded.config.site.name}: store {redact(store.url)}; {devices}; "
                         f"{api_address(loaded.config.service.api_host, port)}\n")
        sys.stdout.flush()
        try:
            service = asyncio.run(run_service(loaded, store, simulate, speed, start_utc, duration,
                                              api_port=port or None))
        except KeyboardInterrupt:
            return
        finally:
            store.close()
    # a solve still running in its worker thread holds the process's stdout and stderr (Pyomo
    # captures both file descriptors while HiGHS runs): what is written now would be lost
    service.planning.executor.shutdown(wait=True)
    st = service.status
    sys.stdout.write(f"stopped: {st.plans_done} plans ({st.plans_failed} failed, "
                     f"{st.plans_skipped} skipped), {st.dispatch_cycles} dispatch cycles, "
                     f"{st.writes_failed} failed writes, mode {st.mode}; "
                     "devices left in their safe state\n")
    sys.stdout.flush()
