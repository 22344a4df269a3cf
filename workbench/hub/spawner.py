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
import shutil
import sys
import sysconfig
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
        self.cmd = _command_for(account, list(self.cmd))
        if self.cmd[0] != sys.executable:  # a system Python of the same version, with this environment's packages
            paths = (
                sysconfig.get_paths()
            )  # .pth files (an editable install) are not read from PYTHONPATH: add our own root
            ours = str(Path(__file__).resolve().parents[2])
            self.environment = {
                **self.environment,
                "PYTHONPATH": f"{ours}:{paths['purelib']}:{paths['platlib']}",
                # this environment's Jupyter config (enables JupyterLab) and JupyterLab itself, not /usr's; its
                # kernel specs are left out, since they name the interpreter this account cannot run
                "JUPYTER_CONFIG_PATH": str(Path(sys.prefix) / "etc" / "jupyter"),
                "JUPYTERLAB_DIR": str(Path(sys.prefix) / "share" / "jupyter" / "lab"),
            }
        home = Path(self.home_dir)
        home.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(home.parent, STATE_MODE)
        home.mkdir(mode=0o700, exist_ok=True)
        os.chown(home, account.pw_uid, account.pw_gid)
        os.chmod(home, 0o700)
        return await super().start()


def _command_for(account: pwd.struct_passwd, cmd: list[str]) -> list[str]:
    """`cmd` as given when `account` may run its interpreter; else the same command with a system Python of the
    same version (this interpreter may live where only root can go, e.g. a pyenv under /root)."""
    if not cmd or cmd[0] != sys.executable or _may_execute(account, Path(sys.executable)):
        return cmd
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    for candidate in (shutil.which(f"python{version}"), f"/usr/bin/python{version}", f"/usr/local/bin/python{version}"):
        if candidate and _may_execute(account, Path(candidate)):
            return [candidate, *cmd[1:]]
    raise RuntimeError(
        f"The account '{account.pw_name}' (hub_server_user) cannot run {sys.executable} and there is no system "
        f"python{version} it can run: install the workbench where other accounts can read it."
    )


def _may_execute(account: pwd.struct_passwd, path: Path) -> bool:
    """Whether `account` may reach and execute `path` (every folder searchable, the file executable), by mode bits."""
    groups = set(os.getgrouplist(account.pw_name, account.pw_gid))

    def allowed(st: os.stat_result, bit: int) -> bool:
        if st.st_uid == account.pw_uid:
            return bool(st.st_mode & (bit << 6))
        if st.st_gid in groups:
            return bool(st.st_mode & (bit << 3))
        return bool(st.st_mode & bit)

    try:
        real = path.resolve(strict=True)
        return all(allowed(os.stat(folder), 1) for folder in real.parents) and allowed(os.stat(real), 1)
    except OSError:
        return False
