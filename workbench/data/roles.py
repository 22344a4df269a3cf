"""Modelling roles: what a dataset says about the models trained on it (optional, per dataset).

A dataset of the catalog may carry a `roles` mapping. Every field is optional; training, the gate,
drift, explain and the notebooks take their defaults from it, and a parameter always wins:

    roles:
      description: arrives 15 or more minutes late   # the prediction, in words, for reports
      target: {column: arr_delay, name: late, kind: binary, positive: "> 15"}
      time_column: scheduled_departure                # orders rows for the time-ordered holdout
      entity_id: [carrier, flight, scheduled_departure]   # what one prediction is about (one or more columns)
      leaky: [dep_delay, dep_time, arr_time, air_time]     # known only after the fact: never features
      slices: [carrier, origin]                       # judged one by one by the gate, explorer filters
      feature_function: flights_context               # named decoration (workbench.features); default none
      features: [carrier, origin, ...]                # model inputs after decoration; default: derived
      windows:                                        # Spark SQL predicates the notebooks' "" windows mean
        train: "month < 3"                            #   02_train train_where (default: all rows)
        evaluate: "month IN (3)"                      #   05_evaluate eval_where (default: all rows)
        explain: "month IN (2)"                       #   03_explain where (default: all rows)
        reference: "month IN (1)"                     #   04_drift_monitor reference_where (no default)
        current: "month IN (7)"                       #   04_drift_monitor current_where (no default)

Target kinds: `binary` with `positive: "> NUMBER"` (positive when the column is above the number), or
`binary` alone for a 0/1 column; `regression`. `name` (default: the column) names the registered model:
`<dataset>-<name>`. Derived features are the columns that are not the target, time column, entity id,
leaky, pii or sensitive, and not dates or timestamps. Derived slices (when none are declared) are the
categorical features with 2 to MAX_SLICE_VALUES distinct values in the data at hand.

Windows are predicates over the dataset's columns like any `where=` parameter, and applied the same way
(through `workbench.data.load`, fenced to the caller's governed view); `workbench data check` compiles
them against the data. Drift has no default window: comparing a dataset with itself says nothing, and
no cut of `time_column` is right for every dataset, so without the role the error names the parameter.

`parse_roles` validates a `roles` mapping against the dataset's columns and reports every problem at
once; `require` builds the error that names the parameter to set and the catalog field that would set it.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import CatalogError

if TYPE_CHECKING:
    from .catalog import Dataset

__all__ = [
    "Roles",
    "Target",
    "parse_roles",
    "require",
    "model_name",
    "derived_features",
    "low_cardinality",
    "TARGET_KINDS",
    "ROLE_KEYS",
    "WINDOWS",
    "MAX_SLICE_VALUES",
]

TARGET_KINDS = ("binary", "regression")
ROLE_KEYS = frozenset(
    {"description", "target", "time_column", "entity_id", "leaky", "slices", "feature_function", "features", "windows"}
)
# window role -> the notebook parameter it is the default of
WINDOWS = {
    "train": "train_where",
    "evaluate": "eval_where",
    "explain": "where",
    "reference": "reference_where",
    "current": "current_where",
}
TARGET_KEYS = frozenset({"column", "name", "kind", "positive"})
MAX_SLICE_VALUES = 20
NOT_FEATURE_TYPES = ("date", "timestamp", "timestamp_ntz")
NOT_FEATURE_CLASSES = ("pii", "sensitive")
_POSITIVE_RE = re.compile(r"^\s*>\s*(-?\d+(\.\d+)?([eE][-+]?\d+)?)\s*$")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class Target:
    column: str
    kind: str  # binary | regression
    name: str = ""  # names the model: <dataset>-<name>; default the column
    threshold: float | None = None  # binary: positive when column > threshold; None: a 0/1 column

    @property
    def task(self) -> str:
        return "classification" if self.kind == "binary" else "regression"

    @property
    def label_threshold(self) -> float | None:
        """What `ModelSpec.label` compares with: the threshold, 0 for a 0/1 column, None for regression."""
        if self.kind != "binary":
            return None
        return self.threshold if self.threshold is not None else 0.0

    @property
    def label(self) -> str:
        return self.name or self.column


@dataclass(frozen=True)
class Roles:
    description: str = ""
    target: Target | None = None
    time_column: str = ""
    entity_id: tuple[str, ...] = ()
    leaky: tuple[str, ...] = ()
    slices: tuple[str, ...] | None = None  # None: not declared (derive them)
    feature_function: str = ""
    features: tuple[str, ...] = ()  # declared model inputs; empty: derived
    windows: tuple[tuple[str, str], ...] = ()  # (window role, Spark SQL predicate), in WINDOWS order

    def window(self, role: str) -> str:
        """The declared predicate of a window role (`WINDOWS`), "" when none is declared."""
        return dict(self.windows).get(role, "")

    @property
    def declared(self) -> bool:
        return self != Roles()


def parse_roles(path: Path | str, dataset: str, spec: Any, columns: Sequence[str]) -> Roles:
    """Validate one dataset's `roles` (None: no roles). Raises one CatalogError listing every problem."""
    if spec is None:
        return Roles()
    where = f"{path}: dataset '{dataset}', field 'roles'"
    if not isinstance(spec, dict):
        raise CatalogError(
            f"{where} must be a mapping ({', '.join(sorted(ROLE_KEYS))}), found a {type(spec).__name__}."
        )
    problems: list[str] = []
    known = list(columns)

    for key in spec:
        if key not in ROLE_KEYS:
            problems.append(
                f"unknown field '{key}'{_hint(str(key), ROLE_KEYS)}; known fields: {', '.join(sorted(ROLE_KEYS))}"
            )

    def column(field: str, value: Any) -> str:
        if not isinstance(value, str) or not value:
            problems.append(f"'{field}' must be a column name")
            return ""
        if known and value not in known:
            problems.append(f"'{field}' names '{value}', which is not a column of the dataset{_hint(value, known)}")
        return value

    def column_list(field: str, value: Any) -> tuple[str, ...]:
        if value is None:
            return ()
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            problems.append(f"'{field}' must be a list of column names")
            return ()
        return tuple(c for c in (column(f"{field}[{i}]", v) for i, v in enumerate(value)) if c)

    target = _target(spec.get("target"), column, problems) if "target" in spec else None
    time_column = column("time_column", spec["time_column"]) if spec.get("time_column") is not None else ""
    entity_id = column_list("entity_id", spec.get("entity_id"))
    leaky = column_list("leaky", spec.get("leaky"))
    slices = column_list("slices", spec.get("slices")) if spec.get("slices") is not None else None
    features = _names("features", spec.get("features"), problems)  # may name columns a feature function adds
    function = spec.get("feature_function") or ""
    if not isinstance(function, str):
        problems.append("'feature_function' must be the name of a feature function (workbench.features)")
        function = ""
    description = spec.get("description") or ""
    if not isinstance(description, str):
        problems.append("'description' must be a sentence describing the prediction")
        description = ""
    windows = _windows(spec.get("windows"), problems)
    if target is not None:
        if target.column in leaky:
            problems.append(f"the target '{target.column}' is also listed in 'leaky'")
        if target.column in features:
            problems.append(f"the target '{target.column}' is also listed in 'features'")
    for c in sorted(set(leaky) & set(features)):
        problems.append(f"'{c}' is listed both in 'leaky' and in 'features'")
    if problems:
        raise CatalogError(f"{where}: " + "; ".join(problems) + ".")
    return Roles(
        description=description.strip(),
        target=target,
        time_column=time_column,
        entity_id=entity_id,
        leaky=leaky,
        slices=slices,
        feature_function=function,
        features=features,
        windows=windows,
    )


