"""The local profile's spawner when the hub runs as root: every single-user server runs as one
unprivileged system account (`hub_server_user`, default `nobody`), never as root.

JupyterHub's SimpleLocalProcessSpawner runs servers as the hub's own account, which with a root hub
(`--allow-root`) let a kernel read the hub's cookie secret, its database and every file. Here the
server's home (`<hub_state_dir>/homes/<name>`, 0700) belongs to that account, the state folder is
0711 (passable to reach the homes, not listable) and the hub's own files in it are 0600 (see
`workbench.hub.launcher.protect_state`), so a kernel can reach its home and the governance socket and nothing else there.
"""

from __future__ import annotations

import os
import pwd
from pathlib import Path

from jupyterhub.spawner import SimpleLocalProcessSpawner, set_user_setuid
from traitlets import Unicode

from .launcher import STATE_MODE

__all__ = ["UnprivilegedLocalSpawner"]


class UnprivilegedLocalSpawner(SimpleLocalProcessSpawner):
    server_user = Unicode(
        "nobody", config=True, help="System account every single-user server runs as (never root; must exist)."
    )

    def _account(self) -> pwd.struct_passwd:
        try:
            account = pwd.getpwnam(self.server_user)
        except KeyError:
            raise RuntimeError(
                f"The account '{self.server_user}' (setting hub_server_user) does not exist: create it "
                f"(useradd --system {self.server_user}) or choose another unprivileged account."
            ) from None
        if account.pw_uid == 0:
            raise RuntimeError(f"hub_server_user '{self.server_user}' is root: servers must not run as root.")
        return account

    def make_preexec_fn(self, name):
        home = self.home_dir
        become = set_user_setuid(self.server_user, chdir=False)

        def preexec():
            become()
            os.chdir(home)

        return preexec

    async def start(self):
        account = self._account()
        home = Path(self.home_dir)
        home.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(home.parent, STATE_MODE)
        home.mkdir(mode=0o700, exist_ok=True)
        os.chown(home, account.pw_uid, account.pw_gid)
        os.chmod(home, 0o700)
        return await super().start()
