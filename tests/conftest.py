"""Fixtures shared by the test modules: the bundled sites, loaded once per session, and a local
HTTP server standing in for signal providers."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from ems.config import LoadedSite, load_site
from tests.http_provider import Provider


@pytest.fixture(scope="session")
def guangdong() -> LoadedSite:
    return load_site("guangdong_factory")


@pytest.fixture(scope="session")
def caltech() -> LoadedSite:
    return load_site("caltech_campus")


@pytest.fixture()
def provider() -> Iterator[Provider]:
    p = Provider()
    thread = threading.Thread(target=p.httpd.serve_forever, daemon=True)
    thread.start()
    yield p
    p.httpd.shutdown()
    p.httpd.server_close()
