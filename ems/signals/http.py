"""HTTP GET with a timeout, retries with capped exponential backoff, and API keys from the
environment (never from config files)."""

from __future__ import annotations

import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping

from ems.redact import redact, register_secret, register_url_secrets
from ems.signals.series import SignalError


def api_key(variable: str) -> str:
    """The API key in environment variable ``variable``; a missing one raises SignalError naming it."""
    value = os.environ.get(variable, "").strip()
    if not value:
        raise SignalError(f"environment variable {variable} is not set (API key)")
    register_secret(value)
    return value


def get(
    url: str,
    headers: Mapping[str, str] | None = None,
    timeout_s: float = 10.0,
    retries: int = 3,
    backoff_s: float = 1.0,
    max_backoff_s: float = 30.0,
    sleep: Callable[[float], None] = time.sleep,
    body: bytes | None = None,
) -> bytes:
    """The body of ``url`` (a POST of ``body`` when one is given). Server errors (5xx, 429) and
    network failures are retried ``retries`` times with backoff doubling from ``backoff_s``;
    client errors (4xx) fail at once. Error messages name the URL with its secrets redacted."""
    register_url_secrets(url)
    try:
        request = urllib.request.Request(url, data=body, headers=dict(headers or {}))
    except ValueError as exc:
        raise SignalError(redact(f"GET {url}: not a URL: {exc}")) from None
    delay = backoff_s
    for attempt in range(retries + 1):
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:
                content: bytes = response.read()
                return content
        except urllib.error.HTTPError as exc:
            if exc.code < 500 and exc.code != 429:
                raise SignalError(redact(f"GET {url}: HTTP {exc.code} {exc.reason}")) from None
            problem = f"HTTP {exc.code} {exc.reason}"
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            problem = str(getattr(exc, "reason", exc))
        except ValueError as exc:  # e.g. http.client.InvalidURL: userinfo read as a port
            raise SignalError(redact(f"GET {url}: not a URL: {exc}")) from None
        if attempt == retries:
            raise SignalError(redact(f"GET {url}: failed after {retries + 1} attempts: {problem}"))
        sleep(delay)
        delay = min(max_backoff_s, delay * 2)
    raise AssertionError("unreachable")
