"""The model registry: a thin layer over MLflow's registry, with aliases (not stages).

This is the only module that talks to MLflow's registry API. Every alias move made through
`promote` / `rollback` is recorded in a history (a registered-model tag, `workbench.history.<alias>`)
with who, when, from which version to which, and why; `rollback` replays that history backwards.

    from workbench import registry
    v = registry.register("models:/m-abc123", "NAME", alias="challenger")
    registry.promote("NAME", v.version, reason="gate passed")   # moves @champion
    registry.rollback("NAME", reason="bad predictions")          # @champion back to the previous
    registry.list_versions("NAME")                               # versions (with aliases), metrics, lineage
    registry.model_uri("NAME", "champion")                        # 'models:/NAME@champion'
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from .config import Settings, load_settings
from .errors import RegistryError

__all__ = [
    "ModelVersionInfo",
    "configure",
    "model_uri",
    "register",
    "set_alias",
    "promote",
    "rollback",
    "history",
    "get_version",
    "list_versions",
    "list_models",
    "CHAMPION",
    "CHALLENGER",
]

CHAMPION = "champion"
CHALLENGER = "challenger"
HISTORY_TAG = "workbench.history.{alias}"
HISTORY_KEEP = 200  # events kept per alias (registered-model tags hold up to 100,000 characters)


@dataclass(frozen=True)
class ModelVersionInfo:
    """One registered version with what a reviewer needs: aliases, metrics and lineage."""

    name: str
    version: int
    aliases: tuple[str, ...]
    run_id: str | None
    source: str
    created: float  # seconds since the epoch
    tags: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"

    def as_row(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "aliases": ",".join(self.aliases),
            "run_id": self.run_id,
            "created": time.strftime("%Y-%m-%d %H:%M", time.gmtime(self.created)),
            **{k: round(v, 4) for k, v in sorted(self.metrics.items())},
            **{k: self.params[k] for k in ("dataset", "train_where", "model", "feature_function") if k in self.params},
            "git_commit": self.tags.get("mlflow.source.git.commit", "")[:10],
        }


def configure(settings: Settings | None = None):
    """Point MLflow (tracking and registry) at the settings' stores and return an MlflowClient."""
    import mlflow
    from mlflow import MlflowClient

    settings = settings or load_settings()
    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_registry_uri(settings.registry_uri)
    return MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.registry_uri)


def model_uri(name: str, alias_or_version: str | int = CHAMPION) -> str:
    """`models:/NAME@ALIAS` for an alias, `models:/NAME/VERSION` for a version number."""
    ref = str(alias_or_version)
    return f"models:/{name}/{ref}" if ref.isdigit() else f"models:/{name}@{ref}"


def register(
    source_uri: str,
    name: str | None = None,
    tags: dict[str, Any] | None = None,
    alias: str | None = None,
    settings: Settings | None = None,
) -> ModelVersionInfo:
    """Register a logged model (`models:/m-...` or `runs:/RUN/model`) as a new version of `name`.

    Tags are set on the version; `alias` (e.g. 'challenger') is pointed at it (recorded in the history).
    """
    import mlflow

    settings = settings or load_settings()
    name = _name(name, settings)
    client = configure(settings)
    mv = mlflow.register_model(source_uri, name, tags={k: str(v) for k, v in (tags or {}).items()})
    if alias:
        _move(client, name, alias, int(mv.version), action="register", reason="registered", settings=settings)
    return get_version(name, int(mv.version), settings)


def set_alias(
    name: str, alias: str, version: int, reason: str = "", settings: Settings | None = None
) -> ModelVersionInfo:
    """Point `alias` at `version` (recorded in the alias history)."""
    settings = settings or load_settings()
    client = configure(settings)
    _version(client, name, version)
    _move(client, name, alias, int(version), action="set", reason=reason, settings=settings)
    return get_version(name, int(version), settings)


def promote(
    name: str, version: int | str, alias: str = CHAMPION, reason: str = "", settings: Settings | None = None
) -> ModelVersionInfo:
    """Move `alias` (default champion) to `version` (a number or another alias, e.g. 'challenger')."""
    settings = settings or load_settings()
    client = configure(settings)
    target = int(_version(client, name, version).version)
    _move(client, name, alias, target, action="promote", reason=reason, settings=settings)
    client.set_model_version_tag(name, str(target), f"workbench.promoted_to_{alias}", _now())
    return get_version(name, target, settings)


def rollback(name: str, alias: str = CHAMPION, reason: str = "", settings: Settings | None = None) -> ModelVersionInfo:
    """Move `alias` back to the version it pointed at before its latest move; recorded as a 'rollback' event."""
    settings = settings or load_settings()
    client = configure(settings)
    stack = _stack(history(name, alias, settings))
    if len(stack) < 2:
        raise RegistryError(
            f"Model '{name}' has no earlier '{alias}' to roll back to (the alias history holds "
            f"{len(stack)} version(s)). Promote a version instead: `workbench models promote {name} VERSION`."
        )
    target = stack[-2]
    _version(client, name, target)
    _move(client, name, alias, target, action="rollback", reason=reason, settings=settings)
    client.set_model_version_tag(name, str(stack[-1]), f"workbench.rolled_back_from_{alias}", _now())
    return get_version(name, target, settings)


def history(name: str, alias: str = CHAMPION, settings: Settings | None = None) -> list[dict[str, Any]]:
    """The recorded moves of `alias`, oldest first: {action, version, previous, at, user, reason}."""
    client = configure(settings or load_settings())
    model = _model(client, name)
    raw = model.tags.get(HISTORY_TAG.format(alias=alias))
    return json.loads(raw) if raw else []


