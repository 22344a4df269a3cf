"""Registry over a real MLflow store (SQLite, temp dir): register, aliases, promote, rollback, CLI."""

from __future__ import annotations

import sqlite3

import pytest

from workbench import registry
from workbench.cli import main
from workbench.errors import RegistryError


@pytest.fixture
def name(trained_model, mlflow_settings, request):
    """A fresh registered model name holding three versions of the session's trained model."""
    model = f"reg-{request.node.name[:40]}"
    for _ in range(3):
        registry.register(trained_model.model_uri, model, settings=mlflow_settings)
    return model


def test_register_sets_tags_alias_and_lineage(trained_model, mlflow_settings):
    v = registry.register(
        trained_model.model_uri, "reg-lineage", tags={"purpose": "test"}, alias="challenger", settings=mlflow_settings
    )
    assert v.version == 1 and v.aliases == ("challenger",) and v.tags["purpose"] == "test"
    listed = registry.list_versions("reg-lineage", mlflow_settings)
    assert [x.version for x in listed] == [1]
    row = listed[0].as_row()
    assert row["dataset"] == "flights" and row["train_where"] == "month = 1" and row["roc_auc"] > 0.5
    assert listed[0].run_id == trained_model.run_id
    assert registry.model_uri("reg-lineage", "challenger") == "models:/reg-lineage@challenger"
    assert registry.model_uri("reg-lineage", 1) == "models:/reg-lineage/1"


def test_promote_and_rollback_are_recorded(name, mlflow_settings):
    for version in (1, 2, 3):
        registry.promote(name, version, reason=f"ship {version}", settings=mlflow_settings)
    assert registry.get_version(name, "champion", mlflow_settings).version == 3
    back = registry.rollback(name, reason="bad predictions", settings=mlflow_settings)
    assert back.version == 2 and registry.get_version(name, "champion", mlflow_settings).version == 2
    assert registry.rollback(name, settings=mlflow_settings).version == 1
    events = registry.history(name, settings=mlflow_settings)
    assert [(e["action"], e["version"], e["previous"]) for e in events] == [
        ("promote", 1, None),
        ("promote", 2, 1),
        ("promote", 3, 2),
        ("rollback", 2, 3),
        ("rollback", 1, 2),
    ]
    assert events[3]["reason"] == "bad predictions" and events[3]["user"]
    assert registry.get_version(name, 3, mlflow_settings).tags["workbench.rolled_back_from_champion"]
    with pytest.raises(RegistryError, match="no earlier 'champion'"):
        registry.rollback(name, settings=mlflow_settings)


def test_promote_by_alias_name(name, mlflow_settings):
    registry.set_alias(name, "challenger", 2, settings=mlflow_settings)
    assert registry.promote(name, "challenger", settings=mlflow_settings).version == 2
    assert set(registry.get_version(name, 2, mlflow_settings).aliases) == {"champion", "challenger"}


def test_missing_models_versions_and_aliases_say_what_to_do(name, mlflow_settings):
    with pytest.raises(RegistryError, match="No registered model named 'nope'"):
        registry.list_versions("nope", mlflow_settings)
    with pytest.raises(RegistryError, match="no version 9"):
        registry.promote(name, 9, settings=mlflow_settings)
    with pytest.raises(RegistryError, match="no alias 'champion'"):
        registry.get_version(name, "champion", mlflow_settings)


def test_cli_lists_promotes_and_rolls_back(name, mlflow_settings, monkeypatch, capsys):
    monkeypatch.setenv("WORKBENCH_HOME", mlflow_settings.home)
    monkeypatch.setenv("WORKBENCH_MLFLOW_TRACKING_URI", mlflow_settings.tracking_uri)
    monkeypatch.setenv("WORKBENCH_MLFLOW_ARTIFACTS", mlflow_settings.mlflow_artifacts)
    assert main(["models", "promote", name, "1"]) == 0
    assert main(["models", "promote", name, "3", "--reason", "better"]) == 0
    assert main(["models", "rollback", name]) == 0
    assert main(["models", "list", name]) == 0
    out = capsys.readouterr().out
    assert "rolled back -> version 1" in out and "3 version(s)" in out
    assert main(["models", "show", name]) == 0
    shown = capsys.readouterr().out
    assert "version 1" in shown and "rollback" in shown and "better" in shown
    assert main(["models", "rollback", name]) == 1  # nothing earlier: an error, not a crash
    assert "no earlier" in capsys.readouterr().err


def test_a_fault_reading_the_current_alias_raises_and_leaves_the_history_alone(name, mlflow_settings):
    registry.promote(name, 1, reason="first", settings=mlflow_settings)
    registry.promote(name, 2, reason="second", settings=mlflow_settings)
    before = registry.history(name, settings=mlflow_settings)
    # A real registry fault: @champion still points at version 2, whose row is gone (a store restored or
    # edited by hand), so MLflow cannot resolve the alias. Recording `previous: None` here would let a
    # later rollback replay a history that forgot version 2.
    db = mlflow_settings.tracking_uri.removeprefix("sqlite:///")
    with sqlite3.connect(db) as con:
        con.execute("DELETE FROM model_versions WHERE name = ? AND version = 2", (name,))
    con.close()
    with pytest.raises(RegistryError, match="Could not read which version alias 'champion'.*not moved"):
        registry.promote(name, 3, reason="third", settings=mlflow_settings)
    assert registry.history(name, settings=mlflow_settings) == before
    assert [(e["version"], e["previous"]) for e in before] == [(1, None), (2, 1)]
    assert registry.configure(mlflow_settings).get_registered_model(name).aliases == {"champion": 2}


def test_an_alias_that_is_not_set_yet_has_no_previous_version(name, mlflow_settings):
    registry.set_alias(name, "canary", 3, settings=mlflow_settings)
    assert [(e["version"], e["previous"]) for e in registry.history(name, "canary", mlflow_settings)] == [(3, None)]
