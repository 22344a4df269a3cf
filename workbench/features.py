"""Named feature functions: how a raw dataset is decorated before a model sees it.

A feature function is written ONCE, in pandas, over small lookup tables read through
`workbench.data.load` (dimension tables: weather, planes, ...). The same code then runs

- in training and batch scoring on Spark, through `mapInPandas` (`Decorator.apply_spark`), and
- in serving and notebooks on pandas (`Decorator.apply_pandas`),

so a model is never fed features computed differently from the ones it was trained on. A trained
model records the name of its feature function and the raw columns that function needs
(`workbench.model_contract.ModelSpec`); serving looks the function up here by that name.

    from workbench import features
    deco = features.get("flights_context").prepare(settings)   # loads the lookups once
    decorated = deco.apply_pandas(raw_flights_pdf)               # or deco.apply_spark(spark_df)

Serving's fast path: a feature function may also give `fast(indexed lookups) -> (columns, n) -> added columns`,
built once per decorator, which answers from plain dicts and arrays (no pandas merges). The pandas `transform`
stays the reference (training and Spark use it); a test proves both give the same columns on every row of a
month. `Decorator.fast` is None for a function without one, and the caller uses `apply_pandas`.

Rules every feature function keeps (tested): it never adds, drops or reorders rows (lookups are
de-duplicated on their keys and joined left); it passes every input column through unchanged; it
adds exactly the columns it declares, with the declared types; missing lookups give nulls.

Registered functions:
- `none`: the dataset as it is.
- `flights_context`: flights + hourly weather at the origin (by `origin` and the local hour) + the plane
  (by `tailnum`), plus calendar features (`day_of_week`) and `plane_age`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .config import Settings, load_settings
from .errors import TrainingError

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

__all__ = [
    "FeatureFunction",
    "Decorator",
    "register",
    "get",
    "names",
    "decorate_pandas",
    "decorate_spark",
    "model_frame",
]

# The types a feature function may declare for an added column: Spark type -> pandas dtype.
_PANDAS_TYPES = {"double": "float64", "string": "object"}

Lookups = Mapping[str, pd.DataFrame]
Transform = Callable[[pd.DataFrame, Lookups], pd.DataFrame]
Index = Callable[[Lookups], Lookups]
# columns (raw column -> sequence of values, one per row) and the row count -> the added columns as arrays
FastDecorate = Callable[[Mapping[str, "np.ndarray | list"], int], dict[str, np.ndarray]]


@dataclass(frozen=True)
class FeatureFunction:
    """A named decoration: `transform(frame, lookups)` adds `adds` to a frame holding `requires`.

    `lookups` maps a key to (dataset name, columns): each is loaded once through
    `workbench.data.load` and handed to `transform` as a pandas frame. `index`, when given, turns the
    loaded lookups into what `transform` receives (typed, de-duplicated, indexed on their keys) once per
    decorator: serving decorates one row per call, where re-normalising a lookup each time would cost
    more than the model.
    """

    name: str
    description: str
    requires: tuple[str, ...]
    adds: dict[str, str]  # column -> Spark type ("double" or "string")
    transform: Transform
    lookups: dict[str, tuple[str, tuple[str, ...]]] = field(default_factory=dict)
    index: Index | None = None
    fast: Callable[[Lookups], FastDecorate] | None = None  # serving's pandas-free twin of `transform`

    def prepare(self, settings: Settings | None = None, spark=None, lookups: Lookups | None = None) -> Decorator:
        """Load the lookup tables (small dimension tables) and return a ready decorator.

        Pass `lookups` to use frames you already have (tests, serving caches)."""
        if lookups is None:
            from .data import load

            settings = settings or load_settings()
            lookups = {
                key: load(
                    dataset, columns=list(cols), purpose=f"feature function {self.name}", settings=settings, spark=spark
                ).toPandas()
                for key, (dataset, cols) in self.lookups.items()
            }
        return Decorator(self, dict(lookups))


@dataclass
class Decorator:
    """A feature function with its lookups loaded: apply it to pandas or Spark frames."""

    function: FeatureFunction
    lookups: dict[str, pd.DataFrame]
    indexed: Lookups = field(init=False, repr=False)
    fast: FastDecorate | None = field(init=False, repr=False, default=None)

    def __post_init__(self) -> None:
        self.indexed = self.function.index(self.lookups) if self.function.index else self.lookups
        self.fast = self.function.fast(self.indexed) if self.function.fast else None

    @property
    def name(self) -> str:
        return self.function.name

    def check_columns(self, columns) -> None:
        missing = [c for c in self.function.requires if c not in columns]
        if missing:
            raise TrainingError(
                f"Feature function '{self.name}' needs the column(s) {', '.join(missing)}, which the input lacks. "
                f"Select them from the dataset, or choose another feature function (known: {', '.join(names())})."
            )

    def apply_pandas(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The decorated copy of `frame`: same rows in the same order, declared columns added."""
        self.check_columns(frame.columns)
        out = self.function.transform(frame.reset_index(drop=True), self.indexed)
        # one concat, not a column insert per added column: serving decorates a row at a time
        added = pd.DataFrame({c: _cast(out[c], t) for c, t in self.function.adds.items()}, index=out.index)
        out = pd.concat([out.drop(columns=list(self.function.adds)), added], axis=1) if len(added.columns) else out
        out.index = frame.index
        return out

    def apply_spark(self, df: DataFrame) -> DataFrame:
        """The same decoration on a Spark DataFrame, batch by batch with `mapInPandas`."""
        from pyspark.sql.types import StructField, StructType, _parse_datatype_string

        self.check_columns(df.columns)
        added = [
            StructField(c, _parse_datatype_string(t), True)
            for c, t in self.function.adds.items()
            if c not in df.columns
        ]
        kept = [f for f in df.schema.fields if f.name not in self.function.adds]
        schema = StructType(kept + added)
        order = [f.name for f in schema.fields]
        decorator = self  # shipped to the workers with its indexed lookups

        def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
            for batch in batches:
                yield decorator.apply_pandas(batch)[order]

        return df.mapInPandas(run, schema)