def get_version(name: str, ref: int | str = CHAMPION, settings: Settings | None = None) -> ModelVersionInfo:
    """A version by number or by alias, with its run's metrics and parameters."""
    client = configure(settings or load_settings())
    return _info(client, _version(client, name, ref))


def list_versions(name: str | None = None, settings: Settings | None = None) -> list[ModelVersionInfo]:
    """Every version of `name`, newest first, with its aliases.

    `search_model_versions` returns versions without their aliases: they are taken from the
    registered model (alias -> version) instead."""
    settings = settings or load_settings()
    name = _name(name, settings)
    client = configure(settings)
    model = _model(client, name)
    by_version: dict[int, list[str]] = {}
    for alias, version in (getattr(model, "aliases", None) or {}).items():
        by_version.setdefault(int(version), []).append(alias)
    versions = client.search_model_versions(f"name = '{_quote(name)}'")
    infos = (_info(client, v, by_version.get(int(v.version))) for v in versions)
    return sorted(infos, key=lambda v: -v.version)


def list_models(settings: Settings | None = None) -> list[str]:
    """The names of every registered model, sorted."""
    client = configure(settings or load_settings())
    return sorted(m.name for m in client.search_registered_models())


def _name(name: str | None, settings: Settings) -> str:
    if name or settings.model_name:
        return name or settings.model_name
    raise RegistryError(
        "No model name given and the model_name setting is empty. Pass the registered model's name "
        "(a model trained on dataset D is named D-<target name> by default), or set model_name (WORKBENCH_MODEL_NAME)."
    )


# ---- internals ----------------------------------------------------------------------------------
def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _quote(name: str) -> str:
    return name.replace("'", "\\'")


def _model(client, name: str):
    from mlflow.exceptions import MlflowException

    try:
        return client.get_registered_model(name)
    except MlflowException:
        raise RegistryError(
            f"No registered model named '{name}' in the registry {client._registry_uri}. "
            "Train and register one first (notebooks/02_train.ipynb), or check the model_name setting."
        ) from None


def _version(client, name: str, ref: int | str):
    from mlflow.exceptions import MlflowException

    _model(client, name)
    ref = str(ref).lstrip("@")
    try:
        if ref.isdigit():
            return client.get_model_version(name, ref)
        return client.get_model_version_by_alias(name, ref)
    except MlflowException:
        what = f"version {ref}" if ref.isdigit() else f"alias '{ref}'"
        raise RegistryError(
            f"Model '{name}' has no {what}. `workbench models list {name}` shows its versions and aliases."
        ) from None


def _info(client, mv, aliases: list[str] | None = None) -> ModelVersionInfo:
    metrics: dict[str, float] = {}
    params: dict[str, str] = {}
    if mv.run_id:
        try:
            run = client.get_run(mv.run_id)
            metrics, params = dict(run.data.metrics), dict(run.data.params)
            tags = {**{k: v for k, v in run.data.tags.items() if k == "mlflow.source.git.commit"}, **dict(mv.tags)}
        except Exception:  # the run was deleted: the version stays usable
            tags = dict(mv.tags)
    else:
        tags = dict(mv.tags)
    return ModelVersionInfo(
        name=mv.name,
        version=int(mv.version),
        aliases=tuple(sorted(aliases if aliases is not None else (getattr(mv, "aliases", []) or []))),
        run_id=mv.run_id,
        source=mv.source,
        created=(mv.creation_timestamp or 0) / 1000.0,
        tags=tags,
        metrics=metrics,
        params=params,
    )


def _stack(events: list[dict[str, Any]]) -> list[int]:
    """The versions the alias has held, as a stack: a move pushes, a rollback pops."""
    stack: list[int] = []
    for event in events:
        if event["action"] == "rollback":
            if stack:
                stack.pop()
            if not stack or stack[-1] != event["version"]:
                stack.append(event["version"])
        elif not stack or stack[-1] != event["version"]:
            stack.append(event["version"])
    return stack


def _current(client, name: str, alias: str) -> int | None:
    """The version `alias` points at now, or None when the alias is not set.

    Any other failure raises: recording `previous: None` for an alias that was set would corrupt the
    history `rollback` replays."""
    try:
        return int(client.get_model_version_by_alias(name, alias).version)
    except Exception as exc:
        fault = exc
    try:
        is_set = alias in (client.get_registered_model(name).aliases or {})
    except Exception:
        is_set = True  # the registry cannot tell: treat it as a fault, not as "no alias"
    if not is_set:
        return None
    raise RegistryError(
        f"Could not read which version alias '{alias}' of model '{name}' points at ({fault.__class__.__name__}); "
        "the alias was not moved and its history not changed. Check the registry store (setting "
        "mlflow_registry_uri); if the alias points at a deleted version, remove the alias with MLflow's client "
        "(`MlflowClient().delete_registered_model_alias(name, alias)`) and set it again."
    ) from fault


def _move(client, name: str, alias: str, version: int, action: str, reason: str, settings: Settings) -> None:
    from .identity import current_identity

    previous = _current(client, name, alias)
    client.set_registered_model_alias(name, alias, str(version))
    events = history(name, alias, settings)
    events.append(
        {
            "action": action,
            "version": version,
            "previous": previous,
            "at": _now(),
            "user": current_identity(settings).user,
            "reason": reason,
        }
    )
    client.set_registered_model_tag(name, HISTORY_TAG.format(alias=alias), json.dumps(events[-HISTORY_KEEP:]))
