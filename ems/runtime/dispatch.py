"""The service's fast loop, one cycle: read the meter and the batteries together, build the
cycle's snapshot, let the controller decide, write every device side by side and audit each new
value. No device that stops answering holds the cycle: reads, writes and keep-alives are bounded
by the cycle's budget, and what finishes later is audited when it finishes."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from drivers.capabilities import CapabilityReading, MeterReading, Setpoint
from drivers.modbus.safe_write import WriteOutcome
from ems.config.models import SiteConfig
from ems.control.controller import Controller, Decision, Mode, PlanInput
from ems.control.observe import GRID_METER, Snapshot
from ems.control.safety import safe_state
from ems.runtime.alarms import Alarms
from ems.runtime.metrics import ServiceMetrics
from ems.runtime.relaxed import GridLimitWatch
from ems.site.commands import setpoint_for
from ems.site.modbus import DeviceLinks
from ems.store import SetpointWrite, Store

log = logging.getLogger("ems.service")


@dataclass
class DispatchStatus:
    mode: Mode = "fallback"
    mode_reason: str = "no plan yet"
    dispatch_cycles: int = 0
    writes_failed: int = 0
    devices_online: dict[str, bool] = field(default_factory=dict)
    guard_fallbacks: set[str] = field(default_factory=set)
    """Devices the safety guard put in their fallback in the last cycle."""


@dataclass(frozen=True)
class _Audit:
    """What a write is audited with: the cycle's mode, plan and the reasons behind the value."""

    time_utc: datetime
    mode: str
    plan_id: int | None
    slot_start: datetime | None
    price_per_kwh: float | None
    carbon_g_per_kwh: float | None
    limits: dict[str, float]


class Writer:
    """Writes setpoints through the device links and audits every new value and every error."""

    def __init__(self, cfg: SiteConfig, links: DeviceLinks, store: Store, metrics: ServiceMetrics,
                 budget_s: float) -> None:
        self.cfg = cfg
        self.links = links
        self.store = store
        self.metrics = metrics
        self.budget_s = budget_s
        self.writes_failed = 0
        self._last_written: dict[tuple[str, str], float | None] = {}
        self.on_written: list[Callable[[str], None]] = []

    def setpoints(self, values: Any) -> dict[str, Setpoint]:
        """Typed device setpoints for every linked device from site setpoints (kW)."""
        out: dict[str, tuple[str, Any, float | None]] = {}
        for b in self.cfg.battery:
            out[b.name] = ("battery", b, values.battery_net_kw.get(b.name, 0.0))
        for c in self.cfg.ev_charger:
            out[c.name] = ("ev_charger", c, values.ev_kw.get(c.name, 0.0))
        for e in self.cfg.electrolyser:
            out[e.name] = ("electrolyser", e, values.electrolyser_kw.get(e.name, 0.0))
        for p in self.cfg.pv:
            out[p.name] = ("pv", p, values.pv_limit_kw.get(p.name))
        return {name: sp for name, (section, asset, value) in out.items()
                if name in self.links.links and (sp := setpoint_for(section, asset, value)) is not None}

    async def write(self, setpoints: dict[str, Setpoint], audits: dict[str, _Audit]) -> None:
        def done(name: str, outcomes: list[WriteOutcome]) -> None:
            self._audit(name, outcomes, audits[name])
        await self.links.write_many(setpoints, self.budget_s, on_done=done)

    def _audit(self, name: str, outcomes: list[WriteOutcome], a: _Audit) -> None:
        if any(o.written and o.error is None for o in outcomes):
            for callback in self.on_written:
                callback(name)
        for o in outcomes:
            # the audit log keeps every new value (a keep-alive may carry one too) and every error
            key = (name, o.command)
            if o.error is None and not (o.written and self._last_written.get(key) != o.value):
                continue
            if o.written:
                self._last_written[key] = o.value
            if o.error is not None:
                self.writes_failed += 1
                self.metrics.write_failures.labels(name).inc()
            self.store.add_setpoint(SetpointWrite(
                ts=a.time_utc, device=name, command=o.command, value=o.value, mode=a.mode,
                ok=o.error is None and o.readback != "readback_mismatch", plan_id=a.plan_id,
                slot_start=a.slot_start, price_per_kwh=a.price_per_kwh, carbon_g_per_kwh=a.carbon_g_per_kwh,
                limits=a.limits, readback=o.readback_value, error=o.error))

    async def safe_state(self, now: datetime, why: str) -> None:
        """Every linked device to its safe state (shutdown), audited as mode "safe"."""
        setpoints = self.setpoints(safe_state(self.cfg))
        audit = _Audit(now, "safe", None, None, None, None, {f"safe state: {why}": 1.0})
        await self.write(setpoints, {name: audit for name in setpoints})