def _cast(series: pd.Series, spark_type: str) -> pd.Series:
    if spark_type == "double":
        return series if series.dtype == "float64" else pd.to_numeric(series, errors="coerce").astype("float64")
    if spark_type == "string":
        values = series.to_numpy(dtype=object, na_value=None)
        return pd.Series(
            [v if v is None or type(v) is str else str(v) for v in values], index=series.index, dtype=object
        )
    raise TrainingError(f"A feature function declares type '{spark_type}'; expected one of {', '.join(_PANDAS_TYPES)}.")


# ---- the registry ------------------------------------------------------------------------------
_REGISTRY: dict[str, FeatureFunction] = {}


def register(function: FeatureFunction) -> FeatureFunction:
    """Add a feature function under its name (a name can be registered once)."""
    if function.name in _REGISTRY and _REGISTRY[function.name] is not function:
        raise TrainingError(f"A feature function named '{function.name}' is already registered; choose another name.")
    unknown = sorted(set(function.adds.values()) - set(_PANDAS_TYPES))
    if unknown:
        raise TrainingError(
            f"Feature function '{function.name}' declares type(s) {', '.join(unknown)}; expected {', '.join(_PANDAS_TYPES)}."
        )
    _REGISTRY[function.name] = function
    return function


def get(name: str) -> FeatureFunction:
    if name not in _REGISTRY:
        raise TrainingError(
            f"No feature function named '{name}'. Known: {', '.join(names())}. "
            "Register one with workbench.features.register(...)."
        )
    return _REGISTRY[name]


def names() -> list[str]:
    return sorted(_REGISTRY)


def decorate_pandas(frame: pd.DataFrame, name: str, settings: Settings | None = None, spark=None) -> pd.DataFrame:
    """One-off: load the lookups of feature function `name` and decorate a pandas frame."""
    return get(name).prepare(settings, spark).apply_pandas(frame)


def decorate_spark(df: DataFrame, name: str, settings: Settings | None = None, spark=None) -> DataFrame:
    """One-off: load the lookups of feature function `name` and decorate a Spark DataFrame."""
    return get(name).prepare(settings, spark or df.sparkSession).apply_spark(df)


