"""The shared hub: JupyterHub configured from workbench settings and the users file.

- `apply_config(settings, c)` sets the whole hub configuration on a traitlets Config (configure.py);
  `hub_config/jupyterhub_config.py` is a few lines that call it.
- users.py: the users file (groups, what each group may do, who is in which group).
- auth.py: authenticators taking group membership from that file (imports JupyterHub).
- accounts.py: local-profile accounts (first admin; passwords set by an admin).
- launcher.py: `workbench hub` (start, print the URL, stop cleanly on Ctrl-C).
- reports_service.py, mlflow_service.py: the hub services behind the hub's login.
"""
from .configure import apply_config, server_environment, service_environment
from .users import REQUIRED_GROUPS, GroupSpec, UsersFile, load_users_file

__all__ = ["apply_config", "server_environment", "service_environment", "load_users_file", "UsersFile", "GroupSpec",
           "REQUIRED_GROUPS"]
