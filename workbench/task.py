"""The prediction task of a training run, resolved from its parameters and the catalog's roles.

A parameter always wins; an unset one is taken from the dataset's `roles` in the catalog
(`workbench.data.roles`); with neither, the error names the parameter to pass and the catalog field
that would set it. Training, the gate, drift and explain call this, so no library default names a
sample dataset's columns.

    task = resolve_task("flights", settings=settings)
    task.target, task.task, task.label_threshold   # 'arr_delay', 'classification', 15.0
    task.features, task.feature_function            # declared or derived features, 'flights_context'
    task.model_name                                 # 'flights-late' (<dataset>-<target name>)

The notebooks' other "from the catalog" defaults live here too: `resolve_dataset("")` is the catalog's
`default_dataset`, and `window(dataset, "train", "")` the dataset's `windows: train` role (train,
evaluate and explain default to all rows without one; drift's reference and current windows have no
default, so their error names the parameter and the catalog field).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from . import features as feature_functions
from .config import Settings, load_settings
from .data import roles as roles_mod
from .errors import DriftError, TrainingError

__all__ = ["Task", "resolve_task", "resolve_dataset", "window", "dataset_entry", "default_model_name", "TASKS"]

TASKS = {"classification": "classification", "binary": "classification", "regression": "regression"}


@dataclass(frozen=True)
class Task:
    dataset: str
    target: str
    task: str  # classification | regression
    label_threshold: float | None  # classification: label = target > threshold
    zero_one: bool  # a 0/1 target (no threshold given): its values are checked
    features: tuple[str, ...]
    feature_function: str
    time_column: str
    leaky: tuple[str, ...]
    description: str  # the prediction in words ("" when the catalog has none)
    model_name: str  # the default registered name, <dataset>-<target name>


# the windows with no default: without the role, the error says which parameter to pass
REQUIRED_WINDOWS = {"reference": "the reference window of the comparison", "current": "the current window"}


def dataset_entry(dataset: str, settings: Settings | None = None):
    """The catalog entry of `dataset` (its columns and roles); "" means the catalog's default dataset."""
    from .data.catalog import load_catalog

    catalog = load_catalog(settings or load_settings())
    return catalog.get(dataset or _default_dataset(catalog, TrainingError))


def resolve_dataset(dataset: str = "", settings: Settings | None = None, error: type[Exception] = TrainingError) -> str:
    """`dataset` if set, else the catalog's top-level `default_dataset` (an error naming both when neither is)."""
    if dataset:
        return dataset
    from .data.catalog import load_catalog

    return _default_dataset(load_catalog(settings or load_settings()), error)


def _default_dataset(catalog, error: type[Exception]) -> str:
    if catalog.default_dataset:
        return catalog.default_dataset
    raise error(
        f"Parameter 'dataset' is not set, and the catalog {catalog.path} declares no 'default_dataset'. Pass 'dataset' "
        f"(one of {', '.join(sorted(catalog.datasets)) or 'none yet'}), or add a top-level 'default_dataset: NAME' "
        "to the catalog."
    )


def window(
    dataset: str,
    role: str,
    value: str | None = "",
    settings: Settings | None = None,
    error: type[Exception] | None = None,
) -> str:
    """The Spark SQL predicate of a window: `value` if set, else the dataset's `windows: <role>` in the catalog.

    Without either, train, evaluate and explain mean all rows (""); reference and current raise `error`
    naming the parameter (`roles.WINDOWS`) and the catalog field that would set it. Pass "true" to
    choose all rows when a role is declared.
    """
    if role not in roles_mod.WINDOWS:
        raise ValueError(f"unknown window role '{role}'; known: {', '.join(roles_mod.WINDOWS)}")
    if value:
        return value
    entry = dataset_entry(dataset, settings)
    declared = entry.roles.window(role)
    if declared or role not in REQUIRED_WINDOWS:
        return declared
    return roles_mod.require(
        entry, "", roles_mod.WINDOWS[role], f"windows.{role}", error or DriftError, REQUIRED_WINDOWS[role]
    )


def default_model_name(
    dataset: str = "", settings: Settings | None = None, error: type[Exception] = TrainingError
) -> str:
    """The model_name setting when set, else `<dataset>-<target name>` from the catalog's roles
    ("" means the catalog's default dataset)."""
    settings = settings or load_settings()
    if settings.model_name:
        return settings.model_name
    return roles_mod.model_name(dataset_entry(resolve_dataset(dataset, settings, error), settings), error)


def resolve_task(
    dataset: str,
    target: str = "",
    task: str = "",
    label_threshold: float | None = None,
    features: Sequence[str] | None = None,
    feature_function: str = "",
    time_column: str = "",
    settings: Settings | None = None,
) -> Task:
    """Fill every unset parameter from the catalog's roles of `dataset` (see the module docstring);
    "" means the catalog's default dataset."""
    dataset = resolve_dataset(dataset, settings)
    entry = dataset_entry(dataset, settings)
    roles = entry.roles
    declared = (
        roles.target if roles.target is not None and roles.target.column == (target or roles.target.column) else None
    )
    target = roles_mod.require(
        entry,
        target or (declared.column if declared else ""),
        "target",
        "target",
        TrainingError,
        "the column to predict",
    )

    zero_one = False
    if task and task not in TASKS:
        raise TrainingError(
            f"Parameter 'task' is '{task}'; expected one of {', '.join(TASKS)} (or empty: from the catalog)."
        )
    kind = TASKS.get(task, "")
    if not kind and label_threshold is not None:
        kind = "classification"
    if not kind and declared is not None:
        kind = declared.task
    roles_mod.require(entry, kind, "task", "target.kind", TrainingError, "classification or regression")
    threshold = None
    if kind == "classification":
        threshold = label_threshold
        if threshold is None and declared is not None and declared.threshold is not None:
            threshold = declared.threshold
        if threshold is None:  # a 0/1 column: positive when 1
            threshold, zero_one = 0.0, True

    function_name = feature_function or roles.feature_function or "none"
    function = feature_functions.get(function_name)
    known = set(entry.column_names)
    lacking = [c for c in function.requires if known and c not in known]
    if lacking:
        source = "parameter 'feature_function'" if feature_function else f"the catalog's roles of '{dataset}'"
        raise TrainingError(
            f"Feature function '{function_name}' (from {source}) needs the column(s) {', '.join(lacking)}, which dataset "
            f"'{dataset}' lacks. Pass feature_function='none' to use the dataset as it is, or another feature function "
            f"(known: {', '.join(feature_functions.names())})."
        )
    time_column = roles_mod.require(
        entry,
        time_column or roles.time_column,
        "time_column",
        "time_column",
        TrainingError,
        "orders rows for the holdout",
    )
    chosen = list(features) if features else roles_mod.derived_features(entry, target, time_column, list(function.adds))
    if not chosen:
        raise TrainingError(
            f"No features: dataset '{dataset}' has no column left once target, time, id, leaky and pii columns are set "
            f"aside. Pass 'features', or declare 'features' under datasets.{dataset}.roles in the catalog."
        )
    label = declared.label if declared is not None else target
    return Task(
        dataset=dataset,
        target=target,
        task=kind,
        label_threshold=threshold,
        zero_one=zero_one,
        features=tuple(dict.fromkeys(chosen)),
        feature_function=function_name,
        time_column=time_column,
        leaky=roles.leaky,
        description=roles.description if declared is not None else "",
        model_name=f"{dataset}-{label}",
    )
