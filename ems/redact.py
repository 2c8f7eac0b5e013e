"""Secrets out of text: every message made from a failed fetch, an alarm, a log line or an API
answer goes through :func:`redact` before anyone can read it.

Removed: the values of query parameters whose name holds a secret's word (``securityToken``,
``token``, ``api_key``, ``apikey``, ``key``, ``password``, ``secret``, ``signature``...), the
password (and user) in a URL's userinfo (``scheme://user:password@host``), bearer tokens, and every value
registered with :func:`register_secret` (the API keys read from the environment), wherever it
appears.
"""

from __future__ import annotations

import logging
import re
import threading
import urllib.parse

MASK = "***"

_SECRET_NAME = r"[A-Za-z0-9_.-]*(?:token|key|secret|password|passwd|pwd|signature|credential)[A-Za-z0-9_.-]*"
_QUERY_SECRET = re.compile(rf"(?i)([?&;]{_SECRET_NAME}=)[^&#\s'\"<>]*")
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@'\"<>]+@")
_BEARER = re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]+")

_known: set[str] = set()
_lock = threading.Lock()

MIN_REGISTERED_CHARS = 4
"""Shorter values are not registered: masking every "abc" in every message would garble text."""


def register_secret(value: str) -> None:
    """Mask ``value`` wherever it appears from now on (an API key read from the environment)."""
    if len(value) >= MIN_REGISTERED_CHARS:
        with _lock:
            _known.add(value)


def register_url_secrets(url: str) -> None:
    """Register the secrets a URL holds (its userinfo password, the values of its secret-named
    query parameters): an error quoting the URL in another shape is masked too."""
    try:
        parts = urllib.parse.urlsplit(url)
        password = parts.password
    except ValueError:
        return
    if password:
        register_secret(urllib.parse.unquote(password))
    for name, value in urllib.parse.parse_qsl(parts.query):
        if re.fullmatch(_SECRET_NAME, name, flags=re.IGNORECASE):
            register_secret(value)


def redact(text: str) -> str:
    """``text`` with every secret it holds replaced by ``***``."""
    with _lock:
        known = sorted(_known, key=len, reverse=True)
    for value in known:
        if value in text:
            text = text.replace(value, MASK)
    text = _QUERY_SECRET.sub(rf"\1{MASK}", text)
    text = _USERINFO.sub(rf"\1{MASK}@", text)
    return _BEARER.sub(rf"\1{MASK}", text)


_RECORD_FIELDS = frozenset(vars(logging.makeLogRecord({})))


class RedactingFilter(logging.Filter):
    """A handler filter that redacts each record's message, its text fields (``extra``: the JSON
    log's keys) and its traceback before it is written."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        for name, value in list(vars(record).items()):
            if name not in _RECORD_FIELDS and isinstance(value, str):
                setattr(record, name, redact(value))
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True
