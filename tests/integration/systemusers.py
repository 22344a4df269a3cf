"""Throw-away system users for the governance tests (root only; CI runs as root): create and remove
users and groups, find a Python they may run, and run a script as one of them with a clean
environment (`runuser` + `env -i`)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import pytest

from tests.conftest import REPO

TOOLS = ("useradd", "userdel", "groupadd", "groupdel", "runuser")


def skip_unless_root_with_tools() -> None:
    """Module-level skip with the reason, unless we are root with the user tools and a checkout others can read."""
    if os.geteuid() != 0:
        pytest.skip("needs root: creates throw-away system users and groups (CI runs as root)", allow_module_level=True)
    if not all(shutil.which(tool) for tool in TOOLS):
        pytest.skip(
            "needs useradd, userdel, groupadd, groupdel and runuser (package passwd / util-linux)",
            allow_module_level=True,
        )
    unreadable = [
        p
        for p in (
            REPO / "workbench" / "__init__.py",
            Path(sysconfig.get_paths()["purelib"]) / "pyspark" / "__init__.py",
        )
        if not others_can_read(p)
    ]
    if unreadable:
        pytest.skip(
            f"other users cannot read {unreadable[0]} (a folder above it lacks o+x, e.g. `mktemp -d` makes 0700 "
            "folders); the throw-away users run Python from this checkout. Clone into a folder others can enter "
            "(chmod o+x) to run this test.",
            allow_module_level=True,
        )


def others_can_read(path: Path) -> bool:
    """Every folder up to `path` is searchable by others and `path` readable."""
    return all(p.stat().st_mode & 0o001 for p in [path, *path.parents] if p.is_dir()) and bool(
        path.stat().st_mode & 0o004
    )


def sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, timeout=60)


class Accounts:
    """Users (each with a group of its own name, plus extra groups) removed again by `remove()`."""

    def __init__(self, root: Path):
        self.root = root
        self.created: list[tuple[str, str]] = []

    def group(self, name: str) -> str:
        sh("groupadd", name)
        self.created.append(("groupdel", name))
        return name

    def user(self, name: str, groups: tuple[str, ...] = ()) -> Path:
        self.group(name)
        extra = ["--groups", ",".join(groups)] if groups else []
        sh("useradd", "--no-create-home", "--gid", name, *extra, "--shell", "/usr/sbin/nologin", name)
        self.created.insert(0, ("userdel", name))
        home = self.root / f"home-{name}"
        (home / "tmp").mkdir(parents=True)
        shutil.chown(home, name, name)
        shutil.chown(home / "tmp", name, name)
        home.chmod(0o700)
        return home

    def remove(self) -> None:
        for command, name in self.created:
            for _ in range(10):  # userdel refuses while a process of the user is still exiting
                done = subprocess.run([command, name], capture_output=True, timeout=60)
                if done.returncode in (0, 6):  # 6: no such user/group (already gone)
                    break
                time.sleep(1)


def user_python(user: str) -> list[str]:
    """An interpreter `user` may execute: this one, or the system's Python of the same version with this
    environment's packages on the path (when this one lives in a folder others cannot enter, e.g. /root/.pyenv)."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    for candidate in (sys.executable, shutil.which(f"python{version}"), f"/usr/bin/python{version}"):
        if not candidate:
            continue
        probe = subprocess.run(
            ["runuser", "-u", user, "--", candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=60,
            cwd="/",
        )
        if probe.returncode == 0 and probe.stdout.strip() == version:
            return [candidate, "-s"]
    pytest.skip(
        f"no Python {version} that a system user may execute (this one, {sys.executable}, is in a folder they cannot enter)"
    )


def user_env(home: Path, extra: dict[str, str]) -> dict[str, str]:
    return {
        "HOME": str(home),
        "TMPDIR": str(home / "tmp"),
        "PYTHONPATH": f"{REPO}:{sysconfig.get_paths()['purelib']}",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        **extra,
    }


def as_user(user: str, env: dict[str, str], args: list[str], cwd: Path) -> list[str]:
    """The command line that runs `args` (after the interpreter) as `user` with exactly `env`."""
    return ["runuser", "-u", user, "--", "env", "-i", *(f"{k}={v}" for k, v in env.items()), *user_python(user), *args]


def run_as(user: str, env: dict[str, str], args: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess:
    proc = subprocess.Popen(
        as_user(user, env, args, cwd),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the session we started
        stdout, stderr = proc.communicate()
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
