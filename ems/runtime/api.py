"""The service's HTTP API (FastAPI, OpenAPI at /docs) and Prometheus metrics at /metrics.

Reads are open on the bound address (127.0.0.1 by default), or need the token too with
``service.api_read_token_required``. Writes need ``Authorization: Bearer <token>`` with the token
from the environment variable the config names (``service.api_token_env``, at least 16
characters); with no token configured, writes are refused. Bound to a loopback address, the API
answers only requests whose Host is localhost, 127.0.0.1 or [::1] (400 otherwise). A bad request
is a 422 naming the field and the value (:mod:`ems.runtime.api_guard`); no input gives a 500.
``GET /history`` is paged (:mod:`ems.runtime.api_history`) and runs in a worker thread, off the
event loop the control jobs run on.
"""

import hmac
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from ems.redact import redact
from ems.runtime.api_guard import (
    LOCAL_HOST_NAMES,
    api_token,
    field_error,
    host_check,
    is_local_only,
    validation_error,
)
from ems.runtime.api_history import (
    AGGREGATES_OFFSET_MAX,
    HISTORY_LIMIT_DEFAULT,
    HISTORY_LIMIT_MAX,
    aggregates_page,
    bounded_instant,
    history_page,
)
from ems.runtime.service import SiteService
from ems.store.store import MAX_ROW_ID, MIN_ROW_ID

Name = Annotated[str, Path(min_length=1, max_length=64)]
"""A device name in a path."""


class SessionNeed(BaseModel):
    """A driver's departure time and energy for the vehicle on a charger."""

    model_config = ConfigDict(extra="forbid")
    departure_utc: Annotated[datetime, AfterValidator(bounded_instant)] | None = None
    """With a UTC offset, between 2000 and 2100."""
    energy_kwh: Annotated[float, Field(gt=0, le=200, allow_inf_nan=False)] | None = None


