"""Drift of 15 features between two windows: workbench.drift on Spark vs Evidently's DataDriftPreset
on pandas, with a bare Spark scan of the same columns as the floor. Same data, same run.

The data is flights (through workbench.data.load) scaled up with jittered copies (numbers + uniform
noise, categories unchanged) to each size, written once as parquet under --workdir; months 1-6 are
the reference window and 7-12 the current one. Each measurement runs in its own process, so the peak
memory it reports is its own: the Python driver (ru_maxrss) and, for Spark, the JVM (polled RSS).
The Spark session is warmed before the timing (a one-row read, and its two Python workers started: the
histogram pass runs in them; that start is printed apart, it is paid once per session).
Evidently is skipped where its projected peak (linear in rows from the smallest size it ran at)
would not fit in half of the memory available, and the output says so.

    python benchmarks/bench_drift.py                       # 1M and 10M rows
    python benchmarks/bench_drift.py --sizes 1M,10M,30M
    python benchmarks/bench_drift.py --quick               # 300k rows
    python benchmarks/bench_drift.py --histograms arrow,case,vector --skip-evidently   # issue 19's JVM experiment

`--histograms` times `compute_drift` once per histogram engine: `arrow` is the library's (one `mapInArrow`
pass); `case` and `vector` compute the same table in the JVM (`benchmarks/drift_jvm.py`).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

NUMERICAL = [
    "dep_delay",
    "arr_delay",
    "distance",
    "air_time",
    "hour",
    "minute",
    "sched_dep_time",
    "sched_arr_time",
    "dep_time",
    "arr_time",
    "day",
    "flight",
]
CATEGORICAL = ["carrier", "origin", "dest"]
FEATURES = NUMERICAL + CATEGORICAL
BASE_ROWS = 336_776


def parse_size(text: str) -> int:
    text = text.strip().upper()
    scale = {"K": 1_000, "M": 1_000_000}.get(text[-1], 1)
    return int(float(text[:-1] if scale > 1 else text) * scale)


def label(n: int) -> str:
    return f"{n / 1e6:g}M" if n >= 1_000_000 else f"{n / 1e3:g}k"


# ---- children: one measurement per process -----------------------------------------------------------
def _settings():
    from workbench.config import load_settings

    return load_settings(spark_master="local[2]", spark_driver_memory="2g")


class _JvmPeak:
    """Peak RSS of this process's Java children, polled every 0.2 s."""

    def __init__(self):
        import psutil

        self.me, self.peak, self.stop = psutil.Process(), 0, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop.wait(0.2):
            for child in self.me.children(recursive=True):
                try:
                    if "java" in child.name():
                        self.peak = max(self.peak, child.memory_info().rss)
                except Exception:
                    pass

    def done(self) -> int:
        self.stop.set()
        self.thread.join()
        return self.peak


