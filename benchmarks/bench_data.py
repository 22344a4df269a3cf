"""Governance cost: `workbench.data.load()` (masks, a row filter, the catalog and the audit record)
against plain `spark.read.parquet` of the same columns, over flights scaled up by unioning it with
itself, on a full scan (every column of every row materialised into Spark's `noop` sink).

Two paths:
- dynamic (local profile): masks applied at read, with the development salted SHA-256 and with the
  production hash (HMAC-SHA256 with a key file);
- published view (production profile): `load()` reads the masked view `workbench data publish` wrote
  (HMAC applied once, at publish), against a plain read of the same view files.

    python benchmarks/bench_data.py               # >= 10M rows (writes the scaled table once to a temp dir)
    python benchmarks/bench_data.py --quick       # >= 1M rows
    python benchmarks/bench_data.py --rows 20000000 --repeat 5

Prints each timing (best of --repeat) and the ratios. Targets: a published-view read within 1.1x of a
plain read of it; the dynamic path no slower than before (1.20x masks + row filter, 1.99x every row hashed).
"""

from __future__ import annotations

import argparse
import os
import pwd
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
    from workbench.data import load, publish
    from workbench.data.publish import current_version_uri
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
        key_file = tmp / "mask.key"
        key_file.write_bytes(os.urandom(32).hex().encode())
        key_file.chmod(0o600)
        hmac_filtered = masked_filtered.with_overrides(mask_key_file=str(key_file))
        hmac_masked = masked.with_overrides(mask_key_file=str(key_file))

        # the published path: the steward publishes the masked view once (HMAC at publish), readers read it
        production = settings.with_overrides(
            profile="production",
            mask_key_file=str(key_file),
            governed_dir=str(tmp / "governed"),
            service_user=pwd.getpwuid(os.geteuid()).pw_name,  # we own the key file: we play the service account
        )
        print("publishing the governed views ...", flush=True)
        publish(production, spark, permissions=False, progress=lambda m: None)
        view = current_version_uri(production, "flights", "masked", spark)
        published = production.with_overrides(groups=("data-scientists",))
        view_columns = spark.read.parquet(view).columns

        cases = {
            "plain spark.read.parquet": lambda: scan(spark.read.parquet(uri).select(*columns)),
            "plain + the same filter": lambda: scan(spark.read.parquet(uri).select(*columns).where(row_filter)),
            "load() masks + row filter": lambda: scan(load("flights", settings=masked_filtered, spark=spark)),
            "load() masks, all rows": lambda: scan(load("flights", settings=masked, spark=spark)),
            "load() HMAC + row filter": lambda: scan(load("flights", settings=hmac_filtered, spark=spark)),
            "load() HMAC, all rows": lambda: scan(load("flights", settings=hmac_masked, spark=spark)),
            "plain read of the view": lambda: scan(spark.read.parquet(view).select(*view_columns)),
            "load() published view": lambda: scan(load("flights", settings=published, spark=spark)),
        }
        scan(spark.read.parquet(uri))  # warm up the JVM and the page cache
        times: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(args.repeat):  # round robin, so a change in the machine's load hits every case alike
            for name, fn in cases.items():
                times[name] += timed(fn, 1)
        best = {name: min(t) for name, t in times.items()}
        for name, t in times.items():
            print(
                f"{name:<26} best {best[name]:7.2f} s   median {statistics.median(t):7.2f} s   ({rows:,} rows scanned)",
                flush=True,
            )
        print()
        ratio = lambda a, b: best[a] / best[b]  # noqa: E731
        plain = "plain spark.read.parquet"
        for label, a, b in (
            (
                "dynamic, salted SHA-256: masks + row filter / plain read of the same columns ",
                "load() masks + row filter",
                plain,
            ),
            (
                "dynamic, salted SHA-256: masks + row filter / plain read with the same filter",
                "load() masks + row filter",
                "plain + the same filter",
            ),
            (
                "dynamic, salted SHA-256: masks, every row   / plain read of the same columns ",
                "load() masks, all rows",
                plain,
            ),
            (
                "dynamic, HMAC-SHA256:    masks + row filter / plain read of the same columns ",
                "load() HMAC + row filter",
                plain,
            ),
            (
                "dynamic, HMAC-SHA256:    masks + row filter / plain read with the same filter",
                "load() HMAC + row filter",
                "plain + the same filter",
            ),
            (
                "dynamic, HMAC-SHA256:    masks, every row   / plain read of the same columns ",
                "load() HMAC, all rows",
                plain,
            ),
            (
                "published view:          load()             / plain read of the view files   ",
                "load() published view",
                "plain read of the view",
            ),
            (
                "published view:          load()             / plain read of the raw columns  ",
                "load() published view",
                plain,
            ),
        ):
            print(f"{label}: {ratio(a, b):.3f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        spark.stop()


if __name__ == "__main__":
    main()
