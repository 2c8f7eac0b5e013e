"""`DeviceLinks` side by side: a device that stops answering never holds up the polls, writes and
keep-alives of the others. The Guangdong site trimmed to its grid meter, battery and two fleet
chargers is served by the site simulator on 127.0.0.1 and driven over real Modbus TCP.

Write times are read from the simulator's servers (``written_at``), stamped by a fake site clock
that the tests move: assertions are about what was written in which cycle, never about how long
anything took."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from drivers.capabilities import BatterySetpoint, EvChargerSetpoint, Setpoint
from drivers.modbus.safe_write import WriteOutcome
from drivers.sim.site_sim import SiteSimulator
from ems.cli.sim_cmd import simulator_for_site
from ems.config import LoadedSite, load_site
from ems.site.modbus import DeviceLinks
from tests.drivers.support import FakeClock
from tests.site_files import site_on_free_ports

START = datetime(2025, 7, 15, 10, 30, tzinfo=UTC)
BATTERY, HEALTHY_EV, SILENT = "bess", "fleet_1", "fleet_2"
DEVICES = ("grid", BATTERY, HEALTHY_EV, SILENT)
BUDGET_S = 0.3
"""Wall seconds each call of a cycle may take: far more than a loopback answer needs."""
TIMEOUT_S = 3.0
"""Transport timeout, wall seconds: a request to the silent device stays in flight this long."""
SILENT_CYCLES = 4
"""Cycles while the charger is silent. Each is bounded by 3 x BUDGET_S, well under TIMEOUT_S,
and the silent charger's first write queues behind its poll (TIMEOUT_S per unanswered read), so
the later cycles find that write still in flight."""
LONGEST_KEEPALIVE_S = 30.0
"""The longest keep-alive period among the healthy devices' commands (SunSpec battery), s."""


def run(coro: Coroutine[Any, Any, None], limit_s: float = 90.0) -> None:
    """Run one test's coroutine; a hang fails the test after ``limit_s`` instead of blocking CI."""

    async def guarded() -> None:
        await asyncio.wait_for(coro, limit_s)

    asyncio.run(guarded())


def small_site(tmp_path: Path) -> LoadedSite:
    """The Guangdong site on free ports with devices only on its grid meter, battery and first
    two chargers (the other assets stay in the plant, run with default requests)."""
    path, _ = site_on_free_ports(tmp_path)
    loaded = load_site(str(path))
    cfg = loaded.config

    def no_device(assets: Any) -> list[Any]:
        return [a.model_copy(update={"device": None}) for a in assets]

    small = cfg.model_copy(update={
        "pv": no_device(cfg.pv), "electrolyser": no_device(cfg.electrolyser), "load": no_device(cfg.load),
        "ev_charger": [*cfg.ev_charger[:2], *no_device(cfg.ev_charger[2:])],
    })
    return LoadedSite(small, loaded.path)


@asynccontextmanager
async def linked(site: LoadedSite, clock: FakeClock) -> AsyncIterator[tuple[SiteSimulator, DeviceLinks]]:
    """The site's simulator and a started `DeviceLinks` against it, both on ``clock``."""
    sim = simulator_for_site(site, clock, START)
    assert sorted(sim.devices) == sorted(DEVICES)
    await sim.start()
    links = DeviceLinks(site.config, poll_interval_s=60.0, timeout_s=TIMEOUT_S, command_clock=clock)
    try:
        await links.start()
        assert sorted(links.links) == sorted(DEVICES) and not links.unresolved
        yield sim, links
    finally:
        await links.stop()
        await sim.stop()


class Overlap:
    """Counts the calls of async methods, per device, and the most of them running at once."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.args: list[tuple[str, tuple[Any, ...]]] = []
        """(device, positional arguments) of every call, in call order."""
        self.running: Counter[str] = Counter()
        self.most: Counter[str] = Counter()

    def wrap(self, name: str, method: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def wrapped(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] += 1
            self.args.append((name, args))
            self.running[name] += 1
            self.most[name] = max(self.most[name], self.running[name])
            try:
                return await method(*args, **kwargs)
            finally:
                self.running[name] -= 1

        return wrapped


def last_write(sim: SiteSimulator, links: DeviceLinks, name: str, command: str) -> float | None:
    """Site-clock time of the last client write the device's server took for ``command``."""
    c = links.links[name].profile.commands[command]
    return sim.device(name).server.last_write(c.address, c.width)


def kept_alive(links: DeviceLinks, name: str) -> list[str]:
    writer = links.links[name].writer
    assert writer is not None
    return [c for c in links.links[name].profile.commands if writer.keepalive_period(c) is not None]


