"""The shared hub: JupyterHub configured from workbench settings and the users file.

- `apply_config(settings, c)` sets the whole hub configuration on a traitlets Config (configure.py);
  `hub_config/jupyterhub_config.py` is a few lines that call it.
- users.py: the users file (groups, what each group may do, who is in which group).
- auth.py: authenticators taking group membership from that file (imports JupyterHub).
- accounts.py: local-profile accounts (first admin; passwords set by an admin).
- launcher.py: `workbench hub` (start, print the URL, stop cleanly on Ctrl-C).
- service.py (entry point), reports_service.py, mlflow_service.py: the hub services behind its login.

Names are loaded on first use, so a hub service can import this package and listen within a second.
"""

from __future__ import annotations

import importlib

__all__ = [
    "apply_config",
    "server_environment",
    "service_environment",
    "load_users_file",
    "UsersFile",
    "GroupSpec",
    "REQUIRED_GROUPS",
]

_WHERE = {
    "apply_config": "configure",
    "server_environment": "configure",
    "service_environment": "configure",
    "load_users_file": "users",
    "UsersFile": "users",
    "GroupSpec": "users",
    "REQUIRED_GROUPS": "users",
}


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
