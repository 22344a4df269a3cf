"""Functional dependencies from what a masked reader sees to what a mask hides, for `workbench data check`.

A mask hides nothing when the columns released next to it determine the raw value: `hour`, `day` and
`month` together give a timestamp masked to its year. On a sample, with Spark, this searches sets X
of released columns (unmasked columns as stored, masked columns as their masked value) for each masked
column Y (its raw value): X determines Y when every value of X on the sample comes with a single value of Y.

Spark applies the masks to at most `SAMPLE_ROWS` rows of the sample; those come to the driver, where each
candidate set costs a few vectorised passes (pandas' hash factorisation) rather than a Spark job.
The search is bounded and level-wise (by size of X, up to `MAX_SIZE` columns):
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

import numpy as np

from .catalog import Dataset
from .policy import mask_expression

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

__all__ = ["Dependency", "DependencySearch", "find_dependencies", "MAX_SIZE", "SAMPLE_ROWS"]

MAX_SIZE = 4  # columns in a determining set
MAX_CANDIDATES = 20000  # sets tested per size (about a millisecond each)
SAMPLE_ROWS = 20000  # rows of the check's sample the search uses
MIN_REPEATED_SHARE = 0.5
_NULL = "\u0000"  # stands for a null in a set's value


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
    # x_i: what the reader sees of released column i, as a string; y_j: masked column j as stored.
    # Spark applies the masks; the bounded sample then comes to the driver, where each set is a few numpy passes.
    xs = []
    for c in released:
        value = F.col(f"`{c.name}`") if c.mask is None else mask_expression(c, sample.schema[c.name].dataType, key)
        xs.append(F.coalesce(value.cast("string"), F.lit(_NULL)).alias(f"x{len(xs)}"))
    ys = [_atomic(sample, y).alias(f"y{j}") for j, y in enumerate(hidden)]
    frame = sample.limit(SAMPLE_ROWS).select(*xs, *ys).toPandas()
    if frame.empty:
        return result
    x_codes = [_codes(frame[f"x{i}"]) for i in range(len(released))]
    y_codes = [_codes(frame[f"y{j}"]) for j in range(len(hidden))]
    y_known = [(np.flatnonzero(c >= 0), c[c >= 0]) for c in y_codes]
    scratch = np.empty(len(frame), dtype=np.int64)
    xcols = [i for i, c in enumerate(x_codes) if c.max() > 0]  # constants add nothing
    ycols = [j for j, c in enumerate(y_codes) if c.max() > 0]  # two values at least (nulls ignored)
    own = {j: {i for i, c in enumerate(released) if c.name == hidden[j]} for j in ycols}
    alive: dict[tuple[int, ...], np.ndarray] = {}  # live sets of the last size, with their group of each row
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
        groups_of = {}
        for combo in candidates:
            groups = x_codes[combo[0]] if size == 1 else _combine(alive[combo[:-1]], x_codes[combo[-1]])
            if not _repeats(groups):
                continue  # a (nearly) unique set is a key: it and its supersets say nothing
            groups_of[combo] = groups
            for j in ycols:
                if _open(combo, j, own, determined) and _determines(groups, y_known[j], scratch):
                    determined[j].append(frozenset(combo))
                    names = tuple(released[i].name for i in combo)
                    parts = tuple(released[i].name for i in combo if released[i].mask is not None)
                    result.found.append(Dependency(names, hidden[j], parts))
        alive = groups_of
    return result


def _codes(values) -> np.ndarray:
    """Each row's value as a dense integer code (0, 1, ... in order of appearance; -1 for a null)."""
    import pandas as pd

    return pd.factorize(values, use_na_sentinel=True)[0].astype(np.int64)


def _combine(groups: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """The group of each row under a set one column larger: dense codes of (its group, its value)."""
    import pandas as pd

    return pd.factorize(groups * (int(codes.max()) + 1) + codes)[0].astype(np.int64)


def _repeats(groups: np.ndarray) -> bool:
    """Whether at least `MIN_REPEATED_SHARE` of the rows share their set's value with another row."""
    counts = np.bincount(groups)
    return bool((counts[groups] > 1).mean() >= MIN_REPEATED_SHARE)


def _determines(groups: np.ndarray, y: tuple[np.ndarray, np.ndarray], scratch: np.ndarray) -> bool:
    """Whether every group holds one value of y at most. `y` is (the rows where y is not null, their codes):
    each such row's code equals the one its group keeps in `scratch` after every row has written its own."""
    rows, codes = y
    g = groups[rows]
    scratch[g] = codes
    return bool((scratch[g] == codes).all())


def _open(combo: tuple[int, ...], j: int, own: dict[int, set[int]], determined: dict[int, list[frozenset[int]]]):
    """Whether `combo` may still be reported for masked column j: it holds no part of j's own masked value
    and no smaller set already determines j."""
    s = set(combo)
    return not (s & own[j]) and not any(d <= s for d in determined[j])


def _extend(alive, xcols: list[int]) -> list[tuple[int, ...]]:
    """Sets one column larger than a live set (sorted, each once), in a stable order."""
    out = set()
    for combo in alive:
        for i in xcols:
            if i > combo[-1]:
                out.add((*combo, i))
    return sorted(out)


def _atomic(df, name: str):
    """The column as stored, or as its string form when it is an array or a struct (so it can be hashed)."""
    from pyspark.sql import functions as F

    column = F.col(f"`{name}`")
    return (
        column.cast("string") if df.schema[name].dataType.simpleString().startswith(("array<", "struct<")) else column
    )


def _orderable(df, name: str) -> bool:
    return not df.schema[name].dataType.simpleString().startswith(("map<", "binary"))