async def backoff_over(links: DeviceLinks, name: str) -> None:
    """Wait until the device's unit is no longer backing off after its timeouts (a unit alone on
    its link backs off one first step, wall seconds, at a time)."""
    writer = links.links[name].writer
    assert writer is not None
    transport = writer.transport
    state = transport.unit_state(writer.unit_id)
    while state.next_attempt_at is not None and transport.clock() < state.next_attempt_at:
        await asyncio.sleep(0.02)


def setpoints(k: int) -> dict[str, Setpoint]:
    """Cycle ``k``'s setpoints: new values every cycle, so every device has something to write."""
    return {BATTERY: BatterySetpoint(power_net_kw=5.0 + k), HEALTHY_EV: EvChargerSetpoint(current_a=6.0 + k),
            SILENT: EvChargerSetpoint(current_a=7.0 + k)}


CHANGED = {BATTERY: "power_setpoint_w", HEALTHY_EV: "max_current_a", SILENT: "max_current_a"}
"""The command each device's setpoint changes every cycle."""


def test_a_silent_charger_never_holds_up_the_other_devices(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    site = small_site(tmp_path)
    clock = FakeClock()
    done: list[tuple[str, list[WriteOutcome]]] = []
    returned: list[tuple[str, list[WriteOutcome]]] = []
    started: Counter[str] = Counter()
    skipped: Counter[str] = Counter()
    caplog.set_level(logging.WARNING, logger="asyncio")

    async def body() -> None:
        async with linked(site, clock) as (sim, links):
            assert links.poller is not None
            polls, commands = Overlap(), Overlap()
            poller = links.poller
            poll_once = poller.poll_once
            monkeypatch.setattr(poller, "poll_once", lambda n: polls.wrap(n, poll_once)(n))
            for name in (BATTERY, HEALTHY_EV, SILENT):
                writer = links.links[name].writer
                assert writer is not None
                monkeypatch.setattr(writer, "write", commands.wrap(name, writer.write))

            def on_done(name: str, outcomes: list[WriteOutcome]) -> None:
                done.append((name, outcomes))

            async def cycle(k: int) -> dict[str, list[WriteOutcome] | None]:
                clock.advance(1.0)
                await links.refresh_many(DEVICES, BUDGET_S)
                wanted = setpoints(k)
                for name in wanted:
                    if links.in_flight(name) == "write":
                        skipped[name] += 1
                    else:
                        started[name] += 1
                written_at = clock()
                results = await links.write_many(wanted, BUDGET_S, on_done)
                returned.extend((n, r) for n, r in results.items() if r is not None)
                for name in (BATTERY, HEALTHY_EV):  # written in this cycle, and answered
                    outcomes = results[name]
                    assert outcomes is not None, f"cycle {k}: {name} not written within the budget"
                    assert all(o.error is None for o in outcomes), outcomes
                    assert last_write(sim, links, name, CHANGED[name]) == written_at
                clock.advance(LONGEST_KEEPALIVE_S + 1.0)  # every keep-alive of the site is due
                await links.keepalive_many(BUDGET_S)
                for name in (BATTERY, HEALTHY_EV):
                    for command in kept_alive(links, name):
                        assert last_write(sim, links, name, command) == clock(), (k, name, command)
                return results

            sim.faults(SILENT).no_answer = True
            for k in range(SILENT_CYCLES):
                results = await cycle(k)
                silent = results[SILENT]
                # the silent charger's write is in flight (None) or failed without an answer
                assert silent is None or all(o.error is not None for o in silent), silent
                assert last_write(sim, links, SILENT, "max_current_a") is None
            assert sim.device(SILENT).server.requests.total() >= 1  # it was asked, and kept silent
            assert skipped[SILENT] >= 1  # a later cycle found its first write still in flight
            assert not skipped[BATTERY] and not skipped[HEALTHY_EV]

            sim.faults(SILENT).no_answer = False
            k = SILENT_CYCLES
            while not any(n == SILENT and all(o.written and o.error is None for o in outcomes)
                          for n, outcomes in done):
                assert k < SILENT_CYCLES + 60, "the charger answers again but is never written"
                await backoff_over(links, SILENT)
                await cycle(k)
                k += 1
            assert last_write(sim, links, SILENT, "max_current_a") is not None

            for _ in range(500):  # let the writes still in flight end (a guard, not a timing)
                if not any(links.in_flight(n) or links.polling(n) for n in DEVICES):
                    break
                await asyncio.sleep(0.05)
            assert not any(links.in_flight(n) or links.polling(n) for n in DEVICES)
            # never two polls, nor two writes or keep-alives, of one device at once
            assert max(polls.most.values()) == 1 and polls.calls[SILENT] >= 1
            assert all(commands.most[n] == 1 for n in (BATTERY, HEALTHY_EV, SILENT)), commands.most

    run(body())
    cycles = started[BATTERY]
    assert cycles > SILENT_CYCLES and started[HEALTHY_EV] == cycles
    assert started[SILENT] + skipped[SILENT] == cycles
    # on_done: once per write started, late ones included; the early ones are the lists returned
    assert Counter(n for n, _ in done) == started
    assert len({id(outcomes) for _, outcomes in done}) == len(done)
    assert all(any(r is outcomes for _, outcomes in done) for _, r in returned)
    assert any(n == SILENT and not any(r is o for _, r in returned) for n, o in done)  # one came late
    assert not [r for r in caplog.records if r.name == "asyncio"]


def test_stop_ends_what_is_in_flight_and_faults_are_logged_with_the_device(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    site = small_site(tmp_path)
    clock = FakeClock()
    done: list[str] = []
    caplog.set_level(logging.DEBUG)

    async def body() -> None:
        async with linked(site, clock) as (sim, links):
            sim.faults(SILENT).no_answer = True

            def on_done(name: str, outcomes: list[WriteOutcome]) -> None:
                done.append(name)
                if name == HEALTHY_EV:
                    raise RuntimeError("audit store down")

            await links.refresh_many([*DEVICES, "no_such_device"], 0.0)
            assert links.polling(SILENT) and not links.polling("no_such_device")
            results = await links.write_many({**setpoints(0), "no_such_device": BatterySetpoint(1.0)},
                                             BUDGET_S, on_done)
            assert results[SILENT] is None and links.in_flight(SILENT) == "write"
            # an on_done that raises loses nothing
            assert results[HEALTHY_EV] is not None and results[BATTERY] is not None
            unknown = results["no_such_device"]
            assert unknown is not None and unknown[0].error == "device 'no_such_device' not linked"
            # a second write is not started while the first is in flight
            again = await links.write_many({SILENT: EvChargerSetpoint(current_a=10.0)}, 0.0, on_done)
            assert again == {SILENT: None}
            clock.advance(LONGEST_KEEPALIVE_S + 1.0)
            await links.keepalive_many(0.0)
            assert links.in_flight(SILENT) == "write"  # no keep-alive beside it either
            ours = [t for t in asyncio.all_tasks() if t.get_name().endswith(f" {SILENT}")]
            assert ours and not any(t.done() for t in ours)
        # leaving `linked` stopped the links: every background task has ended
        assert all(t.done() for t in ours)
        kinds = ("poll", "write", "keep-alive")
        assert not [t for t in asyncio.all_tasks() if t.get_name().split(" ")[0] in kinds]
        assert sorted(done) == sorted([BATTERY, HEALTHY_EV, "no_such_device"])  # not the cancelled one

    run(body())
    failed = [r for r in caplog.records if r.name == "ems.devices" and r.levelno >= logging.ERROR]
    assert [r.getMessage() for r in failed] == [f"device {HEALTHY_EV}: on_done of a write failed"]
    assert not [r for r in caplog.records if r.name == "asyncio" and r.levelno >= logging.WARNING]


def test_a_write_waits_for_the_keepalive_in_flight_to_the_device(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    site = small_site(tmp_path)
    clock = FakeClock()
    done: list[tuple[str, list[WriteOutcome]]] = []

    async def body() -> None:
        async with linked(site, clock) as (sim, links):
            writer = links.links[SILENT].writer
            assert writer is not None
            commands = Overlap()
            monkeypatch.setattr(writer, "write", commands.wrap(SILENT, writer.write))
            first = (await links.write_many({SILENT: EvChargerSetpoint(current_a=8.0)}, 5.0))[SILENT]
            assert first is not None and all(o.written for o in first)
            clock.advance(LONGEST_KEEPALIVE_S)
            sim.faults(SILENT).delay_s = 0.5  # slow now: each answer takes half a second
            await links.keepalive_many(0.0)
            assert links.in_flight(SILENT) == "keepalive"
            await links.keepalive_many(0.0)  # not a second one beside it
            second = await links.write_many({SILENT: EvChargerSetpoint(current_a=12.0)}, 0.0,
                                            lambda n, o: done.append((n, o)))
            assert second == {SILENT: None} and links.in_flight(SILENT) == "write"
            for _ in range(200):  # a guard, not a timing
                if links.in_flight(SILENT) is None:
                    break
                await asyncio.sleep(0.05)
            assert links.in_flight(SILENT) is None
            # the keep-alive (8 A again) went out first, then the new setpoint: one at a time
            assert [a[1] for _, a in commands.args] == [8.0, 8.0, 12.0] and commands.most[SILENT] == 1
            assert [(n, [(o.value, o.written, o.error) for o in outcomes]) for n, outcomes in done] == [
                (SILENT, [(12.0, True, None)])]
            assert last_write(sim, links, SILENT, "max_current_a") == clock()

    run(body())