class ModeOverride(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mode: Literal["auto", "fallback", "pause"]
    """"auto" clears the override (the service chooses); "fallback" forces rules; "pause" holds
    every device in its safe state."""


class BatteryReserve(BaseModel):
    model_config = ConfigDict(extra="forbid")
    soc_min_fraction: Annotated[float, Field(ge=0, lt=1, strict=True, allow_inf_nan=False)]
    """SOC the battery keeps (fraction); below the battery's own ``soc_max_fraction``."""


# FastAPI resolves handler annotations at runtime: no postponed annotations in this module
bearer = HTTPBearer(auto_error=False)


def create_app(service: SiteService) -> FastAPI:
    """The API of ``service``. Raises ConfigError when the token in ``service.api_token_env`` is
    too short, or reads need a token and none is set."""
    cfg = service.cfg.service
    token = api_token(cfg)
    app = FastAPI(title=f"EMS {service.cfg.site.name}", version="1")
    app.add_exception_handler(RequestValidationError, validation_error)
    if is_local_only(cfg.api_host):
        app.middleware("http")(host_check(LOCAL_HOST_NAMES))

    def writer(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> None:
        if not token:
            raise HTTPException(403, f"writes are disabled: set {cfg.api_token_env}")
        if credentials is None or not hmac.compare_digest(credentials.credentials.encode(), token.encode()):
            raise HTTPException(401, "a valid bearer token is required",
                                headers={"WWW-Authenticate": "Bearer"})

    def reader(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> None:
        if cfg.api_read_token_required:
            writer(credentials)

    reads = [Depends(reader)]

    @app.get("/status", dependencies=reads)
    async def status() -> dict[str, Any]:
        m = service.measured()
        st = service.status
        return {
            "site": service.cfg.site.name, "time_utc": service.clock.now().isoformat(),
            "mode": st.mode, "mode_reason": redact(st.mode_reason or "") or None, "override": st.override,
            "devices_online": st.devices_online,
            "plan": {"id": st.plan_id, "slot_start": st.plan_slot.isoformat() if st.plan_slot else None,
                     "status": st.plan_status, "solve_s": st.last_solve_s, "done": st.plans_done,
                     "failed": st.plans_failed, "skipped": st.plans_skipped,
                     "cost": service.planning.status.cost,
                     "penalty_cost": service.planning.status.penalty_cost,
                     "slacks": service.planning.status.slacks},
            "power_kw": {"grid_net": m.grid_net_kw, "battery_net": m.battery_net_kw, "ev": m.ev_kw,
                         "electrolyser": m.electrolyser_kw, "pv": m.pv_kw},
            "battery_soc_fraction": m.battery_soc_fraction,
            "tank_kg": service.state.tank_kg,
            "ev_sessions": service.sessions.to_json(),
            "device_links": service.links.diagnostics(),
            "watchdogs": {name: {"command": w.command, "timeout_s": w.timeout_s, "armed": w.armed,
                                 "problem": w.problem} for name, w in service.links.watchdogs.items()},
        }

    @app.get("/plan", dependencies=reads)
    async def plan() -> dict[str, Any]:
        latest = service.store.latest_plan()
        if latest is None:
            raise HTTPException(404, "no plan yet")
        return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in latest.items()}

    @app.get("/history", dependencies=reads)
    def history(request: Request,
                start: Annotated[datetime, Query(alias="from"), AfterValidator(bounded_instant)],
                end: Annotated[datetime, Query(alias="to"), AfterValidator(bounded_instant)],
                device: Annotated[str | None, Query(max_length=64)] = None,
                limit: Annotated[int, Query(ge=1, le=HISTORY_LIMIT_MAX)] = HISTORY_LIMIT_DEFAULT,
                cursor: Annotated[str | None, Query(max_length=200)] = None) -> Response:
        """Telemetry in [from, to), oldest first, at most ``limit`` rows a page; ``next`` is the
        URL of the next page (None on the last). A plain ``def``: FastAPI runs it in its worker
        threads, on a connection of its own, and the JSON is made there too, so a long read
        never holds up the control jobs on the event loop."""
        return JSONResponse(history_page(service.store, str(request.url), start, end, device, limit, cursor))

    @app.get("/history/15min", dependencies=reads)
    def history_15min(request: Request,
                      start: Annotated[datetime, Query(alias="from"), AfterValidator(bounded_instant)],
                      end: Annotated[datetime, Query(alias="to"), AfterValidator(bounded_instant)],
                      device: Annotated[str | None, Query(max_length=64)] = None,
                      limit: Annotated[int, Query(ge=1, le=HISTORY_LIMIT_MAX)] = HISTORY_LIMIT_DEFAULT,
                      offset: Annotated[int, Query(ge=0, le=AGGREGATES_OFFSET_MAX)] = 0) -> Response:
        """Telemetry older than ``store.raw_telemetry_days``, as 15-minute mean, min and max per
        point, oldest first, in pages like ``/history`` (worker thread)."""
        return JSONResponse(aggregates_page(service.store, str(request.url), start, end, device, limit,
                                            offset))

    @app.get("/alarms", dependencies=reads)
    async def alarms(open_only: bool = False) -> list[dict[str, Any]]:
        frame = service.store.alarms(open_only)
        return [{k: (v.isoformat() if isinstance(v, datetime) else (None if v != v else v))
                 for k, v in row.items()} for row in frame.to_dict("records")]

    @app.get("/kpis", dependencies=reads)
    async def kpis(period: Annotated[str, Query(max_length=16)] = "") -> dict[str, dict[str, float]]:
        return service.store.kpis(period)

    @app.put("/ev/{charger}/session", dependencies=[Depends(writer)])
    async def ev_session(charger: Name, need: SessionNeed) -> dict[str, Any]:
        try:
            session = service.sessions.set_need(charger, need.departure_utc, need.energy_kwh)
        except KeyError:
            raise HTTPException(404, f"no vehicle plugged in at charger {charger!r}") from None
        service.request_plan(f"session need for {charger}")
        return session.to_json()

    @app.put("/mode", dependencies=[Depends(writer)])
    async def mode(body: ModeOverride) -> dict[str, Any]:
        service.set_override(None if body.mode == "auto" else body.mode)
        return {"override": service.status.override}

    @app.put("/battery/{name}/reserve", dependencies=[Depends(writer)])
    async def reserve(name: Name, body: BatteryReserve) -> dict[str, Any]:
        battery = next((b for b in service.cfg.battery if b.name == name), None)
        if battery is None:
            raise HTTPException(404, f"no battery {name!r}")
        if body.soc_min_fraction >= battery.soc_max_fraction:
            raise field_error(["body", "soc_min_fraction"], body.soc_min_fraction,
                              f"must be below battery {name}'s soc_max_fraction {battery.soc_max_fraction:g}")
        service.set_reserve(name, body.soc_min_fraction)
        return {"battery": name, "soc_min_fraction": body.soc_min_fraction}

    @app.post("/alarms/{alarm_id}/ack", dependencies=[Depends(writer)])
    async def ack(alarm_id: Annotated[int, Path(ge=MIN_ROW_ID, le=MAX_ROW_ID)]) -> dict[str, Any]:
        if not service.store.ack_alarm(alarm_id, datetime.now(UTC)):
            raise HTTPException(404, f"no unacknowledged alarm {alarm_id}")
        return {"acked": alarm_id}

    @app.get("/metrics", dependencies=reads)
    async def metrics() -> Response:
        service.metrics.update(service)
        return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app
