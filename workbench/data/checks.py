"""`workbench data check`: the catalog against the data, every problem at once.

Errors (the catalog must change before governed reads can be trusted):
- the catalog file breaks a rule (`catalog.parse_catalog`: duplicate keys, unknown fields, types, masks);
- a column missing from the data or of another type; a row filter or sql mask that does not compile;
- a mask that changes nothing: on every sampled non-null row its output equals the raw value
  (`{sql: concat(tailnum, '')}`), so it releases the column as stored;
- hash masks without a usable key (production: `mask_key_file`, see `keys`).

Warnings (a steward should look):
- a mask that leaves at least half of the sampled values unchanged;
- an sql mask that is one-to-one on the sample (`reverse(code)`): whoever guesses it can invert it;
- a functional dependency: on the sample, a column or a set of columns released at the masked level (up to
  four, masked ones by their masked value) determines a masked column's raw value (every value of X comes
  with one value of Y), so the mask can be undone by a lookup, e.g. a minute-precise departure time, or the
  public year, month, day and hour, next to a timestamp masked to its year. Sets that are nearly unique on
  the sample are not tested (any key determines every column); `dependencies` has the bounds;
- the same column (name and type) masked in one dataset and released unmasked in another that the same
  groups read, when the sampled values overlap: a join undoes the mask.

The sample is the first `catalog_check_rows` rows of each dataset (setting).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..config import Settings
from ..errors import CatalogInvalid, WorkbenchError
from .catalog import LEVEL_MASKED, LEVEL_NONE, Catalog, Dataset, load_catalog, schema_problems
from .keys import HashKey, hash_key
from .policy import mask_expression

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

__all__ = ["Finding", "CheckReport", "check_catalog", "ERROR", "WARNING"]

ERROR, WARNING = "error", "warning"
UNCHANGED_WARN_SHARE = 0.5  # a mask leaving this share of sampled values as they were is worth a warning
OVERLAP_SHARE = 0.5  # cross-dataset: share of the masked column's sampled values found in the other dataset


@dataclass(frozen=True)
class Finding:
    severity: str  # error or warning
    dataset: str  # "" for the catalog file as a whole
    message: str


@dataclass
class CheckReport:
    path: str
    findings: list[Finding] = field(default_factory=list)
    unclassified: dict[str, list[str]] = field(default_factory=dict)  # dataset -> data columns not in the catalog
    datasets: list[str] = field(default_factory=list)
    bounded: dict[str, str] = field(default_factory=dict)  # dataset -> where the dependency search was cut short

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == ERROR]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == WARNING]

    @property
    def ok(self) -> bool:
        return not self.errors

    def add(self, severity: str, dataset: str, message: str) -> None:
        self.findings.append(Finding(severity, dataset, message))


def check_catalog(settings: Settings, spark=None, sample_rows: int | None = None) -> CheckReport:
    """Check the catalog (setting catalog_path) against the data and return every finding."""
    path = settings.path("catalog_path")
    report = CheckReport(str(path))
    try:
        cat = load_catalog(settings)
    except CatalogInvalid as exc:
        for problem in exc.problems:
            report.add(ERROR, "", problem)
        return report
    if spark is None:
        from ..spark import get_spark

        spark = get_spark("workbench-data-check", settings)
    key: HashKey | str = "data-check"  # any key shows whether a mask changes the value
    if any(c.mask and c.mask.kind == "hash" for ds in cat.datasets.values() for c in ds.columns):
        try:
            key = hash_key(settings)
        except WorkbenchError as exc:
            report.add(ERROR, "", f"{path}: hash masks cannot be applied: {exc}")
    rows = sample_rows or settings.catalog_check_rows
    samples: dict[str, DataFrame] = {}
    for name, ds in sorted(cat.datasets.items()):
        report.datasets.append(name)
        sample = _check_dataset(report, spark, cat, ds, key, rows, settings.catalog_check_dependency_columns)
        if sample is not None:
            samples[name] = sample
    _check_shared_columns(report, cat, samples)
    for sample in samples.values():
        sample.unpersist()
    return report


def _check_dataset(report: CheckReport, spark, cat: Catalog, ds: Dataset, key, rows: int, max_columns: int):
    try:
        raw = spark.read.format(ds.format).load(ds.uri)
        raw.schema
    except Exception as exc:
        report.add(
            ERROR,
            ds.name,
            f"{cat.path}: dataset '{ds.name}' could not be read from {ds.uri} ({exc.__class__.__name__}).",
        )
        return None
    problems, unclassified = schema_problems(cat, ds, raw.schema)
    for problem in problems:
        report.add(ERROR, ds.name, problem)
    if unclassified:
        report.unclassified[ds.name] = unclassified
    if problems:
        return None  # masks and filters name columns that are not there: nothing more to learn
    usable = _compiles(report, cat, ds, raw, key)
    sample = raw.limit(rows).cache()
    _check_masks_change_values(report, ds, sample, key, usable)
    _check_dependencies(report, ds, sample, key, max_columns)
    return sample


def _compiles(report: CheckReport, cat: Catalog, ds: Dataset, raw, key) -> set[str]:
    """Report each row filter, window role and sql mask that does not compile; return the masked columns that do."""
    from pyspark.errors import AnalysisException, ParseException
    from pyspark.sql import functions as F

    predicates = [(f"field 'row_filters', group '{g}'", p) for g, p in sorted(ds.row_filters.items())]
    predicates += [(f"field 'roles', window '{w}'", p) for w, p in ds.roles.windows]
    for where, predicate in predicates:
        try:
            raw.where(F.expr(predicate)).schema
        except (AnalysisException, ParseException) as exc:
            report.add(
                ERROR,
                ds.name,
                f"{cat.path}: dataset '{ds.name}', {where}: the predicate is not valid "
                f"Spark SQL for this data ({exc.__class__.__name__}).",
            )
    usable = set()
    for column in ds.columns:
        if column.mask is None or column.mask.kind == "drop":
            continue
        try:
            raw.select(mask_expression(column, raw.schema[column.name].dataType, key)).schema
            usable.add(column.name)
        except (AnalysisException, ParseException) as exc:
            report.add(
                ERROR,
                ds.name,
                f"{cat.path}: dataset '{ds.name}', column '{column.name}', field 'mask': the sql mask is not valid "
                f"Spark SQL for this data ({exc.__class__.__name__}).",
            )
    return usable


def _check_masks_change_values(report: CheckReport, ds: Dataset, sample, key, usable: set[str]) -> None:
    from pyspark.sql import functions as F

    aggs, names = [], []
    for column in ds.columns:
        if column.name not in usable:
            continue
        raw_col = F.col(f"`{column.name}`")
        masked = mask_expression(column, sample.schema[column.name].dataType, key)
        same = F.when(raw_col.isNotNull() & raw_col.eqNullSafe(masked), 1).otherwise(0)
        aggs += [F.sum(same).alias(f"same_{len(names)}"), F.count(raw_col).alias(f"count_{len(names)}")]
        names.append(column)
    if not aggs:
        return
    row = sample.agg(*aggs).first()
    for i, column in enumerate(names):
        same, count = row[f"same_{i}"] or 0, row[f"count_{i}"] or 0
        where = f"dataset '{ds.name}', column '{column.name}', field 'mask'"
        if count and same == count:
            report.add(
                ERROR,
                ds.name,
                f"{where}: the mask '{column.mask}' returns the raw value on all {count:,} sampled rows, so it masks "
                "nothing. Use an expression that changes the value (a truncation, a bucket, hash, redact, null or drop).",
            )
        elif count and same / count >= UNCHANGED_WARN_SHARE:
            report.add(
                WARNING,
                ds.name,
                f"{where}: the mask '{column.mask}' leaves {same / count:.0%} of {count:,} sampled values unchanged.",
            )
        elif count and column.mask.kind == "sql" and _one_to_one(sample, column, key):
            report.add(
                WARNING,
                ds.name,
                f"{where}: the sql mask is one-to-one on the sample (each masked value comes from a single raw value), "
                "so whoever guesses the expression can invert it (reverse(), concat(), upper() of a code). For "
                "pseudonyms use the keyed `hash` mask.",
            )


def _one_to_one(sample, column, key) -> bool:
    """True when, on the sample, every masked value comes from one raw value and there are at least two."""
    from pyspark.sql import functions as F

    raw_col = F.col(f"`{column.name}`")
    masked = mask_expression(column, sample.schema[column.name].dataType, key).alias("m")
    pairs = sample.where(raw_col.isNotNull()).select(masked, raw_col.alias("r"))
    groups = pairs.groupBy("m").agg((F.min("r") != F.max("r")).alias("many"))
    row = groups.agg(
        F.count(F.lit(1)).alias("groups"), F.sum(F.when(F.col("many"), 1).otherwise(0)).alias("many")
    ).first()
    return bool(row["groups"] and row["groups"] > 1 and not row["many"])


def _check_dependencies(report: CheckReport, ds: Dataset, sample, key, max_columns: int) -> None:
    """Warn for each minimal set of released columns that determines a masked column's raw value on the
    sample (`dependencies.find_dependencies`: single columns and combinations, bounded)."""
    from .dependencies import MAX_CANDIDATES, find_dependencies

    search = find_dependencies(ds, sample, key, max_size=max_columns)
    for dep in search.found:
        x, y = dep.determinant, dep.masked
        seen = f" (masked values of {_names(dep.masked_parts)})" if dep.masked_parts else ""
        if len(x) == 1:
            what = f"the {'masked' if dep.masked_parts else 'unmasked'} column '{x[0]}'{seen} determines"
            fix = f"Mask '{x[0]}' too"
        else:
            what = f"the released columns {_names(x)} together{seen} determine"
            fix = "Coarsen or mask one of them for groups without 'full'"
        report.add(
            WARNING,
            ds.name,
            f"dataset '{ds.name}': {what} the raw value of the masked column '{y}' on the sample (each value of "
            f"{'that column' if len(x) == 1 else 'the combination'} comes with one value of '{y}'), so the mask can "
            f"be undone by a lookup. {fix}, or reconsider the classification of '{y}'.",
        )
    if search.cut:  # not a finding: a limit of the check, kept with the report
        report.bounded[ds.name] = (
            f"the search for sets of columns that determine a masked column tested at most {MAX_CANDIDATES} sets "
            f"of {', '.join(map(str, search.cut))} columns"
        )


def _names(names) -> str:
    return ", ".join(f"'{n}'" for n in names)


def _check_shared_columns(report: CheckReport, cat: Catalog, samples: dict) -> None:
    """Warn when a column masked in one dataset is released unmasked in another that the same groups read,
    and the sampled values overlap (a join on it, or on the other dataset's keys, undoes the mask)."""
    from pyspark.sql import functions as F

    for a_name, a in sorted(cat.datasets.items()):
        for column in a.columns:
            if column.mask is None or a_name not in samples:
                continue
            readers = _masked_readers(cat, a)
            for b_name, b in sorted(cat.datasets.items()):
                other = b.column(column.name)
                if b_name == a_name or b_name not in samples or other is None or other.mask is not None:
                    continue
                if other.type != column.type or not readers & _readers(cat, b):
                    continue
                name = f"`{column.name}`"
                mine = samples[a_name].select(F.col(name).alias("v")).where("v IS NOT NULL").distinct()
                theirs = samples[b_name].select(F.col(name).alias("v")).distinct()
                total = mine.count()
                if total and mine.join(theirs, "v", "left_semi").count() / total >= OVERLAP_SHARE:
                    report.add(
                        WARNING,
                        a_name,
                        f"dataset '{a_name}': column '{column.name}' is masked ({column.mask}) but dataset '{b_name}' "
                        f"releases a column of the same name and type unmasked to {', '.join(sorted(readers & _readers(cat, b)))}, "
                        "and the sampled values overlap: a join can undo the mask. Mask it in both datasets.",
                    )


def _masked_readers(cat: Catalog, ds: Dataset) -> set[str]:
    return {g for g, level in cat.grants_for(ds).items() if level == LEVEL_MASKED}


def _readers(cat: Catalog, ds: Dataset) -> set[str]:
    return {g for g, level in cat.grants_for(ds).items() if level != LEVEL_NONE}