def model_frame(frame: pd.DataFrame, numeric: list[str], categorical: list[str]) -> pd.DataFrame:
    """The model's input: exactly `numeric + categorical`, numeric as float64, categorical as str/None.

    Training and serving both call this between decoration and the pipeline, so the logged
    signature (all numeric columns `double`, categorical `string`) always matches.
    """
    missing = [c for c in [*numeric, *categorical] if c not in frame.columns]
    if missing:
        raise TrainingError(
            f"The decorated frame lacks the model column(s) {', '.join(missing)}. "
            "Check the feature function and the features list."
        )
    columns = {c: _cast(frame[c], "double") for c in numeric} | {c: _cast(frame[c], "string") for c in categorical}
    return pd.DataFrame(columns, index=frame.index)


# ---- built-in feature functions ------------------------------------------------------------------
def _none(frame: pd.DataFrame, lookups: Lookups) -> pd.DataFrame:
    return frame.copy()


_HOUR_KEYS = ("year", "month", "day", "hour")
_WEATHER = ("temp", "dewp", "humid", "wind_dir", "wind_speed", "wind_gust", "precip", "pressure", "visib")
_PLANE = {
    "year": "plane_year",
    "seats": "plane_seats",
    "engines": "plane_engines",
    "type": "plane_type",
    "manufacturer": "plane_manufacturer",
    "engine": "plane_engine",
}


def _hour_key(origin: pd.Series, parts: Mapping[str, pd.Series]) -> np.ndarray:
    """'EWR|2013010105' per row (origin and local year/month/day/hour), None where a part is missing."""
    n = {k: pd.to_numeric(parts[k], errors="coerce").astype("Int64") for k in _HOUR_KEYS}
    code = ((n["year"] * 100 + n["month"]) * 100 + n["day"]) * 100 + n["hour"]
    key = _cast(origin, "string").astype("string") + "|" + code.astype("string")
    return key.astype(object).where(key.notna(), None).to_numpy()


def _flights_context_index(lookups: Lookups) -> Lookups:
    # reindex(columns=...): a missing or empty lookup gives nulls, not an error
    weather = lookups["weather"].reindex(columns=["origin", *_HOUR_KEYS, *_WEATHER])
    by_hour = weather[list(_WEATHER)].apply(pd.to_numeric, errors="coerce").astype("float64")
    by_hour.index = pd.Index(_hour_key(weather["origin"], weather), dtype=object)
    by_hour = by_hour[by_hour.index.notna() & ~by_hour.index.duplicated()]
    planes = lookups["planes"].reindex(columns=["tailnum", *_PLANE])
    by_tail = planes[list(_PLANE)].rename(columns=_PLANE)
    by_tail.index = pd.Index(_cast(planes["tailnum"], "string").to_numpy(), dtype=object)
    by_tail = by_tail[by_tail.index.notna() & ~by_tail.index.duplicated()]
    return {"weather": by_hour, "planes": by_tail}


def _flights_context(frame: pd.DataFrame, lookups: Lookups) -> pd.DataFrame:
    # Weather joins on the local wall-clock hour, not time_hour: time_hour is a governed column
    # (masked to its year for data scientists), and the hour parts are the same instant unmasked.
    weather = lookups["weather"].reindex(_hour_key(frame["origin"], frame))
    added = {c: weather[c].to_numpy(dtype="float64", na_value=np.nan) for c in _WEATHER}
    plane = lookups["planes"].reindex(_cast(frame["tailnum"], "string").to_numpy())
    added |= {c: plane[c].to_numpy() for c in _PLANE.values()}
    year = pd.to_numeric(frame["year"], errors="coerce")
    date = pd.to_datetime(
        dict(
            year=year,
            month=pd.to_numeric(frame["month"], errors="coerce"),
            day=pd.to_numeric(frame["day"], errors="coerce"),
        ),
        errors="coerce",
    )
    added["day_of_week"] = date.dt.dayofweek.astype("float64").to_numpy()
    added["plane_age"] = (
        year.astype("float64").to_numpy()
        - pd.to_numeric(pd.Series(added["plane_year"]), errors="coerce").astype("float64").to_numpy()
    )
    kept = frame.drop(columns=[c for c in added if c in frame.columns])
    return pd.concat([kept, pd.DataFrame(added, index=frame.index)], axis=1)


