"""Small notebooks for the jobs and reports tests, written into a temporary project home."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from workbench.config import Settings, load_settings

REPO = Path(__file__).resolve().parent.parent
KERNELSPEC = {
    "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
    "language_info": {"name": "python"},
}

CHECK_PARAMETERS = """n = 3  # how many
ratio = 0.5  # a ratio
label = "x"  # a label; "boom" makes the notebook fail
flag = False  # publish status alert when true
items = []  # a list
sleep = 0.0  # seconds to wait in the middle"""

CHECK_CELLS = [
    "import os, time\nfrom workbench.config import load_settings\nfrom workbench.reports import publish",
    "assert isinstance(n, int) and isinstance(ratio, float) and isinstance(flag, bool) and isinstance(items, list)\n"
    "print('visible-output-marker', n, ratio, label, flag, items)  # hidden-code-marker",
    "time.sleep(sleep)",
    "if label == 'boom':\n    raise ValueError('label asked for a failure')",
    "publish(metric='n_squared', value=n * n, status='alert' if flag else 'ok')\n"
    "publish(label=label, kernel_spark_master=load_settings().spark_master,\n"
    "        kernel_identity=os.environ.get('WORKBENCH_JOB_IDENTITY', ''))",
]


def write_notebook(
    folder: Path, name: str, parameters: str | None, cells: list[str], intro: str = "# Test notebook"
) -> Path:
    body = [new_markdown_cell(intro)]
    if parameters is not None:
        cell = new_code_cell(parameters)
        cell.metadata["tags"] = ["parameters"]
        body.append(cell)
    body += [new_code_cell(src) for src in cells]
    path = Path(folder) / "notebooks" / f"{name}.ipynb"
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(new_notebook(cells=body, metadata=KERNELSPEC), str(path))
    return path


def make_home(folder: Path) -> Settings:
    """A project home with `10_check` (typed parameters, optional failure, sleep, alert) and `11_bare` (no parameters cell)."""
    write_notebook(folder, "10_check", CHECK_PARAMETERS, CHECK_CELLS)
    write_notebook(folder, "11_bare", None, ["x = 1"])
    return load_settings(env={"WORKBENCH_HOME": str(folder)})


def cli_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKBENCH_")}
    env["WORKBENCH_HOME"] = str(home)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env.update(extra)
    return env


def workbench(home: Path, *args: str, timeout: float = 300, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "workbench", *args],
        cwd=home,
        env=cli_env(home, **env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def cli(home: Path, *args: str, monkeypatch, capsys) -> tuple[int, str, str]:
    """The `workbench` command in this process (no interpreter start-up): (exit code, stdout, stderr)."""
    from workbench.cli import main

    for key in [k for k in os.environ if k.startswith("WORKBENCH_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("WORKBENCH_HOME", str(home))
    capsys.readouterr()
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def start_workbench(home: Path, *args: str, **env: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "workbench", *args],
        cwd=home,
        env=cli_env(home, **env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
