"""Functional dependencies from what a masked reader sees to what a mask hides, for `workbench data check`.

A mask hides nothing when the columns released next to it determine the raw value: `hour`, `day` and
`month` together give a timestamp masked to its year. On a sample, with Spark, this searches sets X
of released columns (unmasked columns as stored, masked columns as their masked value) for each masked
column Y (its raw value): X determines Y when every value of X on the sample comes with a single value of Y.

The search is bounded and level-wise (by size of X, up to `MAX_SIZE` columns; `BATCH` sets a Spark job):
- a column constant on the sample adds nothing and is left out;
- X is tested only while it repeats (at least `MIN_REPEATED_SHARE` of the sampled rows share their X
  value with another row): a (nearly) unique X, a key, determines everything and says nothing, and
  neither do its supersets, which are not generated;
- once X determines Y, no superset of X is reported for Y (the warnings name minimal sets);
- Y's own masked value is never part of X for Y (a keyed hash determines its input by design);
- at most `MAX_CANDIDATES` sets per size; when more were possible `DependencySearch.cut` names the sizes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import combinations
from typing import TYPE_CHECKING

from .catalog import Dataset
from .policy import mask_expression

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

__all__ = ["Dependency", "DependencySearch", "find_dependencies", "MAX_SIZE", "SAMPLE_ROWS"]

MAX_SIZE = 4  # columns in a determining set
MAX_CANDIDATES = 600  # sets tested per size
SAMPLE_ROWS = 20000  # rows of the check's sample the search uses
BATCH = 80  # sets per Spark job (more makes one expression too large for Spark's generated code)
MIN_REPEATED_SHARE = 0.5
_NULL = "\u0000"  # stands for a null in a set's value
_SEP = "\u001f"


@dataclass(frozen=True)
class Dependency:
    determinant: tuple[str, ...]  # released columns (masked ones by their masked value)
    masked: str  # the masked column whose raw value they determine
    masked_parts: tuple[str, ...] = ()  # members of `determinant` that are themselves masked


@dataclass
class DependencySearch:
    found: list[Dependency] = field(default_factory=list)
    cut: list[int] = field(default_factory=list)  # sizes at which candidates were left untested (MAX_CANDIDATES)


def find_dependencies(ds: Dataset, sample: DataFrame, key, max_size: int = MAX_SIZE) -> DependencySearch:
    """Minimal sets of released columns that determine a masked column's raw value on `sample` (raw data)."""
    from pyspark.sql import functions as F

    result = DependencySearch()
    orderable = [c for c in ds.columns if c.name in sample.columns and _orderable(sample, c.name)]
    hidden = [c.name for c in orderable if c.mask is not None]
    released = [c for c in orderable if c.mask is None or c.mask.kind != "drop"]
    if not hidden or not released:
        return result
    rows = sample.limit(SAMPLE_ROWS)
    # x_i: what the reader sees of released column i, as a string; y_j: masked column j as stored
    xs = []
    for c in released:
        value = F.col(f"`{c.name}`") if c.mask is None else mask_expression(c, sample.schema[c.name].dataType, key)
        xs.append(F.coalesce(value.cast("string"), F.lit(_NULL)).alias(f"x{len(xs)}"))
    ys = [F.col(f"`{y}`").alias(f"y{j}") for j, y in enumerate(hidden)]
    frame = rows.select(*xs, *ys).cache()
    try:
        stats = frame.agg(
            *[F.countDistinct(f"x{i}").alias(f"dx{i}") for i in range(len(released))],
            *[F.countDistinct(f"y{j}").alias(f"dy{j}") for j in range(len(hidden))],
        ).first()
        xcols = [i for i in range(len(released)) if stats[f"dx{i}"] > 1]  # constants add nothing
        ycols = [j for j in range(len(hidden)) if stats[f"dy{j}"] > 1]
        own = {j: {i for i, c in enumerate(released) if c.name == hidden[j]} for j in ycols}
        alive: set[tuple[int, ...]] = set()
        determined: dict[int, list[frozenset[int]]] = {j: [] for j in ycols}
        for size in range(1, max_size + 1):
            if size == 1:
                candidates = [(i,) for i in xcols]
            else:
                candidates = [
                    c
                    for c in _extend(alive, xcols)
                    if all(tuple(s) in alive for s in combinations(c, size - 1))
                    and any(_open(c, j, own, determined) for j in ycols)
                ]
            if len(candidates) > MAX_CANDIDATES:
                result.cut.append(size)
                candidates = candidates[:MAX_CANDIDATES]
            if not candidates:
                break
            alive = set()
            for combo, repeated, violations in _test(frame, candidates, ycols):
                if not repeated:
                    continue
                alive.add(combo)
                for j in ycols:
                    if violations[j] == 0 and _open(combo, j, own, determined):
                        determined[j].append(frozenset(combo))
                        names = tuple(released[i].name for i in combo)
                        parts = tuple(released[i].name for i in combo if released[i].mask is not None)
                        result.found.append(Dependency(names, hidden[j], parts))
    finally:
        frame.unpersist()
    return result


def _open(combo: tuple[int, ...], j: int, own: dict[int, set[int]], determined: dict[int, list[frozenset[int]]]):
    """Whether `combo` may still be reported for masked column j: it holds no part of j's own masked value
    and no smaller set already determines j."""
    s = set(combo)
    return not (s & own[j]) and not any(d <= s for d in determined[j])


def _extend(alive: set[tuple[int, ...]], xcols: list[int]) -> list[tuple[int, ...]]:
    """Sets one column larger than a live set (sorted, each once), in a stable order."""
    out = set()
    for combo in alive:
        for i in xcols:
            if i > combo[-1]:
                out.add((*combo, i))
    return sorted(out)


def _test(frame, candidates: list[tuple[int, ...]], ycols: list[int]):
    """(combo, repeats enough, {j: groups with more than one value of y_j}) for each candidate, `BATCH` a job."""
    for start in range(0, len(candidates), BATCH):
        yield from _test_batch(frame, candidates[start : start + BATCH], ycols)


def _test_batch(frame, candidates: list[tuple[int, ...]], ycols: list[int]):
    from pyspark.sql import functions as F

    sets = F.explode(
        F.array(
            *[
                F.struct(F.lit(k).alias("k"), F.concat_ws(_SEP, *[F.col(f"x{i}") for i in combo]).alias("v"))
                for k, combo in enumerate(candidates)
            ]
        )
    )
    long = frame.select(sets.alias("s"), *[F.col(f"y{j}") for j in ycols]).select(
        "s.k", "s.v", *[f"y{j}" for j in ycols]
    )
    groups = long.groupBy("k", "v").agg(
        F.count(F.lit(1)).alias("n"),
        *[(F.min(f"y{j}") != F.max(f"y{j}")).alias(f"many{j}") for j in ycols],
    )
    per_set = groups.groupBy("k").agg(
        F.sum(F.when(F.col("n") > 1, F.col("n")).otherwise(0)).alias("repeated"),
        F.sum("n").alias("rows"),
        *[F.sum(F.when(F.col(f"many{j}"), 1).otherwise(0)).alias(f"v{j}") for j in ycols],
    )
    for row in per_set.collect():
        repeated = bool(row["rows"]) and row["repeated"] / row["rows"] >= MIN_REPEATED_SHARE
        yield candidates[row["k"]], repeated, {j: row[f"v{j}"] for j in ycols}


def _orderable(df, name: str) -> bool:
    return not df.schema[name].dataType.simpleString().startswith(("map<", "binary"))