def _windows(spec: Any, problems: list[str]) -> tuple[tuple[str, str], ...]:
    if spec is None:
        return ()
    if not isinstance(spec, dict):
        problems.append(f"'windows' must map window names ({', '.join(WINDOWS)}) to Spark SQL predicates")
        return ()
    for key in spec:
        if key not in WINDOWS:
            problems.append(
                f"'windows' has an unknown window '{key}'{_hint(str(key), WINDOWS)}; known windows: {', '.join(WINDOWS)}"
            )
    out = []
    for key in WINDOWS:
        if key not in spec:
            continue
        value = spec[key]
        if not isinstance(value, str) or not value.strip():
            problems.append(f"'windows.{key}' must be a non-empty Spark SQL predicate over the dataset's columns")
        else:
            out.append((key, value.strip()))
    return tuple(out)


def _target(spec: Any, column, problems: list[str]) -> Target | None:
    if isinstance(spec, str):
        spec = {"column": spec}
    if not isinstance(spec, dict):
        problems.append("'target' must be a mapping {column, kind, positive, name}")
        return None
    for key in spec:
        if key not in TARGET_KEYS:
            problems.append(f"'target' has an unknown field '{key}'; known fields: {', '.join(sorted(TARGET_KEYS))}")
    name = column("target.column", spec.get("column"))
    kind = spec.get("kind")
    if kind not in TARGET_KINDS:
        problems.append(f"'target.kind' must be one of {', '.join(TARGET_KINDS)}")
        kind = "regression"
    threshold = None
    positive = spec.get("positive")
    if positive is not None:
        match = _POSITIVE_RE.match(str(positive))
        if kind != "binary":
            problems.append("'target.positive' applies to a binary target only")
        elif not match:
            problems.append("'target.positive' must read '> NUMBER' (positive when the column is above it)")
        else:
            threshold = float(match.group(1))
    label = spec.get("name") or ""
    if label and (not isinstance(label, str) or not _NAME_RE.match(label)):
        problems.append("'target.name' must use letters, digits, '.', '_' and '-' (it names the model)")
        label = ""
    return Target(column=name, kind=str(kind), name=str(label), threshold=threshold) if name else None


