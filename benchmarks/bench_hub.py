"""Spawn N users' servers at once through the hub's REST API: time until all are ready, the hub's CPU and
memory while doing it, and the memory of each idle server.

Ours: the workbench hub (`workbench.hub`, started by the same launcher as `workbench hub`), its users in
the data-scientists group. Peer: a stock JupyterHub 5 on the same machine with the same spawner and
proxy and nothing else (no group sync, no pre-spawn hook, no services). Targets from issue 9: 20 servers
ready in under a minute on 2 cores, an idle server under 150 MB.

    python benchmarks/bench_hub.py              # 10 and 20 servers, ours then the peer
    python benchmarks/bench_hub.py --quick      # 3 servers
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from workbench.config import load_settings  # noqa: E402
from workbench.hub import accounts  # noqa: E402
from workbench.hub.launcher import HubProcess  # noqa: E402

PASSWORD = "bench-hub-password-1"
READY_TIMEOUT = 600.0
IDLE_SETTLE = 10.0  # seconds between "all ready" and measuring memory
TARGET_READY_20 = 60.0
TARGET_IDLE_MB = 150.0

PEER_CONFIG = """
import sys
c = get_config()  # noqa
c.JupyterHub.bind_url = "http://127.0.0.1:{port}/"
c.JupyterHub.hub_port = {api_port}
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{proxy_api_port}"
c.ConfigurableHTTPProxy.command = [{proxy!r}]
c.JupyterHub.db_url = "sqlite:///{state}/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = "{state}/cookie_secret"
c.JupyterHub.authenticator_class = "dummy"  # nobody logs in: the benchmark uses a service token
c.Authenticator.allow_all = True
c.JupyterHub.spawner_class = "jupyterhub.spawner.SimpleLocalProcessSpawner"
c.SimpleLocalProcessSpawner.home_dir_template = "{state}/homes/{{username}}"
c.Spawner.cmd = [sys.executable, "-m", "jupyterhub.singleuser"]
c.Spawner.args = {args!r}
c.Spawner.default_url = "/lab"
c.Spawner.start_timeout = c.Spawner.http_timeout = 120
c.JupyterHub.services = [{{"name": "bench", "api_token": {token!r}}}]
c.JupyterHub.load_roles = [{{"name": "bench", "scopes": ["admin:users", "admin:servers"], "services": ["bench"]}}]
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PeerHub:
    """A stock JupyterHub with a benchmark service token, nothing else."""

    def __init__(self, state: Path, proxy: str, log):
        self.state, self.log, self.token = state, log, secrets.token_hex(16)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        state.mkdir(parents=True, exist_ok=True)
        (state / "jupyterhub_config.py").write_text(
            PEER_CONFIG.format(
                port=self.port,
                api_port=free_port(),
                proxy_api_port=free_port(),
                proxy=proxy,
                state=state,
                args=["--allow-root"] if os.geteuid() == 0 else [],
                token=self.token,
            )
        )
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jupyterhub", "-f", str(self.state / "jupyterhub_config.py")],
            cwd=self.state,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        end = time.monotonic() + 180
        while time.monotonic() < end:
            try:
                if httpx.get(self.url + "hub/health", timeout=5).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        raise RuntimeError("the peer hub did not start")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(60)


def our_hub(root: Path, n_max: int, log) -> tuple[HubProcess, str]:
    root.mkdir(parents=True, exist_ok=True)
    users = "\n".join(f"  bench-{i:02d}: [data-scientists]" for i in range(n_max))
    (root / "users.yaml").write_text(
        (REPO / "hub_config" / "users.yaml").read_text().split("\nusers:")[0]
        + f"\nusers:\n  admin: [admins]\n{users}\n"
    )
    settings = load_settings(env={"WORKBENCH_HOME": str(REPO)}).with_overrides(
        hub_state_dir=str(root / "state"),
        hub_users_file=str(root / "users.yaml"),
        hub_services=("idle-culler",),
        hub_port=free_port(),
        hub_api_port=free_port(),
        proxy_api_port=free_port(),
        hub_admin_password=PASSWORD,
    )
    accounts.set_password(settings, "admin", PASSWORD)
    hub = HubProcess(settings, log=log).start()
    c = httpx.Client(base_url=hub.url, timeout=60)
    c.get("/hub/login")
    c.post(
        "/hub/login", data={"username": "admin", "password": PASSWORD, "_xsrf": c.cookies.get("_xsrf", path="/hub/")}
    )
    r = c.post(
        "/hub/api/users/admin/tokens",
        json={"note": "bench"},
        headers={"X-XSRFToken": c.cookies.get("_xsrf", path="/hub/")},
    )
    r.raise_for_status()
    return hub, r.json()["token"]


async def spawn_all(url: str, token: str, names: list[str]) -> tuple[float, int]:
    """Create the users, start all their servers at once; return (seconds until every server that started
    was ready, number that failed to start, e.g. the hub's Spawner.http_timeout on an overloaded machine)."""
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"token {token}"}, timeout=120) as api:
        r = await api.post("/hub/api/users", json={"usernames": names})
        assert r.status_code in (201, 409), r.text
        start = time.perf_counter()
        responses = await asyncio.gather(*(api.post(f"/hub/api/users/{n}/server") for n in names))
        bad = [r.status_code for r in responses if r.status_code not in (201, 202)]
        assert not bad, f"spawn requests refused: {bad}"
        pending, failed, last_ready = set(names), 0, start
        while pending:
            if time.perf_counter() - start > READY_TIMEOUT:
                raise RuntimeError(f"{len(pending)} servers neither ready nor failed after {READY_TIMEOUT:.0f} s")
            await asyncio.sleep(0.5)
            for user in (await api.get("/hub/api/users")).json():
                if user["name"] not in pending:
                    continue
                server = user.get("servers", {}).get("")
                if server and server.get("ready"):
                    pending.discard(user["name"])
                    last_ready = time.perf_counter()
                elif not server and not user.get("pending"):
                    pending.discard(user["name"])
                    failed += 1
        return last_ready - start, failed


