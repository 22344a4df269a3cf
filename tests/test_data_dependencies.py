"""The dependency search's set arithmetic (workbench/data/dependencies.py), on the driver without Spark:
what counts as one group, a repeating set, and a set that determines a column (its nulls left out)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from workbench.data.dependencies import _codes, _combine, _determines, _repeats


def _known(y):
    codes = _codes(pd.Series(y, dtype=object))
    return np.flatnonzero(codes >= 0), codes[codes >= 0]


def test_a_pair_of_columns_is_one_group_per_distinct_pair():
    day, hour = _codes(pd.Series(["1", "1", "2", "2", "1"])), _codes(pd.Series(["5", "6", "5", "5", "5"]))
    groups = _combine(day, hour)
    assert list(groups) == [0, 1, 2, 2, 0]  # (1,5) (1,6) (2,5) (2,5) (1,5)


def test_a_set_determines_a_column_when_each_group_has_one_value_nulls_left_out():
    groups = np.array([0, 0, 1, 1, 2])
    scratch = np.empty(5, dtype=np.int64)
    assert _determines(groups, _known(["a", "a", "b", None, "c"]), scratch)  # a null beside 'b' is no second value
    assert not _determines(groups, _known(["a", "a", "b", "c", "c"]), scratch)  # group 1 holds b and c
    assert _determines(groups, _known([None] * 5), scratch)  # nothing known, nothing contradicted


def test_a_nearly_unique_set_does_not_repeat():
    assert _repeats(np.array([0, 0, 1, 1, 2]))  # 4 of 5 rows share their value
    assert not _repeats(np.array([0, 1, 2, 3, 3]))  # 2 of 5 (40%) is under the half that a set must repeat