def _names(field: str, value: Any, problems: list[str]) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        problems.append(f"'{field}' must be a list of column names")
        return ()
    return tuple(dict.fromkeys(value))


def _hint(value: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(value, sorted(known), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


# ---- using the roles -------------------------------------------------------------------------------------
def require(dataset: Dataset, value: Any, parameter: str, field: str, error: type[Exception], what: str = "") -> Any:
    """`value` if set, else raise `error` naming the parameter to pass and the catalog field that would set it."""
    if value not in (None, "", (), []):
        return value
    what = f" ({what})" if what else ""
    raise error(
        f"Parameter '{parameter}'{what} is not set, and dataset '{dataset.name}' declares no 'roles: {field}' in the "
        f"catalog. Pass '{parameter}', or add '{field}' under datasets.{dataset.name}.roles in the catalog."
    )


def model_name(dataset: Dataset, error: type[Exception]) -> str:
    """The default registered model name of a dataset's declared target: `<dataset>-<target name>`."""
    target = dataset.roles.target
    require(dataset, target, "model_name", "target", error, "the registered model, default <dataset>-<target>")
    return f"{dataset.name}-{target.label}"


def derived_features(dataset: Dataset, target: str = "", time_column: str = "", extra: Sequence[str] = ()) -> list[str]:
    """The declared features, else every column that is not the target, time column, entity id, leaky,
    pii or sensitive, nor a date or timestamp, followed by `extra` (columns a feature function adds)."""
    roles = dataset.roles
    if roles.features:
        return list(roles.features)
    skip = {target, time_column, roles.time_column, *roles.entity_id, *roles.leaky}
    if roles.target is not None:
        skip.add(roles.target.column)
    out = [
        c.name
        for c in dataset.columns
        if c.name not in skip and c.classification not in NOT_FEATURE_CLASSES and c.type not in NOT_FEATURE_TYPES
    ]
    return list(dict.fromkeys([*out, *[c for c in extra if c not in skip]]))


def low_cardinality(frame, columns: Iterable[str], max_values: int = MAX_SLICE_VALUES) -> list[str]:
    """The text columns of a pandas frame among `columns` with 2..max_values distinct values (derived slices)."""
    import pandas as pd

    out = []
    for c in columns:
        if (
            c in frame.columns
            and not pd.api.types.is_numeric_dtype(frame[c])
            and not pd.api.types.is_bool_dtype(frame[c])
        ):
            if not pd.api.types.is_datetime64_any_dtype(frame[c]) and 2 <= frame[c].nunique(dropna=True) <= max_values:
                out.append(c)
    return out
