"""When the service's jobs run: on wall time, or stepped on a clock that waits for the service.

The service adds interval jobs whose first run and period are in site time (:class:`Scheduler`).

- :class:`WallScheduler` (``ems run``): APScheduler 3.x on the event loop, periods converted to
  wall seconds at the clock's speed; jobs overlap with solves and device round trips.
- :class:`SteppedScheduler` (a simulated site on a :class:`~ems.runtime.clock.SteppedClock`,
  the service tests): site time moves from one due instant to the next only when asked
  (:meth:`SteppedScheduler.advance`, :meth:`SteppedScheduler.until`). At each instant the
  simulator is stepped to it, every device is polled (before the first job that reads devices),
  then every job due runs to its end, one after the other in the order they were added; before
  time moves on, every device request and every task the service spawned has ended (a solve in
  its worker thread included). However slow the machine, the service sees the same site time.
  The plant is stepped before the instant's jobs, so they read it as it is at that instant and
  what they write acts from that instant on. The periods are the service's own, wall-time floors
  included (converted at the clock's nominal speed): a stepped run at speed N keeps the job
  timetable of a wall run at N on a machine with no delays.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from ems.config.models import SiteConfig
from ems.runtime.clock import Clock, SteppedClock
from ems.site.modbus import DeviceLinks

log = logging.getLogger("ems.service")

Job = Callable[[], Awaitable[None]]

ON_DEMAND_S = 1e9
"""Polling interval (s) that keeps the device layer's own polling loops asleep."""
REQUEST_WAIT_S = 120.0
"""Longest wall time the stepped scheduler waits for one round of device polls (each request is
bounded by its transport timeout well before this)."""
SETTLE_POLL_S = 0.002
"""Wall seconds between checks for device requests still in flight."""


class Scheduler(Protocol):
    """How the service's jobs are timed (site seconds) and its devices polled."""

    @property
    def running(self) -> bool: ...

    def device_links(self, cfg: SiteConfig, poll_interval_s: float, ttl_s: float) -> DeviceLinks:
        """The site's device links; ``poll_interval_s`` and ``ttl_s`` are wall seconds at the
        clock's speed."""
        ...

    def watch(self, links: DeviceLinks | None, tasks: Collection[asyncio.Task[Any]]) -> None:
        """What the jobs leave running: device requests of ``links`` and ``tasks`` (a live
        collection)."""
        ...

    def add_job(self, job: Job, job_id: str, every_s: float, first_at: datetime | None = None, *,
                misfire_grace_s: int = 1, reads_devices: bool = False) -> None:
        """Run ``job`` every ``every_s`` site seconds, first at ``first_at`` (site UTC; default:
        one period from now). ``misfire_grace_s``: wall seconds a run may start late (wall
        scheduler); ``reads_devices``: the job reads the devices' latest readings."""
        ...

    def start(self) -> None: ...

    def shutdown(self) -> None:
        """Run no more jobs (a job running goes on to its end)."""
        ...

    async def settle(self) -> None:
        """Wait until what the jobs started has ended (stepped), or up to :data:`SETTLE_S` wall
        seconds for the job runs still going, the rest then cancelled (wall)."""
        ...


SETTLE_S = 2.0
"""Wall seconds a stopping service waits for its running jobs."""


