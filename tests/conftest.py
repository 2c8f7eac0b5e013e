"""Fixtures shared by the test modules: the bundled sites, loaded once per session."""

from __future__ import annotations

import pytest

from ems.config import LoadedSite, load_site


@pytest.fixture(scope="session")
def guangdong() -> LoadedSite:
    return load_site("guangdong_factory")


@pytest.fixture(scope="session")
def caltech() -> LoadedSite:
    return load_site("caltech_campus")
