"""The repository's notebooks in every user's server: what a data scientist sees right after login.

A `Spawner.pre_spawn_hook` part. Before each server starts, in the user's home folder:

- `shared-notebooks/`: a read-only copy of the project's notebooks (the `notebooks_dir` setting),
  refreshed at every server start, so it always shows the notebooks as the repository has them;
- `notebooks/`: the user's own working copy, made on the first start only and never overwritten
  (a notebook added to the repository later is copied in when the user has no file of that name);
- JupyterLab's news and update check are switched off in the user's settings (on first start only,
  so a user who turns them on keeps them).

In production (servers run as system users) the hub runs this as root and hands the files to the user.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import stat
from collections.abc import Callable
from pathlib import Path

__all__ = ["ProvideNotebooks", "PreSpawnHooks", "provide_notebooks", "server_home", "SHARED", "PERSONAL"]

SHARED = "shared-notebooks"
PERSONAL = "notebooks"
README = "README.md"
LAB_SETTINGS = Path(".jupyter/lab/user-settings/@jupyterlab/apputils-extension/notification.jupyterlab-settings")
QUIET_LAB = {"fetchNews": "false", "checkForUpdates": False}


def _owner(home: Path) -> tuple[int, int] | None:
    """(uid, gid) to give new files to: the home's owner when the hub runs as root and it is not root's."""
    if os.geteuid() != 0 or not home.exists():
        return None
    info = home.stat()
    return None if info.st_uid == 0 else (info.st_uid, info.st_gid)


def _chown(path: Path, owner: tuple[int, int] | None) -> None:
    if owner is not None:
        os.chown(path, *owner, follow_symlinks=False)


def provide_notebooks(source: Path, home: Path, owner: tuple[int, int] | None = None) -> list[Path]:
    """Refresh `<home>/shared-notebooks` from `source` (read-only) and copy into `<home>/notebooks` the
    notebooks the user does not have yet. Returns the files copied into the working copy."""
    source, home = Path(source), Path(home)
    if not source.is_dir():
        return []
    notebooks = sorted(p for p in source.iterdir() if p.suffix == ".ipynb" or p.name == README)
    shared = home / SHARED
    if shared.exists():
        for folder, _, _ in os.walk(shared):
            os.chmod(folder, 0o755)
        shutil.rmtree(shared)
    shared.mkdir(parents=True)
    for path in notebooks:
        target = shared / path.name
        shutil.copyfile(path, target)
        os.chmod(target, stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
        _chown(target, owner)
    os.chmod(shared, 0o555)
    _chown(shared, owner)

    personal = home / PERSONAL
    personal.mkdir(exist_ok=True)
    _chown(personal, owner)
    copied = []
    for path in notebooks:
        target = personal / path.name
        if not target.exists():
            shutil.copyfile(path, target)
            os.chmod(target, 0o644)
            _chown(target, owner)
            copied.append(target)

    settings_file = home / LAB_SETTINGS
    if not settings_file.exists():
        settings_file.parent.mkdir(parents=True, exist_ok=True)
        settings_file.write_text(json.dumps(QUIET_LAB, indent=2) + "\n")
        for folder, _, files in os.walk(home / ".jupyter"):
            _chown(Path(folder), owner)
            for name in files:
                _chown(Path(folder) / name, owner)
    return copied


def server_home(spawner) -> Path:
    """The folder a spawner's server opens on: SimpleLocalProcessSpawner's home_dir, else the system user's home."""
    home = getattr(spawner, "home_dir", "") or ""
    if home:
        return Path(home)
    return Path(pwd.getpwnam(spawner.user.name).pw_dir)


class ProvideNotebooks:
    """`Spawner.pre_spawn_hook` part: the notebooks of `source` in the user's server (see the module)."""

    def __init__(self, source: str):
        self.source = Path(source)

    def __call__(self, spawner) -> None:
        home = server_home(spawner)
        home.mkdir(parents=True, exist_ok=True)
        copied = provide_notebooks(self.source, home, _owner(home))
        if copied:
            spawner.log.info("copied %d notebook(s) into %s", len(copied), home / PERSONAL)


class PreSpawnHooks:
    """Several `pre_spawn_hook`s in order (JupyterHub takes one)."""

    def __init__(self, *hooks: Callable):
        self.hooks = hooks

    def __call__(self, spawner) -> None:
        for hook in self.hooks:
            hook(spawner)