class WallScheduler:
    """APScheduler 3.x on the running event loop: periods in wall seconds at ``clock.speed``;
    one instance of a job at a time, missed runs coalesced. Devices poll in their own tasks."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.aps = AsyncIOScheduler()
        self._running: set[asyncio.Task[Any]] = set()
        self._stopping = False

    @property
    def running(self) -> bool:
        return bool(self.aps.running)

    def device_links(self, cfg: SiteConfig, poll_interval_s: float, ttl_s: float) -> DeviceLinks:
        return DeviceLinks(cfg, poll_interval_s=poll_interval_s, ttl_s=ttl_s,
                           command_clock=self.clock.sim_seconds)

    def watch(self, links: DeviceLinks | None, tasks: Collection[asyncio.Task[Any]]) -> None:
        return None

    def add_job(self, job: Job, job_id: str, every_s: float, first_at: datetime | None = None, *,
                misfire_grace_s: int = 1, reads_devices: bool = False) -> None:
        wall = self.clock.wall_seconds
        first: dict[str, datetime] = {}
        if first_at is not None:
            ahead_s = wall((first_at - self.clock.now()).total_seconds())
            first["next_run_time"] = datetime.now().astimezone() + timedelta(seconds=ahead_s)
        self.aps.add_job(self._tracked(job), "interval", seconds=wall(every_s), id=job_id, name=job_id,
                         misfire_grace_time=misfire_grace_s, max_instances=1, coalesce=True, **first)

    def _tracked(self, job: Job) -> Job:
        """``job``, with its run known to :meth:`settle`; a run cancelled at shutdown ends
        quietly (the shutdown's safe-state writes follow it)."""
        async def run() -> None:
            task = asyncio.current_task()
            if task is not None:
                self._running.add(task)
            try:
                await job()
            except asyncio.CancelledError:
                if not self._stopping:
                    raise
            finally:
                self._running.discard(task)  # type: ignore[arg-type]
        return run

    def start(self) -> None:
        self.aps.start()

    def shutdown(self) -> None:
        self._stopping = True
        if self.aps.running:
            self.aps.shutdown(wait=False)

    async def settle(self) -> None:
        """Wait (a few wall seconds at most) for the job runs still going, then cancel the rest."""
        if self._running:
            await asyncio.wait(set(self._running), timeout=SETTLE_S)
        for task in list(self._running):
            task.cancel()


class OnDemandLinks(DeviceLinks):
    """Device links polled only when asked (:meth:`poll_all`), with TTLs in seconds of ``clock``:
    the device layer's own polling loops stay asleep."""

    def __init__(self, cfg: SiteConfig, clock: Callable[[], float], ttl_s: float,
                 timeout_s: float = 1.0) -> None:
        """``clock``: site seconds (polls, TTLs, keep-alives and rate limits); ``ttl_s`` in its
        seconds; ``timeout_s``: wall seconds per request."""
        super().__init__(cfg, poll_interval_s=ON_DEMAND_S, ttl_s=ttl_s, timeout_s=timeout_s,
                         command_clock=clock, clock=clock)

    async def first_polls(self, timeout_s: float) -> None:
        """Poll every device once and wait for every answer (``timeout_s`` is not used)."""
        await self.poll_all()

    async def poll_all(self) -> None:
        """Poll every device now, side by side; return when every poll has ended."""
        await self.refresh_many(list(self.links), REQUEST_WAIT_S)


@dataclass
class _Job:
    run: Job
    job_id: str
    every_s: float
    first_s: float
    reads_devices: bool
    runs: int = 0

    @property
    def next_s(self) -> float:
        """Site seconds of the next run (rounded to the microsecond, so that jobs whose periods
        meet share an instant)."""
        return round(self.first_s + self.runs * self.every_s, 6)


class SteppedScheduler:
    """Runs the service's jobs on a :class:`SteppedClock`, instant by instant (module docstring).

    Site time moves only inside :meth:`advance` and :meth:`until` (one caller at a time).
    ``on_instant`` (e.g. the simulator's ``step``) is called each time the clock has moved,
    before any job runs at the new instant.
    """

    def __init__(self, clock: SteppedClock, on_instant: Callable[[], object] | None = None) -> None:
        self.clock = clock
        self.on_instant = on_instant
        self.jobs: list[_Job] = []
        self._links: DeviceLinks | None = None
        self._tasks: Collection[asyncio.Task[Any]] = ()
        self._running = False
        self._driving = asyncio.Lock()

    @property
    def running(self) -> bool:
        return self._running

    def device_links(self, cfg: SiteConfig, poll_interval_s: float, ttl_s: float) -> DeviceLinks:
        """On-demand links; the TTL is ``ttl_s`` wall seconds at the nominal speed, counted in site
        seconds (a reading is good for as much site time as in a wall run at that speed)."""
        return OnDemandLinks(cfg, self.clock.sim_seconds, ttl_s * self.clock.speed)

    def watch(self, links: DeviceLinks | None, tasks: Collection[asyncio.Task[Any]]) -> None:
        self._links, self._tasks = links, tasks

    def add_job(self, job: Job, job_id: str, every_s: float, first_at: datetime | None = None, *,
                misfire_grace_s: int = 1, reads_devices: bool = False) -> None:
        if not every_s > 0:
            raise ValueError(f"job {job_id}: every_s must be > 0, got {every_s!r}")
        now_s = self.clock.sim_seconds()
        first_s = now_s + every_s
        if first_at is not None:
            first_s = max(now_s, (first_at - self.clock.start_utc).total_seconds())
        self.jobs = [j for j in self.jobs if j.job_id != job_id]
        self.jobs.append(_Job(job, job_id, every_s, first_s, reads_devices))

    def start(self) -> None:
        self._running = True

    def shutdown(self) -> None:
        self._running = False

    def next_due_s(self) -> float | None:
        """Site seconds of the next instant a job is due (None without jobs)."""
        return min((j.next_s for j in self.jobs), default=None)

    # -- moving time ---------------------------------------------------------------------------

    async def advance(self, seconds: float) -> None:
        """Run every instant due within the next ``seconds`` of site time, then move the clock
        (and the simulator) to the end of that span."""
        async with self._driving:
            target = self.clock.sim_seconds() + seconds
            await self.settle()
            while self._running and (due := self.next_due_s()) is not None and due <= target:
                await self._instant(due)
            if self._running:
                await self._instant(target)

    async def until(self, condition: Callable[[], bool], within_s: float = math.inf) -> bool:
        """Run instant after instant until ``condition()`` holds (checked now, once what is
        running has ended, and after every instant); False when it does not within ``within_s``
        site seconds or the scheduler is shut down."""
        async with self._driving:
            deadline = self.clock.sim_seconds() + within_s
            await self.settle()
            while not condition():
                due = self.next_due_s()
                if not self._running or due is None or due > deadline:
                    return False
                await self._instant(due)
            return True

    async def settle(self) -> None:
        """Wait until no task of the service and no device request is running."""
        while True:
            pending = [t for t in self._tasks if not t.done()]
            if pending:
                await asyncio.wait(pending)
                continue
            links = self._links
            if links is not None and any(links.polling(n) or links.in_flight(n) is not None
                                         for n in links.links):
                await asyncio.sleep(SETTLE_POLL_S)
                continue
            return

    async def _instant(self, at_s: float) -> None:
        await asyncio.sleep(0)  # whatever else runs on the loop (the API, a test's server) goes on
        if at_s > self.clock.sim_seconds():
            self.clock.advance_to(at_s)
            if self.on_instant is not None:
                self.on_instant()
        polled = False
        for job in list(self.jobs):
            if not self._running or job.next_s > at_s:
                continue
            while job.next_s <= at_s:  # a job added for an instant already passed runs once
                job.runs += 1
            if job.reads_devices and not polled:
                await self._poll_all()
                polled = True
            try:
                await job.run()
            except Exception:  # as APScheduler: a failed run is logged, the job stays scheduled
                log.exception("job %s at %s failed", job.job_id, self.clock.now().isoformat())
            await self.settle()

    async def _poll_all(self) -> None:
        links = self._links
        if links is None:
            return
        if isinstance(links, OnDemandLinks):
            await links.poll_all()
        else:
            await links.refresh_many(list(links.links), REQUEST_WAIT_S)
        await self.settle()
