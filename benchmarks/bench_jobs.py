"""Benchmark: one headless run of an empty parameterized notebook, end to end, as a user types it.

ours:  workbench run NB -p x 2 --quiet
       (checks parameters, executes, renders report.html in-process, writes run.json, rebuilds the index)
ours without the import shortcut: the same, with jsonschema imported first, so the process pays
       the rfc3987_syntax grammar compilation as papermill and nbconvert do (see jobs/fastimport.py)
peer:  papermill NB OUT -p x 2  &&  jupyter nbconvert --to html --no-input OUT
       (executes, then renders in a second process)

Runs alternate (ours, peer, ours, peer, ...) so both see the same machine load; prints the median
wall time of each and the ratio ours/peer. Target: ratio <= 1.2.

    python benchmarks/bench_jobs.py            # 7 runs each
    python benchmarks/bench_jobs.py --quick    # 3 runs each
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_notebook

TARGET = 1.2


def make_notebook(folder: Path) -> Path:
    params = new_code_cell("x = 1  # a number")
    params.metadata["tags"] = ["parameters"]
    nb = new_notebook(
        cells=[params, new_code_cell("y = x * 2")],
        metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
            "language_info": {"name": "python"},
        },
    )
    path = folder / "notebooks" / "00_empty.ipynb"
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))
    return path


def timed(command: list[str], env: dict[str, str], cwd: Path) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{' '.join(command[:3])} ... failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="3 runs each instead of 7")
    parser.add_argument("-n", "--runs", type=int, help="runs each")
    args = parser.parse_args()
    runs = args.runs or (3 if args.quick else 7)

    bindir = Path(sys.executable).parent
    workbench, papermill, jupyter = (str(bindir / name) for name in ("workbench", "papermill", "jupyter"))
    for tool in (workbench, papermill, jupyter):
        if not Path(tool).exists():
            sys.exit(f"{tool} is missing: run `make setup` first.")
    repo = Path(__file__).resolve().parent.parent
    home = Path(tempfile.mkdtemp(prefix="bench-jobs-"))
    try:
        notebook = make_notebook(home)
        env = {k: v for k, v in os.environ.items() if not k.startswith("WORKBENCH_")}
        env.update(
            WORKBENCH_HOME=str(home), PYTHONPATH=os.pathsep.join(p for p in (str(repo), env.get("PYTHONPATH", "")) if p)
        )
        out = home / "peer"
        out.mkdir()
        ours_cmd = [workbench, "run", notebook.name, "-p", "x", "2", "--quiet"]
        full_cmd = [
            sys.executable,
            "-c",
            "import sys, jsonschema; from workbench.cli import main; sys.exit(main(sys.argv[1:]))",
            *ours_cmd[1:],
        ]
        timed(ours_cmd, env, home)  # warm the file cache for both sides once
        ours, full, peer = [], [], []
        for i in range(runs):
            ours.append(timed(ours_cmd, env, home))
            full.append(timed(full_cmd, env, home))
            executed = out / f"run{i}.ipynb"
            start = time.perf_counter()
            timed([papermill, str(notebook), str(executed), "-p", "x", "2", "--no-progress-bar"], env, home)
            timed([jupyter, "nbconvert", "--to", "html", "--no-input", str(executed)], env, home)
            peer.append(time.perf_counter() - start)
            print(
                f"run {i + 1}/{runs}: workbench run {ours[-1]:.2f} s   (without shortcut {full[-1]:.2f} s)   "
                f"papermill + nbconvert {peer[-1]:.2f} s",
                flush=True,
            )
        m_ours, m_full, m_peer = statistics.median(ours), statistics.median(full), statistics.median(peer)
        ratio = m_ours / m_peer
        print(f"\nmedian over {runs} runs (machine load {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores):")
        print(f"  workbench run                        {m_ours:6.2f} s   (execute + report.html + run.json + index)")
        print(f"  workbench run, no import shortcut    {m_full:6.2f} s")
        print(f"  papermill + jupyter nbconvert        {m_peer:6.2f} s   (execute, then render in a second process)")
        print(
            f"  ratio ours/peer                      {ratio:6.2f}     (target <= {TARGET}: {'met' if ratio <= TARGET else 'NOT met'}; "
            f"without the shortcut {m_full / m_peer:.2f})"
        )
        return 0 if ratio <= TARGET else 1
    finally:
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
