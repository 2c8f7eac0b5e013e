"""Who may call the API and what a bad request gets back: the bearer token (writes, and reads
with ``service.api_read_token_required``), the Host-header check of a local-only binding
(DNS rebinding), and 422 answers that name the field and the value, whatever the value."""

from __future__ import annotations

import ipaddress
import math
import os
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from ems.config.loader import ConfigError
from ems.config.models import ServiceConfig
from ems.redact import redact

MIN_TOKEN_CHARS = 16
"""Shortest API token accepted (characters)."""

LOCAL_HOST_NAMES = frozenset({"localhost", "127.0.0.1", "[::1]"})
"""Host header names a local-only binding answers to (any port)."""


def api_token(cfg: ServiceConfig) -> str | None:
    """The API token from the environment variable ``service.api_token_env`` (None when unset).

    Raises ConfigError naming the field when the token is shorter than :data:`MIN_TOKEN_CHARS`,
    or when ``service.api_read_token_required`` is set with no token."""
    token = os.environ.get(cfg.api_token_env, "")
    if token and len(token) < MIN_TOKEN_CHARS:
        raise ConfigError([f"service.api_token_env: the token in ${cfg.api_token_env} has {len(token)} "
                           f"characters; at least {MIN_TOKEN_CHARS} are needed"])
    if not token and cfg.api_read_token_required:
        raise ConfigError([f"service.api_read_token_required = true needs a token in "
                           f"${cfg.api_token_env} (service.api_token_env)"])
    return token or None


def is_local_only(host: str) -> bool:
    """True when binding to ``host`` serves this machine only (a loopback address or localhost)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False


def host_name(header: str) -> str:
    """The name in a Host header without its port: "[::1]:8080" → "[::1]", "a:80" → "a"."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[:header.find("]") + 1] if "]" in header else header
    return header.split(":", 1)[0]


def host_check(allowed: frozenset[str]) -> Callable[[Request, Callable[[Request], Awaitable[Response]]],
                                                    Awaitable[Response]]:
    """An HTTP middleware answering 400 to a request whose Host is not one of ``allowed``: a page
    on another site that rebinds its DNS name to 127.0.0.1 cannot reach the API."""
    async def check(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        name = host_name(request.headers.get("host", ""))
        if name not in allowed:
            return JSONResponse({"detail": f"Host {name!r} is not served: this API answers to "
                                           f"{', '.join(sorted(allowed))} only"}, status_code=400)
        return await call_next(request)
    return check


def json_safe(value: Any) -> Any:
    """``value`` as JSON can carry it: non-finite floats as text, long text cut, secrets masked."""
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, str):
        return redact(value if len(value) <= 200 else value[:200] + "…")
    if isinstance(value, dict):
        return {str(k)[:200]: json_safe(v) for k, v in list(value.items())[:50]}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value[:50]]
    if value is None or isinstance(value, bool | int | float):
        return value
    return json_safe(str(value))


async def validation_error(_request: Request, exc: Exception) -> JSONResponse:
    """422 naming each bad field and its value (NaN and Infinity included: the default answer
    fails to encode them and becomes a 500)."""
    assert isinstance(exc, RequestValidationError)
    detail = [{"loc": json_safe(list(e.get("loc", ()))), "msg": json_safe(e.get("msg", "")),
               "type": json_safe(e.get("type", "")), "input": json_safe(e.get("input"))}
              for e in exc.errors()]
    return JSONResponse({"detail": detail}, status_code=422)


def field_error(loc: list[str | int], value: Any, msg: str) -> RequestValidationError:
    """A 422 for one field, in the same shape as pydantic's."""
    return RequestValidationError([{"loc": tuple(loc), "msg": msg, "type": "value_error", "input": value}])
