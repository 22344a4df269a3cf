"""Reading datasets by name: the only way notebooks and jobs get data from the lake.

`load` asks for a decision (who is asking, the one grant they read through; see `workbench.governance`
and `policy`), and returns a DataFrame with that grant's row filter and masks applied. The decision is
recorded in the audit log before any data is touched; a read the filesystem then refuses becomes
AccessDenied and a second record (outcome denied, reason "filesystem refused"), as does any failure.

Where the masks are applied depends on the profile:
- `local` (a laptop): the raw files are read and governed in this process. The boundary is
  advisory: anyone who can read the files can bypass it (a warning says so once per process).
- `production`: the governance service decides (from this process's OS account) and records; masked
  and row-filtered reads go to the folder it vended for this read (hard links to the view `workbench
  data publish` wrote; `workbench.governance.reads`), and the filesystem itself refuses raw paths to
  anyone without `full` access and view paths to everyone but the service account. Before Spark reads
  a local path, every folder and data file in it is checked, so a refusal is recorded here, not raised
  later by Spark when the DataFrame is computed.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .. import storage
from ..config import Settings, load_settings
from ..errors import AccessDenied, LakeError, PredicateRefused, UnknownDataset, WorkbenchError
from ..identity import Identity, current_identity
from .catalog import LEVEL_FULL, LEVEL_MASKED, Catalog, Dataset, load_catalog, unknown_dataset_message
from .keys import hash_key
from .policy import GOVERNED_ALIAS, VIEW_RAW, Grant, effective_grant, fence, govern

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import DataFrame

__all__ = ["load", "sample", "catalog", "DatasetAccess", "ColumnAccess", "GovernanceWarning"]


class GovernanceWarning(UserWarning):
    """The data boundary is advisory (local profile)."""


_warned_advisory = False


def _warn_advisory(settings: Settings, identity: Identity) -> None:
    global _warned_advisory
    if settings.profile == "local" and not _warned_advisory:
        _warned_advisory = True
        warnings.warn(
            f"Data governance is ADVISORY in the 'local' profile: masks, row filters and grants are applied by workbench.data "
            f"for '{identity.user}' ({identity.source}), but anyone who can read {settings.lake} can read the raw files. "
            "The 'production' profile (system users, `workbench data publish`) enforces the boundary.",
            GovernanceWarning,
            stacklevel=3,
        )


def load(
    name: str,
    columns: Sequence[str] | None = None,
    where: str | None = None,
    purpose: str | None = None,
    settings: Settings | None = None,
    spark=None,
) -> DataFrame:
    """A Spark DataFrame of the named dataset as the caller may see it.

    The caller's row filter and masks come first; then `where` (a Spark SQL predicate over the columns
    the caller's level releases, evaluated on their masked values) and `columns`. Masked columns keep their
    names and types. Raises UnknownDataset, AccessDenied (no grant, or the filesystem refused),
    PredicateRefused (`where` names something outside the caller's view), LakeError, ConfigError (a shared
    cluster in production), or AuditError (the read could not be recorded).
    """
    settings = settings or load_settings()
    cat = load_catalog(settings)
    decision = _decide(settings, cat, name, columns, where, purpose)
    identity = decision.identity
    _warn_advisory(settings, identity)
    if decision.outcome == "unknown-dataset" or name not in cat.datasets:
        raise UnknownDataset(unknown_dataset_message(name, cat.datasets, cat.path))
    ds = cat.datasets[name]
    grant = decision.grant
    if grant is None:
        raise AccessDenied(_denied_message(ds, identity))
    from ..spark import get_spark

    try:
        spark = spark or get_spark(settings=settings)  # in the try: a refused shared cluster is audited too
        _governed_session(settings, spark)
        governed = _governed(settings, spark, cat, ds, grant, identity, decision.location)
        df = _select(governed, ds, grant, columns, where)
    except AccessDenied as exc:
        _follow_up(settings, decision, "denied", _refusal_reason(exc), where)
        raise
    except WorkbenchError as exc:
        _follow_up(settings, decision, "error", exc.__class__.__name__, where)
        raise
    except Exception as exc:  # anything else from Spark: recorded, then raised as it came
        _follow_up(settings, decision, "error", exc.__class__.__name__, where)
        raise
    return df


def sample(name: str, n: int = 1000, seed: int = 42, **kwargs) -> pd.DataFrame:
    """Up to `n` rows of the dataset as pandas (governed like `load`), deterministic for a given seed."""
    df = load(name, **kwargs)
    total = df.count()
    if total > n:
        df = df.sample(fraction=min(1.0, 1.2 * n / total), seed=seed).limit(n)
    return df.toPandas()


def _denied_message(ds: Dataset, identity: Identity) -> str:
    groups = ", ".join(identity.groups) or "none"
    return (
        f"'{identity.user}' (groups: {groups}; identity: {identity.source}) has no grant to read dataset '{ds.name}'. "
        f"Ask its owner, {ds.owner}, for access (a grant of 'masked' or 'full' to one of your groups in the catalog)."
    )


def _governed(
    settings: Settings, spark, cat: Catalog, ds: Dataset, grant: Grant, identity: Identity, location: str | None
) -> DataFrame:
    if settings.profile == "production" and grant.view != VIEW_RAW:
        from .publish import current_version_uri, view_uri

        if location:  # the folder the governance service vended for this read (workbench.governance.reads)
            return fence(_read(spark, ds, location, "parquet", identity, grant, settings))
        try:  # a lake where the service cannot vend (not local): the view's newest version, as the filesystem allows
            uri = current_version_uri(settings, ds.name, grant.view, spark)
        except Exception as exc:
            if _is_refusal(exc):
                raise FilesystemRefused(
                    _refused(ds, identity, grant, view_uri(settings, ds.name, grant.view))
                ) from None
            raise
        if uri is None:
            raise LakeError(
                f"The '{grant.view}' view of dataset '{ds.name}' has not been published to {settings.governed_uri}. "
                f"Ask its owner, {ds.owner}, to run `workbench data publish`."
            )
        return fence(_read(spark, ds, uri, "parquet", identity, grant, settings))
    raw = _read(spark, ds, ds.uri, ds.format, identity, grant, settings)
    return govern(raw, cat, ds, grant, hash_key(settings) if grant.level != LEVEL_FULL else "")


def _governed_session(settings: Settings, spark) -> None:
    """The session a governed read uses: a shared cluster is refused in production (ConfigError, audited as
    an error), and SQL over files is off so a `where=` subquery cannot read a path."""
    from ..spark import check_governed_session

    check_governed_session(settings, spark)


def _read(spark, ds: Dataset, uri: str, fmt: str, identity: Identity, grant: Grant, settings: Settings) -> DataFrame:
    if settings.profile == "production" and storage.is_local(uri):
        refused = _first_unreadable(storage.local_path(uri))
        if refused is not None:  # found now, not when Spark computes the DataFrame (where it would go unrecorded)
            raise FilesystemRefused(_refused(ds, identity, grant, uri) + f" (first refused: {refused})")
    try:
        return spark.read.format(fmt).load(uri)
    except Exception as exc:
        if _is_refusal(exc):
            raise FilesystemRefused(_refused(ds, identity, grant, uri)) from None
        raise LakeError(
            f"Dataset '{ds.name}' could not be read from {uri} ({exc.__class__.__name__}). Run `workbench lake init` if this is "
            f"the sample lake, or `workbench data publish` if a governed view is missing."
        ) from exc


# ---- decisions, refusals and their audit records (see workbench.governance) ------------------------
class FilesystemRefused(AccessDenied):
    """The decision allowed the read but the filesystem refused this OS account: recorded as denied."""


def _decide(settings: Settings, cat: Catalog, name: str, columns, where, purpose):
    """Who is asking and what they may read, decided and recorded before any data is touched: by the
    governance service when there is one (always in production), else here (local profile)."""
    from .decision import decide_read

    return decide_read(settings, name, columns, where, purpose, catalog=cat)


def _follow_up(settings: Settings, decision, outcome: str, reason: str, where: str | None) -> None:
    """Record what became of an allowed read; it names the predicate, so a refused `where=` is on file."""
    from .decision import follow_up

    follow_up(settings, decision, outcome, reason, where=where)


def _refusal_reason(exc: AccessDenied) -> str:
    return "filesystem refused" if isinstance(exc, FilesystemRefused) else exc.__class__.__name__


_REFUSAL_MARKS = ("Permission denied", "AccessControlException", "AccessDeniedException", "EACCES")


def _is_refusal(exc: BaseException) -> bool:
    """A permission refusal, whether Python raised it or the JVM did (Py4JJavaError, AnalysisException)."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, PermissionError) or any(m in str(exc) for m in _REFUSAL_MARKS):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def _first_unreadable(root: Path) -> Path | None:
    """The first folder or data file under `root` this process may not read (None: all readable, or `root` missing,
    which Spark reports). Spark reads no file whose name starts with '_' or '.', so neither is tested."""
    try:
        os.stat(root)
    except FileNotFoundError:
        return None
    except PermissionError:
        return root
    if not os.access(root, os.R_OK | os.X_OK):
        return root
    refused: list[Path] = []
    for folder, dirs, files in os.walk(root, onerror=lambda exc: refused.append(Path(exc.filename))):
        if refused:
            return refused[0]
        for name in files:
            if not name.startswith(("_", ".")) and not os.access(os.path.join(folder, name), os.R_OK):
                return Path(folder, name)
        for name in dirs:
            if not os.access(os.path.join(folder, name), os.R_OK | os.X_OK):
                return Path(folder, name)
    return refused[0] if refused else None