class Dispatch:
    """One control cycle of the service (see the module docstring)."""

    def __init__(self, cfg: SiteConfig, links: DeviceLinks, controller: Controller, writer: Writer,
                 alarms: Alarms, metrics: ServiceMetrics, budget_s: float) -> None:
        self.cfg = cfg
        self.links = links
        self.controller = controller
        self.writer = writer
        self.alarms = alarms
        self.metrics = metrics
        self.budget_s = budget_s
        self.status = DispatchStatus()
        self.decision: Decision | None = None
        self.grid_watch = GridLimitWatch(alarms)
        self._meter: CapabilityReading | None = None

    async def read(self) -> dict[str, CapabilityReading | None]:
        """The meter and the batteries read now, together (a battery reading older than the
        meter's shows the last command's effect on the grid but not its cause), then every
        device's latest reading."""
        now_read = [n for n in (GRID_METER, *(b.name for b in self.cfg.battery)) if n in self.links.links]
        await self.links.refresh_many(now_read, self.budget_s)
        return self.links.readings()

    def snapshot(self, now: datetime, readings: dict[str, CapabilityReading | None],
                 tank_kg: dict[str, float]) -> Snapshot:
        poller = self.links.poller
        return Snapshot(now, readings, poller.utc() if poller is not None else now, dict(tank_kg))

    async def decide_and_write(self, snap: Snapshot, plan: PlanInput, slot: Any, row: Any,
                               plan_id: int | None, plan_slot: datetime | None) -> Decision:
        self.status.dispatch_cycles += 1
        decision = self.controller.step(snap, plan, slot)
        self.decision = decision
        st = self.status
        if decision.mode != st.mode:
            log.info("mode %s -> %s: %s", st.mode, decision.mode, decision.mode_reason, extra={
                "event": "mode", "from": st.mode, "to": decision.mode, "reason": decision.mode_reason})
        st.mode, st.mode_reason = decision.mode, decision.mode_reason
        st.guard_fallbacks = set(decision.guard.fallback_devices)
        for event in decision.guard.raised:
            self.alarms.raise_(event.device, event.code, event.severity, event.message)
        for event in decision.guard.cleared:
            self.alarms.clear(event.device, event.code)
        self.grid_watch.update(decision.observed.grid_net_kw, decision.import_limit_kw,
                               decision.export_limit_kw)
        price = carbon = None
        if row is not None:
            price, carbon = float(row["import_price_per_kwh"]), float(row["carbon_g_per_kwh"])
        setpoints = self.writer.setpoints(decision.setpoints)
        following = decision.mode == "auto"
        audits = {}
        for name in setpoints:
            limits = {why: 1.0 for why in decision.reasons(name)}
            limits["grid_import_limit_kw"] = decision.import_limit_kw
            limits["grid_export_limit_kw"] = decision.export_limit_kw
            audits[name] = _Audit(snap.time_utc, decision.mode, plan_id if following else None,
                                  plan_slot if following else None, price, carbon, limits)
        self._meter = snap.reading(GRID_METER)
        await self.writer.write(setpoints, audits)
        await self.links.keepalive_many(self.budget_s)
        return decision

    def note_latency(self, solving: bool) -> float | None:
        """Wall seconds from the meter reading the cycle acted on to a write's acknowledgement."""
        meter = self._meter
        if isinstance(meter, MeterReading) and self.links.poller is not None:
            age = (self.links.poller.utc() - meter.power_net_kw.timestamp).total_seconds()
            self.metrics.control_latency_s.labels("yes" if solving else "no").observe(age)
            return age
        return None
