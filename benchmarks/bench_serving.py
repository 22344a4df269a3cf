"""Serving throughput and latency: `workbench serve` vs `mlflow models serve` vs a bare Starlette endpoint.

Same model (the workbench LightGBM pipeline: ColumnTransformer + LGBMClassifier, logged by
workbench.training), same machine, same load generator (`wrk` on loopback with a Lua script cycling
through single-row POST bodies; a bounded asyncio client when wrk is missing), 1 and 32 concurrent
connections for a fixed duration each:

- workbench: `workbench serve --model M --shadow challenger`, prediction log on (the shadow is a second
  registered version, so every request is predicted twice). Clients send RAW rows (the feature function
  decorates them with weather and plane data inside the service).
- mlflow: `mlflow models serve -m models:/M@champion --env-manager local` (1 worker, its default). Clients
  send the already-decorated model input (MLflow cannot decorate).
- workbench-async: the same with `predlog_durability = "async"` (answers do not wait for the log's fsync): the
  difference to `workbench` is the cost of "acknowledged means logged".
- floor: a Starlette endpoint on uvicorn (1 worker) that reads the body and returns a constant.

Prints requests/s, p50 and p99 for each, the ratios, fallbacks and non-2xx answers (a fast wrong answer
must not count), and the load average of the machine during each run (it is shared).

    python benchmarks/bench_serving.py --quick                 # 5 s per run, small training set
    python benchmarks/bench_serving.py --duration 20           # the figures for the report
    python benchmarks/bench_serving.py --reuse /tmp/bench      # keep the trained model between runs
    python benchmarks/bench_serving.py --workers 2             # every server with 2 worker processes

With `--workers 2` the load generator shares the same cores: the growth it shows is what this machine allows.
The goals of issue 15 are printed with each figure (quiet machine, shadow and log on).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

MODEL = "flights-late-bench"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- setup: model, lookups, request bodies -----------------------------------------------------------------
def prepare(store: Path, quick: bool) -> dict:
    """Train and register the model (champion + challenger), snapshot the lookups, write request bodies."""
    marker = store / "bench.json"
    if marker.exists():
        return json.loads(marker.read_text())
    from workbench import registry
    from workbench.config import load_settings
    from workbench.data import load
    from workbench.serving.model import snapshot_lookups
    from workbench.spark import get_spark
    from workbench.training import train

    store.mkdir(parents=True, exist_ok=True)
    env = bench_env(store)
    settings = load_settings(env={**os.environ, **env})
    spark = get_spark("bench-serving", settings.with_overrides(spark_master="local[2]"))
    where = "month = 1 AND day <= 10" if quick else "month = 1"
    result = train(
        "flights",
        train_where=where,
        params={"n_estimators": 100},
        register=True,
        name=MODEL,
        alias="champion",
        settings=settings,
        spark=spark,
    )
    registry.register(result.model_uri, MODEL, alias="challenger", settings=settings)
    snapshot_lookups(settings, [result.spec.feature_function], spark, force=True)
    raw = load(
        "flights", columns=list(result.spec.raw_columns), where="month = 2", settings=settings, spark=spark
    ).toPandas()
    raw = raw.sample(n=min(500, len(raw)), random_state=0).reset_index(drop=True)
    X = result.spec.prepare(raw, result.spec.decorator(settings, spark))
    raw_records = json.loads(raw.to_json(orient="records", date_format="iso"))
    bodies_wb = [json.dumps({**r, "entity_id": f"e{i}"}) for i, r in enumerate(raw_records)]
    split = json.loads(X.to_json(orient="split", index=False))
    bodies_ml = [json.dumps({"dataframe_split": {"columns": split["columns"], "data": [row]}}) for row in split["data"]]
    (store / "bodies_workbench.json").write_text(json.dumps(bodies_wb))
    (store / "bodies_mlflow.json").write_text(json.dumps(bodies_ml))
    info = {"model": MODEL, "train_where": where, "rows": len(raw), "version": result.version}
    marker.write_text(json.dumps(info))
    spark.stop()
    return info


def bench_env(store: Path) -> dict[str, str]:
    return {
        "WORKBENCH_HOME": str(REPO),
        "WORKBENCH_MLFLOW_TRACKING_URI": f"sqlite:///{store}/mlflow.db",
        "WORKBENCH_MLFLOW_ARTIFACTS": str(store / "mlartifacts"),
        "WORKBENCH_PREDICTIONS_DIR": str(store / "predictions"),
        "WORKBENCH_SERVING_CACHE_DIR": str(store / "cache"),
        "WORKBENCH_SERVING_LOOKUP_MAX_AGE": str(10**9),
        "WORKBENCH_SERVING_RELOAD_INTERVAL_MS": "10000",
        "WORKBENCH_MODEL_NAME": MODEL,
        # a budget above MLflow's p99, so every answer counted is the model's (fallbacks are reported anyway)
        "WORKBENCH_SERVING_TIMEOUT_MS": os.environ.get("BENCH_TIMEOUT_MS", "10000"),
        **(
            {"WORKBENCH_SERVING_BATCH_WAIT_MS": os.environ["BENCH_BATCH_WAIT_MS"]}
            if "BENCH_BATCH_WAIT_MS" in os.environ
            else {}
        ),
    }


# ---- servers ---------------------------------------------------------------------------------------------------
FLOOR_APP = textwrap.dedent("""
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    async def invocations(request):
        await request.body()
        return Response(b'{"predictions": [[0.8, 0.2]]}', media_type="application/json")

    app = Starlette(routes=[Route("/invocations", invocations, methods=["POST"]), Route("/predict", invocations, methods=["POST"])])
