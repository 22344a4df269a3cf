"""Validate N rows of flights against an inferred schema: workbench.validation vs pandera, same run.

Both check the same rules (columns present, nulls allowed, numeric ranges, categorical domains) on the
same pandas frame: flights (read through workbench.data.load) repeated up to --rows. Prints time,
peak extra memory (tracemalloc, measured in a separate pass so it does not slow the timing) and
the ratios, for a clean batch and for one with 2% of values broken.

    python benchmarks/bench_validation.py              # 10M rows
    python benchmarks/bench_validation.py --rows 2000000
    python benchmarks/bench_validation.py --quick      # 500k rows
"""

from __future__ import annotations

import argparse
import gc
import time
import tracemalloc

import numpy as np
import pandas as pd

COLUMNS = ["carrier", "origin", "dest", "distance", "hour", "minute", "dep_delay", "arr_delay", "air_time", "time_hour"]


def measure(fn):
    gc.collect()
    start = time.perf_counter()
    out = fn()
    seconds = time.perf_counter() - start
    del out
    gc.collect()
    tracemalloc.start()
    fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return seconds, peak / 2**20


def pandera_validate(schema, frame):
    import pandera.errors

    try:
        return schema.validate(frame, lazy=True)
    except pandera.errors.SchemaErrors as err:  # failures are collected, as our validator does
        return err.failure_cases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000_000, help="rows to validate (default 10M)")
    parser.add_argument("--quick", action="store_true", help="500k rows")
    args = parser.parse_args()
    rows = 500_000 if args.quick else args.rows

    from workbench.config import load_settings
    from workbench.data import load
    from workbench.validation import infer_schema, validate

    settings = load_settings(spark_master="local[2]")
    base = load("flights", columns=COLUMNS, purpose="benchmark", settings=settings).toPandas()
    schema = infer_schema(base, name="flights")
    reps = -(-rows // len(base))
    frame = pd.concat([base] * reps, ignore_index=True).iloc[:rows]
    broken = frame.copy()
    rng = np.random.default_rng(0)
    idx = rng.choice(rows, rows // 50, replace=False)
    broken.loc[idx, "distance"] = 99999  # out of range
    broken.loc[idx, "carrier"] = "ZZ"  # unseen category
    pandera_schema = schema.to_pandera()
    print(f"{rows:,} rows x {len(COLUMNS)} columns ({frame.memory_usage(deep=False).sum() / 2**20:,.0f} MiB in pandas)")

    for label, batch in (("clean", frame), ("2% broken", broken)):
        ours_s, ours_mb = measure(lambda batch=batch: validate(batch, schema))
        peer_s, peer_mb = measure(lambda batch=batch: pandera_validate(pandera_schema, batch))
        found = len(validate(batch, schema))
        print(f"[{label}] workbench.validation: {ours_s:7.2f} s, peak +{ours_mb:8.1f} MiB, {found} anomalies")
        print(f"[{label}] pandera              : {peer_s:7.2f} s, peak +{peer_mb:8.1f} MiB")
        print(
            f"[{label}] ratio pandera/ours   : time {peer_s / ours_s:5.1f}x, memory {peer_mb / max(ours_mb, 1e-9):5.1f}x"
        )


if __name__ == "__main__":
    main()
