from pathlib import Path

import pytest

from workbench.config import load_settings
from workbench.errors import ConfigError, WorkbenchError


def env_for(home: Path, **values: str) -> dict[str, str]:
    return {"WORKBENCH_HOME": str(home), **{f"WORKBENCH_{k.upper()}": v for k, v in values.items()}}


def test_defaults_work_on_a_laptop(tmp_path):
    s = load_settings(env=env_for(tmp_path))
    assert s.spark_master == "local[*]"
    assert s.lake == (tmp_path / "lake").resolve().as_uri()
    assert s.tracking_uri == f"sqlite:///{tmp_path}/mlflow.db"
    assert s.path("reports_dir") == tmp_path / "reports"
    assert s.path("catalog_path") == tmp_path / "hub_config" / "catalog.yaml"
    assert s.sources.get("spark_master", "default") == "default"


def test_env_beats_file_beats_default(tmp_path):
    (tmp_path / "workbench.toml").write_text(
        'lake_root = "hdfs://namenode:8020/lake"\n[spark]\nmaster = "spark://10.0.0.5:7077"\ndriver_memory = "4g"\n'
    )
    s = load_settings(env=env_for(tmp_path, spark_master="sc://127.0.0.1:15002"))
    assert s.spark_master == "sc://127.0.0.1:15002" and s.sources["spark_master"] == "env WORKBENCH_SPARK_MASTER"
    assert s.lake == "hdfs://namenode:8020/lake" and s.sources["lake_root"].endswith("workbench.toml")
    assert s.spark_driver_memory == "4g"
    assert s.mlflow_experiment == "workbench" and "mlflow_experiment" not in s.sources


def test_lists_and_bools_from_env(tmp_path):
    s = load_settings(env=env_for(tmp_path, groups="data-stewards, admins", spark_ui="yes"))
    assert s.groups == ("data-stewards", "admins")
    assert s.spark_ui is True


@pytest.mark.parametrize(
    "key,value,needle",
    [
        ("lake_root", "ftp://host/lake", "scheme 'ftp'"),
        ("mlflow_artifacts", "ftp://host/artifacts", "scheme 'ftp'"),
        ("lake_root", "mlflow-artifacts:/", "scheme 'mlflow-artifacts'"),
        ("hub_port", "eighty", "must be an integer"),
        ("hub_port", "70000", "between 1 and 65535"),
        ("spark_master", "spark://nohostport", "spark://HOST:PORT"),
        ("mlflow_tracking_uri", "mongodb://x", "'mongodb'"),
        ("profile", "staging", "one of local, production"),
        ("spark_driver_memory", "lots", "512m or 4g"),
    ],
)
def test_invalid_values_name_the_setting_and_the_source(tmp_path, key, value, needle):
    with pytest.raises(ConfigError) as err:
        load_settings(env=env_for(tmp_path, **{key: value}))
    message = str(err.value)
    assert f"'{key}'" in message and f"WORKBENCH_{key.upper()}" in message and needle in message
    assert isinstance(err.value, WorkbenchError)


@pytest.mark.parametrize(
    "value", ["mlflow-artifacts:/", "s3://bucket/mlflow", "gs://bucket/mlflow", "/srv/mlartifacts"]
)
def test_mlflow_artifacts_take_the_tracking_servers_proxy_and_object_stores(tmp_path, value):
    s = load_settings(env=env_for(tmp_path, mlflow_artifacts=value))
    assert s.artifacts_uri == (value.rstrip("/") if ":" in value else Path(value).as_uri())


def test_unknown_key_in_file_is_refused(tmp_path):
    (tmp_path / "workbench.toml").write_text('lake_rot = "/data"\n')
    with pytest.raises(ConfigError, match="unknown setting 'lake_rot'"):
        load_settings(env=env_for(tmp_path))


def test_broken_toml_names_the_file(tmp_path):
    (tmp_path / "workbench.toml").write_text("lake_root = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(env=env_for(tmp_path))


def test_secrets_are_hidden_in_listing(tmp_path):
    s = load_settings(env=env_for(tmp_path, mask_salt="s3cret-value"))
    shown = {name: value for name, value, _, _ in s.public_items()}
    assert shown["mask_salt"] == "***" and s.mask_salt == "s3cret-value"


def test_config_command_prints_values_and_sources(tmp_path, monkeypatch, capsys):
    from workbench.cli import main

    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path))
    monkeypatch.setenv("WORKBENCH_SPARK_MASTER", "local[2]")
    assert main(["config"]) == 0
    out = capsys.readouterr().out
    line = next(l for l in out.splitlines() if l.startswith("spark_master"))
    assert "local[2]" in line and "[env WORKBENCH_SPARK_MASTER]" in line
