"""Start the hub (JupyterHub + proxy + services) as one process tree and stop it cleanly.

`HubProcess` runs `jupyterhub -f <hub_config_file>` with the effective settings in its environment,
waits until the proxy answers, and stops it with SIGTERM (the hub then stops the user servers,
the services and the proxy). `serve()` is `workbench hub`: first admin, start, print, wait for Ctrl-C.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from ..config import Settings
from ..errors import ConfigError, SetupError
from . import accounts
from .configure import database_url, hub_environment

__all__ = ["HubProcess", "ensure_first_admin", "protect_state", "serve"]

STATE_MODE = 0o711  # local profile, hub as root: servers pass through the state folder to their homes
START_TIMEOUT = 180.0  # seconds: hub, proxy and the services it waits for, on a loaded machine
STOP_TIMEOUT = 60.0


class HubProcess:
    """The hub as a child process. Use as a context manager, or call start() and stop()."""

    def __init__(self, settings: Settings, log: TextIO | None = None):
        self.settings = settings
        self.log = log
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        scheme = "https" if self.settings.hub_ssl_cert else "http"
        host = "127.0.0.1" if self.settings.hub_ip in ("", "0.0.0.0") else self.settings.hub_ip
        return f"{scheme}://{host}:{self.settings.hub_port}/"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "jupyterhub", "-f", str(self.settings.path("hub_config_file"))]

    def start(self, timeout: float = START_TIMEOUT) -> HubProcess:
        s = self.settings
        proxy = s.path("proxy_command")
        if not os.access(proxy, os.X_OK):
            raise SetupError(
                f"The hub's proxy is not installed at {proxy}. Run `make setup` (npm install configurable-http-proxy) "
                "or set WORKBENCH_PROXY_COMMAND."
            )
        if not s.path("hub_config_file").is_file():
            raise ConfigError(f"No hub configuration at {s.path('hub_config_file')}. Set WORKBENCH_HUB_CONFIG_FILE.")
        state = s.path("hub_state_dir")
        state.mkdir(parents=True, exist_ok=True, mode=0o700)
        if s.profile == "local" and os.geteuid() == 0:
            protect_state(state, database_url(s))
        env = {k: v for k, v in os.environ.items() if not k.startswith("WORKBENCH_")}
        env.update(hub_environment(s))
        # Its own session: Ctrl-C reaches only `workbench hub`, which then stops the hub once, in order.
        self.proc = subprocess.Popen(
            self.command(),
            cwd=state,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT if self.log else None,
            start_new_session=True,
        )
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, timeout: float) -> None:
        end = time.monotonic() + timeout
        health = self.url + "hub/health"
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise SetupError(f"The hub exited with status {self.proc.returncode} while starting; its log says why.")
            try:
                with urllib.request.urlopen(health, timeout=5) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.5)
        raise SetupError(f"The hub did not answer at {health} within {timeout:.0f} s.")

    def wait(self) -> int:
        return self.proc.wait()

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM, then wait: the hub stops user servers, services and the proxy before exiting."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reap_proxy()

    def _reap_proxy(self) -> None:
        """A hub that fails while starting exits without stopping its proxy: stop it by its pid file."""
        pid_file = self.settings.path("hub_state_dir") / "proxy.pid"
        try:
            pid = int(pid_file.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return
        if b"configurable-http-proxy" not in cmdline:
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                break
            for _ in range(50):
                if not Path(f"/proc/{pid}").exists():
                    break
                time.sleep(0.1)
        pid_file.unlink(missing_ok=True)

    def __enter__(self) -> HubProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def protect_state(state: Path, db_url: str) -> None:
    """Local profile, hub as root (servers run as an unprivileged account): the state folder becomes passable
    but not listable, and the hub's own files in it (database, cookie secret, proxy pid) owner-only. A SQLite
    database is created empty, owner-only, before the hub would create it readable by all."""
    os.chmod(state, STATE_MODE)
    prefix = "sqlite:///"
    if db_url.startswith(prefix):
        db = Path(db_url[len(prefix) :])
        if db.parent == state and not db.exists():
            os.close(os.open(db, os.O_CREAT | os.O_WRONLY | os.O_NOFOLLOW, 0o600))
    for child in state.iterdir():
        if child.name == "homes" or child.is_symlink() or child.is_socket():
            continue
        os.chmod(child, 0o700 if child.is_dir() else 0o600)


def ensure_first_admin(settings: Settings, prompt: Callable[[str], str] | None) -> bool:
    """Local profile: create the first admin's account unless it exists; True if it was created.

    The password comes from `hub_admin_password`, else from `prompt` (asked twice)."""
    if settings.profile != "local" or accounts.account_exists(settings, settings.hub_admin_user):
        return False
    password = settings.hub_admin_password
    if not password:
        if prompt is None:
            raise ConfigError(
                f"The first admin '{settings.hub_admin_user}' has no account yet and there is no terminal to ask "
                "for a password. Set WORKBENCH_HUB_ADMIN_PASSWORD (at least "
                f"{accounts.MIN_PASSWORD_LENGTH} characters) for the first start."
            )
        password = prompt(f"Choose a password for the hub's first admin '{settings.hub_admin_user}': ")
        accounts.check_password_strength(password)
        if prompt("Repeat it: ") != password:
            raise ConfigError("The two passwords differ. Run `workbench hub` again.")
    return accounts.set_password(settings, settings.hub_admin_user, password)


def serve(settings: Settings, prompt: Callable[[str], str] | None, out: Callable[[str], None] = print) -> int:
    """`workbench hub`: start everything, print where to go, run until Ctrl-C, then stop cleanly."""
    if ensure_first_admin(settings, prompt):
        out(f"Created the first admin account '{settings.hub_admin_user}'.")
    hub = HubProcess(settings)
    signal.signal(signal.SIGTERM, _interrupt)  # `kill` stops the hub as cleanly as Ctrl-C
    out(f"Starting the hub ({settings.profile} profile, state in {settings.path('hub_state_dir')}) ...")
    try:
        hub.start()
    except KeyboardInterrupt:
        hub.stop()
        return 130
    out(
        f"\nThe hub is up: {hub.url}\n"
        f"  log in as '{settings.hub_admin_user}'; make accounts for others with `workbench hub user NAME`.\n"
        f"  Groups come from {settings.path('hub_users_file')}.\n"
        + "".join(
            f"  {name}: {hub.url}services/{name}/\n" for name in ("reports", "mlflow") if name in settings.hub_services
        )
        + "Press Ctrl-C to stop."
    )
    try:
        code = hub.wait()
        out(f"The hub exited with status {code}.")
        return code
    except KeyboardInterrupt:
        out("\nStopping the hub (user servers, services, proxy) ...")
        hub.stop()
        out("Stopped.")
        return 0


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt
