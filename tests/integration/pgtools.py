"""A throw-away PostgreSQL cluster for the integration tests: `initdb` in a temporary folder, `pg_ctl start`
on a free 127.0.0.1 port (password authentication, no Unix socket outside that folder), databases created on
demand, `pg_ctl stop` and the folder removed at the end.

The server binaries are Debian's `postgresql` package (`/usr/lib/postgresql/NN/bin`, not on the PATH;
`make postgres` installs it as root). PostgreSQL refuses to run as root: as root the cluster belongs to the
unprivileged `nobody` account, which owns the data folder.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import free_port

SUPERUSER = "workbench"
PASSWORD = "pg-integration-pw-3"  # a throw-away cluster's, on 127.0.0.1 only
RUN_AS = "nobody"  # the account that owns the cluster when the tests run as root


def server_bin() -> Path | None:
    """The folder holding initdb and pg_ctl: on the PATH, else the newest /usr/lib/postgresql/NN/bin."""
    on_path = shutil.which("initdb")
    if on_path and shutil.which("pg_ctl"):
        return Path(on_path).parent
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    return Path(found[-1]).parent if found else None


def missing_reason() -> str | None:
    """Why a cluster cannot start here (for pytest.skip), or None."""
    if server_bin() is None:
        return "PostgreSQL server binaries (initdb, pg_ctl) not found: `make postgres` installs Debian's postgresql as root"
    try:
        import psycopg  # noqa: F401  (SQLAlchemy 2.1's default driver for postgresql://: MLflow's and the hub's)
    except ImportError:
        return "psycopg is not installed: `pip install -e '.[dev]'` (psycopg[binary])"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(RUN_AS)
        except KeyError:
            return f"running as root and there is no unprivileged '{RUN_AS}' account to own the cluster"
    return None


@dataclass
class Postgres:
    """A running cluster: `url(db)` is the SQLAlchemy URL the workbench settings take."""

    port: int
    folder: Path

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}:{PASSWORD}@127.0.0.1:{self.port}/{database}"

    def connect(self, database: str = "postgres"):
        import psycopg

        return psycopg.connect(self.url(database), autocommit=True)

    def create_database(self, name: str) -> str:
        """A new empty database; its URL."""
        conn = self.connect()
        try:
            with conn.cursor() as cur:
                cur.execute(f'CREATE DATABASE "{name}"')
        finally:
            conn.close()
        return self.url(name)

    def query(self, database: str, sql: str, *args) -> list[tuple]:
        conn = self.connect(database)
        try:
            with conn.cursor() as cur:
                cur.execute(sql, args)
                return cur.fetchall()
        finally:
            conn.close()


@contextmanager
def running_postgres() -> Iterator[Postgres]:
    """initdb + pg_ctl start in a temporary folder; stopped and removed on exit."""
    bindir = server_bin()
    assert bindir is not None, missing_reason()
    # Not under pytest's 0700 temp folder: as root, `nobody` must reach its data folder.
    folder = Path(tempfile.mkdtemp(prefix="wb-pg-"))
    folder.chmod(0o755)
    data, sockets = folder / "data", folder / "run"
    pwfile = folder / "pwfile"
    pwfile.write_text(PASSWORD + "\n")
    user = None
    if os.geteuid() == 0:
        user = pwd.getpwnam(RUN_AS)
        for p in (folder, pwfile):
            os.chown(p, user.pw_uid, user.pw_gid)
    pwfile.chmod(0o600)

    def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        extra = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []} if user else {}
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8", "HOME": str(folder)}
        out = subprocess.run(args, env=env, cwd=folder, capture_output=True, text=True, timeout=timeout, **extra)
        assert out.returncode == 0, f"{' '.join(args[:2])} failed:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}"
        return out

    port = free_port()
    started = False
    try:
        run(
            str(bindir / "initdb"),
            "-D",
            str(data),
            "-U",
            SUPERUSER,
            f"--pwfile={pwfile}",
            "--auth-local=scram-sha-256",
            "--auth-host=scram-sha-256",
            "--encoding=UTF8",
            "--no-sync",  # throw-away: skip the fsyncs of initdb
        )
        os.makedirs(sockets, exist_ok=True)
        if user:
            os.chown(sockets, user.pw_uid, user.pw_gid)
        options = (
            f"-h 127.0.0.1 -p {port} -k {sockets} -c fsync=off -c synchronous_commit=off "
            "-c full_page_writes=off -c shared_buffers=32MB -c max_connections=50"
        )
        run(str(bindir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(folder / "server.log"), "-w", "start")
        started = True
        pg = Postgres(port=port, folder=folder)
        _wait_accepting(pg)
        yield pg
    finally:
        if started:
            run(str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
        shutil.rmtree(folder, ignore_errors=True)


def _wait_accepting(pg: Postgres, timeout: float = 60) -> None:
    import psycopg

    end = time.monotonic() + timeout
    while True:
        try:
            pg.connect().close()
            return
        except psycopg.OperationalError:
            if time.monotonic() > end:
                raise
            time.sleep(0.2)
