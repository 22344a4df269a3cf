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
    python benchmarks/bench_data.py --audit-only  # only the decision + audit round trip (no Spark)

Prints each timing (best of --repeat) and the ratios. Targets: a published-view read within 1.1x of a
plain read of it; the dynamic path no slower than before (1.20x masks + row filter, 1.99x every row hashed).
Then the decision + audit record every read makes (`--audit-calls` calls, each fsync'ed): in this
process (local profile) and through the governance service over its Unix socket (production's
path), per call. Target: at most 1 ms per read.
"""

from __future__ import annotations

import argparse
import os
import pwd
import shutil
import socket
import statistics
import subprocess
import sys
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
    parser.add_argument("--audit-calls", type=int, default=2000, help="decisions + audit records timed (default 2000)")
    parser.add_argument("--audit-only", action="store_true", help="only time the decision + audit round trip")
    args = parser.parse_args()
    if args.audit_only:
        audit_round_trip(200 if args.quick else args.audit_calls)
        return
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
        # production decides through the governance service: one in this process per group (one OS account here)
        steward_prod = _governance_service(production, tmp / "steward.sock", ("data-stewards",))
        print("publishing the governed views ...", flush=True)
        publish(steward_prod, spark, permissions=False, progress=lambda m: None)
        view = current_version_uri(production, "flights", "masked", spark)
        published = _governance_service(production, tmp / "reader.sock", ("data-scientists",))
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
    print()
    os.sync()  # the scans' temp files are still being written back: let that finish before timing fsyncs
    time.sleep(5)
    audit_round_trip(200 if args.quick else args.audit_calls)


# ---- the decision + audit record of every read -----------------------------------------------------
def audit_round_trip(calls: int) -> None:
    """Per-call latency of `decide_read` (the grant decision and its fsync'ed, hash-chained audit record):
    in this process, and through a governance service started as a separate process on a Unix socket."""
    from workbench.config import load_settings
    from workbench.data.catalog import load_catalog
    from workbench.data.decision import decide_read

    tmp = Path(tempfile.mkdtemp(prefix="bench-audit-"))
    service = None
    try:
        local = load_settings(audit_dir=str(tmp / "audit-local"), groups=("data-scientists",), user="bench")
        cat = load_catalog(local)
        decide_read(local, "flights", None, None, "warm-up", catalog=cat)
        in_process = _per_call(lambda: decide_read(local, "flights", None, None, "bench", catalog=cat), calls)

        path = tmp / "governance.sock"
        env = {k: v for k, v in os.environ.items() if not k.startswith("WORKBENCH_")}
        env.update(
            WORKBENCH_HOME=local.home,
            WORKBENCH_AUDIT_DIR=str(tmp / "audit-service"),
            WORKBENCH_GOVERNANCE_SOCKET=str(path),
        )
        service = subprocess.Popen(
            [sys.executable, "-m", "workbench.governance", "serve"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait_for_socket(path, service)
        remote = local.with_overrides(governance_socket=str(path), audit_dir=str(tmp / "audit-service"))
        decide_read(remote, "flights", None, None, "warm-up")
        through_service = _per_call(lambda: decide_read(remote, "flights", None, None, "bench"), calls)
        for name, t in (("in process (local profile)", in_process), ("governance service (socket)", through_service)):
            ms = sorted(x * 1000 for x in t)
            print(
                f"decision + audit record, {name:<28} mean {statistics.fmean(ms):6.3f} ms   p50 {ms[len(ms) // 2]:6.3f} ms   "
                f"p99 {ms[int(len(ms) * 0.99)]:6.3f} ms   ({calls} calls, one fsync each)",
                flush=True,
            )
        verdict = "within" if statistics.fmean(through_service) * 1000 <= 1.0 else "OVER"
        print(f"audit round trip through the service: {verdict} the 1 ms per read target")
    finally:
        if service is not None:
            service.terminate()
            service.wait(timeout=30)
        shutil.rmtree(tmp, ignore_errors=True)


def _governance_service(settings, path: Path, groups: tuple[str, ...]):
    """Settings pointing at a governance service served from a thread of this process, answering with `groups`
    (we are the service account here, so it gives us the service identity with these groups)."""
    import threading

    from workbench.governance.service import GovernanceService, bind

    settings = settings.with_overrides(governance_socket=str(path), service_groups=groups)
    server = bind(settings)
    server.service = GovernanceService(settings)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return settings


def _per_call(fn, calls: int) -> list[float]:
    out = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def _wait_for_socket(path: Path, proc: subprocess.Popen, timeout: float = 60) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise SystemExit(f"the governance service exited with status {proc.returncode}")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.connect(str(path))
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"the governance service did not listen on {path} within {timeout:.0f} s")


if __name__ == "__main__":
    main()