def child_generate(path: str, rows: int) -> dict:
    from pyspark.sql import functions as F

    from workbench.data import load
    from workbench.spark import get_spark

    settings = _settings()
    spark = get_spark("bench-drift-generate", settings)
    base = load("flights", columns=FEATURES + ["month"], purpose="benchmark", settings=settings, spark=spark)
    copies = -(-rows // BASE_ROWS)
    jitter = {
        c: (F.col(c).cast("double") + (F.rand(seed=i) - 0.5) * F.when(F.col("copy") == 0, 0).otherwise(2.0)).alias(c)
        for i, c in enumerate(NUMERICAL)
    }
    last_share = (rows - (copies - 1) * BASE_ROWS) / BASE_ROWS  # the last copy is a random part of flights
    scaled = (
        spark.range(copies)
        .withColumnRenamed("id", "copy")
        .crossJoin(base)
        .where((F.col("copy") < copies - 1) | (F.rand(seed=99) < last_share))
        .select(*[jitter[c] for c in NUMERICAL], *CATEGORICAL, "month")
    )
    scaled.repartition(max(2, rows // 1_000_000), "month").write.mode("overwrite").partitionBy("month").parquet(path)
    return {"rows": spark.read.parquet(path).count()}


def child_spark(path: str, mode: str) -> dict:
    from pyspark.sql import functions as F

    from workbench import drift
    from workbench.spark import get_spark

    spark = get_spark("bench-drift", _settings())
    df = spark.read.parquet(path)
    ref, cur = df.where("month <= 6"), df.where("month > 6")
    df.select(*FEATURES).limit(1).collect()  # warm the session (catalog, JIT) outside the timing
    # and start its Python workers (once per session; drift's histogram pass runs in them): timed apart
    started = time.perf_counter()
    spark.range(0, 2, numPartitions=2).mapInArrow(lambda batches: batches, "id long").collect()
    python_start = time.perf_counter() - started
    jvm = _JvmPeak()
    start = time.perf_counter()
    if mode == "scan":
        row = df.agg(*[F.sum(c) for c in NUMERICAL], *[F.count(c) for c in CATEGORICAL], F.count(F.lit(1))).first()
        out = {"rows": row[-1]}
    else:
        engine = mode.partition(":")[2] or "arrow"
        if engine != "arrow":  # the experiment: the same table from the JVM (benchmarks/drift_jvm.py)
            sys.path.insert(0, str(Path(__file__).resolve().parent))
            from drift_jvm import ENGINES

            from workbench.drift import stats

            stats.histogram_table = ENGINES[engine]
        report = drift.compute_drift(ref, cur, FEATURES)
        out = {"rows": report.reference_rows + report.current_rows, "drifted": report.drifted}
    out["seconds"] = time.perf_counter() - start
    out["jvm_rss"] = jvm.done()
    out["python_start"] = python_start
    return out


def child_evidently(path: str) -> dict:
    import pandas as pd

    from workbench import drift

    start = time.perf_counter()
    frame = pd.read_parquet(path, columns=FEATURES + ["month"])
    frame["month"] = frame["month"].astype("int64")  # a partition column comes back as a categorical
    ref, cur = frame[frame["month"] <= 6], frame[frame["month"] > 6]
    loaded = time.perf_counter()
    report = drift.evidently_report(ref, cur, NUMERICAL, CATEGORICAL)  # same methods and thresholds as ours
    end = time.perf_counter()
    return {
        "rows": len(frame),
        "seconds": end - loaded,
        "load_seconds": loaded - start,
        "drifted": report.drifted_count,
    }


def run_child(kind: str, path: str, extra: str = "", timeout: int = 7200) -> dict:
    cmd = [sys.executable, __file__, "--child", kind, "--path", path] + (["--mode", extra] if extra else [])
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-3:]
        return {"error": f"exit {proc.returncode}: {' | '.join(tail)}"}
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


# ---- the parent ------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1M,10M", help="comma-separated row counts (e.g. 1M,10M,30M)")
    parser.add_argument("--quick", action="store_true", help="one small size (300k rows)")
    parser.add_argument(
        "--workdir",
        default=os.path.join(tempfile.gettempdir(), "workbench-bench-drift"),
        help="where the scaled parquet is written (kept for re-runs; removed with --clean)",
    )
    parser.add_argument("--skip-evidently", action="store_true")
    parser.add_argument(
        "--histograms", default="arrow", help="histogram engines to time, comma-separated: arrow, case, vector"
    )
    parser.add_argument("--clean", action="store_true", help="delete the generated data at the end")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        result = {
            "generate": lambda: child_generate(args.path, int(args.mode)),
            "spark": lambda: child_spark(args.path, args.mode),
            "evidently": lambda: child_evidently(args.path),
        }[args.child]()
        result["driver_rss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        print(json.dumps(result))
        return

    import psutil

    sizes = [300_000] if args.quick else [parse_size(s) for s in args.sizes.split(",")]
    workdir = Path(args.workdir)
    rows_out, evidently_per_row = [], None
    print(f"load average at the start: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print(
        f"15 features ({len(NUMERICAL)} numerical, {len(CATEGORICAL)} categorical), reference = months 1-6, "
        f"current = months 7-12; Spark local[2], driver 2g; {os.cpu_count()} cores, "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB\n",
        flush=True,
    )
    for n in sizes:
        path = str(workdir / f"flights_{n}")
        if not (Path(path) / "_SUCCESS").exists():
            gen = run_child("generate", path, str(n))
            if "error" in gen:
                sys.exit(f"could not generate {label(n)} rows: {gen['error']}")
        floor = run_child("spark", path, "scan")
        engines = [e.strip() for e in args.histograms.split(",") if e.strip()]
        timed = {e: run_child("spark", path, f"drift:{e}") for e in engines}
        ours = timed[engines[0]]
        peer: dict = {"skipped": "--skip-evidently"} if args.skip_evidently else {}
        if not peer:
            available = psutil.virtual_memory().available
            if evidently_per_row and evidently_per_row * n > 0.5 * available:
                peer = {
                    "skipped": f"projected peak {evidently_per_row * n / 2**30:.1f} GiB > half of the "
                    f"{available / 2**30:.1f} GiB available"
                }
            else:
                peer = run_child("evidently", path)
                if "driver_rss" in peer and "error" not in peer:
                    evidently_per_row = peer["driver_rss"] / n
        rows_out.append((n, floor, ours, peer))
        report_size(n, floor, ours, peer)
        for e in engines[1:]:
            r = timed[e]
            took = f"{r['seconds']:.1f} s ({r['seconds'] / floor['seconds']:.2f}x the scan)" if "seconds" in r else r
            print(
                f"  histograms '{e}' instead of '{engines[0]}': workbench.drift {took}; drifted {', '.join(r.get('drifted', []))}"
            )
    if args.clean:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"\nload average at the end: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print("\nsummary (seconds; ratio = ours / bare scan; speed-up = Evidently compute / ours)")
    print(
        f"{'rows':>6} {'scan':>8} {'ours':>8} {'ratio':>6} {'evidently':>10} {'speed-up':>9} "
        f"{'ours driver':>12} {'ours JVM':>9} {'evid. RSS':>10}"
    )
    for n, floor, ours, peer in rows_out:
        scan, mine, ev = floor.get("seconds"), ours.get("seconds"), peer.get("seconds")
        ratio = f"{mine / scan:6.2f}" if scan and mine else "     -"
        evidently = f"{ev:10.1f}" if ev else f"{'skipped':>10}"
        speedup = f"{ev / mine:9.1f}" if ev and mine else f"{'-':>9}"
        print(
            f"{label(n):>6} {scan or float('nan'):8.1f} {mine or float('nan'):8.1f} {ratio} {evidently} {speedup} "
            f"{mib(ours.get('driver_rss')):>12} {mib(ours.get('jvm_rss')):>9} {mib(peer.get('driver_rss')):>10}"
        )


def mib(value) -> str:
    return f"{value / 2**20:,.0f} MiB" if value else "-"


def report_size(n: int, floor: dict, ours: dict, peer: dict) -> None:
    print(f"== {label(n)} rows")
    for name, r in (("bare Spark scan (floor)", floor), ("workbench.drift (Spark)", ours)):
        if "error" in r:
            print(f"  {name:28s} failed: {r['error']}")
            continue
        print(
            f"  {name:28s} {r['seconds']:8.1f} s  {r['rows'] / r['seconds']:>12,.0f} rows/s  "
            f"driver {mib(r['driver_rss'])}, JVM {mib(r['jvm_rss'])}"
        )
    if "seconds" in ours and "seconds" in floor:
        print(
            f"  ours / floor: {ours['seconds'] / floor['seconds']:.2f}x   drifted: {', '.join(ours.get('drifted', [])) or 'none'}"
            f"   (before the timing: the session's Python workers started in {ours.get('python_start', 0):.1f} s, once)"
        )
    if "skipped" in peer:
        print(f"  Evidently DataDriftPreset   skipped: {peer['skipped']}")
    elif "error" in peer:
        print(f"  Evidently DataDriftPreset   failed: {peer['error']}")
    else:
        print(
            f"  Evidently DataDriftPreset    {peer['seconds']:8.1f} s  {peer['rows'] / peer['seconds']:>12,.0f} rows/s  "
            f"peak RSS {mib(peer['driver_rss'])} (+ {peer['load_seconds']:.1f} s to read the parquet into pandas)"
        )
        if "seconds" in ours:
            print(
                f"  Evidently / ours: {peer['seconds'] / ours['seconds']:.1f}x slower, "
                f"{peer['driver_rss'] / max(ours['driver_rss'], 1):.1f}x the driver memory"
            )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
