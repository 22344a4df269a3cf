"""Any dataset by naming it: modelling roles in the catalog, no sample-data defaults in the library.

Two datasets besides the sample's flights: scikit-learn's bundled diabetes data (a regression target,
written to a throw-away lake here, with a 0/1 variant of its target) and the lake's `weather` table
with a binary target declared in a test catalog. Every notebook runs on them through the job runner
with only the dataset and its windows given, and no report speaks of flights.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml

from workbench.data.catalog import load_catalog, parse_catalog
from workbench.data.roles import derived_features, parse_roles
from workbench.errors import CatalogError, TrainingError
from workbench.task import resolve_task

REPO = Path(__file__).resolve().parent.parent
SAMPLE_WORDS = re.compile(r"flight|carrier|tailnum|_delay|\bdelay|\bplane|airport", re.IGNORECASE)
DIABETES_COLUMNS = ["age", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]


def visible_text(html: str) -> str:
    """What a reader sees of a report: no style sheets, scripts or tags (their CSS says transition-delay)."""
    html = re.sub(r"<(style|script)\b.*?</\1>", " ", html, flags=re.DOTALL | re.IGNORECASE)
    return re.sub(r"<[^>]+>", " ", html)


def _weather_columns() -> dict:
    sample = yaml.safe_load((REPO / "hub_config" / "catalog.yaml").read_text())
    return sample["datasets"]["weather"]["columns"]


WEATHER_WINDOWS = {
    "train": "month <= 3",
    "evaluate": "month = 4",
    "explain": "month = 4",
    "reference": "month = 1",
    "current": "month = 7",
}


def _catalog() -> dict:
    diabetes_columns = {
        "patient_id": {"type": "bigint"},
        "visit": {"type": "bigint"},
        "sex": {"type": "string"},
        **{c: {"type": "double"} for c in DIABETES_COLUMNS},
        "progression": {"type": "double"},
        "high": {"type": "bigint"},
    }
    common = {"format": "parquet", "zone": "raw", "owner": "stewards"}
    return {
        "version": 1,
        "grants": {"stewards": "full", "data-scientists": "full"},
        "datasets": {
            "diabetes": {
                **common,
                "uri": "{lake}/raw/diabetes",
                "description": "Disease progression one year after baseline (scikit-learn's diabetes data).",
                "columns": diabetes_columns,
                "roles": {
                    "description": "disease progression one year after baseline",
                    "target": {"column": "progression", "kind": "regression"},
                    "time_column": "visit",
                    "entity_id": ["patient_id"],
                    "leaky": ["high"],
                },
            },
            "diabetes_high": {
                **common,
                "uri": "{lake}/raw/diabetes",
                "description": "The same rows; `high` is 1 when progression is above 140.",
                "columns": diabetes_columns,
                "roles": {
                    "target": {"column": "high", "kind": "binary"},  # a 0/1 column: no positive rule
                    "time_column": "visit",
                    "entity_id": ["patient_id"],
                    "leaky": ["progression"],
                },
            },
            "weather": {
                **common,
                "uri": "{lake}/raw/weather",
                "description": "Hourly weather at three airports (copied from the sample lake).",
                "columns": _weather_columns(),
                "roles": {
                    "description": "rain (more than 0 inches of precipitation) in the hour",
                    "target": {"column": "precip", "name": "rain", "kind": "binary", "positive": "> 0"},
                    "time_column": "time_hour",  # no entity_id: origin stays a feature (and a derived slice)
                    "windows": WEATHER_WINDOWS,  # so its notebooks need no parameter but the dataset
                },
            },
            "bare": {**common, "uri": "{lake}/raw/diabetes", "columns": diabetes_columns},
        },
    }


@pytest.fixture(scope="module")
def home(tmp_path_factory, repo_settings, spark) -> Path:
    """A home with its own lake (diabetes written here, weather copied) and its own catalog."""
    from sklearn.datasets import load_diabetes

    root = tmp_path_factory.mktemp("anydata")
    frame = load_diabetes(as_frame=True, scaled=False).frame.rename(columns={"target": "progression"})
    frame["sex"] = frame["sex"].map({1.0: "F", 2.0: "M"})
    frame.insert(0, "patient_id", range(1000, 1000 + len(frame)))
    frame.insert(1, "visit", range(len(frame)))  # the rows' order stands for time
    frame["high"] = (frame["progression"] > 140).astype("int64")
    for c in [*DIABETES_COLUMNS, "progression"]:
        frame[c] = frame[c].astype("float64")
    spark.createDataFrame(frame).coalesce(1).write.mode("overwrite").parquet(str(root / "lake" / "raw" / "diabetes"))
    shutil.copytree(REPO / "lake" / "raw" / "weather", root / "lake" / "raw" / "weather")
    (root / "catalog.yaml").write_text(yaml.safe_dump(_catalog(), sort_keys=False))
    return root


@pytest.fixture(scope="module")
def settings(home, repo_settings):
    return repo_settings.with_overrides(
        home=str(home),
        lake_root=str(home / "lake"),
        catalog_path=str(home / "catalog.yaml"),
        audit_dir=str(home / "audit"),
        mlflow_tracking_uri=f"sqlite:///{home}/mlflow.db",
        mlflow_artifacts=str(home / "mlartifacts"),
        notebooks_dir=str(REPO / "notebooks"),
        reports_dir=str(home / "reports"),
        spark_master="local[2]",
        spark_shuffle_partitions=4,
        model_name="",
    )


# ---- the roles, without Spark ------------------------------------------------------------------------------
def test_roles_report_every_problem_at_once():
    bad = {
        "target": {"column": "progresion", "kind": "binary", "positive": ">= 3"},
        "time_column": "when",
        "leaky": ["bmi", "nope"],
        "features": ["bmi"],
        "slice": ["sex"],
    }
    with pytest.raises(CatalogError) as err:
        parse_roles("catalog.yaml", "diabetes", bad, ["progression", "bmi", "sex", "visit"])
    message = str(err.value)
    for part in (
        "dataset 'diabetes', field 'roles'",
        "unknown field 'slice'",
        "did you mean 'slices'",
        "'target.column' names 'progresion'",
        "did you mean 'progression'",
        "'target.positive' must read '> NUMBER'",
        "'time_column' names 'when'",
        "'leaky[1]' names 'nope'",
        "'bmi' is listed both in 'leaky' and in 'features'",
    ):
        assert part in message, part
    doc = _catalog()
    doc["datasets"]["weather"]["roles"]["target"]["kind"] = "categorical"
    with pytest.raises(CatalogError, match="dataset 'weather', field 'roles'.*'target.kind' must be one of binary"):
        parse_catalog(doc, "catalog.yaml", "/lake")


def test_features_are_derived_from_the_catalog_and_the_sample_roles_live_in_its_catalog(settings, repo_settings):
    catalog = load_catalog(settings)
    assert derived_features(catalog.get("diabetes")) == ["sex", *DIABETES_COLUMNS]  # no id, time, target, leaky
    assert "time_hour" not in derived_features(catalog.get("weather"))  # timestamps are not features
    flights = load_catalog(repo_settings).get("flights")
    assert flights.roles.target.label_threshold == 15 and flights.roles.feature_function == "flights_context"
    task = resolve_task("flights", settings=repo_settings)
    assert task.model_name == "flights-late" and task.time_column == "scheduled_departure"
    assert "dep_delay" in task.leaky and "dep_delay" not in task.features


def test_a_missing_role_names_the_parameter_and_the_catalog_field(settings):
    with pytest.raises(TrainingError, match="Parameter 'target'.*'roles: target'.*datasets.bare.roles"):
        resolve_task("bare", settings=settings)
    with pytest.raises(TrainingError, match="Parameter 'task'.*'roles: target.kind'"):
        resolve_task("bare", target="progression", settings=settings)
    with pytest.raises(TrainingError, match="Parameter 'time_column'.*'roles: time_column'"):
        resolve_task("bare", target="progression", task="regression", settings=settings)
    with pytest.raises(TrainingError, match="feature_function='none'") as err:
        resolve_task("diabetes", feature_function="flights_context", settings=settings)
    assert "parameter 'feature_function'" in str(err.value)
    regression = resolve_task("diabetes", settings=settings)
    assert (regression.task, regression.label_threshold, regression.model_name) == (
        "regression",
        None,
        "diabetes-progression",
    )
    flag = resolve_task("diabetes_high", settings=settings)
    assert flag.task == "classification" and flag.zero_one and flag.label_threshold == 0


# ---- training on the catalog's word alone -------------------------------------------------------------------
def test_a_zero_one_target_trains_without_a_threshold(settings, spark):
    from workbench.data.audit import query
    from workbench.training import train

    result = train(
        "diabetes_high", train_where="visit < 400", params={"n_estimators": 20}, settings=settings, spark=spark
    )
    assert result.spec.task == "classification" and result.spec.label_threshold == 0
    assert set(result.holdout_label.unique()) == {0, 1} and 0.5 < result.metrics["roc_auc"] <= 1
    assert "progression" not in result.spec.features  # declared leaky
    assert len(result.data_identity["parquet_files"]) == 1  # the files read
    purposes = [e.get("purpose", "") for e in query(settings, dataset="diabetes_high").records]
    assert "training diabetes_high-high" in purposes  # the audit names the model being trained


# ---- every notebook, through the job runner, on the dataset and its windows alone ----------------------------
# diabetes declares no windows: they are passed as parameters; weather declares them (WEATHER_WINDOWS)
WINDOWS = {
    "diabetes": dict(
        train_where="visit < 300",
        eval_where="visit >= 300",
        where="visit >= 300",
        reference_where="visit < 221",
        current_where="visit >= 221",
    ),
    "weather": {},
}


@pytest.mark.parametrize("dataset", sorted(WINDOWS))
def test_every_notebook_runs_on_the_dataset_and_its_windows_alone(settings, dataset, tmp_path):
    from workbench.jobs import run_notebook

    # an MLflow store of its own: the module's other tests register models of the same names
    settings = settings.with_overrides(
        mlflow_tracking_uri=f"sqlite:///{tmp_path}/mlflow.db", mlflow_artifacts=str(tmp_path / "mlartifacts")
    )

    def given(*names):
        return {"dataset": dataset, **{n: WINDOWS[dataset][n] for n in names if n in WINDOWS[dataset]}}

    runs = [
        *([("01_explore", given())] if dataset == "weather" else []),  # the one notebook without a task: once is enough
        ("02_train", given("train_where")),
        ("05_evaluate", given("eval_where")),
        ("03_explain", given("where")),
        ("04_drift_monitor", given("reference_where", "current_where")),
    ]
    words = SAMPLE_WORDS if dataset == "weather" else re.compile(SAMPLE_WORDS.pattern + r"|\borigin", re.IGNORECASE)
    records = {}
    for notebook, parameters in runs:
        record = run_notebook(notebook, parameters, settings, build_index=False)
        assert record.status == "succeeded", (notebook, record.error)
        html = record.report_path.read_text()
        assert not sorted({m.lower() for m in words.findall(visible_text(html))}), notebook
        records[notebook] = (record, html)
    trained, html = records["02_train"]
    name = {"diabetes": "diabetes-progression", "weather": "weather-rain"}[dataset]
    assert trained.published["values"]["model_name"] == name and trained.published["values"]["model_version"] == 1
    description = {"diabetes": "disease progression one year after baseline", "weather": "rain (more than 0 inches"}
    assert description[dataset] in html
    gate, html = records["05_evaluate"]
    assert name in html and description[dataset] in html  # the gate says what the model predicts
    if dataset == "diabetes":  # rmse is in the target's units: no default floor, the first model ships
        assert gate.published["values"]["decision"] == "SHIP", gate.published["values"]["reasons"]
        assert "no floor for rmse" in gate.published["values"]["reasons"]
    else:  # no slices declared: the few-valued text input (origin) is judged value by value
        assert 'id="Slices"' in html and "origin" in visible_text(
            html.split('id="Slices"')[1]
        )  # the notebook's section
    drift, _ = records["04_drift_monitor"]
    assert drift.published["status"] in ("ok", "warn", "alert")
    if dataset == "weather":  # the windows the catalog declares are the ones applied
        from workbench import registry

        assert registry.list_versions(name, settings)[0].as_row()["train_where"] == WEATHER_WINDOWS["train"]
        assert f"({WEATHER_WINDOWS['explain']})" in visible_text(records["03_explain"][1])


def test_a_coarse_time_column_warns_and_models_list_shows_aliases(settings, spark):
    from workbench import registry
    from workbench.training import train

    result = train(
        "diabetes",
        time_column="age",  # whole years: equal values on both sides of the cut
        params={"n_estimators": 10},
        register=True,
        alias="champion",
        settings=settings,
        spark=spark,
    )
    assert result.name == "diabetes-progression"
    assert result.warnings and "overlaps training's" in result.warnings[0]
    assert result.data_identity["warnings"] == result.warnings
    versions = registry.list_versions(result.name, settings)
    newest = versions[0]
    assert newest.version == result.version and newest.aliases == ("champion",)
    assert newest.as_row()["aliases"] == "champion"
    assert "diabetes-progression" in registry.list_models(settings)  # `workbench models list` with no name


def test_a_zero_one_column_drifts_by_value_as_evidently_counts_it(spark):
    """One quantile bin would hide a 0/1 flag whose mean moved from 0.26 to 0.42; value counts do not."""
    import numpy as np
    import pandas as pd

    from workbench import drift

    rng = np.random.default_rng(0)
    ref = pd.DataFrame({"flag": (rng.random(4000) < 0.26).astype("int64"), "x": rng.normal(size=4000)})
    cur = pd.DataFrame({"flag": (rng.random(4000) < 0.42).astype("int64"), "x": rng.normal(size=4000)})
    ours = drift.compute_drift(spark.createDataFrame(ref), spark.createDataFrame(cur), ["flag", "x"])
    flag = ours.feature("flag")
    assert flag.kind == "numerical" and flag.bins == 2 and flag.psi > 0.05 and flag.drifted
    assert flag.reference_mean == pytest.approx(ref["flag"].mean()) and flag.current_mean == pytest.approx(
        cur["flag"].mean()
    )
    for method in ("psi", "jensenshannon", "wasserstein"):
        theirs = drift.evidently_report(ref, cur, ["flag", "x"], [], {"numerical_method": method})
        assert getattr(flag, method) == pytest.approx(theirs.scores["flag"], rel=1e-9, abs=1e-12), method


def test_data_add_infers_a_validated_entry_and_names_identifier_candidates(settings, home, spark, tmp_path):
    from workbench.data.register import add_dataset, describe

    catalog = tmp_path / "catalog.yaml"
    catalog.write_text("# the team's catalog\n" + (home / "catalog.yaml").read_text())
    mine = settings.with_overrides(catalog_path=str(catalog))
    folder = str(home / "lake" / "raw" / "diabetes")
    entry, candidates = describe(spark, folder, owner="stewards")
    assert entry["columns"]["patient_id"] == {"type": "bigint"} and entry["columns"]["sex"] == {"type": "string"}
    assert entry["columns"]["bmi"] == {"type": "double"} and entry["partitioning"] == []
    assert candidates == ["patient_id", "visit"]  # by name, and nearly unique integers; never classified here
    add_dataset(mine, "visits", folder, owner="stewards", entry=entry)
    text = catalog.read_text()
    assert text.startswith("# the team's catalog") and "{lake}/raw/diabetes" in text  # comments kept, portable uri
    added = load_catalog(mine).get("visits")
    assert added.column("patient_id").classification == "internal" and added.roles.target is None
    with pytest.raises(CatalogError, match="already in the catalog"):
        add_dataset(mine, "visits", folder, owner="stewards", entry=entry)
    with pytest.raises(CatalogError, match="has no 'owner'"):
        add_dataset(mine, "broken", folder, owner="", entry={**entry, "owner": ""})
    assert "broken" not in catalog.read_text()  # an invalid entry is never written
