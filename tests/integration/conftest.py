"""Fixtures of the integration tests that start shared real parts: a throw-away PostgreSQL cluster."""

from __future__ import annotations

import pytest

from tests.integration import pgtools


@pytest.fixture(scope="session")
def postgres():
    """A PostgreSQL cluster on a free 127.0.0.1 port for this test session (per xdist worker); skips with the
    reason where the server binaries or the driver are missing."""
    reason = pgtools.missing_reason()
    if reason:
        pytest.skip(reason)
    with pgtools.running_postgres() as pg:
        yield pg
