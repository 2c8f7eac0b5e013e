"""The service's HTTP API (FastAPI, OpenAPI at /docs) and Prometheus metrics at /metrics.

Reads are open on the bound address (127.0.0.1 by default). Writes need
``Authorization: Bearer <token>`` with the token from the environment variable the config names
(``service.api_token_env``); with no token configured, writes are refused. A bad body is a 422
naming the field.
"""

import hmac
import os
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Query, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field

from ems.runtime.service import SiteService


class SessionNeed(BaseModel):
    """A driver's departure time and energy for the vehicle on a charger."""

    model_config = ConfigDict(extra="forbid")
    departure_utc: datetime | None = None
    energy_kwh: Annotated[float, Field(gt=0, le=200)] | None = None


class ModeOverride(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mode: Literal["auto", "fallback", "pause"]
    """"auto" clears the override (the service chooses); "fallback" forces rules; "pause" holds
    every device in its safe state."""


class BatteryReserve(BaseModel):
    model_config = ConfigDict(extra="forbid")
    soc_min_fraction: Annotated[float, Field(ge=0, lt=1, strict=True, allow_inf_nan=False)]
    """SOC the battery keeps (fraction); at most the battery's own ``soc_max_fraction``."""


# FastAPI resolves handler annotations at runtime: no postponed annotations in this module
bearer = HTTPBearer(auto_error=False)


def create_app(service: SiteService) -> FastAPI:
    app = FastAPI(title=f"EMS {service.cfg.site.name}", version="1")

    def writer(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> None:
        token = os.environ.get(service.cfg.service.api_token_env, "")
        if not token:
            raise HTTPException(403, f"writes are disabled: set {service.cfg.service.api_token_env}")
        if credentials is None or not hmac.compare_digest(credentials.credentials, token):
            raise HTTPException(401, "a valid bearer token is required",
                                headers={"WWW-Authenticate": "Bearer"})

    @app.get("/status")
    async def status() -> dict[str, Any]:
        m = service.measured()
        st = service.status
        return {
            "site": service.cfg.site.name, "time_utc": service.clock.now().isoformat(),
            "mode": st.mode, "mode_reason": st.mode_reason, "override": st.override,
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
        }

    @app.get("/plan")
    async def plan() -> dict[str, Any]:
        latest = service.store.latest_plan()
        if latest is None:
            raise HTTPException(404, "no plan yet")
        return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in latest.items()}

    @app.get("/history")
    async def history(start: Annotated[datetime, Query(alias="from")],
                      end: Annotated[datetime, Query(alias="to")],
                      device: str | None = None) -> list[dict[str, Any]]:
        if start.tzinfo is None or end.tzinfo is None:
            raise HTTPException(422, "from and to need a UTC offset, e.g. 2025-07-15T00:00:00Z")
        frame = service.store.telemetry(start, end, device)
        return [{"ts": r.ts.isoformat(), "device": r.device, "point": r.point,
                 "value": None if r.value != r.value else r.value, "missing_reason": r.missing_reason}
                for r in frame.itertuples()]

    @app.get("/alarms")
    async def alarms(open_only: bool = False) -> list[dict[str, Any]]:
        frame = service.store.alarms(open_only)
        return [{k: (v.isoformat() if isinstance(v, datetime) else (None if v != v else v))
                 for k, v in row.items()} for row in frame.to_dict("records")]

    @app.get("/kpis")
    async def kpis(period: str = "") -> dict[str, dict[str, float]]:
        return service.store.kpis(period)

    @app.put("/ev/{charger}/session", dependencies=[Depends(writer)])
    async def ev_session(charger: str, need: SessionNeed) -> dict[str, Any]:
        if need.departure_utc is not None and need.departure_utc.tzinfo is None:
            raise HTTPException(422, "departure_utc needs a UTC offset")
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
    async def reserve(name: str, body: BatteryReserve) -> dict[str, Any]:
        battery = next((b for b in service.cfg.battery if b.name == name), None)
        if battery is None:
            raise HTTPException(404, f"no battery {name!r}")
        if body.soc_min_fraction > battery.soc_max_fraction:
            raise HTTPException(422, [{"loc": ["body", "soc_min_fraction"], "input": body.soc_min_fraction,
                                       "msg": f"above battery {name}'s soc_max_fraction "
                                              f"{battery.soc_max_fraction:g}"}])
        service.set_reserve(name, body.soc_min_fraction)
        return {"battery": name, "soc_min_fraction": body.soc_min_fraction}

    @app.post("/alarms/{alarm_id}/ack", dependencies=[Depends(writer)])
    async def ack(alarm_id: int) -> dict[str, Any]:
        if not service.store.ack_alarm(alarm_id, datetime.now(UTC)):
            raise HTTPException(404, f"no unacknowledged alarm {alarm_id}")
        return {"acked": alarm_id}

    @app.get("/metrics")
    async def metrics() -> Response:
        service.metrics.update(service)
        return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app
