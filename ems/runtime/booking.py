"""What the service books from its readings every dispatch cycle: the KPIs (integrated from the
meters), each plan step's average import (demand peaks per billing period), the hydrogen tank
estimates; and, on their own jobs, telemetry rows and the retention purge."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta

from drivers.capabilities import CapabilityReading
from ems.accounting import metered_hydrogen, metered_powers, note_step_demand, step_signals
from ems.config.models import SiteConfig
from ems.control.estimate import TankEstimator
from ems.planning.problem_builder import floor_to_step
from ems.planning.state import SiteState
from ems.runtime.kpis import KpiMeter
from ems.runtime.step_rows import StepRows
from ems.store import Store, TelemetryRow
from ems.store.rollup import fold_telemetry, purge_aggregates, thin_plans

log = logging.getLogger("ems.service")


class Booking:
    def __init__(self, cfg: SiteConfig, store: Store, state: SiteState, tanks: TankEstimator,
                 rows: StepRows, now: Callable[[], datetime]) -> None:
        self.cfg = cfg
        self.store = store
        self.state = state
        self.tanks = tanks
        self.rows = rows
        self.now = now
        self.kpis = KpiMeter(cfg)
        self.step_minutes = cfg.planning.step_minutes
        self._slot: datetime | None = None
        self._slot_import: list[float] = []
        self.step_done: list[Callable[[], None]] = []
        """Called when a plan step's average import has been booked (e.g. to save the state)."""

    def cycle(self, now: datetime, readings: Mapping[str, CapabilityReading | None]) -> None:
        """Book one dispatch cycle's readings."""
        powers = metered_powers(self.cfg, readings)
        self._note_import(now, powers.grid_net_kw)
        row = self.rows.row(now)
        signals = step_signals(self.cfg, row)
        totals, flows = metered_hydrogen(self.cfg, readings)
        self.kpis.add(now, powers, signals, totals, flows)
        dt_h = self.kpis.interval_h
        offtake: dict[str, float] = {}
        if row is not None:
            step_h = self.step_minutes / 60.0
            offtake = {o.name: float(row[f"h2:{o.name}_kg"]) / step_h * dt_h
                       for o in self.cfg.hydrogen_offtake}
        self.tanks.update(readings, self.kpis.hydrogen_kg, offtake)
        self.state.tank_kg.update(self.tanks.level_kg)

    def _note_import(self, now: datetime, grid_net_kw: float | None) -> None:
        """At each new plan step, the last step's average import goes to the billing-period peak
        of every demand charge whose window holds it, and to the KPIs' peaks."""
        slot = floor_to_step(now, self.step_minutes)
        if self._slot is not None and slot != self._slot and self._slot_import:
            average = sum(self._slot_import) / len(self._slot_import)
            row = self.rows.row(self._slot)
            counted = self.rows.demand_counted(row)
            note_step_demand(self.state, self._slot, average, counted, self.cfg.site.timezone)
            self.kpis.note_step_import(self._slot, average, counted)
            self._slot_import = []
            for callback in self.step_done:
                callback()
        self._slot = slot
        if grid_net_kw is not None:
            self._slot_import.append(max(0.0, grid_net_kw))

    def save_kpis(self) -> None:
        for period, values in self.kpis.changed().items():
            self.store.set_kpis(period, values)

    def resume_kpis(self, now: datetime) -> None:
        _, month = self.kpis.periods(now)
        self.kpis.values.update(self.store.kpis(month))  # the month's row and its days' rows

    def telemetry(self, readings: Mapping[str, CapabilityReading | None]) -> None:
        """Every field of every device reading to the store (a missing value with its reason)."""
        now = self.now()
        rows = []
        for name, r in readings.items():
            if r is None:
                continue
            for field_name in r.UNITS:
                m = getattr(r, field_name)
                v = m.value
                if isinstance(v, bool):
                    v = float(v)
                if v is None or isinstance(v, int | float):
                    rows.append(TelemetryRow(now, name, field_name, None if v is None else float(v),
                                             m.reason if v is None else None))
        self.store.add_telemetry(rows)
        self.save_kpis()

    def purge(self) -> None:
        """Fold raw telemetry into 15-minute aggregates and drop old plans' per-step series (see
        :mod:`ems.store.rollup`), then delete what is older than the configured retention."""
        now = self.now()
        st = self.cfg.store
        folded = fold_telemetry(self.store, now - timedelta(days=st.raw_telemetry_days))
        thinned = thin_plans(self.store, now - timedelta(days=st.plan_body_days))
        aggregates = purge_aggregates(self.store, now - timedelta(days=st.telemetry_retention_days))
        if folded or thinned or aggregates:
            log.info("retention: %d raw readings folded into 15-minute aggregates, %d plans thinned, "
                     "%d aggregates removed", folded, thinned, aggregates)
        removed = self.store.purge(
            telemetry_before=now - timedelta(days=st.telemetry_retention_days),
            plans_before=now - timedelta(days=st.plan_retention_days),
            setpoints_before=now - timedelta(days=st.setpoint_retention_days))
        if any(removed.values()):
            log.info("retention: removed %s", removed)