def _int_or_none(v):
    """`pd.to_numeric(errors="coerce").astype("Int64")` for one value: None when missing or not a number."""
    if v is None:
        return None
    t = type(v)
    if t is int:
        return v
    if t is bool:
        return int(v)
    if t is str:
        try:
            v = float(v) if not v.strip().lstrip("+-").isdigit() else int(v)
        except ValueError:
            return None
        if type(v) is int:
            return v
    f = float(v)
    if f != f:
        return None
    if not f.is_integer():
        raise ValueError("a fractional value where an integer is expected")  # the reference raises too
    return int(f)


def _as_str(v):
    return v if v is None or type(v) is str else (None if type(v) is float and v != v else str(v))


def _flights_context_fast(indexed: Lookups) -> FastDecorate:
    weather, planes = indexed["weather"], indexed["planes"]
    w_pos = {k: i for i, k in enumerate(weather.index)}
    w_values = np.vstack([weather[c].to_numpy(dtype="float64", na_value=np.nan) for c in _WEATHER]).T.copy()
    w_missing = np.full(len(_WEATHER), np.nan)
    p_pos = {k: i for i, k in enumerate(planes.index)}
    # the plane columns as apply_pandas casts them (double or string), plus a missing row at the end
    p_cols = {}
    for c in _PLANE.values():
        cast = _cast(planes[c], "double" if c in ("plane_year", "plane_seats", "plane_engines") else "string")
        values = cast.to_numpy(dtype="float64", na_value=np.nan) if cast.dtype == "float64" else cast.to_numpy()
        p_cols[c] = np.append(values, np.nan if values.dtype == "float64" else None)
    p_none = len(planes)

    def decorate(columns, n: int) -> dict[str, np.ndarray]:
        origin, tailnum = columns["origin"], columns["tailnum"]
        years, months, days, hours = columns["year"], columns["month"], columns["day"], columns["hour"]
        w_rows = np.empty((n, len(_WEATHER)), dtype="float64")
        p_rows = np.empty(n, dtype="int64")
        dow = np.empty(n, dtype="float64")
        year_f = np.empty(n, dtype="float64")
        for i in range(n):
            y, m, d, h = (
                _int_or_none(years[i]),
                _int_or_none(months[i]),
                _int_or_none(days[i]),
                _int_or_none(hours[i]),
            )
            o = _as_str(origin[i])
            pos = None
            if o is not None and y is not None and m is not None and d is not None and h is not None:
                pos = w_pos.get(f"{o}|{((y * 100 + m) * 100 + d) * 100 + h}")
            w_rows[i] = w_values[pos] if pos is not None else w_missing
            t = _as_str(tailnum[i])
            p_rows[i] = p_pos.get(t, p_none) if t is not None else p_none
            year_f[i] = np.nan if y is None else float(y)
            dow[i] = np.nan
            if y is not None and m is not None and d is not None and 1678 <= y <= 2261:
                try:
                    dow[i] = float(date(y, m, d).weekday())
                except ValueError:
                    pass
        added = {c: w_rows[:, j].copy() for j, c in enumerate(_WEATHER)}
        added |= {c: values[p_rows] for c, values in p_cols.items()}
        added["day_of_week"] = dow
        added["plane_age"] = year_f - added["plane_year"]
        return added

    return decorate


register(
    FeatureFunction(
        name="none", description="The dataset as it is: no columns added.", requires=(), adds={}, transform=_none
    )
)

register(
    FeatureFunction(
        name="flights_context",
        description="Flights + hourly weather at the origin airport (by origin and local year/month/day/hour) + plane data (by tailnum), "
        "plus day_of_week (0 = Monday) and plane_age (flight year - year built).",
        requires=("origin", "tailnum", "year", "month", "day", "hour"),
        adds={
            **dict.fromkeys(_WEATHER, "double"),
            "plane_year": "double",
            "plane_seats": "double",
            "plane_engines": "double",
            "plane_type": "string",
            "plane_manufacturer": "string",
            "plane_engine": "string",
            "day_of_week": "double",
            "plane_age": "double",
        },
        transform=_flights_context,
        index=_flights_context_index,
        fast=_flights_context_fast,
        lookups={
            "weather": ("weather", ("origin", *_HOUR_KEYS, *_WEATHER)),
            "planes": ("planes", ("tailnum", *_PLANE)),
        },
    )
)
