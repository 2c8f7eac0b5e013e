"""Fixtures shared by the test modules: the bundled sites, loaded once per session, a local HTTP
server standing in for signal providers, and a throwaway PostgreSQL server."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator

import pytest

from ems.config import LoadedSite, load_site
from tests import pg_server
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


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    if not pg_server.available():
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL server binaries missing in CI (.ci/run installs postgresql)")
        pytest.skip("PostgreSQL server binaries not installed (apt install postgresql)")
    with pg_server.postgres_url() as url:
        yield url