def _refused(ds: Dataset, identity: Identity, grant: Grant, uri: str) -> str:
    return (
        f"The filesystem refused '{identity.user}' (groups: {', '.join(identity.groups) or 'none'}) reading the '{grant.view}' view of "
        f"dataset '{ds.name}' at {uri}. Your system account is not in a group that may read it; ask the owner, {ds.owner}."
    )


def _select(df: DataFrame, ds: Dataset, grant: Grant, columns: Sequence[str] | None, where: str | None) -> DataFrame:
    if where:
        df = _where(df, ds, grant, where)
    if columns:
        withheld = [c for c in columns if c not in df.columns and ds.column(c) is not None]
        if withheld and grant.level != LEVEL_FULL:
            raise AccessDenied(
                f"Column(s) {', '.join(withheld)} of dataset '{ds.name}' are not released at level '{grant.level}'. "
                f"Ask its owner, {ds.owner}, for 'full' access or leave them out."
            )
        missing = [c for c in columns if c not in df.columns]
        if missing:
            raise LakeError(
                f"Dataset '{ds.name}' has no column(s) {', '.join(missing)}. Its columns: {', '.join(df.columns)}."
            )
        df = df.select(*columns)
    return df


# Functions that call into the JVM by reflection: a predicate could use them to reach outside the view.
_REFLECTION_RE = re.compile(r"\b(?:try_)?(?:reflect|java_method)`?\s*\(", re.IGNORECASE)
_SQL_COMMENT_RE = re.compile(r"/\*.*?\*/|--[^\n]*", re.DOTALL)