async def stop_all(url: str, token: str, names: list[str]) -> None:
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"token {token}"}, timeout=120) as api:
        await asyncio.gather(*(api.delete(f"/hub/api/users/{n}/server") for n in names))
        while (await api.get("/hub/api/users", params={"state": "active"})).json():
            await asyncio.sleep(1)


def servers_of(hub_pid: int) -> list[psutil.Process]:
    found = []
    for p in psutil.Process(hub_pid).children(recursive=True):
        try:
            if "jupyterhub.singleuser" in " ".join(p.cmdline()):
                found.append(p)
        except psutil.Error:
            pass
    return found


def measure(name: str, url: str, token: str, hub_pid: int, n: int) -> dict:
    names = [f"bench-{i:02d}" for i in range(n)]
    hub = psutil.Process(hub_pid)
    cpu0, load0 = sum(hub.cpu_times()[:2]), os.getloadavg()[0]
    wall, failed = asyncio.run(spawn_all(url, token, names))
    cpu = sum(hub.cpu_times()[:2]) - cpu0
    time.sleep(IDLE_SETTLE)
    servers = servers_of(hub_pid)
    pss = [p.memory_full_info().pss / 2**20 for p in servers]
    rss = [p.memory_info().rss / 2**20 for p in servers]
    row = {
        "hub": name,
        "n": n,
        "failed": failed,
        "ready_s": wall,
        "hub_cpu_s": cpu,
        "hub_cpu_pct": 100 * cpu / max(wall, 1e-9),
        "hub_rss_mb": hub.memory_info().rss / 2**20,
        "servers_seen": len(servers),
        "server_pss_mb": sum(pss) / max(1, len(pss)),
        "server_rss_mb": sum(rss) / max(1, len(rss)),
        "load_before": load0,
        "load_after": os.getloadavg()[0],
    }
    asyncio.run(stop_all(url, token, names))
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 20], help="numbers of servers to start at once")
    parser.add_argument("--quick", action="store_true", help="3 servers only")
    parser.add_argument("--no-peer", action="store_true", help="skip the stock-JupyterHub peer")
    args = parser.parse_args()
    sizes = [3] if args.quick else args.sizes
    proxy = str(REPO / ".npm/node_modules/.bin/configurable-http-proxy")
    print(f"machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f} at start (shared machine)")
    rows = []
    logs = Path(tempfile.mkdtemp(prefix="bench-hub-logs-"))
    print(f"hub logs in {logs}")
    with tempfile.TemporaryDirectory(prefix="bench-hub-") as tmp:
        root = Path(tmp)
        with open(logs / "workbench.log", "w") as log:
            hub, token = our_hub(root / "ours", max(sizes), log)
            try:
                rows += [measure("workbench", hub.url, token, hub.proc.pid, n) for n in sizes]
            finally:
                hub.stop()
        if not args.no_peer:
            with open(logs / "stock.log", "w") as log:
                peer = PeerHub(root / "peer", proxy, log).start()
                try:
                    rows += [measure("stock", peer.url, peer.token, peer.proc.pid, n) for n in sizes]
                finally:
                    peer.stop()

    print(
        f"\n{'hub':<10} {'servers':>7} {'failed':>6} {'all ready s':>11} {'hub CPU s':>9} {'hub CPU %':>9} {'hub RSS MB':>10} "
        f"{'server PSS MB':>13} {'server RSS MB':>13} {'load':>11}"
    )
    for r in rows:
        print(
            f"{r['hub']:<10} {r['n']:>7} {r['failed']:>6} {r['ready_s']:>11.1f} {r['hub_cpu_s']:>9.1f} {r['hub_cpu_pct']:>9.0f} "
            f"{r['hub_rss_mb']:>10.0f} {r['server_pss_mb']:>13.0f} {r['server_rss_mb']:>13.0f} "
            f"{r['load_before']:>5.1f}->{r['load_after']:<5.1f}"
        )
    ours = {r["n"]: r for r in rows if r["hub"] == "workbench"}
    peer = {r["n"]: r for r in rows if r["hub"] == "stock"}
    for n in sizes:
        if n in peer:
            print(
                f"{n} servers: time to all ready, workbench/stock = {ours[n]['ready_s'] / peer[n]['ready_s']:.2f}; "
                f"idle server PSS workbench/stock = {ours[n]['server_pss_mb'] / peer[n]['server_pss_mb']:.2f}"
            )
    biggest = ours[max(sizes)]
    print(
        f"target: 20 servers ready < {TARGET_READY_20:.0f} s -> {max(sizes)} took {biggest['ready_s']:.1f} s "
        f"({biggest['ready_s'] / TARGET_READY_20:.2f} of the target); idle server < {TARGET_IDLE_MB:.0f} MB -> "
        f"{biggest['server_pss_mb']:.0f} MB PSS ({biggest['server_pss_mb'] / TARGET_IDLE_MB:.2f} of the target)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
