"""Prometheus metrics of one site service: loop timings observed as they happen (histograms,
wall seconds), and the site's state (power, SOC, mode, devices) read at each scrape."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

if TYPE_CHECKING:
    from ems.runtime.service import SiteService

FAST_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
SOLVE_BUCKETS_S = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class ServiceMetrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.dispatch_cycle_s = Histogram(
            "ems_dispatch_cycle_seconds", "Wall time of one dispatch cycle (meter read to writes done)",
            buckets=FAST_BUCKETS_S, registry=r)
        self.dispatch_interval_s = Histogram(
            "ems_dispatch_interval_seconds", "Wall time between the starts of two dispatch cycles",
            buckets=FAST_BUCKETS_S, registry=r)
        self.control_latency_s = Histogram(
            "ems_control_latency_seconds", "Meter reading to setpoint write acknowledged",
            ["during_solve"], buckets=FAST_BUCKETS_S, registry=r)
        self.solve_s = Histogram("ems_plan_solve_seconds", "Wall time of a plan solve",
                                 buckets=SOLVE_BUCKETS_S, registry=r)
        self.plan_build_s = Histogram("ems_plan_build_seconds", "Wall time to build a plan's inputs "
                                      "and model before the solve", buckets=SOLVE_BUCKETS_S, registry=r)
        self.write_failures = Counter("ems_setpoint_write_failures", "Setpoint writes that failed",
                                      ["device"], registry=r)
        self.alarms = Counter("ems_alarms_raised", "Alarms raised", ["device", "code"], registry=r)
        self.power = Gauge("ems_power_kw", "Power by asset (kW; grid > 0 import, battery > 0 discharge)",
                           ["asset"], registry=r)
        self.soc = Gauge("ems_battery_soc_fraction", "Battery state of charge (0..1)", ["battery"],
                         registry=r)
        self.tank = Gauge("ems_hydrogen_tank_kg", "Hydrogen tank level as the service estimates it (kg)",
                          ["tank"], registry=r)
        self.last_solve = Gauge("ems_last_solve_seconds", "Wall time of the last plan solve", registry=r)
        self.plans = Gauge("ems_plans", "Plans by outcome since start", ["outcome"], registry=r)
        self.mode = Gauge("ems_mode", "1 for the current mode", ["mode"], registry=r)
        self.online = Gauge("ems_device_online", "1 when the device answers", ["device"], registry=r)
        self.poll_latency = Gauge("ems_device_poll_latency_p99_seconds", "Poll latency p99", ["device"],
                                  registry=r)
        self.poll_errors = Gauge("ems_device_poll_errors", "Failed polls since start", ["device"],
                                 registry=r)
        self.dispatch_cycles = Gauge("ems_dispatch_cycles", "Dispatch cycles since start", registry=r)

    def update(self, service: SiteService) -> None:
        """Set the gauges from the service's state now (at a scrape)."""
        m = service.measured()
        st = service.status
        if m.grid_net_kw is not None:
            self.power.labels("grid").set(m.grid_net_kw)
        for group in (m.battery_net_kw, m.ev_kw, m.electrolyser_kw, m.pv_kw):
            for name, kw in group.items():
                if kw is not None:
                    self.power.labels(name).set(kw)
        for name, soc in m.battery_soc_fraction.items():
            if soc is not None:
                self.soc.labels(name).set(soc)
        for name, kg in service.state.tank_kg.items():
            self.tank.labels(name).set(kg)
        if st.last_solve_s is not None:
            self.last_solve.set(st.last_solve_s)
        for outcome, n in (("done", st.plans_done), ("failed", st.plans_failed),
                           ("skipped", st.plans_skipped)):
            self.plans.labels(outcome).set(n)
        for mode in ("auto", "fallback", "pause"):
            self.mode.labels(mode).set(1.0 if st.mode == mode else 0.0)
        for name, online in st.devices_online.items():
            self.online.labels(name).set(1.0 if online else 0.0)
        poller = service.links.poller
        if poller is not None:
            for name in poller.names:
                stats = poller.stats(name)
                if stats.latency_p99_s is not None:
                    self.poll_latency.labels(name).set(stats.latency_p99_s)
                self.poll_errors.labels(name).set(getattr(stats, "errors", 0))
        self.dispatch_cycles.set(st.dispatch_cycles)