def _where(df: DataFrame, ds: Dataset, grant: Grant, where: str) -> DataFrame:
    """`where` over the governed view `df` (fenced by `policy.fence`): it resolves against the view's
    columns only, with their masked values. A name outside the view, another table, a file or a
    reflection call is refused (PredicateRefused) with a message that never echoes data values."""
    from pyspark.errors import AnalysisException, ParseException

    view = f"your view of dataset '{ds.name}' at level '{grant.level}'"
    if _REFLECTION_RE.search(_SQL_COMMENT_RE.sub(" ", where)):
        raise PredicateRefused(
            f"The where= predicate for dataset '{ds.name}' calls reflect/java_method, which runs arbitrary JVM "
            "code; a predicate may use only the dataset's columns and Spark SQL functions."
        )
    try:
        out = df.where(where)
        out.schema  # analyse now, so the refusal names the predicate
        return out
    except AnalysisException as exc:
        condition = (exc.getCondition() or "") if hasattr(exc, "getCondition") else ""
        params = exc.getMessageParameters() or {}
        if condition.startswith("UNRESOLVED_COLUMN") or condition.startswith("UNRESOLVED_FIELD"):
            name = str(params.get("objectName", "")).replace(f"`{GOVERNED_ALIAS}`.", "")
            raise PredicateRefused(
                f"The where= predicate names {name or 'a column'}, which is not a column of {view}. A predicate sees "
                f"only the columns you may read ({', '.join(df.columns)}), with their masked values. Ask the owner, "
                f"{ds.owner}, if you need another column."
            ) from None
        if condition.startswith(("TABLE_OR_VIEW_NOT_FOUND", "UNSUPPORTED_DATASOURCE_FOR_DIRECT_QUERY")):
            raise PredicateRefused(
                f"The where= predicate for dataset '{ds.name}' reads another table or a file "
                f"({params.get('relationName', 'a relation')}). A predicate may use only the dataset's own columns; "
                "SQL over file paths is off in governed sessions. Load the other dataset with workbench.data.load "
                "and join the two DataFrames."
            ) from None
        raise LakeError(
            f"The where= predicate for dataset '{ds.name}' is not valid Spark SQL over its columns "
            f"({', '.join(df.columns)}): {exc.__class__.__name__} {condition}."
        ) from None
    except ParseException as exc:
        raise LakeError(
            f"The where= predicate for dataset '{ds.name}' is not valid Spark SQL over its columns "
            f"({', '.join(df.columns)}): {exc.__class__.__name__}."
        ) from None


# ---- what may I read? ------------------------------------------------------------------------
@dataclass(frozen=True)
class ColumnAccess:
    name: str
    type: str
    classification: str
    mask: str | None  # the mask applied at the caller's level (None: values as stored)
    released: bool  # False when the column is dropped at the caller's level


@dataclass(frozen=True)
class DatasetAccess:
    name: str
    level: str  # masked or full (or none, with include_denied)
    group: str  # the group whose grant applies
    row_filter: str | None
    owner: str
    zone: str
    description: str
    columns: tuple[ColumnAccess, ...]


def catalog(settings: Settings | None = None, include_denied: bool = False) -> list[DatasetAccess]:
    """The datasets the caller may read, each with its level, row filter and what each column looks like."""
    settings = settings or load_settings()
    identity = current_identity(settings)
    cat = load_catalog(settings)
    out = []
    for name, ds in sorted(cat.datasets.items()):
        grant = effective_grant(cat, ds, identity.groups)
        if grant is None and not include_denied:
            continue
        level = grant.level if grant else "none"
        cols = tuple(
            ColumnAccess(
                c.name,
                c.type,
                c.classification,
                str(c.mask) if c.mask and level == LEVEL_MASKED else None,
                not (level == LEVEL_MASKED and c.mask is not None and c.mask.kind == "drop"),
            )
            for c in ds.columns
        )
        out.append(
            DatasetAccess(
                name,
                level,
                grant.group if grant else "",
                grant.row_filter if grant else None,
                ds.owner,
                ds.zone,
                ds.description,
                cols,
            )
        )
    return out
