"""Serving throughput with bandit allocation vs a fixed split, at 1 and 32 clients (issue 18: within 10%).

Same model and request bodies as `bench_serving.py` (single-row raw requests, 500 distinct entities, the
prediction log on), two `workbench serve` runs one after the other:

- fixed: `--split challenger=50` (the stable hash of entity_id; no outcome store);
- bandit: `--bandit thompson --arms champion,challenger` (every answered row recorded in the outcome store before
  its answer is released, entities stuck to their arm, the arm drawn from precomputed shares).

Both servers run at once and the wrk runs alternate between them (`--rounds`, default 3, in ABBA order), so both
see the same machine; the median round of each is reported. Prints req/s, p50 and p99 of both and the ratio
bandit / fixed, with the load average during each run (the machine is shared: figures count only when it was
quiet).

    python benchmarks/bench_bandit.py --quick                  # 5 s per run, small training set
    python benchmarks/bench_bandit.py --duration 15 --reuse /tmp/bench
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_serving as bs  # noqa: E402  (the shared setup: model, bodies, wrk)

MODES = {
    "fixed": ["--split", "challenger=50"],
    "bandit": ["--bandit", "thompson", "--arms", "champion,challenger", "--min-share", "0.05", "--stop-at", "0"],
}


def start(mode: str, store: Path, port: int, workers: int) -> subprocess.Popen:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("WORKBENCH_")},
        **bs.bench_env(store),
        "PYTHONPATH": str(bs.REPO),
        "WORKBENCH_PREDICTIONS_DIR": str(store / f"predictions-{mode}"),
    }
    cmd = [sys.executable, "-m", "workbench", "serve", "--model", bs.MODEL, "--port", str(port)]
    cmd += ["--workers", str(workers), "--log-level", "warning", *MODES[mode]]
    return subprocess.Popen(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=open(store / f"{mode}.log", "wb"), start_new_session=True
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="5 s per run and a small training set")
    parser.add_argument("--duration", type=int, help="seconds per run (default 15, 5 with --quick)")
    parser.add_argument("--connections", default="1,32", help="comma-separated concurrent connections (default 1,32)")
    parser.add_argument("--reuse", type=Path, help="keep the MLflow store, model and bodies here between runs")
    parser.add_argument("--workers", type=int, default=1, help="server worker processes (default 1)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating runs per mode and client count (median)")
    args = parser.parse_args()
    duration = args.duration or (5 if args.quick else 15)
    connections = [int(c) for c in args.connections.split(",")]
    store = args.reuse or Path(tempfile.mkdtemp(prefix="bench-bandit-"))
    use_wrk = shutil.which("wrk") is not None
    print(f"load generator: {'wrk' if use_wrk else 'python asyncio client'}; {duration} s per run; "
          f"load average {os.getloadavg()[0]:.2f} before setup", flush=True)  # fmt: skip
    info = bs.prepare(store, args.quick)
    bodies = json.loads((store / "bodies_workbench.json").read_text())
    results: dict[tuple[str, int], dict] = {}
    runs: dict[tuple[str, int], list[dict]] = {}
    procs, urls = {}, {}
    try:
        for mode in MODES:  # both servers up at once: the runs alternate, so both see the same machine
            port = bs.free_port()
            procs[mode] = start(mode, store, port, args.workers)
            ready = bs.wait_ready(port, "/readyz", procs[mode])
            urls[mode] = (port, f"http://127.0.0.1:{port}/predict", bs.lua_script(bodies, store / f"{mode}.lua"))
            print(f"  {mode} ready in {ready:.0f} s", flush=True)
        for mode, (port, url, script) in urls.items():
            warm = min(3, duration)
            bs.run_wrk(url, script, 8, warm) if use_wrk else bs.run_python(url, bodies, 8, warm)
        for c in connections:
            for round_ in range(args.rounds):
                for mode in MODES if round_ % 2 == 0 else list(MODES)[::-1]:
                    port, url, script = urls[mode]
                    load0 = os.getloadavg()[0]
                    r = bs.run_wrk(url, script, c, duration) if use_wrk else bs.run_python(url, bodies, c, duration)
                    r["load"] = (load0 + os.getloadavg()[0]) / 2
                    runs.setdefault((mode, c), []).append(r)
                    print(f"  {mode:7s} c={c:<3d} round {round_ + 1}: {r['rps']:8.1f} req/s  p50 {r['p50']:7.2f} ms  "
                          f"p99 {r['p99']:8.2f} ms  non-2xx {r['non2xx']}  load {r['load']:.2f}", flush=True)  # fmt: skip
        import httpx

        arms = httpx.get(f"http://127.0.0.1:{urls['bandit'][0]}/readyz", timeout=30).json()["experiment"]["arms"]
        print(f"  bandit arms: { {a: (v['share'], v['pulls']) for a, v in arms.items()} }", flush=True)
    finally:
        for proc in procs.values():
            bs.stop(proc)
        if not args.reuse:
            shutil.rmtree(store, ignore_errors=True)
    for key, rs in runs.items():  # the median round by throughput
        results[key] = sorted(rs, key=lambda r: r["rps"])[len(rs) // 2]
    print(
        f"\nmodel '{info['model']}', median of {args.rounds} rounds, single-row requests, {args.workers} worker(s), prediction log on"
    )
    print(f"{'clients':>7s} {'fixed req/s':>12s} {'bandit req/s':>13s} {'bandit/fixed':>13s} {'p99 fixed':>10s} "
          f"{'p99 bandit':>11s} {'load':>11s}")  # fmt: skip
    for c in connections:
        f, b = results.get(("fixed", c)), results.get(("bandit", c))
        if f and b:
            print(f"{c:7d} {f['rps']:12.1f} {b['rps']:13.1f} {b['rps'] / f['rps']:13.3f} {f['p99']:10.1f} "
                  f"{b['p99']:11.1f} {f['load']:5.2f}/{b['load']:.2f}")  # fmt: skip
    many_f, many_b = results.get(("fixed", 32)), results.get(("bandit", 32))
    if many_f and many_b:
        ratio = many_b["rps"] / many_f["rps"]
        print(f"\ngoal of issue 18: bandit within 10% of a fixed split at 32 clients: {ratio:.3f} "
              f"({'met' if ratio >= 0.9 else 'NOT met'})")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
