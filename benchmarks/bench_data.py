"""Governance cost: `workbench.data.load()` (masks, a row filter, the catalog and the audit record)
against plain `spark.read.parquet` of the same columns, over flights scaled up by unioning it with
itself, on a full scan (every column of every row materialised into Spark's `noop` sink).

    python benchmarks/bench_data.py               # >= 10M rows (writes the scaled table once to a temp dir)
    python benchmarks/bench_data.py --quick       # >= 1M rows
    python benchmarks/bench_data.py --rows 20000000 --repeat 5

Prints each timing (best of --repeat) and the ratios. Target: governance costs < 10%.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import yaml


def scan(df) -> None:
    df.write.format("noop").mode("overwrite").save()


def timed(fn, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000_000, help="at least this many rows (default 10M)")
    parser.add_argument("--quick", action="store_true", help="at least 1M rows")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement; the best is reported")
    parser.add_argument("--master", default="local[2]", help="Spark master (default local[2])")
    args = parser.parse_args()
    rows_wanted = 1_000_000 if args.quick else args.rows

    from workbench.config import load_settings
    from workbench.data import load
    from workbench.spark import get_spark

    base = load_settings(spark_master=args.master)
    spark = get_spark("bench-data", base)
    tmp = Path(tempfile.mkdtemp(prefix="bench-data-"))
    try:
        steward = base.with_overrides(groups=("data-stewards",), audit_dir=str(tmp / "audit"))
        flights = load("flights", settings=steward, spark=spark)
        copies = -(-rows_wanted // flights.count())
        scaled = flights
        for _ in range(copies - 1):
            scaled = scaled.unionByName(flights)
        uri = (tmp / "flights").as_uri()
        print(f"writing flights x{copies} to {uri} ...", flush=True)
        scaled.write.partitionBy("month").parquet(uri)
        rows = spark.read.parquet(uri).count()

        doc = yaml.safe_load(base.path("catalog_path").read_text())
        doc["datasets"] = {"flights": {**doc["datasets"]["flights"], "uri": uri}}
        (tmp / "catalog.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
        settings = steward.with_overrides(catalog_path=str(tmp / "catalog.yaml"))
        columns = [c for c in spark.read.parquet(uri).columns]
        row_filter = doc["datasets"]["flights"]["row_filters"]["jfk-operations"]
        masked_filtered = settings.with_overrides(groups=("jfk-operations",))  # masks + row filter
        masked = settings.with_overrides(groups=("data-scientists",))  # masks on every row

        cases = {
            "plain spark.read.parquet": lambda: scan(spark.read.parquet(uri).select(*columns)),
            "plain + the same filter": lambda: scan(spark.read.parquet(uri).select(*columns).where(row_filter)),
            "load() masks + row filter": lambda: scan(load("flights", settings=masked_filtered, spark=spark)),
            "load() masks, all rows": lambda: scan(load("flights", settings=masked, spark=spark)),
        }
        scan(spark.read.parquet(uri))  # warm up the JVM and the page cache
        times: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(args.repeat):  # round robin, so a change in the machine's load hits every case alike
            for name, fn in cases.items():
                times[name] += timed(fn, 1)
        best = {name: min(t) for name, t in times.items()}
        for name, t in times.items():
            print(
                f"{name:<28} best {best[name]:7.2f} s   median {statistics.median(t):7.2f} s   ({rows:,} rows scanned)",
                flush=True,
            )
        print()
        print(
            f"governed (masks + row filter) / plain read of the same columns : {best['load() masks + row filter'] / best['plain spark.read.parquet']:.3f}"
        )
        print(
            f"governed (masks + row filter) / plain read with the same filter: {best['load() masks + row filter'] / best['plain + the same filter']:.3f}"
        )
        print(
            f"governed (masks, every row)   / plain read of the same columns : {best['load() masks, all rows'] / best['plain spark.read.parquet']:.3f}"
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        spark.stop()


if __name__ == "__main__":
    main()
