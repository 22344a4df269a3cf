"""SHAP for N rows: single-process in-memory (`ModelExplainer.explain`) vs `explain_spark` on local[C].

    .venv/bin/python benchmarks/bench_explain.py            # 200k rows, 100 trees, local[2]
    .venv/bin/python benchmarks/bench_explain.py --quick    # 20k rows, 30 trees

Both paths run the same work per row: decorate with the model's feature function, transform through
the pipeline, Tree SHAP, map one-hot columns back to raw features, predict. The in-memory path starts
from a pandas frame already in memory; the Spark path reads the same rows from parquet and writes the
explanations as parquet (what a batch job does). Prints rows/s for both, the speed-up, the CPU seconds
each path used, and the load average before and after: on a shared machine the wall-clock speed-up is
bounded by the CPU share we get, while CPU per row shows what the same run would do on free cores.

The in-memory path is not one core by default: shap's and LightGBM's OpenMP loops use every core, so on
one machine it is already parallel. `--one-core` pins it to one thread (OMP_NUM_THREADS=1; the Spark
workers run one thread each anyway), which is the baseline for "how does explain_spark scale with cores".
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000, help="rows to explain")
    parser.add_argument("--trees", type=int, default=100, help="LightGBM trees of the benchmark model")
    parser.add_argument("--cores", type=int, default=2, help="Spark local[N]")
    parser.add_argument("--files", type=int, default=0, help="parquet files of the input (default: 4 per core)")
    parser.add_argument(
        "--model",
        default="",
        help="explain this registered model (models:/NAME@alias, from the configured "
        "MLflow store) instead of training a fresh one into a temporary store",
    )
    parser.add_argument("--quick", action="store_true", help="20k rows, 30 trees")
    parser.add_argument(
        "--one-core", action="store_true", help="pin the in-memory path to one thread (the scaling baseline)"
    )
    args = parser.parse_args()
    if args.one_core:  # before shap, LightGBM or numpy start their thread pools
        for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[name] = "1"
    if args.quick:
        args.rows, args.trees = 20_000, 30
    files = args.files or 4 * args.cores

    from pyspark.sql import functions as F

    from workbench import explain
    from workbench.config import load_settings
    from workbench.data import load
    from workbench.spark import get_spark
    from workbench.training import train

    tmp = Path(tempfile.mkdtemp(prefix="bench-explain-"))
    store = (
        {}
        if args.model
        else {"mlflow_tracking_uri": f"sqlite:///{tmp}/mlflow.db", "mlflow_artifacts": str(tmp / "mlartifacts")}
    )
    settings = load_settings().with_overrides(
        spark_master=f"local[{args.cores}]", spark_shuffle_partitions=files, **store
    )
    load_before = os.getloadavg()
    spark = get_spark("bench-explain", settings)

    uri = args.model
    if not uri:
        print(f"training a LightGBM model ({args.trees} trees) on flights month 1 ...", flush=True)
        result = train(
            dataset="flights",
            train_where="month = 1",
            params={"n_estimators": args.trees},
            register=True,
            alias="champion",
            settings=settings,
            spark=spark,
        )
        uri = f"models:/{result.name}@champion"

    source = tmp / "rows"
    (
        load("flights", settings=settings, spark=spark)
        .orderBy(F.rand(7))
        .limit(args.rows)
        .repartition(files)
        .write.parquet(str(source))
    )
    pdf = spark.read.parquet(str(source)).toPandas()
    print(f"{len(pdf):,} rows in {files} parquet files; model {uri}; Spark local[{args.cores}]", flush=True)

    explainer = explain.load_explainer(uri, settings, spark, n_background=0)
    explainer.explain(pdf.head(500))  # build the tree explainer once (both paths pay it once)

    start, cpu = time.perf_counter(), time.process_time()
    in_memory = explainer.explain(pdf)
    t_memory, cpu_memory = time.perf_counter() - start, time.process_time() - cpu

    spark_cpu = _spark_cpu(spark)
    start = time.perf_counter()
    written = explain.explain_spark(
        uri, spark.read.parquet(str(source)), output=str(tmp / "shap"), explainer=explainer, mode="overwrite"
    )
    t_spark = time.perf_counter() - start
    cpu_spark = _spark_cpu(spark) - spark_cpu
    n_out = spark.read.parquet(written).count()
    load_after = os.getloadavg()

    rows = len(in_memory)
    print(f"in-memory, single process : {t_memory:8.1f} s  {rows / t_memory:10,.0f} rows/s   cpu {cpu_memory:7.1f} s")
    print(
        f"explain_spark, local[{args.cores}]   : {t_spark:8.1f} s  {n_out / t_spark:10,.0f} rows/s   cpu {cpu_spark:7.1f} s "
        "(JVM + Python workers; read + explain + write parquet)"
    )
    print(f"speed-up                  : {t_memory / t_spark:8.2f}x on {args.cores} cores (wall clock)")
    print(
        f"cpu per row, Spark / in-memory: {cpu_spark / max(cpu_memory, 1e-9):.2f} "
        f"(so {args.cores} free cores would give about {args.cores * cpu_memory / max(cpu_spark, 1e-9):.2f}x)"
    )
    print(
        f"load average (1, 5, 15 min) before: {', '.join(f'{v:.1f}' for v in load_before)}; "
        f"after: {', '.join(f'{v:.1f}' for v in load_after)}; cpus: {os.cpu_count()}"
    )
    spark.stop()


def _spark_cpu(spark) -> float:
    """CPU seconds used so far by the Spark JVM and its Python workers (local mode: our child processes)."""
    import psutil

    total = 0.0
    for proc in psutil.Process().children(recursive=True):
        try:
            t = proc.cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
        except psutil.NoSuchProcess:
            pass
    return total


if __name__ == "__main__":
    main()