""")


def start(kind: str, store: Path, port: int, workers: int) -> subprocess.Popen:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("WORKBENCH_")},
        **bench_env(store),
        "PYTHONPATH": str(REPO),
        "WORKBENCH_PREDLOG_DURABILITY": "async" if kind == "workbench-async" else "ack",
    }
    python = sys.executable
    env["PATH"] = f"{Path(python).parent}{os.pathsep}{env.get('PATH', '')}"  # mlflow execs `uvicorn` from the PATH
    if kind.startswith("workbench"):
        cmd = [
            python,
            "-m",
            "workbench",
            "serve",
            "--model",
            MODEL,
            "--shadow",
            "challenger",
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--log-level",
            "warning",
        ]
    elif kind == "mlflow":
        env["MLFLOW_TRACKING_URI"] = env["MLFLOW_REGISTRY_URI"] = f"sqlite:///{store}/mlflow.db"
        cmd = [
            str(Path(python).parent / "mlflow"),
            "models",
            "serve",
            "-m",
            f"models:/{MODEL}@champion",
            "--env-manager",
            "local",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-w",
            str(workers),
        ]
    else:
        (store / "floor_app.py").write_text(FLOOR_APP)
        env["PYTHONPATH"] = str(store)
        cmd = [
            python,
            "-m",
            "uvicorn",
            "floor_app:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--log-level",
            "warning",
            "--no-access-log",
        ]
    return subprocess.Popen(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=open(store / f"{kind}.log", "wb"), start_new_session=True
    )


def wait_ready(port: int, path: str, proc: subprocess.Popen, timeout: float = 600, post: bool = False) -> float:
    """Seconds until `path` answers 200 (a GET, or a POST of `{}` for the floor, which only has a POST route)."""
    import httpx

    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            raise SystemExit(f"server on port {port} exited with {proc.returncode}")
        try:
            url = f"http://127.0.0.1:{port}{path}"
            answer = httpx.post(url, content=b"{}", timeout=5) if post else httpx.get(url, timeout=5)
            if answer.status_code == 200:
                return time.time() - t0
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    raise SystemExit(f"server on port {port} not ready after {timeout} s")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


# ---- load generation --------------------------------------------------------------------------------------------
def lua_script(bodies: list[str], path: Path) -> Path:
    items = ",\n".join(f"[==[{b}]==]" for b in bodies)
    path.write_text(
        textwrap.dedent("""
        local bodies = {%s}
        local i = math.random(#bodies)
        wrk.method = "POST"
        wrk.headers["Content-Type"] = "application/json"
        request = function()
          i = i %% #bodies + 1
          return wrk.format(nil, nil, nil, bodies[i])
        end
    """)
        % items
    )
    return path


def run_wrk(url: str, script: Path, connections: int, duration: int) -> dict:
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", "--timeout", "10s", "-s", str(script), url],
        capture_output=True,
        text=True,
        timeout=duration + 120,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    lat = {
        m.group(1): _ms(m.group(2), m.group(3)) for m in re.finditer(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    }
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:.*?timeout (\d+)", out)
    total = int(re.search(r"(\d+) requests in", out).group(1))
    return {
        "rps": rps,
        "p50": lat.get("50"),
        "p99": lat.get("99"),
        "non2xx": int(bad.group(1)) if bad else 0,
        "timeouts": int(errors.group(1)) if errors else 0,
        "requests": total,
    }


def _ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def run_python(url: str, bodies: list[str], connections: int, duration: int) -> dict:
    """A bounded asyncio client (aiohttp): used when wrk is not installed; saturates near 4k req/s."""
    import aiohttp

    latencies: list[float] = []
    bad = 0

    async def worker(session, stop_at, k):
        nonlocal bad
        i = k
        while time.perf_counter() < stop_at:
            i = (i + 1) % len(bodies)
            t = time.perf_counter()
            async with session.post(url, data=bodies[i], headers={"Content-Type": "application/json"}) as r:
                await r.read()
                bad += r.status >= 300
            latencies.append((time.perf_counter() - t) * 1000)

    async def main():
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=connections)) as session:
            stop_at = time.perf_counter() + duration
            await asyncio.gather(*[worker(session, stop_at, k) for k in range(connections)])

    asyncio.run(main())
    latencies.sort()
    pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))]  # noqa: E731
    return {
        "rps": len(latencies) / duration,
        "p50": pick(0.5),
        "p99": pick(0.99),
        "non2xx": bad,
        "timeouts": 0,
        "requests": len(latencies),
    }


def scrape(port: int) -> dict:
    import httpx

    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=30).text
    out: dict[str, float] = {}
    for name in (
        "workbench_serving_fallbacks_total",
        "workbench_serving_shadow_comparisons_total",
        "workbench_serving_predictions_total",
        "workbench_serving_batch_rows_sum",
        "workbench_serving_batch_rows_count",
        "workbench_serving_predlog_dropped_rows_total",
    ):
        out[name] = sum(
            float(l.rsplit(" ", 1)[1])
            for l in text.splitlines()
            if l.startswith(name) and ('lane="main"' in l or "batch_rows" not in name)
        )
    return out


# ---- main ------------------------------------------------------------------------------------------------------
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="5 s per run and a small training set")
    parser.add_argument("--duration", type=int, help="seconds per run (default 20, 5 with --quick)")
    parser.add_argument("--connections", default="1,32", help="comma-separated concurrent connections (default 1,32)")
    parser.add_argument(
        "--reuse", type=Path, help="keep the MLflow store, model and bodies in this folder between runs"
    )
    parser.add_argument("--only", default="floor,mlflow,workbench,workbench-async", help="which servers to measure")
    parser.add_argument("--workers", type=int, default=1, help="server worker processes (default 1 for all three)")
    args = parser.parse_args()
    duration = args.duration or (5 if args.quick else 20)
    connections = [int(c) for c in args.connections.split(",")]
    store = args.reuse or Path(tempfile.mkdtemp(prefix="bench-serving-"))
    use_wrk = shutil.which("wrk") is not None
    print(
        f"load generator: {'wrk (1 thread)' if use_wrk else 'python asyncio client (install wrk for figures near the floor)'}; "
        f"{duration} s per run; machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} before setup",
        flush=True,
    )

    info = prepare(store, args.quick)
    print(
        f"model '{info['model']}' trained on flights where {info['train_where']}; {info['rows']} distinct request rows",
        flush=True,
    )
    bodies = {
        "workbench": json.loads((store / "bodies_workbench.json").read_text()),
        "mlflow": json.loads((store / "bodies_mlflow.json").read_text()),
    }
    bodies["floor"] = bodies["workbench-async"] = bodies["workbench"]
    paths = {
        "workbench": ("/predict", "/readyz"),
        "workbench-async": ("/predict", "/readyz"),
        "mlflow": ("/invocations", "/ping"),
        "floor": ("/invocations", "/invocations"),
    }
    results: dict[tuple[str, int], dict] = {}
    extra: dict[str, dict] = {}
    try:
        for kind in [k for k in ("floor", "mlflow", "workbench", "workbench-async") if k in args.only.split(",")]:
            port = free_port()
            proc = start(kind, store, port, args.workers)
            try:
                ready_path = paths[kind][1]
                if kind == "floor":
                    time.sleep(1.0)
                    ready = wait_ready(port, ready_path, proc, timeout=120, post=True)
                else:
                    ready = wait_ready(port, ready_path, proc)
                url = f"http://127.0.0.1:{port}{paths[kind][0]}"
                script = lua_script(bodies[kind], store / f"{kind}.lua")
                warm = min(3, duration)
                (run_wrk(url, script, 8, warm) if use_wrk else run_python(url, bodies[kind], 8, warm))
                before = scrape(port) if kind == "workbench" else {}
                if kind == "workbench":
                    import httpx

                    ready_body = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=30).json()
                    paths_used = {n: v.get("path") for n, v in ready_body.get("variants", {}).items()}
                    print(f"  workbench paths: {paths_used}", flush=True)
                for c in connections:
                    load0 = os.getloadavg()[0]
                    r = run_wrk(url, script, c, duration) if use_wrk else run_python(url, bodies[kind], c, duration)
                    r["load"] = (load0 + os.getloadavg()[0]) / 2
                    results[(kind, c)] = r
                    print(
                        f"  {kind:15s} c={c:<3d} {r['rps']:8.1f} req/s  p50 {r['p50']:8.2f} ms  p99 {r['p99']:8.2f} ms  "
                        f"non-2xx {r['non2xx']}  load {r['load']:.1f}  (ready in {ready:.0f} s)",
                        flush=True,
                    )
                if kind == "workbench":
                    after = scrape(port)
                    extra["workbench"] = {k: after[k] - before.get(k, 0) for k in after}
                    extra["workbench_totals"] = after
            finally:
                stop(proc)
    finally:
        if not args.reuse:
            shutil.rmtree(store, ignore_errors=True)

    print(f"\nresults (single-row requests, {args.workers} worker(s) per server)")
    print(f"{'server':16s} {'clients':>7s} {'req/s':>9s} {'p50 ms':>9s} {'p99 ms':>9s} {'non-2xx':>8s} {'load':>5s}")
    for (kind, c), r in results.items():
        print(f"{kind:16s} {c:7d} {r['rps']:9.1f} {r['p50']:9.2f} {r['p99']:9.2f} {r['non2xx']:8d} {r['load']:5.1f}")
    print("\nside by side (req/s | p50 ms | p99 ms | load average during the run)")
    kinds = ("workbench", "mlflow", "floor")
    print(f"{'clients':>7s}  " + "  ".join(f"{k:>34s}" for k in kinds))
    for c in connections:
        cells = []
        for k in kinds:
            r = results.get((k, c))
            cells.append(
                f"{r['rps']:9.1f} | {r['p50']:6.2f} | {r['p99']:7.1f} | {r['load']:4.1f}" if r else f"{'-':>34s}"
            )
        print(f"{c:7d}  " + "  ".join(f"{x:>34s}" for x in cells))
    for c in connections:
        wb, ml, fl = results.get(("workbench", c)), results.get(("mlflow", c)), results.get(("floor", c))
        lazy = results.get(("workbench-async", c))
        if wb and ml:
            print(
                f"c={c}: workbench / mlflow throughput = {wb['rps'] / ml['rps']:.1f}x; p99 {wb['p99']:.1f} ms vs {ml['p99']:.1f} ms"
            )
        if wb and fl:
            print(
                f"c={c}: workbench / floor throughput = {wb['rps'] / fl['rps']:.2f} (floor is {fl['rps'] / wb['rps']:.1f}x)"
            )
        if wb and lazy:
            print(
                f"c={c}: cost of ack durability: {wb['rps']:.1f} req/s with ack vs {lazy['rps']:.1f} async "
                f"(ack/async = {wb['rps'] / lazy['rps']:.2f}x), p50 {wb['p50']:.2f} vs {lazy['p50']:.2f} ms"
            )
    goals = []
    one, many = results.get(("workbench", 1)), results.get(("workbench", 32))
    ml1 = results.get(("mlflow", 1))
    if one:
        goals.append(("1 client: p50 <= 3 ms", f"{one['p50']:.2f} ms", one["p50"] <= 3))
    if one and ml1:
        ratio = one["rps"] / ml1["rps"]
        goals.append(("1 client: >= 5x mlflow req/s", f"{ratio:.1f}x", ratio >= 5))
    if many:
        goals.append(("32 clients: >= 3,000 req/s", f"{many['rps']:.0f}", many["rps"] >= 3000))
        goals.append(("32 clients: p99 <= 50 ms", f"{many['p99']:.1f} ms", many["p99"] <= 50))
    if goals:
        print("\ngoals of issue 15 (meaningful on a quiet machine only; see the load column)")
        for what, value, met in goals:
            print(f"  {what:32s} {value:>12s}  {'met' if met else 'NOT met'}")
    if "workbench" in extra:
        e = extra["workbench"]
        batches = e.get("workbench_serving_batch_rows_count", 0)
        print(
            f"workbench during the runs: {e['workbench_serving_predictions_total']:.0f} rows answered, "
            f"{e['workbench_serving_fallbacks_total']:.0f} by a fallback, {e['workbench_serving_shadow_comparisons_total']:.0f} "
            f"shadow comparisons, {e['workbench_serving_predlog_dropped_rows_total']:.0f} log rows dropped, mean batch "
            f"{(e.get('workbench_serving_batch_rows_sum', 0) / batches) if batches else 0:.1f} rows"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
