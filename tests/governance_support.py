"""A governance service in a thread, for tests in one process (one OS account): it answers every peer as
the service account, with the groups its settings give (`service_groups`). To read as another group,
start another service with other groups on another socket."""

from __future__ import annotations

import contextlib
import os
import pwd
import threading
from collections.abc import Iterator
from pathlib import Path

from workbench.config import Settings

ME = pwd.getpwuid(os.geteuid()).pw_name


@contextlib.contextmanager
def services(folder: Path) -> Iterator:
    """`start(settings, *groups)` -> the settings pointing at a new service that answers with `groups`."""
    from workbench.governance.service import GovernanceService, bind

    servers = []

    def start(settings: Settings, *groups: str) -> Settings:
        path = folder / f"governance-{len(servers)}.sock"
        settings = settings.with_overrides(
            governance_socket=str(path), service_user=ME, **({"service_groups": groups} if groups else {})
        )
        server = bind(settings)
        server.service = GovernanceService(settings)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return settings

    try:
        yield start
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()
